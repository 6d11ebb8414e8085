//! [`StoreHandle`]: the cloneable async front of a store's actor, and its [`KvStore`] and
//! [`SyncStore`] implementations. Signatures of received entries are verified here, on
//! blocking threads, before the entries reach the actor.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lattice_core::{
    Attestation, AuthorId, ChainError, EntryError, Head, Hlc, Identity, Op, StoreId, SyncState, VerifiedEntry,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::actor::{self, Command, ReadCommand, WriteCommand};
use crate::error::{IngestError, StoreError};
use crate::missing::{History, MissingEntries};
use crate::store::Store;
use crate::traits::{KvStore, SyncStore, Verified};
use crate::types::{
    Authorisation, Committed, GapInfo, IngestOutcome, KeyProof, KvPairs, KvValues, ProofBytes, StoreConfig,
    StoreStatus, Transaction, Value, Version, WatchEvent, WriteReceipt,
};

/// The async handle to a store. Clone it freely; every clone talks to the same actor.
/// When the last clone is dropped, the actor checkpoints and stops.
#[derive(Clone)]
pub struct StoreHandle {
    commands: mpsc::Sender<Command>,
    store_id: StoreId,
    author: AuthorId,
    gaps: broadcast::Sender<GapInfo>,
    commits: broadcast::Sender<Arc<Committed>>,
    replayed_on_open: u64,
    generation: Arc<AtomicU64>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Where each opened store's [`StoreHandle::generation`] starts: a store opened again never
/// repeats a value an earlier opening of it gave.
static GENERATION_BASE: AtomicU64 = AtomicU64::new(0);

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreHandle({})", self.store_id)
    }
}

impl StoreHandle {
    /// Opens the store in `dir` (creating it if needed) and starts its actor thread.
    /// Blocking: repairs and replays log tails before it returns.
    pub fn open(dir: &Path, store_id: StoreId, identity: Identity, config: StoreConfig) -> Result<Self, StoreError> {
        let author = identity.author();
        let store = Store::open(dir, store_id, identity, config)?;
        let gaps = store.gaps.clone();
        let commits = store.commits.clone();
        let replayed_on_open = store.replayed;
        let generation = Arc::new(AtomicU64::new(GENERATION_BASE.fetch_add(1, Ordering::Relaxed) << 40));
        let (tx, thread) = actor::spawn(store, dir, generation.clone())?;
        Ok(StoreHandle {
            commands: tx,
            store_id,
            author,
            gaps,
            commits,
            replayed_on_open,
            generation,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// A number that changes whenever the store's entries may have (each group commit bumps
    /// it once its logs are durable, before its writers are answered). A reader that loads it,
    /// then reads the store, sees every commit up to that number; so state derived from the
    /// store can be kept and reused while the number stays the same.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The store this handle talks to.
    pub fn store_id(&self) -> StoreId {
        self.store_id
    }

    /// How many log records this open replayed into the index: 0 after a clean close, more
    /// after a crash (the records written since the last durable index commit).
    pub fn replayed_on_open(&self) -> u64 {
        self.replayed_on_open
    }

    /// The local author (this node's identity) that signs writes.
    pub fn author(&self) -> AuthorId {
        self.author
    }

    async fn request<T, C: Into<Command>>(&self, make: impl FnOnce(oneshot::Sender<T>) -> C) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx).into()).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// The changes of visible values of keys matching `pattern` from now on, as
    /// [`KvStore::watch`] without its initial scan. A receiver that falls
    /// [`WATCH_CAPACITY`](crate::WATCH_CAPACITY) events behind is dropped (its channel closes).
    pub async fn subscribe(&self, pattern: &str) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
        let pattern = regex::bytes::Regex::new(pattern).map_err(|e| StoreError::InvalidPattern(e.to_string()))?;
        self.request(|reply| ReadCommand::Subscribe { pattern, reply }).await?
    }

    /// The applied entries with an HLC above `since`, in (HLC, author) order, read from the logs
    /// as committed now (see [`History`]). Asked after [`subscribe`](Self::subscribe), it holds
    /// every entry committed before the subscription's first event.
    pub async fn history(&self, since: Hlc) -> Result<History, StoreError> {
        self.request(|reply| ReadCommand::History { since, reply }).await?
    }

    /// Checkpoints the index durably and stops the actor (for every clone). Returns once the
    /// files are closed, so the directory can be reopened or moved right away.
    pub async fn close(&self) -> Result<(), StoreError> {
        let result = match self.request(Command::Close).await {
            Ok(r) => r,
            Err(StoreError::Closed) => Ok(()),
            Err(e) => Err(e),
        };
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        result
    }

