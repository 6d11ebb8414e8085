//! [`NodeError`]: everything a node operation can fail with, and its [`ErrorKind`] (which the CLI
//! turns into an exit code).

use std::path::PathBuf;

use lattice_store::StoreError;

/// What a caller should make of an error: DESIGN.md maps these to exit codes 1, 2 and 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Something named does not exist (a store, a key).
    NotFound,
    /// The request itself is malformed (bad key, bad name, bad pattern).
    Usage,
    /// Anything else: refusals, I/O, corruption.
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {} is not initialised (run `lattice init`)", .0.display())]
    NotInitialised(PathBuf),
    #[error("data dir {} is already initialised; refusing to overwrite it", .0.display())]
    AlreadyInitialised(PathBuf),
    #[error("data dir {} is in use by another lattice process{}", .path.display(), pid_suffix(*.pid))]
    Locked { path: PathBuf, pid: Option<u32> },
    /// A store (or other named thing) that does not exist; the message names it.
    #[error("{0}")]
    NotFound(String),
    /// Something by that name exists already (a store name among live stores).
    #[error("{0}")]
    Exists(String),
    /// Malformed input; the message says what is wrong.
    #[error("{0}")]
    Invalid(String),
    #[error("{key:?} is under the root store's reserved prefix {prefix}: it changes only through its own command")]
    Reserved { key: String, prefix: &'static str },
    #[error(transparent)]
    Identity(#[from] lattice_store::KeyFileError),
    #[error(transparent)]
    Store(#[from] lattice_store::StoreError),
    #[error("meta.db: {0}")]
    Meta(#[from] redb::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// On-disk metadata that contradicts itself.
    #[error("{0}")]
    Corrupt(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Net(#[from] lattice_net::NetError),
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

impl NodeError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> NodeError {
        NodeError::Io { context: context.into(), source }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            NodeError::NotFound(_) | NodeError::Net(lattice_net::NetError::NoAddress(_)) => ErrorKind::NotFound,
            NodeError::Net(lattice_net::NetError::BadAddress { .. }) => ErrorKind::Usage,
            NodeError::Invalid(_)
            | NodeError::Store(StoreError::InvalidEntry(_))
            | NodeError::Store(StoreError::InvalidPattern(_)) => ErrorKind::Usage,
            _ => ErrorKind::Other,
        }
    }
}
