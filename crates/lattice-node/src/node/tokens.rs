//! HTTP access tokens in the root store's `/tokens/`: create, list, read, revoke. What a token
//! means (permissions, checks) is [`crate::tokens`]'s.

use lattice_core::Op;
use lattice_store::KvStore;

use super::Node;
use crate::control::{TOKENS_PREFIX, TokenField, parse_token_records, token_key, token_ops, token_prefix};
use crate::error::NodeError;
use crate::time::{now_ms, rfc3339};
use crate::tokens::{self, Permissions, TokenRecord};

impl Node {
    /// Creates an HTTP access token for a store. Returns its record and the secret, which is
    /// stored only as a hash: this is the one time it can be shown.
    pub async fn create_token(
        &self,
        store: &str,
        name: Option<String>,
        permissions: Permissions,
        expires_in: Option<std::time::Duration>,
    ) -> Result<(TokenRecord, String), NodeError> {
        self.create_rated_token(store, name, permissions, expires_in, None).await
    }

    /// [`create_token`](Self::create_token) with the token's own HTTP request rate per second
    /// (`None`: the server's default), kept with the token in the root store.
    pub async fn create_rated_token(
        &self,
        store: &str,
        name: Option<String>,
        permissions: Permissions,
        expires_in: Option<std::time::Duration>,
        rate: Option<u32>,
    ) -> Result<(TokenRecord, String), NodeError> {
        if let Some(rate) = rate
            && !(1..=tokens::MAX_RATE).contains(&rate)
        {
            return Err(NodeError::Invalid(format!("a token's rate must be 1 to {}/s", tokens::MAX_RATE)));
        }
        self.require_admin("create tokens").await?;
        let store = self.resolve(Some(store)).await?;
        if store.is_root() {
            return Err(NodeError::Invalid("tokens grant access to declared stores, not to the root store".into()));
        }
        let (id, secret) = tokens::generate();
        let now = now_ms();
        let record = TokenRecord {
            id,
            store_id: Some(store.id),
            secret_hash: tokens::secret_hash(&secret),
            permissions: Some(permissions),
            name: name.unwrap_or_default(),
            created_at: Some(rfc3339(now)),
            expires_at: expires_in.map(|d| rfc3339(now.saturating_add(d.as_millis() as u64))),
            revoked_at: None,
            rate,
        };
        self.writer(&self.root_store()).await?.batch(token_ops(&record)).await?;
        Ok((record, secret))
    }

    /// Every token of the mesh (revoked and expired ones too), by id.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, NodeError> {
        Ok(parse_token_records(&self.list_root(TOKENS_PREFIX).await?).into_values().collect())
    }

    /// One token's record, if it exists.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>, NodeError> {
        if !tokens::is_token_id(id) {
            return Ok(None);
        }
        Ok(parse_token_records(&self.list_root(&token_prefix(id)).await?).remove(id))
    }

    /// Revokes a token: from now on (on every node, once synced) it is refused.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenRecord, NodeError> {
        let _guard = self.control.lock().await;
        self.require_admin("revoke tokens").await?;
        let mut record = self.token(id).await?.ok_or_else(|| NodeError::NotFound(format!("no token {id:?}")))?;
        if record.revoked_at.is_none() {
            let at = rfc3339(now_ms());
            let root = self.writer(&self.root_store()).await?;
            root.batch(vec![Op::put(token_key(id, TokenField::RevokedAt), at.clone())]).await?;
            record.revoked_at = Some(at);
        }
        Ok(record)
    }
}
