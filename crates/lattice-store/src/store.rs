//! The store: one directory, one owner (the actor thread), synchronous.
//!
//! Writes happen inside a [`Txn`]: a pair of redb write transactions (state.db, orphans.db)
//! plus a [`Work`] (the per-batch state: log lengths to undo, changed keys, counters, ...).
//! While a batch runs, its tables are opened once ([`Tables`], borrowed from the `Txn`) and
//! log appends are buffered in memory. [`Store::commit`] writes and fsyncs each touched log
//! once, then commits the index without an fsync of its own (the logs are the source of truth
//! and the index is brought up to date from them at open). That is the group commit: the actor
//! puts every queued command into one `Txn`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use lattice_core::chain::{ChainError, ChainTip, NextCheck, check_next};
use lattice_core::heads::{self, Head};
use lattice_core::hlc::MergeOutcome;
use lattice_core::proto;
use lattice_core::{
    AuthorId, AuthorSyncState, Clock, EntryBuilder, Hash, Hlc, Identity, Op, StoreId, SyncState, VerifiedEntry,
};
use prost::Message;
use redb::{
    Database, Durability, MultimapTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    WriteTransaction,
};
use tokio::sync::broadcast;

use crate::error::{IngestError, StoreError};
use crate::log::{self, AuthorLog, HEADER_LEN, LogError, RecordReader};
use crate::missing::{DecodedChunk, HlcMerge, MissingEntries};
use crate::tables::{self, AuthorRow, Counters, EntryRow, OrphanRow, WaitKey, Waiting};

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

/// Open log writers kept at most; beyond it, untouched ones are closed after a commit.
const MAX_OPEN_LOGS: usize = 128;
/// Chunks of decoded entries the replay's reader thread may run ahead by.
const DECODE_AHEAD_CHUNKS: usize = 16;
/// Threads (the actor's included) that write and fsync the touched logs of a commit.
const SYNC_THREADS: usize = 8;
/// Capacity of the gap and commit broadcast channels; slow subscribers see `Lagged`.
pub(crate) const EVENT_CAPACITY: usize = 4096;

pub(crate) fn wall_ms(offset_ms: i64) -> u64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    now.saturating_add_signed(offset_ms)
}

/// The writes of one group commit, not yet durable.
pub(crate) struct Txn {
    state: WriteTransaction,
    /// `None` for a batch of local writes only: they never touch orphans.db, and skipping its
    /// transaction takes a commit off every put.
    orphans: Option<WriteTransaction>,
    work: Work,
}

impl Txn {
    /// Opens the tables of the batch (each once) and hands them out with the batch state.
    pub(crate) fn split(&mut self) -> Result<(Tables<'_>, &mut Work), StoreError> {
        let Txn { state, orphans, work } = self;
        Ok((Tables::open(state, orphans.as_ref())?, work))
    }
}

/// The tables of one group commit, opened once for the whole batch (those of orphans.db on
/// first use: a batch of local writes never touches them).
pub(crate) struct Tables<'t> {
    kv: Table<'t, &'static [u8], &'static [u8]>,
    authors: Table<'t, [u8; 32], &'static [u8]>,
    entries: Table<'t, [u8; 32], &'static [u8]>,
    orphans_tx: Option<&'t WriteTransaction>,
    orphan_tables: Option<OrphanTables<'t>>,
    /// Index writes held back (replay, and batches of received entries), see [`Deferred`].
    /// `None`: rows are written at once.
    deferred: Option<Deferred>,
}

/// Index rows not written yet. Received entries arrive in random hash order and touch keys in
/// random order; inserting each row into its B-tree at once dirties a random page per row.
/// Held here, they are written in key order, in runs ([`Tables::flush_deferred`]), which is much
/// faster. Lookups see them first.
#[derive(Default)]
struct Deferred {
    entries: HashMap<[u8; 32], [u8; EntryRow::LEN]>,
    /// Heads of each touched key, decoded.
    kv: HashMap<Vec<u8>, Vec<Head>>,
    /// Tip of each touched author (looked up for every entry, so kept out of the B-tree too).
    authors: HashMap<AuthorId, AuthorRow>,
    /// Rough bytes held in `kv` (keys and values).
    kv_bytes: usize,
}

/// The tables of orphans.db.
struct OrphanTables<'t> {
    orphans: Table<'t, [u8; 32], &'static [u8]>,
    wait_predecessor: MultimapTable<'t, ([u8; 32], u64), [u8; 32]>,
    wait_parent: MultimapTable<'t, [u8; 32], [u8; 32]>,
}

impl OrphanTables<'_> {
    /// Files orphan `hash` in the wait index under what it waits for.
    fn index_wait(&mut self, waiting: Waiting, hash: [u8; 32]) -> Result<(), StoreError> {
        match waiting.key() {
            WaitKey::Predecessor(key) => self.wait_predecessor.insert(key, hash)?,
            WaitKey::Parent(parent) => self.wait_parent.insert(parent, hash)?,
        };
        Ok(())
    }

    /// Removes orphan `hash` from the wait index.
    fn unindex_wait(&mut self, waiting: Waiting, hash: [u8; 32]) -> Result<(), StoreError> {
        match waiting.key() {
            WaitKey::Predecessor(key) => self.wait_predecessor.remove(key, hash)?,
            WaitKey::Parent(parent) => self.wait_parent.remove(parent, hash)?,
        };
        Ok(())
    }
}

/// Deferred rows (see [`Deferred`]) are written once this many entries rows or this many bytes of
/// heads wait.
const DEFERRED_ENTRIES_MAX: usize = 1 << 17;
const DEFERRED_KV_BYTES_MAX: usize = 64 << 20;

/// The per-batch state of a group commit (besides the redb transactions).
pub(crate) struct Work {
    /// Touched logs and their length before this transaction (to undo on failure).
    log_lens: HashMap<AuthorId, u64>,
    /// Per touched key: visible winner before the transaction, and the current winner.
    changed: BTreeMap<Vec<u8>, (Option<Head>, Option<Head>)>,
    /// Whether `changed` is kept (not during the replay at open: no watcher exists yet).
    track_changes: bool,
    counters: Counters,
    local: Vec<VerifiedEntry>,
    remote: usize,
    gaps: Vec<GapInfo>,
    /// Set when a storage error left the transaction half-applied: it must not commit.
    pub(crate) poisoned: Option<String>,
}

impl<'t> Tables<'t> {
    fn open(state: &'t WriteTransaction, orphans: Option<&'t WriteTransaction>) -> Result<Self, StoreError> {
        Ok(Tables {
            kv: state.open_table(tables::KV)?,
            authors: state.open_table(tables::AUTHORS)?,
            entries: state.open_table(tables::ENTRIES)?,
            orphans_tx: orphans,
            orphan_tables: None,
            deferred: None,
        })
    }

