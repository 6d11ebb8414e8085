//! The key-value path users drive (CLI, HTTP): limits checked, and writes under the root store's
//! reserved prefixes refused, since those change only through their own commands.
//!
//! Reads of the root store's reserved keys answer from the effective control plane: the value
//! the fold settled on, or none if no write of the key took effect. The raw last-writer-wins
//! winner there may be an entry whose author lacked the right (a member's forgery), which
//! changed nothing and must not be shown as if it had. Heads ([`Node::get_heads`]) stay raw:
//! they are the entries as stored, for `get -v`.

use lattice_core::entry::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use lattice_core::{Head, Hlc, Kind, Op};
use lattice_store::{History, KeyProof, KvStore, StoreError, Transaction, Value, Version, WatchEvent, WriteReceipt};
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
        self.transact(store, Transaction::new(vec![Op::Put { key, value }])).await
    }

    /// Writes the transaction's ops into `store` as one entry if its conditions hold (see
    /// [`Transaction`]); a failed condition is
    /// [`PreconditionFailed`](lattice_store::StoreError::PreconditionFailed) and writes nothing.
    /// Every key is checked as for [`put`](Self::put) first.
    pub async fn transact(&self, store: &StoreRef, transaction: Transaction) -> Result<WriteReceipt, NodeError> {
        if transaction.ops.is_empty() {
            return Err(NodeError::Invalid("a transaction needs at least one operation".into()));
        }
        for op in &transaction.ops {
            validate_key(op.key())?;
            let (what, bytes) = match op {
                Op::Put { value, .. } => ("value", value),
                Op::SetAdd { member, .. } | Op::SetRemove { member, .. } => ("member", member),
                Op::Delete { .. } | Op::CounterAdd { .. } => ("", &Vec::new()),
            };
            if bytes.len() > MAX_VALUE_BYTES {
                return Err(NodeError::Invalid(format!(
                    "{what} of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
                    bytes.len()
                )));
            }
            self.check_writable(store, op.key())?;
        }
        for condition in &transaction.conditions {
            validate_key(condition.key())?;
        }
        Ok(self.writer(store).await?.transact(transaction).await?)
    }

    /// Adds `delta` to the counter at `key` (`decr` is a negative delta). An absent or deleted
    /// key becomes a counter; a key of another kind is refused
    /// ([`StoreError::WrongKind`]), and so is a sum outside the i64 range
    /// ([`StoreError::CounterOverflow`]); nothing is written then.
    pub async fn incr(&self, store: &StoreRef, key: Vec<u8>, delta: i64) -> Result<WriteReceipt, NodeError> {
        self.transact(store, Transaction::new(vec![Op::CounterAdd { key, delta }])).await
    }

    /// Adds `members` to the set at `key`, as one entry (refused as for [`incr`](Self::incr)
    /// if the key holds another kind).
    pub async fn sadd(&self, store: &StoreRef, key: Vec<u8>, members: Vec<Vec<u8>>) -> Result<WriteReceipt, NodeError> {
        let ops = members.into_iter().map(|member| Op::SetAdd { key: key.clone(), member }).collect();
        self.transact(store, Transaction::new(ops)).await
    }

    /// Removes `members` from the set at `key`, as one entry: the adds this node has seen are
    /// cancelled; an add made concurrently elsewhere survives.
    pub async fn srem(&self, store: &StoreRef, key: Vec<u8>, members: Vec<Vec<u8>>) -> Result<WriteReceipt, NodeError> {
        let ops = members.into_iter().map(|member| Op::SetRemove { key: key.clone(), member }).collect();
        self.transact(store, Transaction::new(ops)).await
    }

    /// The members of the set at `key`, in byte order; `None` if the key has no visible value,
    /// [`StoreError::WrongKind`] if it holds a register or a counter.
    pub async fn smembers(&self, store: &StoreRef, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>, NodeError> {
        match self.value(store, key).await? {
            None => Ok(None),
            Some(Value::Set(members)) => Ok(Some(members)),
            Some(other) => {
                Err(StoreError::WrongKind { key: key.to_vec(), holds: other.kind(), wanted: Kind::Set }.into())
            }
        }
    }

    /// The visible value of `key`, typed by its kind: as [`get`](Self::get), but a counter is
    /// its sum and a set its members. A reserved key of the root store is a register.
    pub async fn value(&self, store: &StoreRef, key: &[u8]) -> Result<Option<Value>, NodeError> {
        validate_key(key)?;
        if self.is_reserved(store, key) {
            return Ok(self.control_value(key).await?.map(Value::Register));
        }
        Ok(self.store_handle(store.id).await?.value(key).await?)
    }

    /// Deletes `key`; `None` if it had no visible value (nothing is written then).
    pub async fn delete(&self, store: &StoreRef, key: Vec<u8>) -> Result<Option<WriteReceipt>, NodeError> {
        validate_key(&key)?;
        self.check_writable(store, &key)?;
        Ok(self.writer(store).await?.delete(key).await?)
    }

    /// True if `key` of `store` is a reserved key of the root store, whose value comes from the
    /// control plane rather than from the key's heads.
    pub fn is_reserved(&self, store: &StoreRef, key: &[u8]) -> bool {
        store.id == self.root && reserved_prefix(key).is_some()
    }

    /// The effective value of a reserved key (none if the key is not text: the fold skips those).
    async fn control_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, NodeError> {
        let Ok(key) = std::str::from_utf8(key) else { return Ok(None) };
        self.with_plane(|plane| plane.value(key).map(<[u8]>::to_vec)).await
    }

    /// The visible value of `key` as bytes, if it has one: the winner's (a counter's sum in
    /// decimal, a set's members one per line: [`Value::to_bytes`]; [`value`](Self::value) is
    /// typed), or for a reserved key of the root store the effective one.
    pub async fn get(&self, store: &StoreRef, key: &[u8]) -> Result<Option<Vec<u8>>, NodeError> {
        validate_key(key)?;
        if self.is_reserved(store, key) {
            return self.control_value(key).await;
        }
        Ok(self.store_handle(store.id).await?.get(key).await?)
    }

    /// Every head of `key`, winner first (empty if the key was never written). Raw, even for a
    /// reserved key of the root store: [`lookup`](Self::lookup) gives its effective value.
    pub async fn get_heads(&self, store: &StoreRef, key: &[u8]) -> Result<Vec<Head>, NodeError> {
        validate_key(key)?;
        Ok(self.store_handle(store.id).await?.get_heads(key).await?)
    }

    /// A Merkle proof of `key` in `store` (its raw heads, or its absence) against this node's
    /// current root, with this node's signed attestation of that root (DESIGN.md §10).
    pub async fn prove(&self, store: &StoreRef, key: &[u8]) -> Result<KeyProof, NodeError> {
        validate_key(key)?;
        Ok(self.store_handle(store.id).await?.prove(key).await?)
    }

    /// Every version of `key` in `store` this node holds, oldest first, heads marked (raw, as
    /// [`get_heads`](Self::get_heads), even for a reserved key of the root store).
    pub async fn versions(&self, store: &StoreRef, key: &[u8]) -> Result<Vec<Version>, NodeError> {
        validate_key(key)?;
        Ok(self.store_handle(store.id).await?.versions(key).await?)
    }

    /// The value of `key` as of `at` (time travel): the register the winner then held, `None`
    /// if the key had none then (never written yet, or deleted). Reads registers only: a counter
    /// or a set then is an error that points at `history`, which lists its changes.
    pub async fn get_at(&self, store: &StoreRef, key: &[u8], at: Hlc) -> Result<Option<Vec<u8>>, NodeError> {
        validate_key(key)?;
        let Some(version) = self.store_handle(store.id).await?.version_at(key, at).await? else { return Ok(None) };
        match version.ops.last() {
            Some(Op::Put { value, .. }) => Ok(Some(value.clone())),
            Some(Op::Delete { .. }) | None => Ok(None),
            Some(op) => Err(NodeError::Invalid(format!(
                "time travel reads registers; {} held a {} then (`history` lists its changes)",
                String::from_utf8_lossy(key),
                op.kind().map_or("value", Kind::name)
            ))),
        }
    }

    /// What `get` shows of `key`: its visible value (as [`get`](Self::get)) and its raw heads.
    pub async fn lookup(&self, store: &StoreRef, key: &[u8]) -> Result<Lookup, NodeError> {
        let heads = self.get_heads(store, key).await?;
        let control = self.is_reserved(store, key);
        let typed = if control {
            self.control_value(key).await?.map(Value::Register)
        } else if lattice_core::visible(&heads).is_some_and(|h| h.kind == Kind::Register) {
            // A register's value is in its head: no second read.
            lattice_core::visible(&heads).map(|h| Value::Register(h.value.clone()))
        } else {
            self.value(store, key).await?
        };
        let value = typed.as_ref().map(Value::to_bytes);
        Ok(Lookup { value, typed, heads, control })
    }

    /// Visible keys under `prefix`, in key order, after `after`, at most `limit`. In the root
    /// store, reserved keys come from the control plane and the others from the store.
    pub async fn list(
        &self,
        store: &StoreRef,
        prefix: &[u8],
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, NodeError> {
        let handle = self.store_handle(store.id).await?;
        if store.id != self.root || limit == 0 {
            return Ok(handle.list(prefix, after, limit).await?);
        }
        let mut items = self.with_plane(|plane| plane.page(prefix, after.as_deref(), limit)).await?;
        // Under a reserved prefix every key is the plane's; elsewhere, page through the store
        // skipping its raw reserved keys until `limit` others are found or the store ends.
        let (mut cursor, mut plain) = (after, 0);
        while reserved_prefix(prefix).is_none() {
            let page = handle.list(prefix, cursor.clone(), limit).await?;
            let full = page.len() == limit;
            cursor = page.last().map(|(k, _)| k.clone());
            let before = items.len();
            items.extend(page.into_iter().filter(|(k, _)| reserved_prefix(k).is_none()));
            plain += items.len() - before;
            if !full || plain >= limit {
                break;
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items.truncate(limit);
        Ok(items)
    }

    /// As [`list`](Self::list), with typed values (a counter's sum, a set's members).
    pub async fn list_values(
        &self,
        store: &StoreRef,
        prefix: &[u8],
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Value)>, NodeError> {
        let handle = self.store_handle(store.id).await?;
        if store.id != self.root {
            return Ok(handle.list_values(prefix, after, limit).await?);
        }
        // The root store mixes the control plane's registers with stored keys: read each stored
        // one typed (the root store holds few keys that are not reserved).
        let mut out = Vec::new();
        for (key, bytes) in self.list(store, prefix, after, limit).await? {
            let value =
                if reserved_prefix(&key).is_some() { Some(Value::Register(bytes)) } else { handle.value(&key).await? };
            out.extend(value.map(|v| (key, v)));
        }
        Ok(out)
    }

    /// Current matches of `pattern` (a regex over keys, values as bytes: see
    /// [`Value::to_bytes`]) and a stream of later changes (typed: counters and sets have their
    /// own events).
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

    /// The changes of visible values under the byte prefix `prefix` of `store` from now on
    /// (no initial scan). The channel closes if the receiver falls
    /// [`WATCH_CAPACITY`](lattice_store::WATCH_CAPACITY) events behind, or the store closes. Raw
    /// keys: in the root store, reserved keys come as stored (see [`is_reserved`](Self::is_reserved)).
    pub async fn subscribe(&self, store: &StoreRef, prefix: &[u8]) -> Result<mpsc::Receiver<WatchEvent>, NodeError> {
        Ok(self.store_handle(store.id).await?.subscribe(&prefix_pattern(prefix)).await?)
    }

    /// The applied entries of `store` with an HLC above `since`, in (HLC, author) order: a
    /// blocking iterator over the logs as committed now (run it off the async threads). Asked
    /// after [`subscribe`](Self::subscribe), it holds every entry committed before the
    /// subscription's first event.
    pub async fn history(&self, store: &StoreRef, since: Hlc) -> Result<History, NodeError> {
        Ok(self.store_handle(store.id).await?.history(since).await?)
    }
}

/// A regular expression matching exactly the keys that start with the bytes `prefix`.
fn prefix_pattern(prefix: &[u8]) -> String {
    let mut pattern = String::from("(?s-u)^");
    for b in prefix {
        pattern.push_str(&format!("\\x{b:02x}"));
    }
    pattern
}

/// A key as `get` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// The visible value as bytes (see [`Value::to_bytes`]): the winner's (none if it is a
    /// deletion), or for a reserved key of the root store the control plane's effective value
    /// (none if no write of it took effect).
    pub value: Option<Vec<u8>>,
    /// The same value, typed by the key's kind (its kind is `typed.kind()`).
    pub typed: Option<Value>,
    /// Every head as stored, winner first (raw, for a reserved key too).
    pub heads: Vec<Head>,
    /// True for a reserved key of the root store: `value` is the control plane's.
    pub control: bool,
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
    fn prefix_patterns_match_byte_prefixes_only() {
        let re = |p: &[u8]| regex::bytes::Regex::new(&prefix_pattern(p)).unwrap();
        assert!(re(b"a.b/").is_match(b"a.b/c"));
        assert!(!re(b"a.b/").is_match(b"axb/c"));
        assert!(!re(b"a.b/").is_match(b"xa.b/"));
        assert!(re(&[0xff, b'\n']).is_match(&[0xff, b'\n', 0]));
        assert!(re(b"").is_match(b"anything"));
    }

    #[test]
    fn keys() {
        assert!(validate_key(b"k").is_ok());
        assert!(validate_key(b"").is_err());
        assert!(validate_key(&vec![b'k'; MAX_KEY_BYTES + 1]).is_err());
    }
}