    /// Counts of entries, authors, live keys, orphans and conflicts, as committed now.
    pub async fn status(&self) -> Result<StoreStatus, StoreError> {
        self.request(|reply| ReadCommand::Status { reply }).await?
    }

    /// A Merkle proof of `key` (present or absent) against the current root, with this node's
    /// signed attestation of that root (DESIGN.md §10).
    pub async fn prove(&self, key: &[u8]) -> Result<KeyProof, StoreError> {
        let key = key.to_vec();
        self.request(|reply| ReadCommand::Prove { key, reply }).await?
    }

    /// Every version of `key` this node holds (each applied entry that touched it), oldest
    /// first, with which are heads now (DESIGN.md §11).
    pub async fn versions(&self, key: &[u8]) -> Result<Vec<Version>, StoreError> {
        let key = key.to_vec();
        self.request(|reply| ReadCommand::Versions { key, reply }).await?
    }

    /// The version of `key` that won as of `at` (the last at or before it), if any.
    pub async fn version_at(&self, key: &[u8], at: Hlc) -> Result<Option<Version>, StoreError> {
        let key = key.to_vec();
        self.request(|reply| ReadCommand::VersionAt { key, at, reply }).await?
    }

    /// Drops orphans older than the configured TTL now (the actor also does it periodically).
    pub async fn expire_orphans(&self) -> Result<u64, StoreError> {
        self.request(|reply| WriteCommand::ExpireOrphans { reply }).await?
    }

    /// Sets who may write into this store (`None`, the default: everyone), as the control
    /// plane says; persisted in state.db, so a reopen keeps it. Entries of authors in neither
    /// set wait in orphans.db ([`IngestOutcome::Unauthorised`]) until a later call admits their
    /// author, or the orphan TTL drops them; their entries applied before stay. A removed
    /// author's entries past its cut-off are refused ([`IngestOutcome::Refused`]): stored and
    /// served, never applied. If the change moves an author's limit across entries this store
    /// holds, the store recomputes its state from its logs before this returns, so every node
    /// ends with the same state whenever it learned the policy. This node's own author is always
    /// admitted; past a cut-off of its own, local writes fail ([`StoreError::Removed`]).
    /// Returns how many held entries this call applied.
    pub async fn set_authorisation(&self, authorisation: Option<Authorisation>) -> Result<u64, StoreError> {
        self.request(|reply| WriteCommand::Authorise { authorisation, reply }).await?
    }

    /// Ingests one entry (see [`SyncStore::ingest_batch`]).
    pub async fn ingest(&self, entry: Vec<u8>) -> Result<IngestOutcome, IngestError> {
        let mut results = self.ingest_batch(vec![entry]).await?;
        results.pop().unwrap_or(Err(IngestError::Store(StoreError::Closed)))
    }
}

impl KvStore for StoreHandle {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.value(key).await?.map(|v| v.to_bytes()))
    }
    async fn value(&self, key: &[u8]) -> Result<Option<Value>, StoreError> {
        let key = key.to_vec();
        self.request(|reply| ReadCommand::Get { key, reply }).await?
    }
    async fn get_heads(&self, key: &[u8]) -> Result<Vec<Head>, StoreError> {
        let key = key.to_vec();
        self.request(|reply| ReadCommand::Heads { key, reply }).await?
    }
    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<WriteReceipt, StoreError> {
        self.batch(vec![Op::Put { key, value }]).await
    }
    async fn delete(&self, key: Vec<u8>) -> Result<Option<WriteReceipt>, StoreError> {
        self.request(|reply| WriteCommand::Delete { key, reply }).await?
    }
    async fn transact(&self, transaction: Transaction) -> Result<WriteReceipt, StoreError> {
        self.request(|reply| WriteCommand::Transact { transaction, reply }).await?
    }
    async fn list(&self, prefix: &[u8], after: Option<Vec<u8>>, limit: usize) -> Result<KvPairs, StoreError> {
        let items = self.list_values(prefix, after, limit).await?;
        Ok(items.into_iter().map(|(k, v)| (k, v.to_bytes())).collect())
    }
    async fn list_values(&self, prefix: &[u8], after: Option<Vec<u8>>, limit: usize) -> Result<KvValues, StoreError> {
        let prefix = prefix.to_vec();
        self.request(|reply| ReadCommand::List { prefix, after, limit, reply }).await?
    }
    async fn watch(&self, pattern: &str) -> Result<(KvPairs, mpsc::Receiver<WatchEvent>), StoreError> {
        let pattern = regex::bytes::Regex::new(pattern).map_err(|e| StoreError::InvalidPattern(e.to_string()))?;
        self.request(|reply| ReadCommand::Watch { pattern, reply }).await?
    }
}

