//! # lattice-http
//!
//! The HTTP API of `lattice serve --http ADDR` (DESIGN.md section 9): the keys of a store over
//! HTTP, each request authorised by an access token from the root store (`/tokens/`, see
//! `lattice_node::tokens`).
//!
//! ```text
//! GET    /stores/{store}/keys/{*key}                     200 raw value | 404
//! PUT    /stores/{store}/keys/{*key}   body = raw value  200 {"hash","hlc"}
//! DELETE /stores/{store}/keys/{*key}                     200 {"hash","hlc"} | 404
//! GET    /stores/{store}/keys?prefix=P&limit=N&after=K   200 {"items":[{"key","value","encoding"}],"next"}
//! GET    /healthz                                        no auth
//! ```
//!
//! Order of checks: the token (401: missing, malformed, unknown, wrong secret, revoked,
//! expired), its rate (429 with `Retry-After`), then the store and permission (403: a token for
//! another store, or without the right). Errors are JSON `{"error": "..."}`.
//!
//! [`HttpServer`] owns its task; [`HttpServer::shutdown`] stops accepting, lets requests in
//! flight finish, and returns when the task has ended. The crate talks to the store only through
//! [`Node`]'s guarded key-value path, so the root store's reserved prefixes stay refused here too.

mod rate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use lattice_node::tokens::{self, TokenRejected};
use lattice_node::{ErrorKind, Node, NodeError, StoreRef};
use lattice_store::WriteReceipt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use rate::RateLimit;

/// Default and largest page of a listing.
const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Tunables of the HTTP API.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Requests each token may make: a sustained rate and a burst.
    pub rate_limit: RateLimit,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { rate_limit: RateLimit { per_second: 100, burst: 200 } }
    }
}

/// The running HTTP API.
pub struct HttpServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

struct Api {
    node: Arc<Node>,
    limiter: rate::Limiter,
}

type Shared = State<Arc<Api>>;

impl HttpServer {
    /// Binds `addr` and serves the API for `node` until [`HttpServer::shutdown`].
    pub async fn start(node: Arc<Node>, addr: SocketAddr, config: HttpConfig) -> Result<HttpServer, HttpError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| HttpError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| HttpError::Bind { addr, source })?;
        let api = Arc::new(Api { node, limiter: rate::Limiter::new(config.rate_limit) });
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let app = router(api);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        tracing::info!(addr = %local, "HTTP API listening");
        Ok(HttpServer { addr: local, cancel, task })
    }

    /// The address it listens on (the port chosen when `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "HTTP server task failed");
        }
    }
}

fn router(api: Arc<Api>) -> Router {
    // A value may be up to the entry limit; a little more leaves room to say so precisely.
    let body_limit = lattice_core::entry::MAX_VALUE_BYTES + 1024;
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/stores/{store}/keys", get(list_keys))
        .route("/stores/{store}/keys/{*key}", get(get_key).put(put_key).delete(delete_key))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(api)
}

/// Errors axum produces itself (wrong method, body over the limit, bad query) come as plain
/// text or empty; every error of this API is JSON, so they are rewrapped.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    let mut rewrapped = ApiError::new(status, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            rewrapped.headers_mut().insert(name, value.clone());
        }
    }
    rewrapped
}

/// A JSON body with its content type.
struct Json(Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], format!("{}\n", self.0)).into_response()
    }
}

