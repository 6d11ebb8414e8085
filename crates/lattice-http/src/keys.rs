//! The key routes: get, put and delete one key, and list a store's keys a page at a time.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Access;
use crate::cursor;
use crate::json::{list_item, write_receipt};
use crate::reply::{ApiError, Json};
use crate::server::Shared;

/// Default and largest page of a listing.
const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 1000;

pub(crate) async fn get_key(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = api.authorise(&headers, &store, Access::Read).await?;
    match api.node.get(&store, key.as_bytes()).await? {
        Some(value) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response()),
        None => Err(not_found(&key)),
    }
}

/// The body is read only once the token is accepted (a stranger's upload is refused from its
/// headers), and only for as long as `HttpConfig::body_read_timeout`.
pub(crate) async fn put_key(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    request: Request,
) -> Result<Json, ApiError> {
    let store = api.authorise(request.headers(), &store, Access::Write).await?;
    // `Bytes` honours the router's `DefaultBodyLimit` (413 past it).
    let body = tokio::time::timeout(api.body_read_timeout, Bytes::from_request(request, &()))
        .await
        .map_err(|_| ApiError::new(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time"))?
        .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let receipt = api.node.put(&store, key.into_bytes(), body.to_vec()).await?;
    Ok(Json(Value::Object(write_receipt(&receipt))))
}

pub(crate) async fn delete_key(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json, ApiError> {
    let store = api.authorise(&headers, &store, Access::Write).await?;
    match api.node.delete(&store, key.clone().into_bytes()).await? {
        Some(receipt) => Ok(Json(Value::Object(write_receipt(&receipt)))),
        None => Err(not_found(&key)),
    }
}

fn not_found(key: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("key {key:?} not found"))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    prefix: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

/// `after` is a cursor from a previous page's `next` (or, as before cursors, a plain key); `next`
/// is a cursor (see `cursor`).
pub(crate) async fn list_keys(
    State(api): Shared,
    Path(store): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json, ApiError> {
    let store = api.authorise(&headers, &store, Access::Read).await?;
    // Parsed after the token, so a stranger learns nothing from how a query is refused.
    let Query(query) = Query::<ListQuery>::try_from_uri(&uri).map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let limit = list_limit(query.limit.as_deref())?;
    let prefix = query.prefix.unwrap_or_default().into_bytes();
    let after = query.after.as_deref().map(cursor::after_key);
    let page = api.node.list(&store, &prefix, after, limit).await?;
    let next = if page.len() == limit { page.last().map(|(k, _)| cursor::encode(k)) } else { None };
    let items: Vec<Value> = page.iter().map(|(k, v)| list_item(k, v)).collect();
    Ok(Json(json!({ "items": items, "next": next })))
}

/// The page size a `limit` parameter asks for: 1 to [`MAX_LIST_LIMIT`], else a 400.
fn list_limit(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else { return Ok(DEFAULT_LIST_LIMIT) };
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be a number from 1 to {MAX_LIST_LIMIT}, not {text:?}"),
        )),
    }
}
