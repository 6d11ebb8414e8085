//! The key routes: get, put and delete one key, and list a store's keys a page at a time.

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use lattice_core::Op;
use lattice_store::{Transaction, WriteReceipt};

use crate::auth::Access;
use crate::json::{list_item, write_receipt};
use crate::reply::{ApiError, Json, etag};
use crate::server::Shared;
use crate::{conditional, cursor};

/// Default and largest page of a listing.
const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 1000;

#[derive(Deserialize)]
pub(crate) struct GetQuery {
    at: Option<String>,
}

/// 200 with the value and its `ETag`, or 304 (the ETag, no body) when `If-None-Match` matches.
/// With `?at=`, the register's value as of then (time travel, no ETag).
pub(crate) async fn get_key(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = api.authorise(&headers, &store, Access::Read).await?;
    let Query(query) = Query::<GetQuery>::try_from_uri(&uri).map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if let Some(at) = query.at {
        let at = lattice_node::parse_at(&at)?;
        let value = api.node.get_at(&store, key.as_bytes(), at).await?.ok_or_else(|| not_found(&key))?;
        return Ok(
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))], value).into_response()
        );
    }
    let lookup = api.node.lookup(&store, key.as_bytes()).await?;
    let (Some(value), Some(winner)) = (lookup.typed, lattice_core::visible(&lookup.heads)) else {
        return Err(not_found(&key));
    };
    let tag = etag_header(&winner.hash);
    if conditional::not_modified(&headers, &winner.hash) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    // A register is its raw bytes; a counter or a set is JSON: `{"key", "kind", "value"}` or
    // `{"key", "kind", "members"}`.
    let (content_type, body) = match value {
        lattice_store::Value::Register(bytes) => ("application/octet-stream", bytes),
        typed => {
            let doc = serde_json::Value::Object(crate::json::typed_value(key.as_bytes(), &typed));
            ("application/json", doc.to_string().into_bytes())
        }
    };
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(content_type)), (header::ETAG, tag)], body).into_response())
}

/// `GET /stores/{store}/proof/{*key}`: the key's Merkle proof (present or absent) against this
/// node's signed root, as JSON (see `proof`). Needs read access, like the value.
pub(crate) async fn get_proof(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = api.authorise(&headers, &store, Access::Read).await?;
    let proof = api.node.prove(&store, key.as_bytes()).await?;
    Ok(axum::Json(crate::proof::proof_json(&proof)).into_response())
}

/// The body is read only once the token is accepted (a stranger's upload is refused from its
/// headers), and only for as long as `HttpConfig::body_read_timeout`. `If-Match` and
/// `If-None-Match: *` make it a compare-and-set (see `conditional`).
pub(crate) async fn put_key(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let store = api.authorise(request.headers(), &store, Access::Write).await?;
    let key = key.into_bytes();
    let condition = conditional::write_condition(request.headers(), &key, true)?;
    let body = api.read_body(request).await?;
    let tx =
        Transaction { ops: vec![Op::Put { key, value: body.to_vec() }], conditions: condition.into_iter().collect() };
    Ok(written(&api.node.transact(&store, tx).await?))
}

/// A delete with `If-Match` is written only if the winner is still that entry: 412 otherwise,
/// and when the key has no value.
pub(crate) async fn delete_key(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = api.authorise(&headers, &store, Access::Write).await?;
    let receipt = match conditional::write_condition(&headers, key.as_bytes(), false)? {
        Some(condition) => {
            let tx = Transaction::new(vec![Op::Delete { key: key.into_bytes() }]).when(condition);
            api.node.transact(&store, tx).await?
        }
        None => match api.node.delete(&store, key.clone().into_bytes()).await? {
            Some(receipt) => receipt,
            None => return Err(not_found(&key)),
        },
    };
    Ok(written(&receipt))
}

/// A write's receipt `{"hash","hlc"}`, with the key's new ETag.
fn written(receipt: &WriteReceipt) -> Response {
    let mut response = Json(Value::Object(write_receipt(receipt))).into_response();
    response.headers_mut().insert(header::ETAG, etag_header(&receipt.hash));
    response
}

fn etag_header(hash: &lattice_core::Hash) -> HeaderValue {
    // Hex in quotes is always a valid header value.
    HeaderValue::from_str(&etag(hash)).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
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
