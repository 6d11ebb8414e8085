//! The store actor and its handle.
//!
//! A dedicated thread owns the [`Store`](crate::store::Store) and serves commands from a tokio
//! channel. It drains everything queued, runs all writes in one transaction, fsyncs each touched
//! log once, answers the writers (group commit), then commits the index once. Reads are served
//! by the same thread after that commit, so they see every acknowledged write.
//!
//! [`StoreHandle`] is the cloneable async front. When the last handle is dropped (or
//! [`StoreHandle::close`] is called) the actor writes a durable checkpoint, closes the files and
//! stops, so the next open replays nothing.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lattice_core::{AuthorId, EntryError, Head, Identity, Op, StoreId, SyncState, VerifiedEntry};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::{IngestError, StoreError};
use crate::missing::MissingEntries;
use crate::store::Store;
use crate::types::{Committed, GapInfo, IngestOutcome, KvPairs, StoreConfig, StoreStatus, WatchEvent, WriteReceipt};

/// Commands queued before the sender waits.
const COMMAND_CAPACITY: usize = 4096;
/// Commands folded into one group commit at most.
const MAX_BATCH: usize = 1024;
/// How long the actor polls for a next command before it sleeps (see `Actor::next_command`).
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);
/// Events buffered per watcher; a watcher that falls this far behind is dropped (its channel
/// closes) rather than slowing the store down.
pub const WATCH_CAPACITY: usize = 4096;
/// How often the actor looks for expired orphans (on its next batch).
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Write { ops: Vec<Op>, reply: Reply<WriteReceipt> },
    Delete { key: Vec<u8>, reply: Reply<Option<WriteReceipt>> },
    Ingest { entries: Vec<VerifiedEntry>, reply: oneshot::Sender<Vec<Result<IngestOutcome, IngestError>>> },
    Get { key: Vec<u8>, reply: Reply<Option<Vec<u8>>> },
    Heads { key: Vec<u8>, reply: Reply<Vec<Head>> },
    List { prefix: Vec<u8>, after: Option<Vec<u8>>, limit: usize, reply: Reply<KvPairs> },
    Status { reply: Reply<StoreStatus> },
    SyncState { reply: Reply<SyncState> },
    Missing { remote: SyncState, reply: Reply<MissingEntries> },
    Watch { pattern: regex::bytes::Regex, reply: Reply<(KvPairs, mpsc::Receiver<WatchEvent>)> },
    ExpireOrphans { reply: Reply<u64> },
    Authorise { authors: Option<HashSet<AuthorId>>, reply: Reply<u64> },
    Close { reply: oneshot::Sender<Result<(), StoreError>> },
}

/// A reply held back until the group commit it belongs to is durable.
enum Pending {
    Write(Reply<WriteReceipt>, Result<WriteReceipt, StoreError>),
    Delete(Reply<Option<WriteReceipt>>, Result<Option<WriteReceipt>, StoreError>),
    Ingest(oneshot::Sender<Vec<Result<IngestOutcome, IngestError>>>, Vec<Result<IngestOutcome, IngestError>>),
    Count(Reply<u64>, Result<u64, StoreError>),
}

impl Pending {
    /// Answers the caller; if the commit failed, every success becomes that failure.
    fn answer(self, failure: Option<&str>) {
        let fail = || StoreError::Aborted(failure.unwrap_or_default().to_string());
        match self {
            Pending::Write(r, res) => drop(r.send(if failure.is_some() && res.is_ok() { Err(fail()) } else { res })),
            Pending::Delete(r, res) => drop(r.send(if failure.is_some() && res.is_ok() { Err(fail()) } else { res })),
            Pending::Count(r, res) => drop(r.send(if failure.is_some() && res.is_ok() { Err(fail()) } else { res })),
            Pending::Ingest(r, results) => {
                let results = match failure {
                    None => results,
                    Some(_) => results
                        .into_iter()
                        .map(|res| match res {
                            Ok(IngestOutcome::Duplicate) => Ok(IngestOutcome::Duplicate),
                            Ok(_) => Err(IngestError::Store(fail())),
                            Err(e) => Err(e),
                        })
                        .collect(),
                };
                let _ = r.send(results);
            }
        }
    }
}

