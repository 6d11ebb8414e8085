//! The group commit: begin a batch, make its logs durable (one write and one fsync per touched
//! log), acknowledge it, then commit the index; abort and checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use lattice_core::{AuthorId, Kind};
use redb::{Durability, ReadableTable, WriteTransaction};

use super::batch::VisibleChange;
use super::kinds::value_of;
use super::{Store, Txn, Work};
use crate::error::StoreError;
use crate::log::{AuthorLog, LogError};
use crate::tables::{self, ClockRow, Counters, decode_heads};
use crate::types::{Change, Committed, Value, WatchEvent};

/// Open log writers kept at most; beyond it, untouched ones are closed after a commit.
const MAX_OPEN_LOGS: usize = 128;
/// Threads (the actor's included) that write and fsync the touched logs of a commit.
const SYNC_THREADS: usize = 8;

impl Store {
    /// Begins a group commit; `with_orphans` is false for a batch that only makes local writes.
    pub(crate) fn begin(&mut self, with_orphans: bool) -> Result<Txn, StoreError> {
        self.check_running()?;
        Ok(Txn {
            state: self.state.begin_write()?,
            orphans: if with_orphans { Some(self.orphans.begin_write()?) } else { None },
            work: Work {
                log_lens: HashMap::new(),
                changed: BTreeMap::new(),
                kinded: BTreeMap::new(),
                track_changes: true,
                counters: self.counters,
                local: Vec::new(),
                remote: 0,
                gaps: Vec::new(),
                proofs: Vec::new(),
                poisoned: None,
                policy_changed: false,
                leaves: HashMap::new(),
                taken_pending: HashMap::new(),
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
        // A policy change is not in the logs: it must not be lost with a non-durable commit.
        let durability = if tx.work.policy_changed || self.last_checkpoint.elapsed() >= self.config.checkpoint_interval
        {
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

    pub(super) fn commit_with(
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
        let Txn { state, orphans, mut work } = tx;
        let tree = self.place_leaves(&state, &mut work, matches!(durability, Durability::Immediate), false);
        self.leaves_committed(std::mem::take(&mut work.leaves));
        let (tree, merge) = match tree {
            Ok(merge) => (Ok(()), merge),
            Err(e) => (Err(e), false),
        };
        let dirty = !self.merkle_pending.is_empty();
        let Work { log_lens, changed, kinded, counters, local, remote, gaps, proofs, .. } = work;
        for gap in gaps {
            let _ = self.gaps.send(gap);
        }
        if !local.is_empty() || remote > 0 || !proofs.is_empty() {
            let _ = self.commits.send(Arc::new(Committed { local, remote, proofs }));
        }
        let events = match watch_events(&state, changed, kinded) {
            Ok(events) => events,
            Err(e) => {
                // The batch is durable: its writers are answered all the same; watchers miss it.
                tracing::error!(store = %self.store_id, error = %e, "could not read the values of a commit's changes");
                Vec::new()
            }
        };
        on_durable(events);
        match tree.and_then(|()| self.commit_index(state, orphans, &counters, durability, dirty)) {
            Ok(()) => {
                self.merkle_dirty = dirty;
                // Many leaves wait: merged now, after the commit, in transactions of their own.
                if merge && let Err(e) = self.merge_waiting() {
                    tracing::error!(store = %self.store_id, error = %e, "could not merge the Merkle tree's waiting leaves");
                }
            }
            Err(e) => {
                tracing::error!(store = %self.store_id, error = %e, "index commit failed after the logs were synced; stopping the store until it is reopened");
                self.stopped = Some(e.to_string());
            }
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
    /// orphans.db); `merkle_dirty`: whether leaves of committed batches wait in memory after it.
    fn commit_index(
        &mut self,
        mut state: WriteTransaction,
        orphans: Option<WriteTransaction>,
        counters: &Counters,
        durability: Durability,
        merkle_dirty: bool,
    ) -> Result<(), StoreError> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_index_commit) {
            return Err(StoreError::Db(redb::Error::Corrupted("injected index commit failure".into())));
        }
        {
            let mut meta = state.open_table(tables::META)?;
            meta.insert(tables::META_COUNTERS, counters.encode().as_slice())?;
            meta.insert(tables::META_CLOCK, ClockRow { hlc: self.clock.last() }.encode().as_slice())?;
            match (merkle_dirty, self.merkle_dirty) {
                (true, false) => drop(meta.insert(tables::META_MERKLE_DIRTY, [1u8].as_slice())?),
                (false, true) => drop(meta.remove(tables::META_MERKLE_DIRTY)?),
                _ => {}
            }
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

    /// Drops a transaction: undoes its log appends and forgets its index changes (and its policy
    /// changes: the policy committed last is read back).
    pub(crate) fn abort(&mut self, mut tx: Txn) {
        let policy_changed = tx.work.policy_changed;
        self.merkle_pending.extend(tx.work.taken_pending.drain());
        for (author, len) in &tx.work.log_lens {
            if let Some(log) = self.logs.get_mut(author)
                && let Err(e) = log.truncate(*len)
            {
                tracing::error!(error = %e, "could not undo log append; closing the log, it is repaired at next open");
                self.logs.remove(author);
            }
        }
        drop(tx);
        if policy_changed {
            self.to_recompute.clear();
            match super::Policy::load(&self.state, self.identity.author()) {
                Ok(policy) => self.policy = policy,
                Err(e) => {
                    tracing::error!(store = %self.store_id, error = %e, "cannot read the committed policy back; stopping the store until it is reopened");
                    self.stopped = Some(e.to_string());
                }
            }
        }
    }
}

/// The watch events of a commit, in key order: each key whose visible head changed, and each
/// counter or set whose state changed (the value read from the transaction about to commit).
fn watch_events(
    state: &WriteTransaction,
    changed: BTreeMap<Vec<u8>, VisibleChange>,
    kinded: BTreeMap<Vec<u8>, Change>,
) -> Result<Vec<WatchEvent>, StoreError> {
    if kinded.is_empty() && changed.values().all(|c| c.after.as_ref().is_none_or(|h| h.kind == Kind::Register)) {
        return Ok(changed.into_iter().filter_map(|(key, change)| register_event(key, change)).collect());
    }
    let kv = state.open_table(tables::KV)?;
    let kind_state = state.open_table(tables::KIND_STATE)?;
    let members = state.open_table(tables::SET_MEMBERS)?;
    let mut keys: BTreeMap<Vec<u8>, (Option<VisibleChange>, Option<Change>)> = BTreeMap::new();
    for (key, change) in changed {
        keys.entry(key).or_default().0 = Some(change);
    }
    for (key, source) in kinded {
        keys.entry(key).or_default().1 = Some(source);
    }
    let mut events = Vec::new();
    for (key, (change, kinded_source)) in keys {
        let heads = kv.get(key.as_slice())?.map(|v| decode_heads(v.value())).transpose()?.unwrap_or_default();
        let source = match (&change, kinded_source) {
            (Some(VisibleChange { after: Some(head), .. }), _) => Change::of(head),
            (Some(change), _) => {
                events.extend(register_event(key, change.clone()));
                continue;
            }
            // Only the state changed: the event is the value's, if the key shows that kind.
            (None, Some(source)) => match lattice_core::visible(&heads) {
                Some(head) if head.kind != Kind::Register => source,
                _ => continue,
            },
            (None, None) => continue,
        };
        match value_of(&heads, &kind_state, &members, &key)? {
            Some(value) => events.push(WatchEvent::of_value(key, value, source)),
            None => events.extend(change.and_then(|c| register_event(key, c))),
        }
    }
    Ok(events)
}

/// The event of a key whose visible head changed, from the heads alone: a put, or a delete
/// (named after the winning tombstone, else the head that went).
fn register_event(key: Vec<u8>, change: VisibleChange) -> Option<WatchEvent> {
    let VisibleChange { before, after, winner } = change;
    match (after, winner, before) {
        (Some(after), _, _) => {
            let source = Change::of(&after);
            Some(WatchEvent::of_value(key, Value::Register(after.value), source))
        }
        (None, Some(tombstone), Some(_)) => Some(WatchEvent::Delete { key, source: Change::of(&tombstone) }),
        (None, None, Some(before)) => Some(WatchEvent::Delete { key, source: Change::of(&before) }),
        (None, _, None) => None,
    }
}
