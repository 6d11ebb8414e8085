//! Applying an entry whose predecessor and parents are held (local, received or replayed): log
//! append, entry and author rows, the heads of every key it touches (a version row for each head
//! it displaces) and (see `kinds`) the state of its counters and sets. A refused entry is stored
//! the same way, without heads or state.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use lattice_core::heads::{self, Head};
use lattice_core::{AuthorId, Hash, Hlc, Kind, Op, VerifiedEntry};

use super::batch::VisibleChange;
use super::{Store, Tables, Work, visible};
use crate::error::StoreError;
use crate::log::{AuthorLog, HEADER_LEN};
use crate::tables::{AuthorRow, EntryRow};
use crate::types::Change;

/// Parent lists up to this long are scanned; longer ones are hashed into a set.
const SMALL_PARENT_LIST: usize = 8;

/// Each key the ops touch, once, in order of first touch, with its last op: the head an entry
/// leaves on a key is its last operation on that key. Linear in the number of ops.
fn last_op_per_key(ops: &[Op]) -> Vec<(&[u8], &Op)> {
    let mut last_op: Vec<(&[u8], &Op)> = Vec::with_capacity(ops.len());
    if let [op] = ops {
        last_op.push((op.key(), op));
        return last_op;
    }
    let mut slot: HashMap<&[u8], usize> = HashMap::with_capacity(ops.len());
    for op in ops {
        match slot.entry(op.key()) {
            Entry::Occupied(at) => last_op[*at.get()].1 = op,
            Entry::Vacant(at) => {
                at.insert(last_op.len());
                last_op.push((op.key(), op));
            }
        }
    }
    last_op
}

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

        let parents = entry.parents();
        // Looked up once per head of every touched key: a set once the list is long (an entry
        // that touches many keys cites the heads of all of them).
        let parent_set: Option<HashSet<Hash>> =
            (parents.len() > SMALL_PARENT_LIST).then(|| parents.iter().copied().collect());
        let cited = |h: &Hash| match &parent_set {
            Some(set) => set.contains(h),
            None => parents.contains(h),
        };
        let kinded = t.apply_kinds(entry)?;
        for (key, op) in last_op_per_key(entry.ops()) {
            let mut heads = t.take_heads(key)?;
            let before_visible = visible(&heads);
            let was_conflict = heads.len() > 1;
            let (value, tombstone, kind) = match op {
                Op::Put { value, .. } => (value.clone(), false, Kind::Register),
                Op::Delete { .. } => (Vec::new(), true, Kind::Register),
                Op::CounterAdd { .. } => (Vec::new(), false, Kind::Counter),
                Op::SetAdd { .. } | Op::SetRemove { .. } => (Vec::new(), false, Kind::Set),
            };
            let head = Head { value, hlc: entry.hlc(), author, hash: entry.hash(), tombstone, kind };
            // The key's versions are its heads plus a row for each version no longer one (see
            // `versions`): rows are written as heads leave, so a key written once has none.
            let before: Vec<(Hlc, AuthorId, Hash)> = heads.iter().map(|h| (h.hlc, h.author, h.hash)).collect();
            heads::apply(&mut heads, cited, head);
            for (hlc, by, hash) in before.into_iter().chain([(entry.hlc(), author, entry.hash())]) {
                if !heads.iter().any(|h| h.hash == hash) {
                    t.add_version(key, hlc, by, hash)?;
                }
            }
            let winner = heads::winner(&heads).cloned();
            let after = visible(&heads);
            let head_count = heads.len();
            w.leaf_changed(key, &heads);
            t.set_heads(key, heads)?;
            match (before_visible.is_some(), after.is_some()) {
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
                if kinded.contains(&key) {
                    let source = Change { hash: entry.hash(), hlc: entry.hlc(), author };
                    w.kinded.insert(key.to_vec(), source);
                }
                // Keys whose visible head did not change (e.g. a head that lost) produce no
                // event, unless their counter or set changed. Only this key's slot changes
                // here, so only it is checked.
                let before = w.changed.remove(key).map_or(before_visible, |change| change.before);
                if before.as_ref().map(|h| h.hash) != after.as_ref().map(|h| h.hash) {
                    w.changed.insert(key.to_vec(), VisibleChange { before, after, winner });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_once_with_its_last_op_in_order_of_first_touch() {
        let ops = vec![Op::put("b", "1"), Op::put("a", "2"), Op::delete("b"), Op::put("c", "3"), Op::put("a", "4")];
        let got: Vec<(&[u8], &Op)> = last_op_per_key(&ops);
        assert_eq!(got, vec![(&b"b"[..], &ops[2]), (&b"a"[..], &ops[4]), (&b"c"[..], &ops[3])]);
        assert_eq!(last_op_per_key(&ops[..1]), vec![(&b"b"[..], &ops[0])]);
    }
}
