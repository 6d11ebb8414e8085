//! Who may do what: a request's bearer token, its rate, and its store and permission.

use axum::http::{HeaderMap, StatusCode, header};
use lattice_node::{StoreRef, TokenRejected};

use crate::reply::ApiError;
use crate::server::Api;

/// What a request does to a store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

impl Api {
    /// Authorises a request on `store` for `access`; returns the store it may act on.
    ///
    /// Order of checks: the token (401), its rate (429), then the store and permission (403).
    pub(crate) async fn authorise(
        &self,
        headers: &HeaderMap,
        store: &str,
        access: Access,
    ) -> Result<StoreRef, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(TokenRejected::Malformed)?;
        let (id, secret) = lattice_node::split_token(presented.trim())?;
        let record = self.node.token(id).await?.ok_or(TokenRejected::Unknown)?;
        record.check(secret, lattice_node::now_ms())?;
        self.limiter.admit(id).map_err(ApiError::rate_limited)?;
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
