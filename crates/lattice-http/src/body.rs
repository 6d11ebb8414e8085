//! Reading a request body: only once its token is accepted, under the body-read timeout, and
//! within the route's `DefaultBodyLimit` (413 past it).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use crate::reply::ApiError;
use crate::server::Api;

impl Api {
    /// The whole body of `request`, or 408 once `HttpConfig::body_read_timeout` has passed.
    pub(crate) async fn read_body(&self, request: Request) -> Result<Bytes, ApiError> {
        tokio::time::timeout(self.body_read_timeout, Bytes::from_request(request, &()))
            .await
            .map_err(|_| ApiError::new(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time"))?
            .map_err(|e| ApiError::new(e.status(), e.body_text()))
    }
}
