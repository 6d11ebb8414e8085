//! The store actor: a dedicated thread that owns the [`Store`] and serves commands from a tokio
//! channel.
//!
//! It drains everything queued, runs all writes in one transaction, fsyncs each touched log
//! once, answers the writers (group commit), then commits the index once. Reads are served by
//! the same thread after that commit, so they see every acknowledged write. When the channel
//! closes (the last [`StoreHandle`](crate::StoreHandle) dropped) or a close is requested, the
//! actor writes a durable checkpoint, closes the files and stops, so the next open replays
//! nothing.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lattice_core::{Attestation, Head, Hlc, SyncState, VerifiedEntry};
use tokio::sync::{mpsc, oneshot};

use crate::error::{IngestError, StoreError};
use crate::missing::{History, MissingEntries};
use crate::store::Store;
use crate::types::{
    Authorisation, IngestOutcome, KeyProof, KvPairs, KvValues, ProofBytes, StoreStatus, Transaction, Value, Version,
    WatchEvent, WriteReceipt,
};

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

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
/// The answer to an ingest: one result per entry, in order.
pub(crate) type IngestReply = oneshot::Sender<Vec<Result<IngestOutcome, IngestError>>>;

/// What the actor is asked to do, by kind: a batch runs its writes in one transaction, then
/// answers its reads from the committed state, then stops if a close was among them.
pub(crate) enum Command {
    Write(WriteCommand),
    Read(ReadCommand),
    Close(Reply<()>),
}

/// The commands that change the store (all of a batch's share its group commit).
pub(crate) enum WriteCommand {
    Transact {
        transaction: Transaction,
        reply: Reply<WriteReceipt>,
    },
    Delete {
        key: Vec<u8>,
        reply: Reply<Option<WriteReceipt>>,
    },
    Ingest {
        entries: Vec<VerifiedEntry>,
        reply: IngestReply,
    },
    ExpireOrphans {
        reply: Reply<u64>,
    },
    Authorise {
        authorisation: Option<Authorisation>,
        reply: Reply<u64>,
    },
    /// Two verified entries that fork their author's chain (checked by the handle); boxed, as
    /// the largest command by far.
    Proof {
        pair: Box<(VerifiedEntry, VerifiedEntry)>,
        reply: Reply<bool>,
    },
}

/// The commands answered from committed state.
pub(crate) enum ReadCommand {
    Get { key: Vec<u8>, reply: Reply<Option<Value>> },
    Heads { key: Vec<u8>, reply: Reply<Vec<Head>> },
    List { prefix: Vec<u8>, after: Option<Vec<u8>>, limit: usize, reply: Reply<KvValues> },
    Status { reply: Reply<StoreStatus> },
    SyncState { reply: Reply<SyncState> },
    Missing { remote: SyncState, reply: Reply<MissingEntries> },
    Proofs { reply: Reply<Vec<ProofBytes>> },
    Watch { pattern: regex::bytes::Regex, reply: Reply<(KvPairs, mpsc::Receiver<WatchEvent>)> },
    Subscribe { pattern: regex::bytes::Regex, reply: Reply<mpsc::Receiver<WatchEvent>> },
    History { since: Hlc, reply: Reply<History> },
    Attest { reply: Reply<(Attestation, SyncState)> },
    Prove { key: Vec<u8>, reply: Reply<KeyProof> },
    Versions { key: Vec<u8>, reply: Reply<Vec<Version>> },
    VersionAt { key: Vec<u8>, at: Hlc, reply: Reply<Option<Version>> },
}

impl From<WriteCommand> for Command {
    fn from(command: WriteCommand) -> Self {
        Command::Write(command)
    }
}

impl From<ReadCommand> for Command {
    fn from(command: ReadCommand) -> Self {
        Command::Read(command)
    }
}

impl WriteCommand {
    /// Answers the command with the error `err` makes.
    fn fail(self, err: impl Fn() -> StoreError) {
        match self {
            WriteCommand::Transact { reply, .. } => drop(reply.send(Err(err()))),
            WriteCommand::Delete { reply, .. } => drop(reply.send(Err(err()))),
            WriteCommand::ExpireOrphans { reply } | WriteCommand::Authorise { reply, .. } => {
                drop(reply.send(Err(err())))
            }
            WriteCommand::Proof { reply, .. } => drop(reply.send(Err(err()))),
            WriteCommand::Ingest { entries, reply } => {
                drop(reply.send(entries.iter().map(|_| Err(IngestError::Store(err()))).collect()))
            }
        }
    }
}

