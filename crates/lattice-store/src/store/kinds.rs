//! Counters and sets: how their ops (and the `Put`/`Delete` of a key that holds one) change the
//! kind tables, the checks of a local write, and the typed value of a key.
//!
//! "Observed" is decided per key with version vectors. Every entry that touches a key holding
//! counter or set state gets a [`KindOpRow`]: per author, the last of its entries on the key in
//! the entry's causal past, itself included. It is the pointwise max over the entry's DAG
//! parents that have a row on the key and over its author's previous entry on the key. Parents
//! and predecessors are applied before their children (the orphan buffer waits for them), so
//! every op such a vector covers is applied already when the entry applies, on every replica:
//!
//! - a counter keeps per author a running total, and a `Put`/`Delete` raises per author the
//!   bound it cleared up to, with the total at that bound (read from the rows, which hold each
//!   entry's running total); the value is `sum(total - cleared_total)`, O(authors);
//! - a set keeps per member the authors with an add no remove observed. A remove (or a
//!   `Put`/`Delete` of the key) drops the adds below its bounds; an add applied later can never
//!   be below them (it would have been applied before the remove), so dropping is final and the
//!   outcome does not depend on the order of arrival.
//!
//! Within one entry, ops apply in order: a remove or delete observes the ops of its own entry
//! before it, not those after it.

use std::collections::{BTreeMap, HashMap};

use lattice_core::heads::{self, Head};
use lattice_core::{AuthorId, Kind, Op, VerifiedEntry};
use redb::{ReadableTable, Table};

use super::Tables;
use crate::error::StoreError;
use crate::tables::{KindOpKey, KindOpRow, KindStateRow, MemberRow, Pos, WHOLE_ENTRY};
use crate::types::Value;

/// The tables of counters and sets, opened with the batch.
pub(crate) struct KindTables<'t> {
    pub(super) state: Table<'t, &'static [u8], &'static [u8]>,
    pub(super) ops: Table<'t, KindOpKey, &'static [u8]>,
    pub(super) members: Table<'t, (&'static [u8], &'static [u8]), &'static [u8]>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::CorruptIndex(format!("{what} row"))
}

