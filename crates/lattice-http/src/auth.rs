//! Who may do what: a request's bearer token, its rate, and its store and permission.

use axum::http::{HeaderMap, StatusCode, header};
use lattice_node::{StoreRef, TokenRecord, TokenRejected, split_token};

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
        let presented = bearer(headers).ok_or(TokenRejected::Malformed)?;
        let (id, secret) = split_token(presented)?;
        let now = lattice_node::now_ms();
        let Some(record) = self.node.token(id).await? else {
            // Hash the secret all the same, so an unknown id is not told apart from a wrong
            // secret by how fast the answer comes (the messages are already the same).
            let _ = TokenRecord::default().check(secret, now);
            return Err(TokenRejected::Unknown.into());
        };
        record.check(secret, now)?;
        self.limiter.admit(id, record.rate).map_err(ApiError::rate_limited)?;
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

/// The token of an `Authorization: Bearer TOKEN` header; the scheme is case-insensitive
/// (RFC 9110, section 11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = value.parse() {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer id:s", "bearer id:s", "BEARER id:s", "  bEaReR   id:s  "] {
            assert_eq!(bearer(&with(value)), Some("id:s"), "{value:?}");
        }
        for value in ["Basic id:s", "Bearerid:s", "Bearer", "id:s", ""] {
            assert_eq!(bearer(&with(value)), None, "{value:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