struct Watcher {
    pattern: regex::bytes::Regex,
    events: mpsc::Sender<WatchEvent>,
}

struct Actor {
    store: Store,
    commands: mpsc::Receiver<Command>,
    watchers: Vec<Watcher>,
    last_expiry: Instant,
}

impl Actor {
    fn run(mut self) {
        let mut close_reply = None;
        while let Some(first) = self.next_command() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.commands.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            if let Some(reply) = self.run_batch(batch) {
                close_reply = Some(reply);
                break;
            }
        }
        let result = self.store.checkpoint();
        if let Err(e) = &result {
            tracing::error!(store = %self.store.store_id(), error = %e, "final checkpoint failed; the next open replays the logs");
        }
        // Drop the databases and files before answering, so a reopen right after succeeds.
        drop(self);
        if let Some(reply) = close_reply {
            let _ = reply.send(result);
        }
    }

    /// The next command: polled for a moment before the thread sleeps, because a caller that
    /// awaits each answer (one task doing gets or puts in a loop) sends its next command a few
    /// microseconds after the answer, and waking a sleeping thread costs tens of microseconds on
    /// a virtual machine.
    fn next_command(&mut self) -> Option<Command> {
        let deadline = Instant::now() + SPIN_BEFORE_SLEEP;
        loop {
            match self.commands.try_recv() {
                Ok(command) => return Some(command),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) if Instant::now() < deadline => std::thread::yield_now(),
                Err(mpsc::error::TryRecvError::Empty) => return self.commands.blocking_recv(),
            }
        }
    }

    /// Runs one group commit. Returns the close reply if a close was requested.
    fn run_batch(&mut self, mut batch: Vec<Command>) -> Option<oneshot::Sender<Result<(), StoreError>>> {
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        let mut close = None;
        if self.last_expiry.elapsed() >= EXPIRY_INTERVAL {
            // Nobody waits for this reply: expiry rides along with the batch.
            self.last_expiry = Instant::now();
            let (reply, _) = oneshot::channel();
            batch.push(Command::ExpireOrphans { reply });
        }
        if let Err(StoreError::Stopped(reason)) = self.store.check_running() {
            // Nothing is served from an index that does not match the logs (see `Stopped`).
            for cmd in batch {
                match cmd {
                    Command::Close { reply } => close = Some(reply),
                    other => Self::fail(other, || StoreError::Stopped(reason.clone())),
                }
            }
            return close;
        }
        for cmd in batch {
            match cmd {
                Command::Write { .. }
                | Command::Delete { .. }
                | Command::Ingest { .. }
                | Command::ExpireOrphans { .. }
                | Command::Authorise { .. } => writes.push(cmd),
                Command::Close { reply } => close = Some(reply),
                other => reads.push(other),
            }
        }
        if !writes.is_empty() {
            self.run_writes(writes);
        }
        for cmd in reads {
            self.read(cmd);
        }
        close
    }

    /// Runs the writes of a batch in one transaction (each table opened once) and commits it.
    fn run_writes(&mut self, writes: Vec<Command>) {
        let local_only = writes.iter().all(|c| matches!(c, Command::Write { .. } | Command::Delete { .. }));
        let mut tx = match self.store.begin(!local_only) {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string();
                writes.into_iter().for_each(|cmd| Self::fail(cmd, || StoreError::Aborted(msg.clone())));
                return;
            }
        };
        let mut pending = Vec::with_capacity(writes.len());
        let opened = match tx.split() {
            Ok((mut t, w)) => {
                if !local_only {
                    // Received entries arrive in random hash order; their index rows go in sorted.
                    t.defer_index_writes();
                }
                for cmd in writes {
                    pending.push(match cmd {
                        Command::Write { ops, reply } => Pending::Write(reply, self.store.local_write(&mut t, w, ops)),
                        Command::Delete { key, reply } => {
                            Pending::Delete(reply, self.store.local_delete(&mut t, w, key))
                        }
                        Command::Ingest { entries, reply } => {
                            let results = entries.into_iter().map(|e| self.store.ingest(&mut t, w, e)).collect();
                            Pending::Ingest(reply, results)
                        }
                        Command::ExpireOrphans { reply } => Pending::Count(reply, self.store.expire_orphans(&mut t)),
                        Command::Authorise { authors, reply } => {
                            Pending::Count(reply, self.store.set_authorised(&mut t, w, authors))
                        }
                        _ => continue,
                    });
                }
                if let Err(e) = t.flush_deferred() {
                    w.poisoned = Some(e.to_string());
                }
                Ok(())
            }
            Err(e) => Err((e.to_string(), writes)),
        };
        if let Err((msg, writes)) = opened {
            self.store.abort(tx);
            writes.into_iter().for_each(|cmd| Self::fail(cmd, || StoreError::Aborted(msg.clone())));
            return;
        }
        // Writers are answered as soon as their logs are durable; the index commit that follows
        // overlaps their next request, which this thread serves after it (so reads still see
        // every acknowledged write).
        let mut waiting = Some(pending);
        let watchers = &mut self.watchers;
        let committed = self.store.commit_acknowledging(tx, |events| {
            notify(watchers, events);
            waiting.take().into_iter().flatten().for_each(|p| p.answer(None));
        });
        if let Err(e) = committed {
            tracing::error!(store = %self.store.store_id(), error = %e, "group commit failed");
            let msg = e.to_string();
            waiting.into_iter().flatten().for_each(|p| p.answer(Some(&msg)));
        }
    }

    /// Answers a command (any but `Close`) with the error `err` makes.
    fn fail(cmd: Command, err: impl Fn() -> StoreError) {
        match cmd {
            Command::Get { reply, .. } => drop(reply.send(Err(err()))),
            Command::Heads { reply, .. } => drop(reply.send(Err(err()))),
            Command::List { reply, .. } => drop(reply.send(Err(err()))),
            Command::Status { reply } => drop(reply.send(Err(err()))),
            Command::SyncState { reply } => drop(reply.send(Err(err()))),
            Command::Missing { reply, .. } => drop(reply.send(Err(err()))),
            Command::Watch { reply, .. } => drop(reply.send(Err(err()))),
            Command::Write { reply, .. } => drop(reply.send(Err(err()))),
            Command::Delete { reply, .. } => drop(reply.send(Err(err()))),
            Command::ExpireOrphans { reply } | Command::Authorise { reply, .. } => drop(reply.send(Err(err()))),
            Command::Ingest { entries, reply } => {
                drop(reply.send(entries.iter().map(|_| Err(IngestError::Store(err()))).collect()))
            }
            Command::Close { .. } => {}
        }
    }

    fn read(&mut self, cmd: Command) {
        let s = &self.store;
        match cmd {
            Command::Get { key, reply } => drop(reply.send(s.get(&key))),
            Command::Heads { key, reply } => drop(reply.send(s.get_heads(&key))),
            Command::List { prefix, after, limit, reply } => drop(reply.send(s.list(&prefix, after.as_deref(), limit))),
            Command::Status { reply } => drop(reply.send(s.status())),
            Command::SyncState { reply } => drop(reply.send(s.sync_state())),
            Command::Missing { remote, reply } => drop(reply.send(s.missing_entries(&remote))),
            Command::Watch { pattern, reply } => {
                let initial = s.scan_matching(&pattern);
                let result = initial.map(|initial| {
                    let (events, rx) = mpsc::channel(WATCH_CAPACITY);
                    self.watchers.push(Watcher { pattern, events });
                    (initial, rx)
                });
                let _ = reply.send(result);
            }
            _ => {}
        }
    }
}

