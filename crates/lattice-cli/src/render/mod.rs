//! Rendering: what a command's results look like, as text for people or JSON for scripts
//! (docs/design.md, CLI). Commands gather data and hand it here; nothing here talks to a node.
//!
//! - `value`: one-line text forms of keys and values, and the raw bytes of a plain `get`.
//! - `text`: tables and the text of each command.
//! - `json`: the `--json` document of each command; key/value items and write receipts come
//!   from `lattice_http`, so the CLI and the HTTP API spell them alike.
//! - `watch`: one line per watch event, text or JSON.
//! - `progress`: the progress bar of a long sync.
//! - `time`: local wall-clock times beside HLCs.
//! - `style`: colour (ANSI SGR) on a terminal, never with `NO_COLOR`.

pub mod json;
mod progress;
pub mod style;
pub mod text;
pub mod time;
mod value;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;

use lattice_core::{AuthorId, StoreId};
use lattice_node::{NodeInfo, NodeStatus, PeerRecord};

pub use progress::SyncBar;
pub use value::{raw_value, text};
pub use watch::watch_line;

/// A node of the mesh as `peers` shows it.
pub struct PeerView {
    pub id: AuthorId,
    /// True for the node this process runs.
    pub this_node: bool,
    pub info: NodeInfo,
    pub status: &'static str,
    /// `admin` or `member`.
    pub role: &'static str,
    /// What this node has seen of it (addresses, last contact, last sync).
    pub local: PeerRecord,
    /// Consecutive failed attempts to reach it, when there are any.
    pub failures: Option<u32>,
    /// The stores (by name) where its key is proven to have signed a fork, with the fork seq.
    pub equivocated: Vec<(String, u64)>,
}

#[cfg(test)]
impl PeerView {
    /// An active member seen from another node, equivocated in `equivocated` (render tests).
    pub(crate) fn active_member(id: AuthorId, equivocated: Vec<(String, u64)>) -> Self {
        PeerView {
            id,
            this_node: false,
            info: Default::default(),
            status: "active",
            role: "member",
            local: Default::default(),
            failures: None,
            equivocated,
        }
    }
}

/// Another node of the mesh as `status` lists it.
pub struct MemberLine {
    pub id: AuthorId,
    pub name: String,
    pub status: String,
}

/// Everything `status` shows.
pub struct StatusView<'a> {
    pub status: &'a NodeStatus,
    pub members: &'a [MemberLine],
    pub listen: &'a [SocketAddr],
    /// The pid and the kind of a long-running owner (`None` for a one-shot command).
    pub daemon: Option<(u32, &'static str)>,
    pub http: Option<SocketAddr>,
}

/// Store names by id, for sync reports (the root store is `root`).
pub type StoreNames = HashMap<StoreId, String>;
