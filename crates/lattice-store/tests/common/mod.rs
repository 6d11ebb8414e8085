#![allow(dead_code)]
//! Helpers shared by the store's integration tests.

use std::path::Path;

use lattice_core::{EntryBuilder, Hash, Hlc, Identity, Op, StoreId, SyncState, VerifiedEntry};
use lattice_store::{KvPairs, KvStore, StoreConfig, StoreHandle, StoreStatus, SyncStore};
use rand::{Rng, SeedableRng, rngs::StdRng};

pub fn open(dir: &Path, store_id: StoreId, id: &Identity) -> StoreHandle {
    StoreHandle::open(dir, store_id, id.clone(), StoreConfig::default()).unwrap()
}

/// Every entry `from` holds, in the order a sync would send them.
pub async fn all_entries(from: &impl SyncStore) -> Vec<VerifiedEntry> {
    let missing = from.missing_entries(SyncState::default()).await.unwrap();
    tokio::task::spawn_blocking(move || missing.map(|e| e.unwrap()).collect()).await.unwrap()
}

/// Sends everything `from` has that `to` lacks, as a sync would.
pub async fn sync_into(from: &impl SyncStore, to: &impl SyncStore) -> usize {
    let state = to.sync_state().await.unwrap();
    let missing = from.missing_entries(state).await.unwrap();
    let entries: Vec<Vec<u8>> =
        tokio::task::spawn_blocking(move || missing.map(|e| e.unwrap().into_bytes()).collect()).await.unwrap();
    let n = entries.len();
    for r in to.ingest_batch(entries).await.unwrap() {
        r.unwrap();
    }
    n
}

/// Everything a reader can observe about a store, for "nothing changed" comparisons.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub sync_state: SyncState,
    pub list: KvPairs,
    pub status: StoreStatus,
}

pub async fn snapshot(s: &StoreHandle) -> Snapshot {
    Snapshot {
        sync_state: s.sync_state().await.unwrap(),
        list: s.list(b"", None, usize::MAX).await.unwrap(),
        status: s.status().await.unwrap(),
    }
}

/// One author's chain of hand-built entries (a remote peer the tests impersonate).
pub struct Chain {
    pub id: Identity,
    pub store: StoreId,
    pub entries: Vec<VerifiedEntry>,
    /// Wall time of the next entry's HLC (ms); each entry takes the next millisecond.
    pub wall: u64,
}

impl Chain {
    pub fn new(store: StoreId) -> Self {
        Chain { id: Identity::generate(), store, entries: Vec::new(), wall: 1_000 }
    }

    pub fn seq(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn last_hash(&self) -> Hash {
        self.entries.last().map_or(Hash::ZERO, |e| e.hash())
    }

    pub fn last_hlc(&self) -> Hlc {
        self.entries.last().map_or(Hlc::ZERO, |e| e.hlc())
    }

    /// The builder of the next entry (seq, prev_hash and HLC filled in), without appending it.
    pub fn builder(&self) -> EntryBuilder {
        EntryBuilder::new(self.store, self.seq() + 1).prev_hash(self.last_hash()).timestamp(Hlc::new(self.wall, 0))
    }

    /// Appends the next entry, citing `parents`, and returns it.
    pub fn next_with(&mut self, parents: Vec<Hash>, ops: Vec<Op>) -> VerifiedEntry {
        let e = self.builder().parent_hashes(parents).ops(ops).sign(&self.id).unwrap();
        self.wall += 1;
        self.entries.push(e.clone());
        e
    }

    /// Appends the next entry: one put of `key`, no parents.
    pub fn put(&mut self, key: &str, value: &str) -> VerifiedEntry {
        self.next_with(Vec::new(), vec![Op::put(key, value)])
    }

    pub fn bytes(&self) -> Vec<Vec<u8>> {
        self.entries.iter().map(|e| e.bytes().to_vec()).collect()
    }
}

/// Polls `check` until it returns `Some`, failing the test after `secs` seconds.
pub async fn poll_until<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A temporary directory on a RAM-backed file system when there is one (`/dev/shm`), else in
/// the default temp dir: for tests that make many fsynced writes but test logic, not disks.
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// Bytes of a log record before its payload: `len u32 LE | blake3(payload) [32]`.
const RECORD_HEADER: usize = 36;

/// The records of a whole author log, each with its offset, read by the record layout itself
/// (docs/design.md, Log record) rather than through the store's reader.
pub fn log_records(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let mut records = Vec::new();
    let mut at = 0;
    while at + RECORD_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        // A process killed mid-append leaves a short last record: the records end before it.
        let Some(payload) = bytes.get(at + RECORD_HEADER..at + RECORD_HEADER + len) else { break };
        assert_eq!(blake3::hash(payload).as_bytes()[..], bytes[at + 4..at + RECORD_HEADER], "record at {at}");
        records.push((at as u64, payload.to_vec()));
        at += RECORD_HEADER + len;
    }
    records
}

