//! The value types of the store's API: its configuration, what a write or an ingest produced,
//! gaps, status figures, watch events and the entries of a commit.

use std::time::Duration;

use lattice_core::{AuthorId, Hash, Hlc, VerifiedEntry};

/// Tunables of a store. `Default` gives production values.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// How far a remote HLC may pull the local clock ahead of the wall clock.
    pub max_drift_ms: u64,
    /// How long an orphan waits for its missing predecessor or parent before it is dropped.
    pub orphan_ttl: Duration,
    /// Orphans beyond this count are refused (a peer cannot fill the disk with them).
    pub max_orphans: u64,
    /// At most this long between durable (fsynced) index commits; bounds replay at open.
    pub checkpoint_interval: Duration,
    /// Added to the wall clock (tests simulate skewed clocks with it).
    pub clock_offset_ms: i64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_drift_ms: lattice_core::hlc::DEFAULT_MAX_DRIFT_MS,
            orphan_ttl: Duration::from_secs(3600),
            max_orphans: 1_000_000,
            checkpoint_interval: Duration::from_secs(1),
            clock_offset_ms: 0,
        }
    }
}

/// Keys and values, in key order.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What a local write produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteReceipt {
    pub hash: Hash,
    pub hlc: Hlc,
    pub seq: u64,
}

/// A gap: an entry arrived whose predecessor (`have_seq + 1 ..= need_seq` of `author`) or DAG
/// parent (`missing_parent`) is not held. The network layer answers with a targeted sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapInfo {
    pub author: AuthorId,
    pub have_seq: u64,
    pub need_seq: u64,
    pub missing_parent: Option<Hash>,
}

/// What became of an ingested entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Applied, together with `released` orphans that were waiting for it.
    Applied { released: usize },
    /// Already held.
    Duplicate,
    /// Held in orphans.db until the gap closes.
    Orphaned(GapInfo),
    /// Held in orphans.db because its author is not admitted to the mesh (yet); applied when
    /// [`set_authorised`](crate::StoreHandle::set_authorised) admits it, dropped at the orphan TTL.
    Unauthorised,
}

/// Figures for `status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    pub entries: u64,
    pub authors: u64,
    pub keys: u64,
    pub orphans: u64,
    pub conflicts: u64,
}

/// A change of a key's visible value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl WatchEvent {
    pub fn key(&self) -> &[u8] {
        match self {
            WatchEvent::Put { key, .. } | WatchEvent::Delete { key } => key,
        }
    }
}

/// Entries applied by one group commit. `local` holds the ones written on this node, in
/// commit order (what gossip broadcasts).
#[derive(Clone, Debug, Default)]
pub struct Committed {
    pub local: Vec<VerifiedEntry>,
    pub remote: usize,
}