    /// The tables of orphans.db, opened on first use.
    fn orphan_tables(&mut self) -> Result<&mut OrphanTables<'t>, StoreError> {
        let tables = match self.orphan_tables.take() {
            Some(tables) => tables,
            None => {
                let tx = self.orphans_tx.ok_or(StoreError::Aborted(
                    "internal: a batch begun without orphans.db touched its tables".into(),
                ))?;
                OrphanTables {
                    orphans: tx.open_table(tables::ORPHANS)?,
                    wait_predecessor: tx.open_multimap_table(tables::WAIT_PREDECESSOR)?,
                    wait_parent: tx.open_multimap_table(tables::WAIT_PARENT)?,
                }
            }
        };
        Ok(self.orphan_tables.insert(tables))
    }

    /// From now on, index rows are held back and written in key order, in runs; the caller
    /// must call [`Tables::flush_deferred`] before the transaction commits.
    pub(crate) fn defer_index_writes(&mut self) {
        self.deferred.get_or_insert_with(Deferred::default);
    }

    /// Writes the rows held back, each table's in key order.
    pub(crate) fn flush_deferred(&mut self) -> Result<(), StoreError> {
        let Some(deferred) = &mut self.deferred else { return Ok(()) };
        let mut rows: Vec<_> = deferred.entries.drain().collect();
        rows.sort_unstable_by_key(|(hash, _)| *hash);
        for (hash, row) in rows {
            self.entries.insert(hash, row.as_slice())?;
        }
        let mut heads: Vec<_> = deferred.kv.drain().collect();
        deferred.kv_bytes = 0;
        heads.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, heads) in heads {
            self.kv.insert(key.as_slice(), encode_heads(&heads).as_slice())?;
        }
        for (author, row) in deferred.authors.drain() {
            self.authors.insert(author.0, row.encode().as_slice())?;
        }
        Ok(())
    }

    fn set_author_row(&mut self, author: AuthorId, row: AuthorRow) -> Result<(), StoreError> {
        match &mut self.deferred {
            Some(deferred) => {
                deferred.authors.insert(author, row);
            }
            None => {
                self.authors.insert(author.0, row.encode().as_slice())?;
            }
        }
        Ok(())
    }

    fn insert_entry(&mut self, hash: &Hash, row: &EntryRow) -> Result<(), StoreError> {
        match &mut self.deferred {
            Some(deferred) => {
                deferred.entries.insert(hash.0, row.encode());
                if deferred.entries.len() >= DEFERRED_ENTRIES_MAX {
                    self.flush_deferred()?;
                }
            }
            None => {
                self.entries.insert(hash.0, row.encode().as_slice())?;
            }
        }
        Ok(())
    }

    /// The heads of `key`, taken out of the deferred rows if held there (put them back with
    /// [`Tables::set_heads`]).
    fn take_heads(&mut self, key: &[u8]) -> Result<Vec<Head>, StoreError> {
        if let Some(heads) = self.deferred.as_mut().and_then(|d| d.kv.remove(key)) {
            return Ok(heads);
        }
        self.heads_in(key)
    }

    fn set_heads(&mut self, key: &[u8], heads: Vec<Head>) -> Result<(), StoreError> {
        match &mut self.deferred {
            Some(deferred) => {
                deferred.kv_bytes += key.len() + heads.iter().map(|h| h.value.len() + 64).sum::<usize>();
                deferred.kv.insert(key.to_vec(), heads);
                if deferred.kv_bytes >= DEFERRED_KV_BYTES_MAX {
                    self.flush_deferred()?;
                }
            }
            None => {
                self.kv.insert(key, encode_heads(&heads).as_slice())?;
            }
        }
        Ok(())
    }

    fn author_row(&self, author: &AuthorId) -> Result<Option<AuthorRow>, StoreError> {
        if let Some(row) = self.deferred.as_ref().and_then(|d| d.authors.get(author)) {
            return Ok(Some(*row));
        }
        let row = self.authors.get(author.0)?;
        row.map(|v| AuthorRow::decode(v.value()).ok_or_else(|| StoreError::CorruptIndex("author row".into())))
            .transpose()
    }

    fn holds(&self, hash: &Hash) -> Result<bool, StoreError> {
        if self.deferred.as_ref().is_some_and(|d| d.entries.contains_key(&hash.0)) {
            return Ok(true);
        }
        Ok(self.entries.get(hash.0)?.is_some())
    }

    fn first_missing_parent(&self, entry: &VerifiedEntry) -> Result<Option<Hash>, StoreError> {
        for p in entry.parents() {
            if !self.holds(p)? {
                return Ok(Some(*p));
            }
        }
        Ok(None)
    }

    fn heads_in(&self, key: &[u8]) -> Result<Vec<Head>, StoreError> {
        if let Some(heads) = self.deferred.as_ref().and_then(|d| d.kv.get(key)) {
            return Ok(heads.clone());
        }
        let found = self.kv.get(key)?;
        found.map(|v| decode_heads(v.value())).transpose().map(Option::unwrap_or_default)
    }
}

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
    /// Authors whose entries are applied; `None`: every author. Others' entries wait in
    /// orphans.db (see [`IngestOutcome::Unauthorised`]). This node's own author always passes.
    authorised: Option<HashSet<AuthorId>>,
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

fn open_db(path: &Path) -> Result<Database, StoreError> {
    match create_db(path) {
        Ok(db) => Ok(db),
        Err(e @ redb::DatabaseError::DatabaseAlreadyOpen) => Err(e.into()),
        Err(e) => {
            // Both databases are derived or disposable: a damaged one is rebuilt, never trusted.
            tracing::warn!(path = %path.display(), error = %e, "index unreadable; rebuilding it");
            std::fs::remove_file(path).map_err(StoreError::io(path))?;
            Ok(create_db(path)?)
        }
    }
}

fn author_tip(row: &AuthorRow) -> ChainTip {
    ChainTip { seq: row.seq, hash: row.hash, hlc: row.hlc }
}

fn decode_heads(bytes: &[u8]) -> Result<Vec<Head>, StoreError> {
    let list = proto::HeadList::decode(bytes).map_err(|e| StoreError::CorruptIndex(format!("head list: {e}")))?;
    list.heads
        .into_iter()
        .map(|h| Head::from_proto(h).ok_or_else(|| StoreError::CorruptIndex("malformed head".into())))
        .collect()
}

fn encode_heads(heads: &[Head]) -> Vec<u8> {
    proto::HeadList { heads: heads.iter().map(Head::to_proto).collect() }.encode_to_vec()
}