impl ReadCommand {
    /// Answers the command with the error `err` makes.
    fn fail(self, err: impl Fn() -> StoreError) {
        match self {
            ReadCommand::Get { reply, .. } => drop(reply.send(Err(err()))),
            ReadCommand::Heads { reply, .. } => drop(reply.send(Err(err()))),
            ReadCommand::List { reply, .. } => drop(reply.send(Err(err()))),
            ReadCommand::Status { reply } => drop(reply.send(Err(err()))),
            ReadCommand::SyncState { reply } => drop(reply.send(Err(err()))),
            ReadCommand::Missing { reply, .. } => drop(reply.send(Err(err()))),
            ReadCommand::Proofs { reply } => drop(reply.send(Err(err()))),
            ReadCommand::Watch { reply, .. } => drop(reply.send(Err(err()))),
            ReadCommand::Subscribe { reply, .. } => drop(reply.send(Err(err()))),
            ReadCommand::History { reply, .. } => drop(reply.send(Err(err()))),
            ReadCommand::Attest { reply } => drop(reply.send(Err(err()))),
            ReadCommand::Prove { reply, .. } => drop(reply.send(Err(err()))),
            ReadCommand::Versions { reply, .. } => drop(reply.send(Err(err()))),
            ReadCommand::VersionAt { reply, .. } => drop(reply.send(Err(err()))),
        }
    }
}

/// A reply held back until the group commit it belongs to is durable.
enum Pending {
    Write(Reply<WriteReceipt>, Result<WriteReceipt, StoreError>),
    Delete(Reply<Option<WriteReceipt>>, Result<Option<WriteReceipt>, StoreError>),
    Ingest(IngestReply, Vec<Result<IngestOutcome, IngestError>>),
    Count(Reply<u64>, Result<u64, StoreError>),
    Flag(Reply<bool>, Result<bool, StoreError>),
}

impl Pending {
    /// Answers the caller; if the commit failed, every success becomes that failure.
    fn answer(self, failure: Option<&str>) {
        match self {
            Pending::Write(reply, result) => settle(reply, result, failure),
            Pending::Delete(reply, result) => settle(reply, result, failure),
            Pending::Count(reply, result) => settle(reply, result, failure),
            Pending::Flag(reply, result) => settle(reply, result, failure),
            Pending::Ingest(reply, results) => {
                let results = match failure {
                    None => results,
                    // A duplicate was held before this commit, so it stays true.
                    Some(reason) => results
                        .into_iter()
                        .map(|res| match res {
                            Ok(IngestOutcome::Duplicate) => Ok(IngestOutcome::Duplicate),
                            Ok(_) => Err(IngestError::Store(StoreError::Aborted(reason.to_string()))),
                            Err(e) => Err(e),
                        })
                        .collect(),
                };
                let _ = reply.send(results);
            }
        }
    }
}

/// Sends `result`, or the commit's `failure` in place of a success.
fn settle<T>(reply: Reply<T>, result: Result<T, StoreError>, failure: Option<&str>) {
    let result = match (failure, result) {
        (Some(reason), Ok(_)) => Err(StoreError::Aborted(reason.to_string())),
        (_, result) => result,
    };
    let _ = reply.send(result);
}

struct Watcher {
    pattern: regex::bytes::Regex,
    events: mpsc::Sender<WatchEvent>,
}

/// Starts the actor thread of `store` (opened from `dir`); it runs until the returned sender and
/// all its clones are dropped, or a [`Command::Close`] arrives.
pub(crate) fn spawn(
    store: Store,
    dir: &Path,
    generation: Arc<AtomicU64>,
) -> Result<(mpsc::Sender<Command>, std::thread::JoinHandle<()>), StoreError> {
    let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
    let name = format!("store-{}", &store.store_id().to_string()[..8]);
    let actor = Actor { store, commands: rx, watchers: Vec::new(), last_expiry: Instant::now(), generation };
    let thread = std::thread::Builder::new().name(name).spawn(move || actor.run()).map_err(StoreError::io(dir))?;
    Ok((tx, thread))
}

struct Actor {
    store: Store,
    commands: mpsc::Receiver<Command>,
    watchers: Vec<Watcher>,
    last_expiry: Instant,
    /// Bumped by every group commit once its logs are durable, before any writer is answered
    /// (see [`StoreHandle::generation`](crate::StoreHandle::generation)).
    generation: Arc<AtomicU64>,
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
    fn run_batch(&mut self, batch: Vec<Command>) -> Option<Reply<()>> {
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        let mut close = None;
        for command in batch {
            match command {
                Command::Write(write) => writes.push(write),
                Command::Read(read) => reads.push(read),
                Command::Close(reply) => close = Some(reply),
            }
        }
        if self.last_expiry.elapsed() >= EXPIRY_INTERVAL {
            // Nobody waits for this reply: expiry rides along with the batch.
            self.last_expiry = Instant::now();
            let (reply, _) = oneshot::channel();
            writes.push(WriteCommand::ExpireOrphans { reply });
        }
        if let Err(StoreError::Stopped(reason)) = self.store.check_running() {
            // Nothing is served from an index that does not match the logs (see `Stopped`).
            let stopped = || StoreError::Stopped(reason.clone());
            writes.into_iter().for_each(|write| write.fail(stopped));
            reads.into_iter().for_each(|read| read.fail(stopped));
            return close;
        }
        if !writes.is_empty() {
            self.run_writes(writes);
        }
        for read in reads {
            self.read(read);
        }
        close
    }