/// An error response: a status and `{"error": "..."}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> ApiError {
        let status = match (&e, e.kind()) {
            (NodeError::Reserved { .. }, _) => StatusCode::FORBIDDEN,
            (NodeError::ShuttingDown, _) => StatusCode::SERVICE_UNAVAILABLE,
            (_, ErrorKind::NotFound) => StatusCode::NOT_FOUND,
            (_, ErrorKind::Usage) => StatusCode::BAD_REQUEST,
            (NodeError::Invalid(_), _) => StatusCode::BAD_REQUEST,
            _ => {
                tracing::error!(error = %e, "HTTP request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<TokenRejected> for ApiError {
    fn from(e: TokenRejected) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl Api {
    /// Authorises a request on `store` for `access`; returns the store it may act on.
    async fn authorise(&self, headers: &HeaderMap, store: &str, access: Access) -> Result<StoreRef, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(TokenRejected::Malformed)?;
        let (id, secret) = tokens::split_token(presented.trim())?;
        let record = self.node.token(id).await?.ok_or(TokenRejected::Unknown)?;
        record.check(secret, lattice_node::time::now_ms())?;
        if let Err(wait) = self.limiter.admit(id) {
            let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limit of this token exceeded");
            e.retry_after = Some(wait);
            return Err(e);
        }
        let forbidden =
            || ApiError::new(StatusCode::FORBIDDEN, format!("this token does not grant access to store {store:?}"));
        // A store the token is not for is refused the same way whether it exists or not.
        let target = self.node.resolve(Some(store)).await.map_err(|_| forbidden())?;
        if record.store_id != Some(target.id) {
            return Err(forbidden());
        }
        let permissions = record.permissions.ok_or_else(forbidden)?;
        let allowed = match access {
            Access::Read => permissions.can_read(),
            Access::Write => permissions.can_write(),
        };
        if !allowed {
            let what = if access == Access::Read { "read" } else { "write" };
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this token may not {what} (permissions {})", permissions.as_str()),
            ));
        }
        Ok(target)
    }
}

async fn get_key(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = api.authorise(&headers, &store, Access::Read).await?;
    match api.node.get(&store, key.as_bytes()).await? {
        Some(value) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("key {key:?} not found"))),
    }
}

async fn put_key(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json, ApiError> {
    let store = api.authorise(&headers, &store, Access::Write).await?;
    let receipt = api.node.put(&store, key.into_bytes(), body.to_vec()).await?;
    Ok(receipt_json(&receipt))
}

async fn delete_key(
    State(api): Shared,
    Path((store, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json, ApiError> {
    let store = api.authorise(&headers, &store, Access::Write).await?;
    match api.node.delete(&store, key.clone().into_bytes()).await? {
        Some(receipt) => Ok(receipt_json(&receipt)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("key {key:?} not found"))),
    }
}

/// `{"hash", "hlc"}` of a write.
fn receipt_json(receipt: &WriteReceipt) -> Json {
    Json(json!({ "hash": receipt.hash.to_hex(), "hlc": receipt.hlc.to_string() }))
}

#[derive(Deserialize)]
struct ListQuery {
    prefix: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

async fn list_keys(
    State(api): Shared,
    Path(store): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Json, ApiError> {
    let store = api.authorise(&headers, &store, Access::Read).await?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIST_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a number from 1 to {MAX_LIST_LIMIT}, not {text:?}"),
                ));
            }
        },
    };
    let prefix = query.prefix.unwrap_or_default().into_bytes();
    let page = api.node.list(&store, &prefix, query.after.map(String::into_bytes), limit).await?;
    let next =
        if page.len() == limit { page.last().map(|(k, _)| String::from_utf8_lossy(k).into_owned()) } else { None };
    let items: Vec<Value> = page.iter().map(|(k, v)| item(k, v)).collect();
    Ok(Json(json!({ "items": items, "next": next })))
}

/// `{"key", "value", "encoding"}`: the value as UTF-8 text, or base64 with `"encoding":"base64"`
/// (a key that is not UTF-8 likewise, with `"key_encoding":"base64"`).
fn item(key: &[u8], value: &[u8]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut obj = Map::new();
    match std::str::from_utf8(key) {
        Ok(k) => obj.insert("key".into(), json!(k)),
        Err(_) => {
            obj.insert("key_encoding".into(), json!("base64"));
            obj.insert("key".into(), json!(b64.encode(key)))
        }
    };
    match std::str::from_utf8(value) {
        Ok(v) => {
            obj.insert("value".into(), json!(v));
            obj.insert("encoding".into(), json!("utf8"));
        }
        Err(_) => {
            obj.insert("value".into(), json!(b64.encode(value)));
            obj.insert("encoding".into(), json!("base64"));
        }
    }
    Value::Object(obj)
}
