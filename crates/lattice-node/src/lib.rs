//! # lattice-node
//!
//! The node: one data dir, one identity, the root store (control plane) and the stores it
//! declares. The CLI and the HTTP API talk to a [`Node`] (and put it on the network with
//! [`Network`] or [`join`]); nothing above this crate opens a store or `meta.db` directly.
//!
//! Entry types: [`DataDir`] and [`DirLock`] (where, and who owns it), [`Node`] (init/open, the
//! control plane, the guarded key-value path), [`Network`] (the node on iroh), [`NodeError`].
//!
//! - `datadir`: [`DataDir`], where files live, how the dir is chosen (flag, env, platform), and
//!   archiving a store's directory.
//! - `lock`: [`DirLock`], the exclusive `flock` on `lattice.lock` (one owner per data dir).
//! - `tables`: every redb table of `meta.db`, with key/value docs and versioned names.
//! - `meta`: [`MetaDb`], root store id, current store, local store table ([`LocalState`]), peers.
//! - `control`: every key of the root store (`/nodes/`, `/stores/`, `/tokens/`): one field
//!   enum, key function, writer and reader per kind of record; the reserved prefixes.
//! - `authority`: the effective control plane, a fold over the root store's reserved-key
//!   entries where each operation counts only if its author holds the right.
//! - `stores`: the store manager, one store actor per open store, opened lazily.
//! - `node`: [`Node`], one file per concern: lifecycle, stores, members, tokens, key-value.
//! - `network`: [`Network`] (members from `/nodes/`, stores from `/stores/`, `sync`), [`join`].
//! - `own_log`: own-log catch-up: local writes wait for, or are refused by, what peers hold of
//!   this node's own log in each store ([`NodeStore`] reports it from the network).
//! - `tokens`: what an HTTP access token means ([`Permissions`], [`TokenRecord::check`]).
//! - `time`: wall-clock timestamps for the control plane (RFC 3339, through jiff).
//! - `error`: [`NodeError`] and its [`ErrorKind`] (the CLI's exit codes).
//!
//! Architecture invariant: this crate prints nothing (it logs with `tracing`); formatting is the
//! CLI's job. It depends on the store only through `StoreHandle` and `KvStore`, and knows nothing
//! of the CLI or HTTP crates above it.

mod authority;
mod control;
mod datadir;
mod error;
mod lock;
mod meta;
mod network;
mod node;
mod own_log;
mod stores;
mod tables;
mod time;
mod tokens;

pub use authority::{Cutoff, Role};
pub use control::{NodeInfo, NodeRecord};
pub use datadir::{DataDir, ENV_DATA_DIR};
pub use error::{ErrorKind, NodeError};
pub use lock::DirLock;
pub use meta::{LocalState, MetaDb, PeerRecord};
pub use network::{Network, NodeCtx, PeerSync, StoreSync, join};
pub use node::{DEFAULT_STORE_NAME, Lookup, Node, NodeStatus, StoreInfo, StoreRef};
pub use own_log::NodeStore;
pub use time::{now_ms, parse_at, rfc3339};
pub use tokens::{
    MAX_RATE, Permissions, TokenRecord, TokenRejected, format_rate, parse_duration, parse_rate, split_token,
};
