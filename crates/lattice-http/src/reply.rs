//! What a handler answers: a JSON body, or an error as a status and `{"error": "..."}`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lattice_node::{ErrorKind, NodeError, TokenRejected};
use lattice_store::StoreError;
use serde_json::{Map, Value, json};

/// A JSON body with its content type.
pub(crate) struct Json(pub(crate) Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], json_text(&self.0)).into_response()
    }
}

/// A JSON body as this API writes it: one line.
fn json_text(value: &Value) -> String {
    format!("{value}\n")
}

/// The body of every error: `{"error": message}`.
pub(crate) fn error_body(message: &str) -> String {
    json_text(&json!({ "error": message }))
}

/// An ETag as this API writes it: the entry hash in hex, in double quotes.
pub(crate) fn etag(hash: &lattice_core::Hash) -> String {
    format!("\"{}\"", hash.to_hex())
}

/// What a client is told for a missing, malformed or unknown token and for a wrong secret: one
/// message, so an answer never says whether a token id exists.
const BAD_TOKEN: &str = "missing or invalid token (expected `Authorization: Bearer ID:SECRET`)";

/// What a client is told for a 500; the details go to the log only, since they can name paths
/// and internal state.
const INTERNAL: &str = "internal error";

/// An error response: a status and `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
    /// Fields of the body beside `error` (a 412's `key` and `etag`).
    fields: Map<String, Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None, fields: Map::new() }
    }

    /// 412: a condition on `key` did not hold; the body names the key and its current ETag
    /// (`null` when it has no visible value), so a client can retry from there.
    pub(crate) fn precondition_failed(message: String, key: &[u8], current: Option<lattice_core::Hash>) -> ApiError {
        let mut e = ApiError::new(StatusCode::PRECONDITION_FAILED, message);
        crate::json::insert_bytes(&mut e.fields, "key", "key_encoding", key);
        e.fields.insert("etag".into(), current.as_ref().map_or(Value::Null, |h| json!(etag(h))));
        e
    }

    /// 500 with a generic message; `detail` is logged, never sent.
    pub(crate) fn internal(detail: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "HTTP request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL)
    }

    /// 429, with `Retry-After` saying when the token's bucket has a request again.
    pub(crate) fn rate_limited(wait: Duration) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limit of this token exceeded");
        e.retry_after = Some(wait);
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.fields.is_empty() {
            error_body(&self.message)
        } else {
            let mut obj = self.fields;
            obj.insert("error".into(), json!(self.message));
            json_text(&Value::Object(obj))
        };
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 requires a challenge on every 401; this API knows one scheme.
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
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
            // The node is catching its own log up from a peer: the write succeeds shortly.
            (NodeError::Behind { .. }, _) => {
                let mut busy = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                busy.retry_after = Some(Duration::from_secs(2));
                return busy;
            }
            (NodeError::Store(StoreError::PreconditionFailed { key, current }), _) => {
                return ApiError::precondition_failed(e.to_string(), key, *current);
            }
            (_, ErrorKind::Precondition) => StatusCode::PRECONDITION_FAILED,
            // The key holds a value the write does not fit: the request is fine, the state is not.
            (NodeError::Store(StoreError::WrongKind { .. } | StoreError::CounterOverflow { .. }), _) => {
                StatusCode::CONFLICT
            }
            (NodeError::Reserved { .. }, _) => StatusCode::FORBIDDEN,
            (NodeError::ShuttingDown, _) => StatusCode::SERVICE_UNAVAILABLE,
            (_, ErrorKind::NotFound) => StatusCode::NOT_FOUND,
            (_, ErrorKind::Usage) => StatusCode::BAD_REQUEST,
            (NodeError::Invalid(_), _) => StatusCode::BAD_REQUEST,
            _ => return ApiError::internal(&e),
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<TokenRejected> for ApiError {
    fn from(e: TokenRejected) -> ApiError {
        let message = match e {
            TokenRejected::Malformed | TokenRejected::Unknown | TokenRejected::WrongSecret => BAD_TOKEN.to_string(),
            // Reached only with the right secret (it is checked first), so these tell the
            // token's holder why, and a stranger nothing.
            TokenRejected::Revoked | TokenRejected::Expired => e.to_string(),
        };
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
}

/// Errors axum produces itself (wrong method, body over the limit, bad query) come as plain
/// text or empty; every error of this API is JSON, so they are rewrapped.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let error = if status == StatusCode::INTERNAL_SERVER_ERROR {
        ApiError::internal(&text)
    } else if text.is_empty() {
        ApiError::new(status, status.canonical_reason().unwrap_or("error").to_lowercase())
    } else {
        ApiError::new(status, text)
    };
    let mut rewrapped = error.into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            rewrapped.headers_mut().insert(name, value.clone());
        }
    }
    rewrapped
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn a_500_says_internal_error_and_nothing_more() {
        let secret = "meta.db row 7 under /home/alice/.lattice is unreadable";
        let response = ApiError::from(NodeError::Corrupt(secret.into())).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_of(response).await, "{\"error\":\"internal error\"}\n");
        // axum's own 500s (none expected, but a layer could make one) are rewrapped alike.
        let plain = (StatusCode::INTERNAL_SERVER_ERROR, secret).into_response();
        assert_eq!(body_of(json_errors(plain).await).await, "{\"error\":\"internal error\"}\n");
    }

    #[tokio::test]
    async fn a_write_behind_a_peer_is_503_with_retry_after() {
        let e = NodeError::Behind { store: "default".into(), peer: None, ours: 3, theirs: 5 };
        let response = ApiError::from(e).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert!(body_of(response).await.contains("is behind what a peer holds of it (seq 3 < 5)"));
    }

    #[tokio::test]
    async fn a_failed_condition_is_412_with_the_current_etag() {
        let hash = lattice_core::Hash::from_hex(&"ab".repeat(32)).unwrap();
        let e = NodeError::Store(StoreError::PreconditionFailed { key: b"k".to_vec(), current: Some(hash) });
        let response = ApiError::from(e).into_response();
        assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
        let body: Value = serde_json::from_str(&body_of(response).await).unwrap();
        assert_eq!(body["etag"], format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(body["key"], "k");
        assert!(body["error"].as_str().unwrap().starts_with("precondition failed"));
        let absent = NodeError::Store(StoreError::PreconditionFailed { key: vec![0xff], current: None });
        let body: Value = serde_json::from_str(&body_of(ApiError::from(absent).into_response()).await).unwrap();
        assert_eq!((body["etag"].clone(), body["key_encoding"].clone()), (Value::Null, json!("base64")));
    }

    #[tokio::test]
    async fn client_errors_keep_their_message() {
        let response = ApiError::from(NodeError::Invalid("key is empty".into())).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body_of(response).await, "{\"error\":\"key is empty\"}\n");
    }
}
