//! The group commit: begin a batch, make its logs durable (one write and one fsync per touched
//! log), acknowledge it, then commit the index; abort and checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use lattice_core::AuthorId;
use redb::{Durability, WriteTransaction};

use super::{Store, Txn, Work};
use crate::error::StoreError;
use crate::log::{AuthorLog, LogError};
use crate::tables::{self, ClockRow, Counters};
use crate::types::{Change, Committed, WatchEvent};

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
                track_changes: true,
                counters: self.counters,
                local: Vec::new(),
                remote: 0,
                gaps: Vec::new(),
                proofs: Vec::new(),
                poisoned: None,
                policy_changed: false,
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
        let Txn { state, orphans, work } = tx;
        let Work { log_lens, changed, counters, local, remote, gaps, proofs, .. } = work;
        for gap in gaps {
            let _ = self.gaps.send(gap);
        }
        if !local.is_empty() || remote > 0 || !proofs.is_empty() {
            let _ = self.commits.send(Arc::new(Committed { local, remote, proofs }));
        }
        let events = changed
            .into_iter()
            .filter_map(|(key, (before, after))| match (before, after) {
                (_, Some(after)) if !after.tombstone => {
                    let source = Change::of(&after);
                    Some(WatchEvent::Put { key, value: after.value, source })
                }
                (Some(_), Some(tombstone)) => Some(WatchEvent::Delete { key, source: Change::of(&tombstone) }),
                (Some(before), None) => Some(WatchEvent::Delete { key, source: Change::of(&before) }),
                (None, _) => None,
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
            meta.insert(tables::META_CLOCK, ClockRow { hlc: self.clock.last() }.encode().as_slice())?;
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
    pub(crate) fn abort(&mut self, tx: Txn) {
        let policy_changed = tx.work.policy_changed;
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
