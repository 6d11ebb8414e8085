//! The open's catch-up: compare the logs with the index, cut torn tails, replay what the index
//! does not cover (or rebuild it from the logs when it does not match them).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use lattice_core::chain::{NextCheck, check_next};
use lattice_core::{AuthorId, Clock, Hash, VerifiedEntry};
use redb::Durability;

use super::{Store, Tables, Work};
use crate::error::{IngestError, StoreError};
use crate::log::{self, AuthorLog, RecordReader};
use crate::missing::{DecodedChunk, HlcMerge};
use crate::tables::{self, AuthorRow, Counters};
use crate::types::GapInfo;

/// Chunks of decoded entries the replay's reader thread may run ahead by.
const DECODE_AHEAD_CHUNKS: usize = 16;

impl Store {
    /// Compares every log with the index, truncates torn tails and replays what is not indexed.
    /// If the index is inconsistent with the logs (a log shorter than indexed, an indexed author
    /// without a log), or `rebuild` asks for it (the policy changed the status of stored
    /// entries), it is discarded and rebuilt from the logs.
    pub(super) fn catch_up(&mut self, rebuild: bool) -> Result<(), StoreError> {
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
        let indexed = if consistent && !rebuild {
            indexed
        } else {
            if !consistent {
                tracing::warn!(store = %self.store_id, "index does not match the logs; rebuilding it from the logs");
            }
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

    /// Drops the tables derived from the logs (the policy and the proofs stay: the logs cannot
    /// tell them).
    fn reset_index(&mut self) -> Result<(), StoreError> {
        let tx = self.state.begin_write()?;
        tx.delete_table(tables::KV)?;
        tx.delete_table(tables::META)?;
        tx.delete_table(tables::AUTHORS)?;
        tx.delete_table(tables::ENTRIES)?;
        tx.delete_table(tables::KIND_STATE)?;
        tx.delete_table(tables::KIND_OPS)?;
        tx.delete_table(tables::SET_MEMBERS)?;
        tx.delete_table(tables::MERKLE_NODES)?;
        tx.delete_table(tables::MERKLE_PENDING)?;
        tx.delete_table(tables::VERSIONS)?;
        tx.delete_table(tables::LEGACY_MERKLE_NODES)?;
        tx.delete_table(tables::LEGACY_MERKLE_PENDING)?;
        tx.commit()?;
        self.merkle_pending.clear();
        self.merkle_dirty = false;
        self.merkle_placed = 0;
        self.counters = Counters::default();
        self.clock = Clock::new(self.config.max_drift_ms);
        self.init_tables().map(drop)
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
                    // A refused entry's parents do not matter (it is never applied).
                    let refused = self.policy.refuses(&entry);
                    if !refused && let Some(missing) = t.first_missing_parent(&entry, self.policy.proven())? {
                        waiting_on.entry(missing).or_default().push(author);
                        blocked.entry(author).or_default().push_front((offset, entry));
                        continue;
                    }
                    let tip = t.author_row(&author)?;
                    match check_next(self.store_id, tip.map(|r| r.tip()).as_ref(), &entry, false, |_| None) {
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
                    self.store_entry(t, w, &entry, Some(offset), !refused)?;
                    self.replay_clock(&entry, refused);
                    if w.leaves.len() >= super::merkle::MEMORY_MAX {
                        self.place_leaves(t.state_tx, w, false, true)?;
                    }
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
                let missing_parent = t.first_missing_parent(entry, self.policy.proven())?;
                let have_seq = t.author_row(&author)?.map_or(0, |r| r.seq);
                let gap = GapInfo { author, have_seq, need_seq: entry.seq() - 1, missing_parent };
                match self.park_gap(t, w, entry, gap, now) {
                    Ok(()) => moved += 1,
                    Err(IngestError::Store(e)) => return Err(e),
                    // Cut from the log below all the same: sync brings it again.
                    Err(e) => tracing::warn!(error = %e, "dropping a replayed entry"),
                }
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
    /// (the drift bound still applies), unless refused (as when they were received).
    fn replay_clock(&mut self, entry: &VerifiedEntry, refused: bool) {
        if entry.author() == self.identity.author() {
            if entry.hlc() > self.clock.last() {
                self.clock = Clock::resume(entry.hlc(), self.config.max_drift_ms);
            }
        } else if !refused {
            let _ = self.clock.merge(entry.hlc(), self.now());
        }
    }
}