    /// Runs the writes of a batch in one transaction (each table opened once) and commits it.
    fn run_writes(&mut self, writes: Vec<WriteCommand>) {
        let local_only =
            writes.iter().all(|c| matches!(c, WriteCommand::Transact { .. } | WriteCommand::Delete { .. }));
        let mut tx = match self.store.begin(!local_only) {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string();
                writes.into_iter().for_each(|write| write.fail(|| StoreError::Aborted(msg.clone())));
                return;
            }
        };
        let mut pending = Vec::with_capacity(writes.len());
        // Answered only once the index reflects the new policy (see `Store::settle`).
        let mut policy_replies = Vec::new();
        let opened = match tx.split() {
            Ok((mut t, w)) => {
                if !local_only {
                    // Received entries arrive in random hash order; their index rows go in sorted.
                    t.defer_index_writes();
                }
                for write in writes {
                    pending.push(match write {
                        WriteCommand::Transact { transaction, reply } => {
                            Pending::Write(reply, self.store.local_write(&mut t, w, transaction))
                        }
                        WriteCommand::Delete { key, reply } => {
                            Pending::Delete(reply, self.store.local_delete(&mut t, w, key))
                        }
                        WriteCommand::Ingest { entries, reply } => {
                            let results = entries.into_iter().map(|e| self.store.ingest(&mut t, w, e)).collect();
                            Pending::Ingest(reply, results)
                        }
                        WriteCommand::ExpireOrphans { reply } => {
                            Pending::Count(reply, self.store.expire_orphans(&mut t))
                        }
                        WriteCommand::Authorise { authorisation, reply } => {
                            let result = self.store.set_authorisation(&mut t, w, authorisation);
                            policy_replies.push(Pending::Count(reply, result));
                            continue;
                        }
                        WriteCommand::Proof { pair, reply } => {
                            let (first, second) = *pair;
                            let result = self.store.add_proof(&mut t, w, first, second);
                            policy_replies.push(Pending::Flag(reply, result));
                            continue;
                        }
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
            writes.into_iter().for_each(|write| write.fail(|| StoreError::Aborted(msg.clone())));
            return;
        }
        let mut failure = None;
        // Writers are answered as soon as their logs are durable; the index commit that follows
        // overlaps their next request, which this thread serves after it (so reads still see
        // every acknowledged write).
        let mut waiting = Some(pending);
        let (watchers, generation) = (&mut self.watchers, &self.generation);
        let committed = self.store.commit_acknowledging(tx, |events| {
            generation.fetch_add(1, Ordering::Release);
            notify(watchers, events);
            waiting.take().into_iter().flatten().for_each(|p| p.answer(None));
        });
        if let Err(e) = committed {
            tracing::error!(store = %self.store.store_id(), error = %e, "group commit failed");
            let msg = e.to_string();
            waiting.into_iter().flatten().for_each(|p| p.answer(Some(&msg)));
            failure = Some(msg);
        }
        if self.store.needs_settling() && self.store.check_running().is_ok() {
            match self.store.settle(!self.watchers.is_empty()) {
                Ok(events) => notify(&mut self.watchers, events),
                Err(e) => failure = failure.or(Some(e.to_string())),
            }
        }
        // A policy lives in state.db alone: if its commit failed, it is not in force.
        if let Err(e) = self.store.check_running() {
            failure = failure.or(Some(e.to_string()));
        }
        policy_replies.into_iter().for_each(|p| p.answer(failure.as_deref()));
    }

    fn read(&mut self, read: ReadCommand) {
        let s = &mut self.store;
        match read {
            // These three settle the Merkle tree first (a write of their own when leaves wait).
            ReadCommand::Status { reply } => drop(reply.send(s.status())),
            ReadCommand::Attest { reply } => drop(reply.send(s.attestation())),
            ReadCommand::Prove { key, reply } => drop(reply.send(s.prove(&key))),
            ReadCommand::Get { key, reply } => drop(reply.send(s.value(&key))),
            ReadCommand::Heads { key, reply } => drop(reply.send(s.get_heads(&key))),
            ReadCommand::Versions { key, reply } => drop(reply.send(s.versions(&key))),
            ReadCommand::VersionAt { key, at, reply } => drop(reply.send(s.version_at(&key, at))),
            ReadCommand::List { prefix, after, limit, reply } => {
                drop(reply.send(s.list(&prefix, after.as_deref(), limit)))
            }
            ReadCommand::SyncState { reply } => drop(reply.send(s.sync_state())),
            ReadCommand::Missing { remote, reply } => drop(reply.send(s.missing_entries(&remote))),
            ReadCommand::Proofs { reply } => drop(reply.send(s.proofs())),
            ReadCommand::Watch { pattern, reply } => {
                let initial = s.scan_matching(&pattern);
                let result = initial.map(|initial| {
                    let (events, rx) = mpsc::channel(WATCH_CAPACITY);
                    self.watchers.push(Watcher { pattern, events });
                    (initial, rx)
                });
                let _ = reply.send(result);
            }
            ReadCommand::Subscribe { pattern, reply } => {
                let (events, rx) = mpsc::channel(WATCH_CAPACITY);
                self.watchers.push(Watcher { pattern, events });
                let _ = reply.send(Ok(rx));
            }
            ReadCommand::History { since, reply } => drop(reply.send(s.history(since))),
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