fn visible(heads: &[Head]) -> Option<Head> {
    heads::winner(heads).filter(|h| !h.tombstone).cloned()
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
        std::fs::create_dir_all(&logs_dir).map_err(StoreError::io(&logs_dir))?;
        let state_path = dir.join("state.db");
        let state = open_db(&state_path)?;
        let orphans = open_db(&dir.join("orphans.db"))?;
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
            authorised: None,
            replayed: 0,
            stopped: None,
            #[cfg(test)]
            fail_next_index_commit: false,
            gaps,
            commits,
        };
        store.init_tables()?;
        store.catch_up()?;
        Ok(store)
    }

    fn init_tables(&mut self) -> Result<(), StoreError> {
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
                let row = c.value();
                if row.len() == 12 {
                    let wall = u64::from_le_bytes(row[..8].try_into().unwrap_or([0; 8]));
                    let counter = u32::from_le_bytes(row[8..].try_into().unwrap_or([0; 4]));
                    self.clock = Clock::resume(Hlc::new(wall, counter), self.config.max_drift_ms);
                }
            }
            tx.open_table(tables::KV)?;
            tx.open_table(tables::AUTHORS)?;
            tx.open_table(tables::ENTRIES)?;
        }
        tx.commit()?;
        let tx = self.orphans.begin_write()?;
        tx.open_table(tables::ORPHANS)?;
        tx.open_multimap_table(tables::WAIT_PREDECESSOR)?;
        tx.open_multimap_table(tables::WAIT_PARENT)?;
        tx.commit()?;
        Ok(())
    }

    fn log_path(&self, author: &AuthorId) -> PathBuf {
        self.dir.join("logs").join(format!("{}.log", author.to_hex()))
    }

    /// Compares every log with the index, truncates torn tails and replays what is not indexed.
    /// If the index is inconsistent with the logs (a log shorter than indexed, an indexed author
    /// without a log), it is discarded and rebuilt from the logs.
    fn catch_up(&mut self) -> Result<(), StoreError> {
        let logs_dir = self.dir.join("logs");
        let mut files = Vec::new();
        for item in std::fs::read_dir(&logs_dir).map_err(StoreError::io(&logs_dir))? {
            let item = item.map_err(StoreError::io(&logs_dir))?;
            let name = item.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".log")) else { continue };
            match AuthorId::from_hex(hex) {
                Ok(author) => files.push(author),
                Err(_) => tracing::warn!(file = %item.path().display(), "ignoring a file that is not an author log"),
            }
        }
        let indexed: HashMap<AuthorId, AuthorRow> = self.author_rows()?.into_iter().collect();
        let consistent = indexed.keys().all(|a| files.contains(a))
            && files.iter().all(|a| {
                let len = std::fs::metadata(self.log_path(a)).map(|m| m.len()).unwrap_or(0);
                indexed.get(a).is_none_or(|row| row.log_len <= len)
            });
        let indexed = if consistent {
            indexed
        } else {
            tracing::warn!(store = %self.store_id, "index does not match the logs; rebuilding it from the logs");
            self.reset_index()?;
            HashMap::new()
        };
        let mut tails = Vec::new();
        for author in files {
            let path = self.log_path(&author);
            let from = indexed.get(&author).map_or(0, |r| r.log_len);
            let recovered = log::recover(&path, from)?;
            if recovered.valid_len > from {
                tails.push((author, RecordReader::open(&path, from, recovered.valid_len)?));
            }
        }
        if !tails.is_empty() {
            self.replay(tails)?;
        }
        Ok(())
    }

    fn reset_index(&mut self) -> Result<(), StoreError> {
        let tx = self.state.begin_write()?;
        tx.delete_table(tables::KV)?;
        tx.delete_table(tables::META)?;
        tx.delete_table(tables::AUTHORS)?;
        tx.delete_table(tables::ENTRIES)?;
        tx.commit()?;
        self.counters = Counters::default();
        self.clock = Clock::new(self.config.max_drift_ms);
        self.init_tables()
    }

    /// Applies log records that the index does not cover, merged across authors in HLC order
    /// (which is causal order whenever clocks stayed within the drift bound). An entry whose
    /// parent has not been replayed yet waits in memory with the rest of its author's tail; if
    /// the parent never appears (its log lost an unsynced tail in a crash), the waiting entries
    /// move to orphans.db and are cut from their log, to be re-fetched by sync.
    fn replay(&mut self, tails: Vec<(AuthorId, RecordReader)>) -> Result<(), StoreError> {
        let started = Instant::now();
        let readers: Vec<RecordReader> = tails.into_iter().map(|(_, r)| r).collect();
        let paths: Vec<PathBuf> = readers.iter().map(|r| r.path().to_path_buf()).collect();
        let mut txn = self.begin(true)?;
        txn.work.track_changes = false;
        // A second thread reads, checks and decodes the logs ahead of the index work.
        let (count, moved) = std::thread::scope(|scope| {
            let (chunks, decoded) = std::sync::mpsc::sync_channel(DECODE_AHEAD_CHUNKS);
            scope.spawn(move || HlcMerge::decode_ahead(readers, chunks));
            let (mut t, w) = txn.split()?;
            t.defer_index_writes();
            let replayed = self.replay_into(decoded, &paths, &mut t, w)?;
            t.flush_deferred()?;
            Ok::<_, StoreError>(replayed)
        })?;
        self.commit_with(txn, Durability::Immediate, |_| {})?;
        self.replayed = count + moved;
        tracing::info!(store = %self.store_id, entries = count, orphaned = moved, elapsed_ms = started.elapsed().as_millis() as u64, "replayed log tails");
        Ok(())
    }

    /// The body of [`Store::replay`]: applies the merged tails. Returns (applied, orphaned).
    fn replay_into(
        &mut self,
        decoded: Receiver<DecodedChunk>,
        paths: &[PathBuf],
        t: &mut Tables<'_>,
        w: &mut Work,
    ) -> Result<(u64, u64), StoreError> {
        let mut blocked: HashMap<AuthorId, VecDeque<(u64, VerifiedEntry)>> = HashMap::new();
        let mut waiting_on: HashMap<Hash, Vec<AuthorId>> = HashMap::new();
        let mut count = 0u64;
        for chunk in decoded {
            for (reader, offset, entry) in chunk? {
                let author = entry.author();
                if let Some(queue) = blocked.get_mut(&author) {
                    queue.push_back((offset, entry));
                    continue;
                }
                // With each entry, the log it was read from: its reader, or (released from
                // `blocked`) its author's log.
                let mut ready = VecDeque::from([(author, offset, entry, Some(reader))]);
                while let Some((author, offset, entry, reader)) = ready.pop_front() {
                    let path = || match reader {
                        Some(i) => paths[i].clone(),
                        None => self.log_path(&author),
                    };
                    if let Some(queue) = blocked.get_mut(&author) {
                        // An earlier entry of this author waits again (for another parent): keep
                        // the rest of its log behind it.
                        queue.push_back((offset, entry));
                        continue;
                    }
                    if let Some(missing) = t.first_missing_parent(&entry)? {
                        waiting_on.entry(missing).or_default().push(author);
                        blocked.entry(author).or_default().push_front((offset, entry));
                        continue;
                    }
                    let tip = t.author_row(&author)?;
                    match check_next(self.store_id, tip.map(|r| author_tip(&r)).as_ref(), &entry, false, |_| None) {
                        Ok(NextCheck::Next) => {}
                        Ok(other) => {
                            return Err(StoreError::CorruptLog {
                                path: path(),
                                offset,
                                reason: format!("out of order: {other:?}"),
                            });
                        }
                        Err(e) => {
                            return Err(StoreError::CorruptLog { path: path(), offset, reason: e.to_string() });
                        }
                    }
                    let hash = entry.hash();
                    self.apply(t, w, &entry, Some(offset))?;
                    self.replay_clock(&entry);
                    count += 1;
                    // Unblock authors that waited for this entry.
                    for waiter in waiting_on.remove(&hash).unwrap_or_default() {
                        if let Some(mut queue) = blocked.remove(&waiter) {
                            while let Some((off, e)) = queue.pop_front() {
                                ready.push_back((waiter, off, e, None));
                            }
                        }
                    }
                }
            }
        }
        let stale = Self::drop_held_orphans(t)?;
        if stale > 0 {
            tracing::info!(count = stale, "dropped orphans that the replay applied from the logs");
        }
        let mut moved = 0;
        for (author, queue) in blocked {
            let Some((first_offset, _)) = queue.front() else { continue };
            let first_offset = *first_offset;
            let now = self.now();
            for (_, entry) in &queue {
                let missing_parent = t.first_missing_parent(entry)?;
                let have_seq = t.author_row(&author)?.map_or(0, |r| r.seq);
                let gap = GapInfo { author, have_seq, need_seq: entry.seq() - 1, missing_parent };
                self.park_gap(t, w, entry, gap, now)?;
                moved += 1;
            }
            let path = self.log_path(&author);
            tracing::warn!(log = %path.display(), offset = first_offset, entries = queue.len(),
                "log entries cite parents that were lost in a crash; moved them to orphans until sync brings the parents");
            let mut log = AuthorLog::open_at(&path, first_offset)?;
            log.sync()?;
        }
        Ok((count, moved))
    }

    /// Moves the clock past a replayed entry as its first commit did: the clock saved in the
    /// index may predate it (a crash) or be gone (a rebuild). Our own entries are adopted
    /// outright, so the next local write extends our chain with a larger HLC; others are merged
    /// (the drift bound still applies).
    fn replay_clock(&mut self, entry: &VerifiedEntry) {
        if entry.author() == self.identity.author() {
            if entry.hlc() > self.clock.last() {
                self.clock = Clock::resume(entry.hlc(), self.config.max_drift_ms);
            }
        } else {
            let _ = self.clock.merge(entry.hlc(), self.now());
        }
    }

    pub(crate) fn store_id(&self) -> StoreId {
        self.store_id
    }

    pub(crate) fn now(&self) -> u64 {
        wall_ms(self.config.clock_offset_ms)
    }

    // ---------- transactions ----------

    /// Begins a group commit; `with_orphans` is false for a batch that only makes local writes.
    pub(crate) fn begin(&mut self, with_orphans: bool) -> Result<Txn, StoreError> {
        self.check_running()?;
        Ok(Txn {
            state: self.state.begin_write()?,
            orphans: if with_orphans { Some(self.orphans.begin_write()?) } else { None },
            work: Work {
                log_lens: HashMap::new(),
                changed: BTreeMap::new(),
                track_changes: true,
                counters: self.counters,
                local: Vec::new(),
                remote: 0,
                gaps: Vec::new(),
                poisoned: None,
            },
        })
    }

    /// [`Store::commit_acknowledging`], returning the visible-value changes.
    #[cfg(test)]
    pub(crate) fn commit(&mut self, tx: Txn) -> Result<Vec<WatchEvent>, StoreError> {
        let mut changes = Vec::new();
        self.commit_acknowledging(tx, |events| changes = events)?;
        Ok(changes)
    }

    /// Makes the transaction durable (one write and one fsync per touched log), calls
    /// `on_durable` with the visible-value changes (the batch's gap and commit events are out by
    /// then), then commits the index: from `on_durable` on, the batch's writes are acknowledged,
    /// whatever follows.
    pub(crate) fn commit_acknowledging(
        &mut self,
        tx: Txn,
        on_durable: impl FnOnce(Vec<WatchEvent>),
    ) -> Result<(), StoreError> {
        let durability = if self.last_checkpoint.elapsed() >= self.config.checkpoint_interval {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.commit_with(tx, durability, on_durable)
    }

    /// Commits with a durable index (used at close, so the next open replays nothing).
    pub(crate) fn checkpoint(&mut self) -> Result<(), StoreError> {
        let tx = self.begin(true)?;
        self.commit_with(tx, Durability::Immediate, |_| {})
    }

    fn commit_with(
        &mut self,
        mut tx: Txn,
        durability: Durability,
        on_durable: impl FnOnce(Vec<WatchEvent>),
    ) -> Result<(), StoreError> {
        if let Some(reason) = tx.work.poisoned.take() {
            self.abort(tx);
            return Err(StoreError::Aborted(reason));
        }
        if let Err(e) = self.sync_logs(&tx.work.log_lens) {
            self.abort(tx);
            return Err(StoreError::Aborted(e.to_string()));
        }
        // From here on the entries are durable in their logs: the batch is acknowledged. If the
        // index commit fails, the next open replays them from the logs; until then the store
        // stops, since its index no longer matches its logs.
        let Txn { state, orphans, work } = tx;
        let Work { log_lens, changed, counters, local, remote, gaps, .. } = work;
        for gap in gaps {
            let _ = self.gaps.send(gap);
        }
        if !local.is_empty() || remote > 0 {
            let _ = self.commits.send(Arc::new(Committed { local, remote }));
        }
        let events = changed
            .into_iter()
            .filter_map(|(key, (before, after))| match (before, after) {
                (_, Some(after)) => Some(WatchEvent::Put { key, value: after.value }),
                (Some(_), None) => Some(WatchEvent::Delete { key }),
                (None, None) => None,
            })
            .collect();
        on_durable(events);
        if let Err(e) = self.commit_index(state, orphans, &counters, durability) {
            tracing::error!(store = %self.store_id, error = %e, "index commit failed after the logs were synced; stopping the store until it is reopened");
            self.stopped = Some(e.to_string());
        }
        if matches!(durability, Durability::Immediate) {
            self.last_checkpoint = Instant::now();
        }
        self.counters = counters;
        if self.logs.len() > MAX_OPEN_LOGS {
            self.logs.retain(|a, _| log_lens.contains_key(a));
        }
        Ok(())
    }

    /// Commits the index rows of a batch whose logs are durable (meta, then state.db, then
    /// orphans.db).
    fn commit_index(
        &mut self,
        mut state: WriteTransaction,
        orphans: Option<WriteTransaction>,
        counters: &Counters,
        durability: Durability,
    ) -> Result<(), StoreError> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_index_commit) {
            return Err(StoreError::Db(redb::Error::Corrupted("injected index commit failure".into())));
        }
        {
            let mut meta = state.open_table(tables::META)?;
            meta.insert(tables::META_COUNTERS, counters.encode().as_slice())?;
            let last = self.clock.last();
            let mut clock = [0u8; 12];
            clock[..8].copy_from_slice(&last.wall_ms.to_le_bytes());
            clock[8..].copy_from_slice(&last.counter.to_le_bytes());
            meta.insert(tables::META_CLOCK, clock.as_slice())?;
        }
        state.set_durability(durability).map_err(|e| StoreError::Db(e.into()))?;
        state.commit()?;
        if let Some(mut orphans) = orphans {
            orphans.set_durability(durability).map_err(|e| StoreError::Db(e.into()))?;
            orphans.commit()?;
        }
        Ok(())
    }

    /// `Err(Stopped)` once an index commit has failed (see [`Store::stopped`]).
    pub(crate) fn check_running(&self) -> Result<(), StoreError> {
        match &self.stopped {
            Some(reason) => Err(StoreError::Stopped(reason.clone())),
            None => Ok(()),
        }
    }

    /// Writes the buffered appends of every touched log and fsyncs it. With several logs, the
    /// fsyncs run in parallel (up to [`SYNC_THREADS`] at once); every one must succeed.
    fn sync_logs(&mut self, touched: &HashMap<AuthorId, u64>) -> Result<(), LogError> {
        let mut logs: Vec<&mut AuthorLog> =
            self.logs.iter_mut().filter(|(author, _)| touched.contains_key(author)).map(|(_, log)| log).collect();
        if logs.len() <= 1 {
            return logs.into_iter().try_for_each(AuthorLog::sync);
        }
        let per_thread = logs.len().div_ceil(SYNC_THREADS.min(logs.len()));
        let mut chunks = logs.chunks_mut(per_thread);
        let mine = chunks.next().unwrap_or_default();
        std::thread::scope(|scope| {
            let others: Vec<_> =
                chunks.map(|chunk| scope.spawn(move || chunk.iter_mut().try_for_each(|log| log.sync()))).collect();
            let mut result = mine.iter_mut().try_for_each(|log| log.sync());
            for handle in others {
                let done = handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                result = result.and(done);
            }
            result
        })
    }

    /// Drops a transaction: undoes its log appends and forgets its index changes.
    pub(crate) fn abort(&mut self, tx: Txn) {
        for (author, len) in &tx.work.log_lens {
            if let Some(log) = self.logs.get_mut(author)
                && let Err(e) = log.truncate(*len)
            {
                tracing::error!(error = %e, "could not undo log append; closing the log, it is repaired at next open");
                self.logs.remove(author);
            }
        }
        drop(tx);
    }

    // ---------- writes ----------

    /// Signs and applies a local write: the next seq of our chain, a fresh HLC, and as parents
    /// every current head of every key it touches (so the write merges any fork it sees).
    pub(crate) fn local_write(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        ops: Vec<Op>,
    ) -> Result<WriteReceipt, StoreError> {
        for (i, op) in ops.iter().enumerate() {
            lattice_core::entry::check_op(i, op)?;
        }
        if ops.is_empty() {
            return Err(lattice_core::EntryError::NoOps.into());
        }
        let me = self.identity.author();
        let tip = t.author_row(&me)?;
        let mut parents = Vec::new();
        for op in &ops {
            for head in t.heads_in(op.key())? {
                if !parents.contains(&head.hash) {
                    parents.push(head.hash);
                }
            }
        }
        let hlc = self.clock.tick(self.now());
        let entry = EntryBuilder::new(self.store_id, tip.map_or(1, |t| t.seq + 1))
            .prev_hash(tip.map_or(Hash::ZERO, |t| t.hash))
            .timestamp(hlc)
            .parent_hashes(parents)
            .ops(ops)
            .sign(&self.identity)?;
        self.apply(t, w, &entry, None)?;
        w.local.push(entry.clone());
        Ok(WriteReceipt { hash: entry.hash(), hlc, seq: entry.seq() })
    }

    /// Deletes a key if it has a visible value; otherwise writes nothing and returns `None`.
    pub(crate) fn local_delete(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        key: Vec<u8>,
    ) -> Result<Option<WriteReceipt>, StoreError> {
        if visible(&t.heads_in(&key)?).is_none() {
            return Ok(None);
        }
        self.local_write(t, w, vec![Op::Delete { key }]).map(Some)
    }

    /// Handles one verified entry from a peer, then releases, iteratively, every orphan that
    /// was waiting for it (and for those, and so on).
    pub(crate) fn ingest(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: VerifiedEntry,
    ) -> Result<IngestOutcome, IngestError> {
        let now = self.now();
        let outcome = self.ingest_one(t, w, &entry, now)?;
        if outcome != (IngestOutcome::Applied { released: 0 }) {
            return Ok(outcome);
        }
        let released = self.release_waiting(t, w, &entry, now)?;
        Ok(IngestOutcome::Applied { released })
    }

    /// Applies, iteratively, every orphan that waited for `entry` (just applied), and those
    /// that waited for them, and so on. Returns how many were applied.
    fn release_waiting(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        now: u64,
    ) -> Result<usize, IngestError> {
        let mut released = 0;
        let mut ready = vec![(entry.author(), entry.seq(), entry.hash())];
        while let Some((author, seq, hash)) = ready.pop() {
            for orphan in Self::take_waiting(t, author, seq, hash)? {
                match self.ingest_one(t, w, &orphan, now) {
                    Ok(IngestOutcome::Applied { .. }) => {
                        released += 1;
                        ready.push((orphan.author(), orphan.seq(), orphan.hash()));
                    }
                    Ok(_) => {}
                    Err(IngestError::Store(e)) => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(author = %orphan.author().short(), seq = orphan.seq(), error = %e, "dropping orphan")
                    }
                }
            }
        }
        Ok(released)
    }

    /// Sets the authors whose entries are applied (`None`: all) and applies the held entries of
    /// every author it admits (with what waited for them). Returns how many entries were applied.
    pub(crate) fn set_authorised(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        authors: Option<HashSet<AuthorId>>,
    ) -> Result<u64, StoreError> {
        self.authorised = authors;
        let mut admitted = BTreeSet::new();
        for item in t.orphan_tables()?.orphans.iter()? {
            let (_, value) = item?;
            if let Some((row, _)) = OrphanRow::decode(value.value())
                && let Waiting::Authorisation(author) = row.waiting
                && self.is_authorised(&author)
            {
                admitted.insert(author);
            }
        }
        let o = t.orphan_tables()?;
        let mut entries = Vec::new();
        for author in admitted {
            let mut hashes = Vec::new();
            for h in o.wait_predecessor.remove_all(&Waiting::authorisation_key(author))? {
                hashes.push(h?.value());
            }
            entries.extend(Self::take_orphans(o, hashes)?);
        }
        let held = entries.len();
        let mut applied = 0u64;
        for entry in entries {
            match self.ingest(t, w, entry) {
                Ok(IngestOutcome::Applied { released }) => applied += 1 + released as u64,
                Ok(_) => {}
                Err(IngestError::Store(e)) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "dropping a held entry that no longer validates"),
            }
        }
        if held > 0 {
            tracing::info!(held, applied, "applied entries of newly authorised authors");
        }
        Ok(applied)
    }

    fn is_authorised(&self, author: &AuthorId) -> bool {
        self.authorised.as_ref().is_none_or(|set| set.contains(author)) || *author == self.identity.author()
    }

    fn ingest_one(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        now: u64,
    ) -> Result<IngestOutcome, IngestError> {
        let author = entry.author();
        let tip = t.author_row(&author)?;
        // An author's entries are applied in seq order, so every held one has a seq at or below
        // the tip: only then can this one be held, and only then is the (random-key) lookup paid.
        let held = entry.seq() <= tip.map_or(0, |t| t.seq) && t.holds(&entry.hash())?;
        if !self.is_authorised(&author) {
            if entry.store_id() != self.store_id {
                return Err(ChainError::WrongStore { expected: self.store_id, got: entry.store_id() }.into());
            }
            if held {
                return Ok(IngestOutcome::Duplicate);
            }
            self.park(t, w, entry, Waiting::Authorisation(author), None, now)?;
            return Ok(IngestOutcome::Unauthorised);
        }
        let tip_hash = tip.map(|t| (t.seq, t.hash));
        let check = check_next(self.store_id, tip.map(|r| author_tip(&r)).as_ref(), entry, held, |seq| {
            tip_hash.filter(|(s, _)| *s == seq).map(|(_, h)| h)
        })?;
        match check {
            NextCheck::Duplicate => Ok(IngestOutcome::Duplicate),
            NextCheck::Gap { have_seq, need_seq } => {
                let gap = GapInfo { author, have_seq, need_seq, missing_parent: None };
                self.park_gap(t, w, entry, gap, now)?;
                Ok(IngestOutcome::Orphaned(gap))
            }
            NextCheck::Next => {
                if let Some(parent) = t.first_missing_parent(entry)? {
                    let seq = entry.seq();
                    let gap = GapInfo { author, have_seq: seq - 1, need_seq: seq - 1, missing_parent: Some(parent) };
                    self.park_gap(t, w, entry, gap, now)?;
                    return Ok(IngestOutcome::Orphaned(gap));
                }
                if let MergeOutcome::Clamped { ahead_ms } = self.clock.merge(entry.hlc(), now) {
                    tracing::warn!(author = %author.short(), ahead_ms, "entry's clock is beyond the drift bound; not adopting it");
                }
                self.apply(t, w, entry, None)?;
                w.remote += 1;
                Ok(IngestOutcome::Applied { released: 0 })
            }
        }
    }

    /// Parks an entry that waits for its predecessor or a DAG parent, and reports the gap.
    fn park_gap(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        gap: GapInfo,
        now: u64,
    ) -> Result<(), StoreError> {
        let waiting = match gap.missing_parent {
            Some(parent) => Waiting::Parent(parent),
            None => Waiting::Predecessor { author: gap.author, seq: entry.seq() - 1 },
        };
        self.park(t, w, entry, waiting, Some(gap), now)
    }

    /// Stores an orphan and indexes what it waits for; a new orphan's gap (if any) is reported
    /// at commit.
    fn park(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        waiting: Waiting,
        gap: Option<GapInfo>,
        now: u64,
    ) -> Result<(), StoreError> {
        let o = t.orphan_tables()?;
        if o.orphans.get(entry.hash().0)?.is_some() {
            return Ok(());
        }
        if o.orphans.len()? >= self.config.max_orphans {
            tracing::warn!(
                max = self.config.max_orphans,
                "orphan buffer full; dropping entry (sync will bring it again)"
            );
            return Ok(());
        }
        let row = OrphanRow { received_ms: now, seq: entry.seq(), waiting };
        o.orphans.insert(entry.hash().0, row.encode_with(entry.bytes()).as_slice())?;
        o.index_wait(waiting, entry.hash().0)?;
        w.gaps.extend(gap);
        Ok(())
    }

    /// Removes and returns the orphans waiting for the entry `(author, seq, hash)`.
    fn take_waiting(
        t: &mut Tables<'_>,
        author: AuthorId,
        seq: u64,
        hash: Hash,
    ) -> Result<Vec<VerifiedEntry>, StoreError> {
        let o = t.orphan_tables()?;
        if o.orphans.is_empty()? {
            return Ok(Vec::new());
        }
        let mut hashes = Vec::new();
        for h in o.wait_predecessor.remove_all(&(author.0, seq))? {
            hashes.push(h?.value());
        }
        for h in o.wait_parent.remove_all(&hash.0)? {
            hashes.push(h?.value());
        }
        Self::take_orphans(o, hashes)
    }

    /// Removes the orphan rows `hashes` (their wait-index rows are the caller's to remove) and
    /// returns their entries, each author's lowest seq first so a released run applies in one pass.
    fn take_orphans(o: &mut OrphanTables<'_>, hashes: Vec<[u8; 32]>) -> Result<Vec<VerifiedEntry>, StoreError> {
        let mut out = Vec::new();
        for h in hashes {
            let Some(value) = o.orphans.remove(h)? else { continue };
            match OrphanRow::decode(value.value()).map(|(_, bytes)| VerifiedEntry::from_trusted_log(bytes.to_vec())) {
                Some(Ok(e)) => out.push(e),
                _ => tracing::warn!("dropping an unreadable orphan record"),
            }
        }
        out.sort_by_key(|e| (e.author(), e.seq()));
        Ok(out)
    }

    /// Drops orphans older than the TTL. Returns how many were dropped.
    pub(crate) fn expire_orphans(&mut self, t: &mut Tables<'_>) -> Result<u64, StoreError> {
        let now = self.now();
        let ttl = self.config.orphan_ttl.as_millis() as u64;
        let mut expired = Vec::new();
        for item in t.orphan_tables()?.orphans.iter()? {
            let (k, v) = item?;
            if let Some((row, _)) = OrphanRow::decode(v.value())
                && now.saturating_sub(row.received_ms) >= ttl
            {
                expired.push((k.value(), row.waiting));
            }
        }
        Self::remove_orphans(t, &expired)?;
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "expired orphans");
        }
        Ok(expired.len() as u64)
    }

    /// Drops orphans that are held after all. orphans.db commits with the index, so after a
    /// crash it may still hold orphans that were released (and logged) after its last durable
    /// commit, and that the replay has just applied from the logs.
    fn drop_held_orphans(t: &mut Tables<'_>) -> Result<u64, StoreError> {
        let mut held = Vec::new();
        t.orphan_tables()?;
        let Some(o) = &t.orphan_tables else { return Ok(0) };
        for item in o.orphans.iter()? {
            let (k, v) = item?;
            if t.holds(&Hash(k.value()))?
                && let Some((row, _)) = OrphanRow::decode(v.value())
            {
                held.push((k.value(), row.waiting));
            }
        }
        Self::remove_orphans(t, &held)?;
        Ok(held.len() as u64)
    }

    /// Removes orphans and their wait-index rows.
    fn remove_orphans(t: &mut Tables<'_>, which: &[([u8; 32], Waiting)]) -> Result<(), StoreError> {
        if which.is_empty() {
            return Ok(());
        }
        let o = t.orphan_tables()?;
        for (hash, waiting) in which {
            o.orphans.remove(hash)?;
            o.unindex_wait(*waiting, *hash)?;
        }
        Ok(())
    }

    fn log_mut(&mut self, author: AuthorId, t: &Tables<'_>) -> Result<&mut AuthorLog, StoreError> {
        if !self.logs.contains_key(&author) {
            let len = t.author_row(&author)?.map_or(0, |r| r.log_len);
            let log = AuthorLog::open_at(&self.log_path(&author), len)?;
            self.logs.insert(author, log);
        }
        self.logs.get_mut(&author).ok_or(StoreError::Closed)
    }

    /// Applies a valid entry whose predecessor and parents are held: appends it to its log
    /// (unless replaying, `offset` = where it already is), indexes it, and updates the heads of
    /// every key it touches.
    fn apply(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        offset: Option<u64>,
    ) -> Result<(), StoreError> {
        let result = self.apply_inner(t, w, entry, offset);
        if let Err(e) = &result {
            w.poisoned = Some(e.to_string());
        }
        result
    }

    fn apply_inner(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        offset: Option<u64>,
    ) -> Result<(), StoreError> {
        let author = entry.author();
        let record_len = HEADER_LEN + entry.bytes().len() as u64;
        let offset = match offset {
            Some(o) => o,
            None => {
                let log = self.log_mut(author, t)?;
                let before = log.len();
                let o = log.append(entry.bytes())?;
                w.log_lens.entry(author).or_insert(before);
                o
            }
        };
        let row = EntryRow { author, seq: entry.seq(), offset, record_len: record_len as u32 };
        t.insert_entry(&entry.hash(), &row)?;
        let author_row = AuthorRow { seq: entry.seq(), hash: entry.hash(), hlc: entry.hlc(), log_len: row.end() };
        t.set_author_row(author, author_row)?;
        w.counters.entries += 1;

        // The head an entry leaves on a key is its last operation on that key.
        let mut last_op: Vec<(&[u8], &Op)> = Vec::new();
        for op in entry.ops() {
            match last_op.iter_mut().find(|(k, _)| *k == op.key()) {
                Some(slot) => slot.1 = op,
                None => last_op.push((op.key(), op)),
            }
        }
        for (key, op) in last_op {
            let mut heads = t.take_heads(key)?;
            let before_visible = visible(&heads);
            let was_conflict = heads.len() > 1;
            let (value, tombstone) = match op {
                Op::Put { value, .. } => (value.clone(), false),
                Op::Delete { .. } => (Vec::new(), true),
            };
            let head = Head { value, hlc: entry.hlc(), author, hash: entry.hash(), tombstone };
            heads::apply(&mut heads, entry.parents(), head);
            let after_visible = visible(&heads);
            let head_count = heads.len();
            t.set_heads(key, heads)?;
            match (before_visible.is_some(), after_visible.is_some()) {
                (false, true) => w.counters.live_keys += 1,
                (true, false) => w.counters.live_keys = w.counters.live_keys.saturating_sub(1),
                _ => {}
            }
            match (was_conflict, head_count > 1) {
                (false, true) => w.counters.conflicts += 1,
                (true, false) => w.counters.conflicts = w.counters.conflicts.saturating_sub(1),
                _ => {}
            }
            if w.track_changes {
                // Keys whose visible value did not change (e.g. a head that lost) produce no
                // event. Only this key's slot changes here, so only it is checked.
                let before = w.changed.remove(key).map_or(before_visible, |(before, _)| before);
                if before.as_ref().map(|h| h.hash) != after_visible.as_ref().map(|h| h.hash) {
                    w.changed.insert(key.to_vec(), (before, after_visible));
                }
            }
        }
        Ok(())
    }

    // ---------- reads (committed state) ----------

    pub(crate) fn get_heads(&self, key: &[u8]) -> Result<Vec<Head>, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let kv = tx.open_table(tables::KV)?;
        let found = kv.get(key)?;
        found.map(|v| decode_heads(v.value())).transpose().map(Option::unwrap_or_default)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(visible(&self.get_heads(key)?).map(|h| h.value))
    }

    /// Visible keys starting with `prefix`, after `after` (exclusive), at most `limit`.
    pub(crate) fn list(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<KvPairs, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let kv = tx.open_table(tables::KV)?;
        let start: &[u8] = match after {
            Some(a) if a > prefix => a,
            _ => prefix,
        };
        let mut out = Vec::new();
        for item in kv.range::<&[u8]>(start..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            if after == Some(key) {
                continue;
            }
            if let Some(h) = visible(&decode_heads(v.value())?) {
                out.push((key.to_vec(), h.value));
            }
        }
        Ok(out)
    }

    /// Every visible key matching `pattern`, with its value (the initial state of a watch).
    pub(crate) fn scan_matching(&self, pattern: &regex::bytes::Regex) -> Result<KvPairs, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let kv = tx.open_table(tables::KV)?;
        let mut out = Vec::new();
        for item in kv.iter()? {
            let (k, v) = item?;
            if pattern.is_match(k.value())
                && let Some(h) = visible(&decode_heads(v.value())?)
            {
                out.push((k.value().to_vec(), h.value));
            }
        }
        Ok(out)
    }

    pub(crate) fn status(&self) -> Result<StoreStatus, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let authors = tx.open_table(tables::AUTHORS)?.len()?;
        let otx = self.orphans.begin_read().map_err(redb::Error::from)?;
        let orphans = otx.open_table(tables::ORPHANS)?.len()?;
        Ok(StoreStatus {
            entries: self.counters.entries,
            authors,
            keys: self.counters.live_keys,
            orphans,
            conflicts: self.counters.conflicts,
        })
    }

    fn author_rows(&self) -> Result<Vec<(AuthorId, AuthorRow)>, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let authors = tx.open_table(tables::AUTHORS)?;
        let mut out = Vec::new();
        for item in authors.iter()? {
            let (k, v) = item?;
            let row = AuthorRow::decode(v.value()).ok_or_else(|| StoreError::CorruptIndex("author row".into()))?;
            out.push((AuthorId(k.value()), row));
        }
        Ok(out)
    }

    pub(crate) fn sync_state(&self) -> Result<SyncState, StoreError> {
        let authors =
            self.author_rows()?.into_iter().map(|(a, r)| (a, AuthorSyncState { seq: r.seq, hash: r.hash })).collect();
        Ok(SyncState { authors })
    }

    /// A reader of the entries `remote` lacks, per author in seq order, merged in HLC order.
    /// It reads the logs directly (up to the lengths committed now), off the actor thread.
    pub(crate) fn missing_entries(&self, remote: &SyncState) -> Result<MissingEntries, StoreError> {
        let rows: HashMap<AuthorId, AuthorRow> = self.author_rows()?.into_iter().collect();
        let ours = SyncState {
            authors: rows.iter().map(|(a, r)| (*a, AuthorSyncState { seq: r.seq, hash: r.hash })).collect(),
        };
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let entries = tx.open_table(tables::ENTRIES)?;
        let mut readers = Vec::new();
        let mut total = 0;
        for range in ours.missing_for(remote) {
            let Some(row) = rows.get(&range.author) else { continue };
            let from = if range.after_seq == 0 {
                0
            } else {
                let found = entries.get(range.after_hash.0)?.and_then(|v| EntryRow::decode(v.value()));
                match found {
                    Some(e) if e.author == range.author && e.seq == range.after_seq => e.end(),
                    _ => {
                        tracing::warn!(author = %range.author.short(), seq = range.after_seq,
                            "peer holds an entry of this author that we do not: a forked author; not sending its log");
                        continue;
                    }
                }
            };
            total += range.len();
            readers.push(RecordReader::open(&self.log_path(&range.author), from, row.log_len)?);
        }
        MissingEntries::new(readers, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_core::EntryBuilder;

    fn remote_entry(
        store: StoreId,
        who: &Identity,
        seq: u64,
        prev: Hash,
        parents: Vec<Hash>,
        ops: Vec<Op>,
    ) -> VerifiedEntry {
        EntryBuilder::new(store, seq)
            .prev_hash(prev)
            .timestamp(Hlc::new(wall_ms(0), seq as u32))
            .parent_hashes(parents)
            .ops(ops)
            .sign(who)
            .unwrap()
    }

    /// A batch that holds its index rows back must read its own pending rows: a duplicate is
    /// seen as one, a parent received earlier in the batch counts as held, a key touched twice
    /// keeps one head, a local write cites the heads received before it; and the rows land at
    /// commit, in the same state a batch without deferral gives.
    #[test]
    fn deferred_index_rows_are_read_back_within_the_batch_and_land_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let sid = StoreId::new_random();
        let mut store = Store::open(dir.path(), sid, Identity::generate(), StoreConfig::default()).unwrap();
        let remote = Identity::generate();
        let e1 = remote_entry(sid, &remote, 1, Hash::ZERO, vec![], vec![Op::put("k", "1")]);
        let e2 = remote_entry(sid, &remote, 2, e1.hash(), vec![e1.hash()], vec![Op::put("k", "2"), Op::put("j", "x")]);

        let mut tx = store.begin(true).unwrap();
        let receipt = {
            let (mut t, w) = tx.split().unwrap();
            t.defer_index_writes();
            assert_eq!(store.ingest(&mut t, w, e1.clone()).unwrap(), IngestOutcome::Applied { released: 0 });
            assert_eq!(store.ingest(&mut t, w, e1.clone()).unwrap(), IngestOutcome::Duplicate);
            assert_eq!(store.ingest(&mut t, w, e2.clone()).unwrap(), IngestOutcome::Applied { released: 0 });
            assert_eq!(t.heads_in(b"k").unwrap().len(), 1, "e2 superseded e1 on k");
            let receipt = store.local_write(&mut t, w, vec![Op::put("k", "3")]).unwrap();
            t.flush_deferred().unwrap();
            receipt
        };
        store.commit(tx).unwrap();

        let heads = store.get_heads(b"k").unwrap();
        assert_eq!(heads.len(), 1, "the local write cited e2's head");
        assert_eq!(heads[0].hash, receipt.hash);
        assert_eq!(store.get(b"k").unwrap(), Some(b"3".to_vec()));
        assert_eq!(store.get(b"j").unwrap(), Some(b"x".to_vec()));
        let status = store.status().unwrap();
        assert_eq!((status.entries, status.authors, status.keys, status.conflicts), (3, 2, 2, 0));
        let tips = store.sync_state().unwrap().authors;
        assert_eq!((tips[&remote.author()].seq, tips[&store.identity.author()].seq), (2, 1), "author rows landed");
        // The entries rows are in the table: the same entries again are duplicates.
        let mut tx = store.begin(true).unwrap();
        {
            let (mut t, w) = tx.split().unwrap();
            assert_eq!(store.ingest(&mut t, w, e1).unwrap(), IngestOutcome::Duplicate);
            assert_eq!(store.ingest(&mut t, w, e2).unwrap(), IngestOutcome::Duplicate);
        }
        store.commit(tx).unwrap();
    }

    fn local_put(store: &mut Store, key: &str, value: &str) -> Result<WriteReceipt, StoreError> {
        let mut tx = store.begin(false)?;
        let receipt = {
            let (mut t, w) = tx.split()?;
            store.local_write(&mut t, w, vec![Op::put(key, value)])?
        };
        store.commit(tx)?;
        Ok(receipt)
    }

    /// An index commit that fails after the logs were synced: the write is acknowledged (it is
    /// durable), the store refuses further work rather than build on an index that lags its
    /// logs (a local write would reuse a seq and fork our chain), and a reopen replays the log
    /// so every write is there and the chain continues.
    #[test]
    fn a_failed_index_commit_stops_the_store_and_a_reopen_recovers_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let sid = StoreId::new_random();
        let id = Identity::generate();
        let mut store = Store::open(dir.path(), sid, id.clone(), StoreConfig::default()).unwrap();
        assert_eq!(local_put(&mut store, "a", "1").unwrap().seq, 1);
        store.fail_next_index_commit = true;
        assert_eq!(local_put(&mut store, "b", "2").unwrap().seq, 2, "durable in the log: acknowledged");
        let refused = local_put(&mut store, "c", "3").unwrap_err();
        assert!(matches!(refused, StoreError::Stopped(_)), "{refused}");
        assert!(refused.to_string().contains("reopen"), "{refused}");
        assert!(store.checkpoint().is_err(), "nothing is committed any more");
        drop(store);

        let mut store = Store::open(dir.path(), sid, id, StoreConfig::default()).unwrap();
        assert_eq!(store.replayed, 1, "the write the index missed is replayed from the log");
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(local_put(&mut store, "c", "3").unwrap().seq, 3, "the chain continues, unforked");
        assert_eq!(store.status().unwrap().entries, 3);
    }
}