/// Appends one whole, checksummed record to an author log (durably) and returns its offset.
pub fn append_log_record(path: &Path, payload: &[u8]) -> u64 {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    let offset = file.metadata().unwrap().len();
    file.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
    file.write_all(blake3::hash(payload).as_bytes()).unwrap();
    file.write_all(payload).unwrap();
    file.sync_all().unwrap();
    offset
}

/// Every replica sends every other what it lacks, as a sync does (each author in seq order),
/// until none lacks anything or `rounds` rounds have passed: an entry one replica held only as an
/// orphan (a foreign entry whose predecessor was elsewhere) spreads once a sync has released it.
/// A chain of releases is at most one round per entry in flight; more means something is stuck,
/// which the caller's checks after this show.
pub async fn sync_all(stores: &[StoreHandle], rounds: usize) {
    for _ in 0..rounds {
        let mut sent = 0;
        for from in stores {
            for to in stores {
                if from.author() != to.author() {
                    sent += sync_into(from, to).await;
                }
            }
        }
        if sent == 0 {
            return;
        }
    }
}

/// Keys `k0`.. that [`history`] writes (besides the counters `c0`, `c1`).
pub const KEYS: u8 = 12;

/// Writers put, delete and increment keys (and sync now and then, so entries cite other
/// writers' heads and keys conflict); returns every entry made.
pub async fn history(seed: u64, writers: usize, steps: usize) -> (StoreId, Vec<VerifiedEntry>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let id = StoreId::new_random();
    let dirs: Vec<_> = (0..writers).map(|_| fast_tempdir()).collect();
    let stores: Vec<StoreHandle> = dirs.iter().map(|d| open(d.path(), id, &Identity::generate())).collect();
    for _ in 0..steps {
        let w = rng.random_range(0..writers);
        let key = format!("k{}", rng.random_range(0..KEYS));
        let s = &stores[w];
        match rng.random_range(0..10) {
            0 => {
                let from = rng.random_range(0..writers);
                if from != w {
                    sync_into(&stores[from], s).await;
                }
            }
            1 => drop(s.delete(key.into_bytes()).await.unwrap()),
            // Counters live on their own keys, so no op of another kind is refused.
            2 => drop(s.incr(format!("c{}", rng.random_range(0..2)).into_bytes(), 1).await.unwrap()),
            3 => {
                let ops = vec![Op::put(key.clone(), "batch"), Op::put(format!("k{}", rng.random_range(0..KEYS)), "b2")];
                s.batch(ops).await.unwrap();
            }
            _ => drop(s.put(key.into_bytes(), format!("v{}", rng.random::<u16>()).into_bytes()).await.unwrap()),
        }
    }
    // At least one entry, whatever the steps drew (a history of syncs alone holds none).
    stores[0].put(b"k0".to_vec(), b"last".to_vec()).await.unwrap();
    let mut entries = Vec::new();
    for s in &stores {
        for e in all_entries(s).await {
            if e.author() == s.author() {
                entries.push(e);
            }
        }
    }
    for s in &stores {
        s.close().await.unwrap();
    }
    (id, entries)
}
