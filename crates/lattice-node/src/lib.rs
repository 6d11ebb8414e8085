//! # lattice-node
//!
//! The node: one data dir, one identity, the root store (control plane) and the stores it
//! declares. The CLI (and later the HTTP API and the network) talk to a [`Node`]; nothing above
//! this crate opens a store or `meta.db` directly.
//!
//! - [`datadir`]: [`DataDir`], where files live and how the dir is chosen (flag, env, platform).
//! - [`lock`]: [`DirLock`], the exclusive `flock` on `lattice.lock` (one owner per data dir).
//! - [`tables`]: every redb table of `meta.db`, with key/value docs and versioned names.
//! - [`meta`]: [`MetaDb`], root store id, current store, local store table (active|archived).
//! - [`root`]: the root store's keys (`/nodes/`, `/stores/`, `/tokens/`), reserved prefixes.
//! - [`stores`]: [`StoreManager`], one store actor per open store, opened lazily.
//! - [`node`]: [`Node`], init/open, the control plane (create/list/delete/use stores, status)
//!   and the guarded key-value path (reserved prefixes of the root store are refused).
//! - [`network`]: [`Network`] (the node on iroh: members from `/nodes/`, stores from
//!   `/stores/`, `sync`) and [`network::join`].
//! - `authority`: the effective control plane, a fold over the root store's reserved-key
//!   entries where each operation counts only if its author holds the right.
//! - [`tokens`]: HTTP access tokens under `/tokens/` (parse, check a secret, generate).
//! - [`time`]: wall-clock timestamps for the control plane (RFC 3339).
//! - [`error`]: [`NodeError`] and its [`ErrorKind`] (the CLI's exit codes).
//!
//! Architecture invariant: this crate prints nothing (it logs with `tracing`); formatting is the
//! CLI's job. It depends on the store only through `StoreHandle` and `KvStore`.

// Not yet read by `Node`: the readers move onto it with the authority work (issue 13).
#[allow(dead_code)]
mod authority;
pub mod datadir;
pub mod error;
pub mod lock;
pub mod meta;
pub mod network;
pub mod node;
pub mod root;
pub mod stores;
pub mod tables;
pub mod time;
pub mod tokens;

pub use datadir::DataDir;
pub use error::{ErrorKind, NodeError};
pub use lock::DirLock;
pub use meta::{LocalState, MetaDb, PeerRecord};
pub use network::{Network, PeerSync};
pub use node::{DEFAULT_STORE_NAME, Node, NodeStatus, StoreInfo, StoreRef};
pub use stores::StoreManager;
