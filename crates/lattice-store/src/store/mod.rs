//! The store: one directory, one owner (the actor thread), synchronous.
//!
//! Writes happen inside a [`Txn`]: a pair of redb write transactions (state.db, orphans.db)
//! plus a [`Work`] (the per-batch state: log lengths to undo, changed keys, counters, ...).
//! While a batch runs, its tables are opened once ([`Tables`], borrowed from the `Txn`) and
//! log appends are buffered in memory. [`Store::commit_acknowledging`] writes and fsyncs each
//! touched log once, then commits the index without an fsync of its own (the logs are the source
//! of truth and the index is brought up to date from them at open). That is the group commit:
//! the actor puts every queued command into one `Txn`.
//!
//! - this file: [`Store`], opening its databases and tables.
//! - `batch`: [`Txn`], [`Tables`] (with the index rows a batch holds back) and [`Work`].
//! - `commit`: begin, commit (logs, then acknowledgement, then index), abort, checkpoint.
//! - `replay`: at open, torn tails cut and unindexed log records replayed (or the index rebuilt).
//! - `write`: local writes, signed as the next entry of our chain.
//! - `ingest`: received entries: chain rules, authorisation, release of waiting orphans.
//! - `orphans`: parking entries in orphans.db, taking them out, expiry.
//! - `policy`: who may write: authorisation, equivocation proofs, the limits they make, and the
//!   recomputation when a limit moves across stored entries.
//! - `apply`: how any entry lands in its log, the entry and author rows and the key heads.
//! - `kinds`: counters and sets: their state, what a delete or remove observed, typed values.
//! - `merkle`: the Merkle tree over the keys' heads, updated lazily in batches; proofs and
//!   attestations of its root.
//! - `read`: reads of committed state and the stream of entries a peer lacks.

mod apply;
mod batch;
mod commit;
mod ingest;
mod kinds;
mod merkle;
mod orphans;
mod policy;
mod read;
mod replay;
mod versions;
mod write;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lattice_core::heads::{self, Head};
use lattice_core::{AuthorId, Clock, Identity, StoreId, VerifiedEntry};
use redb::{Database, ReadableTable};
use tokio::sync::broadcast;

pub(crate) use batch::{Tables, Txn, Work};
use policy::Policy;

use crate::durable;
use crate::error::StoreError;
use crate::log::AuthorLog;
use crate::tables::{self, ClockRow, Counters};
use crate::types::{Committed, GapInfo, StoreConfig};

/// Capacity of the gap and commit broadcast channels; slow subscribers see `Lagged`.
pub(crate) const EVENT_CAPACITY: usize = 4096;

/// The wall clock in ms since the Unix epoch, shifted by `offset_ms` (tests skew clocks with it).
pub(crate) fn wall_ms(offset_ms: i64) -> u64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    now.saturating_add_signed(offset_ms)
}

/// One open store: its directory, databases, open log writers, clock and counters.
pub(crate) struct Store {
    dir: PathBuf,
    store_id: StoreId,
    identity: Identity,
    state: Database,
    orphans: Database,
    logs: HashMap<AuthorId, AuthorLog>,
    clock: Clock,
    counters: Counters,
    config: StoreConfig,
    last_checkpoint: Instant,
    /// Who may write, and up to which seq (see `policy`).
    policy: Policy,
    /// Received entries that fork their author's chain at a seq held here, seen in the current
    /// batch: their proofs are made once it commits ([`Store::settle`]).
    equivocations: Vec<VerifiedEntry>,
    /// `(author, after, upto)`: the author's stored entries `after < seq <= upto` changed status
    /// under a policy change of the current batch; the index is recomputed once it commits.
    to_recompute: Vec<(AuthorId, u64, u64)>,
    /// Leaves of committed batches not yet in the tree (see `merkle`).
    merkle_pending: HashMap<lattice_core::merkle::Digest, Option<lattice_core::merkle::Digest>>,
    /// Whether the committed `meta_v1` holds [`tables::META_MERKLE_DIRTY`].
    merkle_dirty: bool,
    /// The last placing number used in [`tables::MERKLE_PENDING`] (see `merkle`).
    merkle_placed: u64,
    /// Log records read back by the replay at open (0 if the index was up to date).
    pub(crate) replayed: u64,
    /// Set when the index failed to commit after the logs did: the index no longer matches
    /// the logs, and a write based on it could fork our own chain, so the store refuses all work
    /// (see [`StoreError::Stopped`]) until it is reopened.
    stopped: Option<String>,
    /// Test hook: the next index commit fails.
    #[cfg(test)]
    fail_next_index_commit: bool,
    pub(crate) gaps: broadcast::Sender<GapInfo>,
    pub(crate) commits: broadcast::Sender<Arc<Committed>>,
}