/// Sends each watcher the events its pattern matches; drops watchers that are gone or too far
/// behind.
fn notify(watchers: &mut Vec<Watcher>, events: Vec<WatchEvent>) {
    if watchers.is_empty() || events.is_empty() {
        return;
    }
    watchers.retain(|w| {
        for event in events.iter().filter(|e| w.pattern.is_match(e.key())) {
            match w.events.try_send(event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(pattern = %w.pattern, "watcher fell {WATCH_CAPACITY} events behind; dropping it");
                    return false;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    });
}

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
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

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
        let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
        let actor = Actor { store, commands: rx, watchers: Vec::new(), last_expiry: Instant::now() };
        let thread = std::thread::Builder::new()
            .name(format!("store-{}", &store_id.to_string()[..8]))
            .spawn(move || actor.run())
            .map_err(StoreError::io(dir))?;
        Ok(StoreHandle {
            commands: tx,
            store_id,
            author,
            gaps,
            commits,
            replayed_on_open,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

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

    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Checkpoints the index durably and stops the actor (for every clone). Returns once the
    /// files are closed, so the directory can be reopened or moved right away.
    pub async fn close(&self) -> Result<(), StoreError> {
        let result = match self.request(|reply| Command::Close { reply }).await {
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

    pub async fn status(&self) -> Result<StoreStatus, StoreError> {
        self.request(|reply| Command::Status { reply }).await?
    }

    /// Drops orphans older than the configured TTL now (the actor also does it periodically).
    pub async fn expire_orphans(&self) -> Result<u64, StoreError> {
        self.request(|reply| Command::ExpireOrphans { reply }).await?
    }

    /// Admits only these authors' entries (`None`, the default: every author's). Entries of
    /// others wait in orphans.db ([`IngestOutcome::Unauthorised`]) until a later call admits
    /// their author, or the orphan TTL drops them. Entries already applied stay. This node's own
    /// author is always admitted. Returns how many held entries this call applied.
    pub async fn set_authorised(&self, authors: Option<HashSet<AuthorId>>) -> Result<u64, StoreError> {
        self.request(|reply| Command::Authorise { authors, reply }).await?
    }
}

/// Entries after decoding and signature verification, in order, each valid or why not.
pub type Verified = Vec<Result<VerifiedEntry, EntryError>>;

/// What applications may do with a store. The network layer never sees this trait.
pub trait KvStore: Send + Sync {
    /// The winning value, or `None` if absent or deleted.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// Every head of the key, winner first.
    fn get_heads(&self, key: &[u8]) -> impl Future<Output = Result<Vec<Head>, StoreError>> + Send;
    /// Durable once this returns.
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> impl Future<Output = Result<WriteReceipt, StoreError>> + Send;
    /// Writes a tombstone; `None` (and nothing written) if the key has no visible value.
    fn delete(&self, key: Vec<u8>) -> impl Future<Output = Result<Option<WriteReceipt>, StoreError>> + Send;
    /// Several operations as one entry, applied atomically.
    fn batch(&self, ops: Vec<Op>) -> impl Future<Output = Result<WriteReceipt, StoreError>> + Send;
    /// Visible keys with `prefix`, in key order, strictly after `after`, at most `limit`.
    fn list(
        &self,
        prefix: &[u8],
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> impl Future<Output = Result<KvPairs, StoreError>> + Send;
    /// The visible keys matching `pattern` now, and their changes from now on.
    fn watch(
        &self,
        pattern: &str,
    ) -> impl Future<Output = Result<(KvPairs, mpsc::Receiver<WatchEvent>), StoreError>> + Send;
}

/// What the network layer may do with a store: exchange entries, never write values.
pub trait SyncStore: Send + Sync + Clone + 'static {
    fn store_id(&self) -> StoreId;
    /// Verifies (signatures checked as one batch, off the actor thread) and ingests entries.
    /// One result per entry, in order.
    fn ingest_batch(
        &self,
        entries: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Vec<Result<IngestOutcome, IngestError>>, StoreError>> + Send {
        async move { self.ingest_verified(self.verify(entries).await?).await }
    }
    /// The first half of [`ingest_batch`](Self::ingest_batch): decode and verify signatures
    /// (in parallel chunks, off the actor thread). A pipeline verifies batch k+1 while batch k
    /// is applied.
    fn verify(&self, entries: Vec<Vec<u8>>) -> impl Future<Output = Result<Verified, StoreError>> + Send;
    /// The second half: apply verified entries in one group commit. One result per entry.
    fn ingest_verified(
        &self,
        entries: Verified,
    ) -> impl Future<Output = Result<Vec<Result<IngestOutcome, IngestError>>, StoreError>> + Send;
    /// Per author, the last entry held.
    fn sync_state(&self) -> impl Future<Output = Result<SyncState, StoreError>> + Send;
    /// The entries `remote` lacks, streamed from the logs (iterate on a blocking thread).
    fn missing_entries(&self, remote: SyncState) -> impl Future<Output = Result<MissingEntries, StoreError>> + Send;
    /// Gap events: an entry arrived whose predecessor or parent is missing.
    fn subscribe_gaps(&self) -> broadcast::Receiver<GapInfo>;
    /// Entries applied by each group commit (the local ones are what gossip broadcasts).
    fn subscribe_commits(&self) -> broadcast::Receiver<Arc<Committed>>;
    /// Entries waiting in the orphan buffer.
    fn orphan_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl KvStore for StoreHandle {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_vec();
        self.request(|reply| Command::Get { key, reply }).await?
    }
    async fn get_heads(&self, key: &[u8]) -> Result<Vec<Head>, StoreError> {
        let key = key.to_vec();
        self.request(|reply| Command::Heads { key, reply }).await?
    }
    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<WriteReceipt, StoreError> {
        self.batch(vec![Op::Put { key, value }]).await
    }
    async fn delete(&self, key: Vec<u8>) -> Result<Option<WriteReceipt>, StoreError> {
        self.request(|reply| Command::Delete { key, reply }).await?
    }
    async fn batch(&self, ops: Vec<Op>) -> Result<WriteReceipt, StoreError> {
        self.request(|reply| Command::Write { ops, reply }).await?
    }
    async fn list(&self, prefix: &[u8], after: Option<Vec<u8>>, limit: usize) -> Result<KvPairs, StoreError> {
        let prefix = prefix.to_vec();
        self.request(|reply| Command::List { prefix, after, limit, reply }).await?
    }
    async fn watch(&self, pattern: &str) -> Result<(KvPairs, mpsc::Receiver<WatchEvent>), StoreError> {
        let pattern = regex::bytes::Regex::new(pattern).map_err(|e| StoreError::InvalidPattern(e.to_string()))?;
        self.request(|reply| Command::Watch { pattern, reply }).await?
    }
}

impl SyncStore for StoreHandle {
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
            self.request(|reply| Command::Ingest { entries: valid, reply }).await?
        }
        .into_iter();
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| applied.next().unwrap_or(Err(IngestError::Store(StoreError::Closed)))))
            .collect())
    }
    async fn sync_state(&self) -> Result<SyncState, StoreError> {
        self.request(|reply| Command::SyncState { reply }).await?
    }
    async fn missing_entries(&self, remote: SyncState) -> Result<MissingEntries, StoreError> {
        self.request(|reply| Command::Missing { remote, reply }).await?
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

impl StoreHandle {
    /// Ingests one entry (see [`SyncStore::ingest_batch`]).
    pub async fn ingest(&self, entry: Vec<u8>) -> Result<IngestOutcome, IngestError> {
        let mut results = self.ingest_batch(vec![entry]).await?;
        results.pop().unwrap_or(Err(IngestError::Store(StoreError::Closed)))
    }
}
