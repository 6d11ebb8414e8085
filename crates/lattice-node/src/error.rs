//! [`NodeError`]: everything a node operation can fail with, and its [`ErrorKind`] (which the CLI
//! turns into an exit code).

use std::path::PathBuf;

use lattice_store::StoreError;

/// What a caller should make of an error: the CLI maps these to exit codes 1, 2 and 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Something named does not exist (a store, a key).
    NotFound,
    /// The request itself is malformed (bad key, bad name, bad pattern).
    Usage,
    /// A condition of the write did not hold (compare-and-set lost): nothing was written.
    Precondition,
    /// Anything else: refusals, I/O, corruption.
    Other,
}

/// Everything a node operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data dir has no `meta.db`: `init` has not run (or not completed) there.
    #[error("data dir {} is not initialised (run `lattice init`)", .0.display())]
    NotInitialised(PathBuf),
    /// `init` on a data dir that already has a `meta.db`.
    #[error("data dir {} is already initialised; refusing to overwrite it", .0.display())]
    AlreadyInitialised(PathBuf),
    /// Another process holds the data dir's lock.
    #[error("data dir {} is in use by another lattice process{}", .path.display(), pid_suffix(*.pid))]
    Locked {
        /// The data dir.
        path: PathBuf,
        /// The owner's pid, as it wrote it into `lattice.lock`.
        pid: Option<u32>,
    },
    /// The data dir (it holds the secret key) may be read or entered by group or other.
    #[error("data dir {} is accessible by group/other; run chmod 700 {}", .0.display(), .0.display())]
    Exposed(PathBuf),
    /// A store (or other named thing) that does not exist; the message names it.
    #[error("{0}")]
    NotFound(String),
    /// Something by that name exists already (a store name among live stores).
    #[error("{0}")]
    Exists(String),
    /// Malformed input; the message says what is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The node's role does not allow the operation (`only an admin may …`).
    #[error("{0}")]
    Forbidden(String),
    /// A user's write under a reserved prefix of the root store.
    #[error("{key:?} is under the root store's reserved prefix {prefix}: it changes only through its own command")]
    Reserved {
        /// The key, as text.
        key: String,
        /// The prefix it falls under.
        prefix: &'static str,
    },
    /// A local write while this node's own log in the store is behind what a peer holds of it
    /// (a restored backup, lost log records): writing now would fork the node's own chain, so
    /// it waits for the catch-up (DESIGN.md §7.4; ARCHITECTURE.md, own-log catch-up).
    #[error(
        "this node's log in store {store} is behind what {} holds of it (seq {ours} < {theirs}); \
         catching up — retry shortly",
        peer_name(*.peer)
    )]
    Behind {
        /// The store, as the user named it (`root` for the root store).
        store: String,
        /// The peer that said so, if known (`None`: its entry came by gossip).
        peer: Option<lattice_core::AuthorId>,
        /// Our own tip in the store.
        ours: u64,
        /// The highest seq of ours a peer holds.
        theirs: u64,
    },
    /// `identity.key` cannot be read or written.
    #[error(transparent)]
    Identity(#[from] lattice_store::KeyFileError),
    /// A store refused or failed the operation.
    #[error(transparent)]
    Store(#[from] lattice_store::StoreError),
    /// `meta.db` failed.
    #[error("meta.db: {0}")]
    Meta(#[from] redb::Error),
    /// A file operation of the data dir failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// On-disk metadata that contradicts itself.
    #[error("{0}")]
    Corrupt(String),
    /// The node's stores are closed (after `shutdown`).
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The network layer failed (connect, join, sync).
    #[error(transparent)]
    Net(#[from] lattice_net::NetError),
}

fn peer_name(peer: Option<lattice_core::AuthorId>) -> String {
    peer.map_or_else(|| "a peer".to_string(), |p| format!("peer {p}"))
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

impl NodeError {
    /// A [`NodeError::Io`] with its context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> NodeError {
        NodeError::Io { context: context.into(), source }
    }

    /// What a caller should make of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NodeError::NotFound(_) | NodeError::Net(lattice_net::NetError::NoAddress(_)) => ErrorKind::NotFound,
            NodeError::Net(lattice_net::NetError::BadAddress { .. }) => ErrorKind::Usage,
            NodeError::Invalid(_)
            | NodeError::Store(StoreError::InvalidEntry(_))
            | NodeError::Store(StoreError::InvalidPattern(_)) => ErrorKind::Usage,
            NodeError::Store(StoreError::PreconditionFailed { .. }) => ErrorKind::Precondition,
            _ => ErrorKind::Other,
        }
    }
}
