//! The key-value path users drive (CLI, HTTP): limits checked, and writes under the root store's
//! reserved prefixes refused, since those change only through their own commands.

use lattice_core::Head;
use lattice_core::entry::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use lattice_store::{KvStore, WatchEvent, WriteReceipt};
use tokio::sync::mpsc;

use super::{Node, StoreRef};
use crate::control::reserved_prefix;
use crate::error::NodeError;

impl Node {
    /// Refuses writes into the root store's reserved prefixes.
    fn check_writable(&self, store: &StoreRef, key: &[u8]) -> Result<(), NodeError> {
        if store.id == self.root
            && let Some(prefix) = reserved_prefix(key)
        {
            return Err(NodeError::Reserved { key: String::from_utf8_lossy(key).into_owned(), prefix });
        }
        Ok(())
    }

    /// Writes `key = value` into `store` (refused under the root store's reserved prefixes).
    pub async fn put(&self, store: &StoreRef, key: Vec<u8>, value: Vec<u8>) -> Result<WriteReceipt, NodeError> {
        validate_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(NodeError::Invalid(format!(
                "value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            )));
        }
        self.check_writable(store, &key)?;
        Ok(self.writer(store).await?.put(key, value).await?)
    }

    /// Deletes `key`; `None` if it had no visible value (nothing is written then).
    pub async fn delete(&self, store: &StoreRef, key: Vec<u8>) -> Result<Option<WriteReceipt>, NodeError> {
        validate_key(&key)?;
        self.check_writable(store, &key)?;
        Ok(self.writer(store).await?.delete(key).await?)
    }

    /// The winning value of `key`, if it has a visible one.
    pub async fn get(&self, store: &StoreRef, key: &[u8]) -> Result<Option<Vec<u8>>, NodeError> {
        validate_key(key)?;
        Ok(self.store_handle(store.id).await?.get(key).await?)
    }

    /// Every head of `key`, winner first (empty if the key was never written).
    pub async fn get_heads(&self, store: &StoreRef, key: &[u8]) -> Result<Vec<Head>, NodeError> {
        validate_key(key)?;
        Ok(self.store_handle(store.id).await?.get_heads(key).await?)
    }

    /// Visible keys under `prefix`, in key order, after `after`, at most `limit`.
    pub async fn list(
        &self,
        store: &StoreRef,
        prefix: &[u8],
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, NodeError> {
        Ok(self.store_handle(store.id).await?.list(prefix, after, limit).await?)
    }

    /// Current matches of `pattern` (a regex over keys) and a stream of later changes.
    pub async fn watch(
        &self,
        store: &StoreRef,
        pattern: &str,
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, mpsc::Receiver<WatchEvent>), NodeError> {
        regex::bytes::Regex::new(pattern).map_err(|e| {
            // regex errors span several lines (pattern, caret, reason): keep the reason.
            let text = e.to_string();
            let reason = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
            NodeError::Invalid(format!("invalid pattern {pattern:?}: {}", reason.trim().trim_start_matches("error: ")))
        })?;
        Ok(self.store_handle(store.id).await?.watch(pattern).await?)
    }
}

fn validate_key(key: &[u8]) -> Result<(), NodeError> {
    if key.is_empty() {
        return Err(NodeError::Invalid("key must not be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(NodeError::Invalid(format!("key of {} bytes is over the {MAX_KEY_BYTES}-byte limit", key.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key(b"k").is_ok());
        assert!(validate_key(b"").is_err());
        assert!(validate_key(&vec![b'k'; MAX_KEY_BYTES + 1]).is_err());
    }
}
