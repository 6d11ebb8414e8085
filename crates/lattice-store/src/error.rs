//! Errors of the store. `StoreError` is about the store itself (disk, database, closed actor,
//! bad requests); `IngestError` says why one received entry was refused.

use std::path::PathBuf;

use lattice_core::{ChainError, EntryError, StoreId};

use crate::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store database: {0}")]
    Db(#[from] redb::Error),
    #[error("store directory holds store {found}, not {expected}")]
    WrongStoreDir { expected: StoreId, found: StoreId },
    #[error("corrupt store index: {0}")]
    CorruptIndex(String),
    #[error("log {path} is inconsistent at byte offset {offset}: {reason}")]
    CorruptLog { path: PathBuf, offset: u64, reason: String },
    #[error(transparent)]
    InvalidEntry(#[from] EntryError),
    #[error("invalid watch pattern: {0}")]
    InvalidPattern(String),
    #[error("the store is closed")]
    Closed,
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
    #[error("invalid entry: {0}")]
    Invalid(#[from] EntryError),
    #[error("rejected entry: {0}")]
    Chain(#[from] ChainError),
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