/// redb's page cache per database (it grows only as pages are used). Its default (1 GiB) let
/// one store's memory grow to ~750 MB while ingesting a million entries. At 32 MiB, a sync's
/// group commits overflowed redb's write buffer, which then wrote pages out one at a time during
/// the inserts; 64 MiB keeps a 1M-entry sync at ~135 MB of RSS and ingests ~10% faster.
const DB_CACHE_BYTES: usize = 64 * 1024 * 1024;

fn create_db(path: &Path) -> Result<Database, redb::DatabaseError> {
    redb::Builder::new().set_cache_size(DB_CACHE_BYTES).create(path)
}

/// Opens (or creates) a redb file, mode 0600 whatever the umask (redb creates it with the
/// process's default mode, so it is set afterwards; this also tightens files of older dirs).
fn open_db(path: &Path) -> Result<Database, StoreError> {
    let db = open_or_rebuild_db(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(StoreError::io(path))?;
    Ok(db)
}

/// Opens the database at `path`, creating it if absent; a new file's name is made durable before
/// anything is committed in it.
fn open_or_rebuild_db(path: &Path) -> Result<Database, StoreError> {
    let existed = path.exists();
    let db = match create_db(path) {
        Ok(db) => db,
        Err(e @ redb::DatabaseError::DatabaseAlreadyOpen) => return Err(e.into()),
        Err(e) => {
            // Both databases are derived or disposable: a damaged one is rebuilt, never trusted.
            tracing::warn!(path = %path.display(), error = %e, "index unreadable; rebuilding it");
            std::fs::remove_file(path).map_err(StoreError::io(path))?;
            let db = create_db(path)?;
            durable::created(path).map_err(StoreError::io(path))?;
            return Ok(db);
        }
    };
    if !existed {
        durable::created(path).map_err(StoreError::io(path))?;
    }
    Ok(db)
}

/// The head whose value the key shows (see [`heads::visible`]).
fn visible(heads: &[Head]) -> Option<Head> {
    heads::visible(heads).cloned()
}

impl Store {
    /// Opens (or creates) the store in `dir`, repairs torn log tails and brings the index up to
    /// date by replaying only the log records it does not cover yet.
    pub(crate) fn open(
        dir: &Path,
        store_id: StoreId,
        identity: Identity,
        config: StoreConfig,
    ) -> Result<Self, StoreError> {
        let logs_dir = dir.join("logs");
        // Every directory created on the way (stores/, the store's, logs/) is 0700, and durable.
        durable::create_dir_all_mode(&logs_dir, 0o700).map_err(StoreError::io(&logs_dir))?;
        let state_path = dir.join("state.db");
        let state = open_db(&state_path)?;
        let orphans = open_db(&dir.join("orphans.db"))?;
        let me = identity.author();
        let (gaps, _) = broadcast::channel(EVENT_CAPACITY);
        let (commits, _) = broadcast::channel(EVENT_CAPACITY);
        let mut store = Store {
            dir: dir.to_path_buf(),
            store_id,
            identity,
            state,
            orphans,
            logs: HashMap::new(),
            clock: Clock::new(config.max_drift_ms),
            counters: Counters::default(),
            config,
            last_checkpoint: Instant::now(),
            policy: Policy::empty(me),
            equivocations: Vec::new(),
            to_recompute: Vec::new(),
            merkle_pending: HashMap::new(),
            merkle_dirty: false,
            merkle_placed: 0,
            replayed: 0,
            stopped: None,
            #[cfg(test)]
            fail_next_index_commit: false,
            gaps,
            commits,
        };
        let recompute = store.init_tables()?;
        store.catch_up(recompute)?;
        Ok(store)
    }

    /// Creates the tables if needed, checks the store id, loads counters, clock and policy.
    /// Returns whether the index awaits a recomputation under the policy (see
    /// [`tables::META_RECOMPUTE`]).
    fn init_tables(&mut self) -> Result<bool, StoreError> {
        let mut recompute;
        let tx = self.state.begin_write()?;
        {
            let mut meta = tx.open_table(tables::META)?;
            let found = meta.get(tables::META_STORE_ID)?.map(|v| v.value().to_vec());
            match found {
                Some(bytes) => {
                    let found = StoreId::from_bytes(&bytes).map_err(|e| StoreError::CorruptIndex(e.to_string()))?;
                    if found != self.store_id {
                        return Err(StoreError::WrongStoreDir { expected: self.store_id, found });
                    }
                }
                None => {
                    meta.insert(tables::META_STORE_ID, self.store_id.as_bytes().as_slice())?;
                }
            }
            if let Some(c) = meta.get(tables::META_COUNTERS)? {
                self.counters =
                    Counters::decode(c.value()).ok_or_else(|| StoreError::CorruptIndex("counters".into()))?;
            }
            if let Some(c) = meta.get(tables::META_CLOCK)? {
                let row = ClockRow::decode(c.value()).ok_or_else(|| StoreError::CorruptIndex("clock".into()))?;
                self.clock = Clock::resume(row.hlc, self.config.max_drift_ms);
            }
            recompute = meta.get(tables::META_RECOMPUTE)?.is_some();
            if meta.get(tables::META_VERSIONS)?.is_none() {
                // Either a new index (no author yet: nothing to cover) or one indexed before
                // the versions table: rebuilt once from the logs, which fills it.
                if tx.open_table(tables::AUTHORS)?.first()?.is_some() {
                    tracing::info!(store = %self.store_id, "indexing the versions of every key: rebuilding the index from the logs once");
                    meta.insert(tables::META_RECOMPUTE, [1u8].as_slice())?;
                    recompute = true;
                } else {
                    meta.insert(tables::META_VERSIONS, [1u8].as_slice())?;
                }
            }
            if tx.delete_table(tables::LEGACY_KV)? {
                // Heads indexed under an older rule (more than one per author): rebuilt from the
                // logs. The row makes a crash before the rebuild resume it at the next open.
                tracing::info!(store = %self.store_id, "the head rule changed; rebuilding the index from the logs");
                meta.insert(tables::META_RECOMPUTE, [1u8].as_slice())?;
                recompute = true;
            }
            tx.open_table(tables::KV)?;
            tx.open_table(tables::AUTHORS)?;
            tx.open_table(tables::ENTRIES)?;
            tx.open_table(tables::KIND_STATE)?;
            tx.open_table(tables::KIND_OPS)?;
            tx.open_table(tables::SET_MEMBERS)?;
            tx.open_table(tables::MERKLE_NODES)?;
            tx.open_table(tables::MERKLE_PENDING)?;
            tx.open_table(tables::VERSIONS)?;
            tx.open_table(tables::POLICY)?;
            tx.open_table(tables::PROOFS)?;
        }
        tx.commit()?;
        let tx = self.orphans.begin_write()?;
        orphans::init(&tx)?;
        tx.commit()?;
        self.policy = Policy::load(&self.state, self.identity.author())?;
        self.build_tree()?;
        Ok(recompute)
    }

    fn log_path(&self, author: &AuthorId) -> PathBuf {
        self.dir.join("logs").join(format!("{}.log", author.to_hex()))
    }

    pub(crate) fn store_id(&self) -> StoreId {
        self.store_id
    }

    pub(crate) fn now(&self) -> u64 {
        wall_ms(self.config.clock_offset_ms)
    }
}

#[cfg(test)]
mod tests;
