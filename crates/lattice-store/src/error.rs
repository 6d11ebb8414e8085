//! Errors of the store. `StoreError` is about the store itself (disk, database, closed actor,
//! bad requests); `IngestError` says why one received entry was refused.

use std::path::PathBuf;

use lattice_core::{ChainError, EntryError, StoreId};

use crate::log::LogError;

/// What went wrong with the store itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An author log could not be read or written, or a record in it is damaged.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A file or directory of the store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// redb failed (state.db or orphans.db).
    #[error("store database: {0}")]
    Db(#[from] redb::Error),
    /// The directory belongs to another store.
    #[error("store directory holds store {found}, not {expected}")]
    WrongStoreDir {
        /// The store that was asked for.
        expected: StoreId,
        /// The store the directory's index names.
        found: StoreId,
    },
    /// A row of state.db does not decode (the message names which).
    #[error("corrupt store index: {0}")]
    CorruptIndex(String),
    /// A record in the range being replayed is whole but not a valid next entry of its log.
    #[error("log {path} is inconsistent at byte offset {offset}: {reason}")]
    CorruptLog {
        /// The author log.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A local write was refused as an entry (no operations, a key or value too large, ...).
    #[error(transparent)]
    InvalidEntry(#[from] EntryError),
    /// This node's own key is proven to have signed two entries at one seq in this store (a copy
    /// of the key, or this node restored from a backup, wrote here too): every node refuses its
    /// entries from that seq on, so a local write would only be refused everywhere.
    #[error(
        "this node's key signed two different entries at seq {fork_seq} in this store (a copy of its key, or a restore from an old backup, wrote here); its writes here are refused from that seq on: use a fresh identity"
    )]
    Equivocated {
        /// The seq signed twice.
        fork_seq: u64,
    },
    /// This node was removed from the mesh: its entries in this store past the cut-off are
    /// refused everywhere, so a local write would only be refused.
    #[error("this node was removed from the mesh: its writes to this store after seq {cutoff} are refused")]
    Removed {
        /// The last seq of this node that applies in this store.
        cutoff: u64,
    },
    /// A condition of a transaction did not hold: nothing was written.
    #[error("precondition failed: {} {}", String::from_utf8_lossy(key), match current {
        Some(hash) => format!("is at {hash}"),
        None => "is absent".to_string(),
    })]
    PreconditionFailed {
        /// The key whose condition failed.
        key: Vec<u8>,
        /// The hash of the entry that wrote its visible value; `None` if it has none.
        current: Option<lattice_core::Hash>,
    },
    /// A local write applies an op of one kind to a key that holds another (`incr` on a
    /// register, `sadd` on a counter, `put` on a set...): nothing was written. Delete the key
    /// first to give it another kind.
    #[error("key {} holds a {holds}, not a {wanted}", String::from_utf8_lossy(key))]
    WrongKind {
        /// The key.
        key: Vec<u8>,
        /// The kind of its visible value.
        holds: lattice_core::Kind,
        /// The kind the op needs.
        wanted: lattice_core::Kind,
    },
    /// A local increment would take a counter outside the i64 range: nothing was written.
    #[error("counter {} would overflow: {value} {} {} is outside the 64-bit range", String::from_utf8_lossy(key), if *delta < 0 { "-" } else { "+" }, delta.unsigned_abs())]
    CounterOverflow {
        /// The counter.
        key: Vec<u8>,
        /// Its value before the increment.
        value: i64,
        /// The increment refused.
        delta: i64,
    },
    /// A watch pattern is not a valid regular expression.
    #[error("invalid watch pattern: {0}")]
    InvalidPattern(String),
    /// The store's actor has stopped (closed, or every handle dropped).
    #[error("the store is closed")]
    Closed,
    /// The group commit this write was part of failed before it was durable; nothing of it
    /// remains.
    #[error("the write was not made durable and was undone: {0}")]
    Aborted(String),
    /// The index could not follow the logs; the store refuses work until it is reopened (the
    /// open rebuilds the index from the logs, which hold every acknowledged write).
    #[error(
        "the store stopped after its index failed to commit ({0}); every acknowledged write is in its logs: reopen it (restart lattice) to rebuild the index"
    )]
    Stopped(String),
}

macro_rules! redb_into {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
redb_into!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

/// Why a received entry was refused. Refusals leave the store unchanged.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The entry does not decode or its signature does not verify.
    #[error("invalid entry: {0}")]
    Invalid(#[from] EntryError),
    /// The entry breaks its author's chain (another store, a fork, a bad previous hash, ...).
    #[error("rejected entry: {0}")]
    Chain(#[from] ChainError),
    /// The entry would wait in the orphan buffer, which has no room for it (the store's limit,
    /// or its author's share). Nothing is stored; a sync brings it again once its gap closes.
    #[error(
        "orphan buffer full: the entry of author {author} at seq {seq} ({bytes} bytes) does not fit in {scope} of {limit} bytes ({used} used); a sync brings it again once its gap closes"
    )]
    OrphanBufferFull {
        /// Its author (short form).
        author: String,
        /// Its seq.
        seq: u64,
        /// What it would be charged.
        bytes: u64,
        /// Which limit it would exceed: "its author's share" or "the buffer".
        scope: &'static str,
        /// That limit.
        limit: u64,
        /// What is charged against that limit already.
        used: u64,
    },
    /// Two entries offered as an equivocation proof do not prove one (the message says why).
    #[error("not an equivocation proof: {0}")]
    NotAProof(&'static str),
    /// The store failed; the entry may be sent again.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<redb::TableError> for IngestError {
    fn from(e: redb::TableError) -> Self {
        IngestError::Store(e.into())
    }
}
impl From<redb::StorageError> for IngestError {
    fn from(e: redb::StorageError) -> Self {
        IngestError::Store(e.into())
    }
}
