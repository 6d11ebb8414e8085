//! Applying an entry whose predecessor and parents are held (local, received or replayed): log
//! append, entry and author rows, and the heads of every key it touches. A refused entry is
//! stored the same way, without the heads.

use lattice_core::heads::{self, Head};
use lattice_core::{Op, VerifiedEntry};

use super::{Store, Tables, Work, visible};
use crate::error::StoreError;
use crate::log::{AuthorLog, HEADER_LEN};
use crate::tables::{AuthorRow, EntryRow};

impl Store {
    /// Stores a valid entry whose predecessor is held: appends it to its log (unless replaying,
    /// `offset` = where it already is) and indexes it; if `applied` (its parents are held too),
    /// updates the heads of every key it touches. A refused entry (`applied` false) gets its log
    /// record and rows like any, so sync state shows it and sync serves it, but no heads. A
    /// failure half-way poisons the batch (it must not commit).
    pub(super) fn store_entry(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        offset: Option<u64>,
        applied: bool,
    ) -> Result<(), StoreError> {
        let result = match offset {
            Some(offset) => Ok(offset),
            None => self.append_to_log(t, w, entry),
        }
        .and_then(|offset| Self::index(t, w, entry, offset, applied));
        if let Err(e) = &result {
            w.poisoned = Some(e.to_string());
        }
        result
    }

    /// Appends the entry to its author's log (buffered until the commit), opening the log if
    /// needed; returns the record's offset.
    fn append_to_log(&mut self, t: &Tables<'_>, w: &mut Work, entry: &VerifiedEntry) -> Result<u64, StoreError> {
        let author = entry.author();
        if !self.logs.contains_key(&author) {
            let len = t.author_row(&author)?.map_or(0, |r| r.log_len);
            let log = AuthorLog::open_at(&self.log_path(&author), len)?;
            self.logs.insert(author, log);
        }
        let log = self.logs.get_mut(&author).ok_or(StoreError::Closed)?;
        let before = log.len();
        let offset = log.append(entry.bytes())?;
        w.log_lens.entry(author).or_insert(before);
        Ok(offset)
    }

    /// Writes the entry's rows (the record at `offset` of its log) and, if `applied`, the heads
    /// of its keys.
    fn index(
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        offset: u64,
        applied: bool,
    ) -> Result<(), StoreError> {
        let author = entry.author();
        let record_len = HEADER_LEN + entry.bytes().len() as u64;
        let row = EntryRow { author, seq: entry.seq(), offset, record_len: record_len as u32 };
        t.insert_entry(&entry.hash(), &row)?;
        let author_row = AuthorRow { seq: entry.seq(), hash: entry.hash(), hlc: entry.hlc(), log_len: row.end() };
        t.set_author_row(author, author_row)?;
        if !applied {
            w.counters.refused += 1;
            return Ok(());
        }
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
}
