//! What a handler answers: a JSON body, or an error as a status and `{"error": "..."}`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lattice_node::{ErrorKind, NodeError, TokenRejected};
use serde_json::{Value, json};

/// A JSON body with its content type.
pub(crate) struct Json(pub(crate) Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], format!("{}\n", self.0)).into_response()
    }
}

/// An error response: a status and `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
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
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    let mut rewrapped = ApiError::new(status, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            rewrapped.headers_mut().insert(name, value.clone());
        }
    }
    rewrapped
}