/// The kind state row of `key`, if the key ever held a counter or a set.
pub(crate) fn read_state(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<KindStateRow>, StoreError> {
    let found = table.get(key)?;
    found.map(|v| KindStateRow::decode(v.value()).ok_or_else(|| corrupt("kind state"))).transpose()
}

/// The members of the set at `key`, in byte order.
pub(crate) fn read_members(
    table: &impl ReadableTable<(&'static [u8], &'static [u8]), &'static [u8]>,
    key: &[u8],
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    let empty: &[u8] = &[];
    for item in table.range::<(&[u8], &[u8])>((key, empty)..)? {
        let (k, _) = item?;
        let (set, member) = k.value();
        if set != key {
            break;
        }
        out.push(member.to_vec());
    }
    Ok(out)
}

/// The counter's value as a reader sees it: the exact sum, held to the i64 range. (Local writes
/// never leave it; entries from other nodes may, and every node then shows the same bound.)
pub(crate) fn clamp(sum: i128) -> i64 {
    sum.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The typed value a key shows, given its heads: none if no head is visible (see
/// [`heads::visible`]); a register's bytes; a counter's sum; a set's members.
pub(crate) fn value_of(
    heads: &[Head],
    state: &impl ReadableTable<&'static [u8], &'static [u8]>,
    members: &impl ReadableTable<(&'static [u8], &'static [u8]), &'static [u8]>,
    key: &[u8],
) -> Result<Option<Value>, StoreError> {
    let Some(head) = heads::visible(heads) else { return Ok(None) };
    Ok(Some(match head.kind {
        Kind::Register => Value::Register(head.value.clone()),
        Kind::Counter => Value::Counter(clamp(read_state(state, key)?.map_or(0, |s| s.counter_sum()))),
        Kind::Set => Value::Set(read_members(members, key)?),
    }))
}

/// Each key the ops touch, once, in order of first touch, with the indexes of its ops in order.
fn ops_per_key(ops: &[Op]) -> Vec<(&[u8], Vec<usize>)> {
    if let [op] = ops {
        return vec![(op.key(), vec![0])];
    }
    let mut out: Vec<(&[u8], Vec<usize>)> = Vec::new();
    let mut slot: HashMap<&[u8], usize> = HashMap::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let at = *slot.entry(op.key()).or_insert_with(|| {
            out.push((op.key(), Vec::new()));
            out.len() - 1
        });
        out[at].1.push(i);
    }
    out
}

/// A version vector: per author, the last seq of its entries on the key observed.
#[derive(Default)]
struct Observed(BTreeMap<AuthorId, u64>);

impl Observed {
    fn join(&mut self, row: &KindOpRow) {
        for (author, seq) in &row.observed {
            self.raise(*author, *seq);
        }
    }
    fn raise(&mut self, author: AuthorId, seq: u64) {
        let at = self.0.entry(author).or_insert(0);
        *at = (*at).max(seq);
    }
    /// The bound this op observes of `author`'s ops: whole entries up to the vector's seq, and
    /// for the op's own author, its own entry up to the op.
    fn bound(&self, author: &AuthorId, me: &AuthorId, own: Pos) -> Pos {
        if author == me {
            return own;
        }
        self.0.get(author).map_or((0, 0), |seq| (*seq, WHOLE_ENTRY))
    }
}

impl Tables<'_> {
    /// Applies the counter and set side of an applied entry; returns the keys whose counter or
    /// set state it changed. A key that never held a counter or set costs one lookup per op.
    pub(super) fn apply_kinds<'e>(&mut self, entry: &'e VerifiedEntry) -> Result<Vec<&'e [u8]>, StoreError> {
        let ops = entry.ops();
        let mut touched = Vec::new();
        for (key, indexes) in ops_per_key(ops) {
            let kinded = indexes.iter().any(|i| matches!(ops[*i].kind(), Some(Kind::Counter | Kind::Set)));
            let state = match (read_state(&self.kinds.state, key)?, kinded) {
                (Some(state), _) => state,
                (None, true) => KindStateRow::default(),
                (None, false) => continue,
            };
            self.apply_key(entry, key, &indexes, state)?;
            touched.push(key);
        }
        Ok(touched)
    }

    fn apply_key(
        &mut self,
        entry: &VerifiedEntry,
        key: &[u8],
        indexes: &[usize],
        mut state: KindStateRow,
    ) -> Result<(), StoreError> {
        let (me, seq) = (entry.author(), entry.seq());
        let mut observed = Observed::default();
        // The entries on this key whose vectors this one inherits, by (author, seq): its DAG
        // parents that touched the key (usually some author's latest entry on it, known from the
        // state row without a lookup) and its author's previous entry on the key.
        let mut inherited: Vec<(AuthorId, u64)> = Vec::with_capacity(entry.parents().len() + 1);
        for parent in entry.parents() {
            let latest = state.shares.iter().find(|(_, s)| s.latest_seq > 0 && s.latest_hash == *parent);
            match latest {
                Some((author, share)) => inherited.push((*author, share.latest_seq)),
                None => inherited.extend(self.entry_row(parent)?.map(|row| (row.author, row.seq))),
            }
        }
        let previous = state.share(&me).map_or(0, |s| s.latest_seq);
        if previous > 0 {
            inherited.push((me, previous));
        }
        inherited.sort_unstable();
        inherited.dedup();
        for (author, seq) in inherited {
            if let Some(op) = self.kind_op(key, &author, seq)? {
                observed.join(&op);
            }
        }
        for &i in indexes {
            let own = (seq, i as u32);
            match &entry.ops()[i] {
                Op::CounterAdd { delta, .. } => {
                    let share = state.share_mut(me);
                    share.total = share.total.saturating_add(i128::from(*delta));
                }
                Op::SetAdd { member, .. } => {
                    let mut row = self.member_row(key, member)?;
                    match row.adds.binary_search_by_key(&me, |(a, _)| *a) {
                        Ok(at) => row.adds[at].1 = row.adds[at].1.max(own),
                        Err(at) => row.adds.insert(at, (me, own)),
                    }
                    self.set_member_row(key, member, &row)?;
                }
                Op::SetRemove { member, .. } => {
                    let mut row = self.member_row(key, member)?;
                    row.adds.retain(|(author, pos)| *pos >= observed.bound(author, &me, own));
                    self.set_member_row(key, member, &row)?;
                }
                Op::Put { .. } | Op::Delete { .. } => self.clear(key, &mut state, &observed, &me, own)?,
            }
        }
        let share = state.share_mut(me);
        share.latest_seq = seq;
        share.latest_hash = entry.hash();
        let total = share.total;
        observed.raise(me, seq);
        let row = KindOpRow { total, observed: observed.0.into_iter().collect() };
        self.kinds.ops.insert((key, me.0, seq), row.encode().as_slice())?;
        self.kinds.state.insert(key, state.encode().as_slice())?;
        Ok(())
    }

    /// A `Put` or `Delete` at `own`: clears the counter deltas and the set adds it observed.
    fn clear(
        &mut self,
        key: &[u8],
        state: &mut KindStateRow,
        observed: &Observed,
        me: &AuthorId,
        own: Pos,
    ) -> Result<(), StoreError> {
        let authors: Vec<AuthorId> = observed.0.keys().copied().chain(std::iter::once(*me)).collect();
        for author in authors {
            let bound = observed.bound(&author, me, own);
            let share = *state.share_mut(author);
            if bound <= share.cleared {
                continue;
            }
            // Our own ops before this one are all applied: the running total is the prefix.
            let cleared_total = if author == *me { share.total } else { self.total_at(key, &author, bound.0)? };
            let share = state.share_mut(author);
            share.cleared = bound;
            share.cleared_total = cleared_total;
        }
        let mut rows = Vec::new();
        let empty: &[u8] = &[];
        for item in self.kinds.members.range::<(&[u8], &[u8])>((key, empty)..)? {
            let (k, v) = item?;
            let (set, member) = k.value();
            if set != key {
                break;
            }
            let row = MemberRow::decode(v.value()).ok_or_else(|| corrupt("set member"))?;
            rows.push((member.to_vec(), row));
        }
        for (member, mut row) in rows {
            let before = row.adds.len();
            row.adds.retain(|(author, pos)| *pos >= observed.bound(author, me, own));
            if row.adds.len() != before {
                self.set_member_row(key, &member, &row)?;
            }
        }
        Ok(())
    }

    /// `author`'s counter total on `key` after its entries up to `seq`.
    fn total_at(&self, key: &[u8], author: &AuthorId, seq: u64) -> Result<i128, StoreError> {
        let mut range = self.kinds.ops.range::<(&[u8], [u8; 32], u64)>((key, author.0, 0)..=(key, author.0, seq))?;
        match range.next_back() {
            Some(item) => {
                let (_, v) = item?;
                Ok(KindOpRow::decode(v.value()).ok_or_else(|| corrupt("kind op"))?.total)
            }
            None => Ok(0),
        }
    }

    fn kind_op(&self, key: &[u8], author: &AuthorId, seq: u64) -> Result<Option<KindOpRow>, StoreError> {
        let found = self.kinds.ops.get((key, author.0, seq))?;
        found.map(|v| KindOpRow::decode(v.value()).ok_or_else(|| corrupt("kind op"))).transpose()
    }

    fn member_row(&self, key: &[u8], member: &[u8]) -> Result<MemberRow, StoreError> {
        let found = self.kinds.members.get((key, member))?;
        found
            .map(|v| MemberRow::decode(v.value()).ok_or_else(|| corrupt("set member")))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    fn set_member_row(&mut self, key: &[u8], member: &[u8], row: &MemberRow) -> Result<(), StoreError> {
        if row.adds.is_empty() {
            self.kinds.members.remove((key, member))?;
        } else {
            self.kinds.members.insert((key, member), row.encode().as_slice())?;
        }
        Ok(())
    }

    /// Refuses a local write whose ops do not fit the kinds of their keys (an op of another kind
    /// than the key's visible value; an absent or deleted key takes any kind), or that would take
    /// a counter outside the i64 range. Ops apply in order: a delete or put earlier in the write
    /// sets what the later ops see.
    /// `heads_of` gives the current heads of each key the ops touch.
    pub(super) fn check_kinds(&self, ops: &[Op], heads_of: &HashMap<&[u8], Vec<Head>>) -> Result<(), StoreError> {
        let mut current: HashMap<&[u8], (Option<Kind>, i128)> = HashMap::new();
        for op in ops {
            let key = op.key();
            if !current.contains_key(key) {
                let heads = heads_of.get(key).map_or(&[][..], Vec::as_slice);
                let kind = heads::visible(heads).map(|h| h.kind);
                let sum = match kind {
                    Some(Kind::Counter) => read_state(&self.kinds.state, key)?.map_or(0, |s| s.counter_sum()),
                    _ => 0,
                };
                current.insert(key, (kind, sum));
            }
            let Some(slot) = current.get_mut(key) else { continue };
            let Some(wanted) = op.kind() else {
                // A local delete cites every head of the key: it clears everything.
                *slot = (None, 0);
                continue;
            };
            if let Some(holds) = slot.0
                && holds != wanted
            {
                return Err(StoreError::WrongKind { key: key.to_vec(), holds, wanted });
            }
            if let Op::CounterAdd { delta, .. } = op {
                let sum = slot.1 + i128::from(*delta);
                if sum != i128::from(clamp(sum)) {
                    return Err(StoreError::CounterOverflow { key: key.to_vec(), value: clamp(slot.1), delta: *delta });
                }
                slot.1 = sum;
            }
            *slot = (Some(wanted), if wanted == Kind::Counter { slot.1 } else { 0 });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_once_with_its_op_indexes_in_order() {
        let ops = vec![Op::counter_add("b", 1), Op::set_add("a", "x"), Op::delete("b"), Op::counter_add("b", 2)];
        assert_eq!(ops_per_key(&ops), vec![(&b"b"[..], vec![0, 2, 3]), (&b"a"[..], vec![1])]);
        assert_eq!(ops_per_key(&ops[..1]), vec![(&b"b"[..], vec![0])]);
    }

    #[test]
    fn bounds_cover_whole_entries_except_the_ops_own() {
        let (a, b, c) = (AuthorId([1; 32]), AuthorId([2; 32]), AuthorId([3; 32]));
        let mut observed = Observed::default();
        observed.join(&KindOpRow { total: 0, observed: vec![(b, 4)] });
        observed.raise(b, 2);
        assert_eq!(observed.bound(&b, &a, (9, 1)), (4, WHOLE_ENTRY));
        assert_eq!(observed.bound(&a, &a, (9, 1)), (9, 1));
        assert_eq!(observed.bound(&c, &a, (9, 1)), (0, 0), "nothing of an author never seen");
        assert_eq!(clamp(i128::from(i64::MAX) + 1), i64::MAX);
        assert_eq!(clamp(-5), -5);
    }
}