impl SyncStore for StoreHandle {
    type Missing = MissingEntries;
    fn store_id(&self) -> StoreId {
        self.store_id
    }
    async fn verify(&self, entries: Vec<Vec<u8>>) -> Result<Verified, StoreError> {
        verify_in_parallel(entries).await
    }
    async fn ingest_verified(&self, decoded: Verified) -> Result<Vec<Result<IngestOutcome, IngestError>>, StoreError> {
        let mut results: Vec<Option<Result<IngestOutcome, IngestError>>> = Vec::with_capacity(decoded.len());
        let mut valid = Vec::new();
        for d in decoded {
            match d {
                Ok(e) => {
                    valid.push(e);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(IngestError::Invalid(e)))),
            }
        }
        let mut applied = if valid.is_empty() {
            Vec::new()
        } else {
            self.request(|reply| WriteCommand::Ingest { entries: valid, reply }).await?
        }
        .into_iter();
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| applied.next().unwrap_or(Err(IngestError::Store(StoreError::Closed)))))
            .collect())
    }
    async fn attestation(&self) -> Result<(Attestation, SyncState), StoreError> {
        self.request(|reply| ReadCommand::Attest { reply }).await?
    }
    async fn sync_state(&self) -> Result<SyncState, StoreError> {
        self.request(|reply| ReadCommand::SyncState { reply }).await?
    }
    async fn missing_entries(&self, remote: SyncState) -> Result<MissingEntries, StoreError> {
        self.request(|reply| ReadCommand::Missing { remote, reply }).await?
    }
    fn subscribe_gaps(&self) -> broadcast::Receiver<GapInfo> {
        self.gaps.subscribe()
    }
    fn subscribe_commits(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.commits.subscribe()
    }
    async fn orphan_count(&self) -> Result<u64, StoreError> {
        Ok(self.status().await?.orphans)
    }
    async fn ingest_proof(&self, first: Vec<u8>, second: Vec<u8>) -> Result<bool, IngestError> {
        let mut verified = verify_in_parallel(vec![first, second]).await?.into_iter();
        let (Some(first), Some(second)) = (verified.next(), verified.next()) else {
            return Err(StoreError::Closed.into());
        };
        let (first, second) = (first?, second?);
        check_proof(self.store_id, &first, &second)?;
        let pair = Box::new((first, second));
        Ok(self.request(|reply| WriteCommand::Proof { pair, reply }).await??)
    }
    async fn proofs(&self) -> Result<Vec<ProofBytes>, StoreError> {
        self.request(|reply| ReadCommand::Proofs { reply }).await?
    }
}

/// Whether two verified entries prove that their author forked its chain in `store`: one
/// author, this store, one seq, two different entries.
fn check_proof(store: StoreId, first: &VerifiedEntry, second: &VerifiedEntry) -> Result<(), IngestError> {
    for entry in [first, second] {
        if entry.store_id() != store {
            return Err(ChainError::WrongStore { expected: store, got: entry.store_id() }.into());
        }
    }
    if first.author() != second.author() {
        return Err(IngestError::NotAProof("the entries are by different authors"));
    }
    if first.seq() != second.seq() {
        return Err(IngestError::NotAProof("the entries are at different seqs"));
    }
    if first.hash() == second.hash() {
        return Err(IngestError::NotAProof("the two entries are one and the same"));
    }
    Ok(())
}

/// Below this many entries, one thread verifies the whole batch.
const PARALLEL_VERIFY_MIN: usize = 256;

/// Decodes and verifies entries on blocking threads, one chunk per core: signature checks are
/// the cost of ingest, and they are independent.
async fn verify_in_parallel(mut entries: Vec<Vec<u8>>) -> Result<Vec<Result<VerifiedEntry, EntryError>>, StoreError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks =
        if entries.len() < PARALLEL_VERIFY_MIN { 1 } else { cores.min(entries.len() / (PARALLEL_VERIFY_MIN / 2)) };
    let chunk_len = entries.len().div_ceil(chunks.max(1)).max(1);
    let mut parts = Vec::new();
    while !entries.is_empty() {
        let rest = entries.split_off(chunk_len.min(entries.len()));
        let chunk = std::mem::replace(&mut entries, rest);
        parts.push(tokio::task::spawn_blocking(move || VerifiedEntry::decode_batch(chunk)));
    }
    let mut out = Vec::new();
    for part in parts {
        out.extend(part.await.map_err(|_| StoreError::Closed)?);
    }
    Ok(out)
}
