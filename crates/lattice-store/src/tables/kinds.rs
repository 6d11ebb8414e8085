//! The tables of counters and sets (value kinds) in `state.db`, and the codec of their rows.
//! Like every derived table, they are dropped and rebuilt from the logs by a rebuild.
//!
//! Positions: an op is at `(seq, op index)` in its author's chain. What an entry observed of
//! an author on a key is a bound: the ops of that author at positions below it. A bound
//! reached through DAG parents or the author's own earlier entries covers whole entries
//! (`(seq, WHOLE_ENTRY)`); an op's own entry is observed up to the op (`(seq, index)`).

use lattice_core::{AuthorId, Hash};
use redb::TableDefinition;

use super::{arr32, u32_at, u64_at};

/// Key: user key. Value: [`KindStateRow`]: per author, its counter total on the key, how far a
/// `Put`/`Delete` cleared it, and its last entry that touched the key. Only keys that a counter
/// or set op ever touched have a row (a put of a plain register costs one lookup here).
pub const KIND_STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kind_state_v1");

/// Key: (user key, author, seq) of every entry that touched a key holding a row in
/// [`KIND_STATE`]. Value: [`KindOpRow`]: what the entry observed of the key (the version vector
/// its children inherit) and its author's counter total on the key after it (the prefix sums
/// a `Delete` reads to clear exactly what it observed).
pub const KIND_OPS: TableDefinition<KindOpKey, &[u8]> = TableDefinition::new("kind_ops_v1");

/// The key of [`KIND_OPS`]: (user key, author, seq).
pub type KindOpKey = (&'static [u8], [u8; 32], u64);

/// Key: (user key, member). Value: [`MemberRow`]: the authors with an add of the member that no
/// remove (or `Put`/`Delete` of the key) observed, each with its latest add. A member is present
/// iff its row exists; a row left empty is deleted.
pub const SET_MEMBERS: TableDefinition<(&[u8], &[u8]), &[u8]> = TableDefinition::new("set_members_v1");

/// The op index of a bound that covers a whole entry.
pub const WHOLE_ENTRY: u32 = u32::MAX;

/// A position in an author's chain, or a bound on positions: `(seq, op index)`, ordered.
pub type Pos = (u64, u32);

fn i128_at(b: &[u8], at: usize) -> i128 {
    let mut x = [0u8; 16];
    x.copy_from_slice(&b[at..at + 16]);
    i128::from_le_bytes(x)
}

/// One author's share of a kinded key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthorShare {
    /// Its last entry that touched the key (0: none yet).
    pub latest_seq: u64,
    /// That entry's hash: a later entry citing it as a parent is resolved without a lookup.
    pub latest_hash: Hash,
    /// The sum of its counter deltas on the key (i128: no sum of i64 deltas from one chain
    /// overflows it in practice, and it saturates rather than wraps).
    pub total: i128,
    /// How far a `Put` or `Delete` observed its ops: those below are cleared.
    pub cleared: Pos,
    /// Its counter total at `cleared`: the part of `total` that no longer counts.
    pub cleared_total: i128,
}

/// The row of [`KIND_STATE`]: every author's share, in author order.
/// Layout: `count u32 | (author [32] | latest_seq u64 | latest_hash [32] | total i128 |
/// cleared_seq u64 | cleared_index u32 | cleared_total i128) ...` (LE), 116 bytes per author.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindStateRow {
    pub shares: Vec<(AuthorId, AuthorShare)>,
}

impl KindStateRow {
    const SHARE_LEN: usize = 116;

    /// The share of `author`, added (empty) if it had none.
    pub fn share_mut(&mut self, author: AuthorId) -> &mut AuthorShare {
        let at = match self.shares.binary_search_by_key(&author, |(a, _)| *a) {
            Ok(at) => at,
            Err(at) => {
                self.shares.insert(at, (author, AuthorShare::default()));
                at
            }
        };
        &mut self.shares[at].1
    }

    /// The share of `author`, if it has one.
    pub fn share(&self, author: &AuthorId) -> Option<&AuthorShare> {
        self.shares.binary_search_by_key(author, |(a, _)| *a).ok().map(|at| &self.shares[at].1)
    }

    /// The counter's exact value: what every author added and no `Put`/`Delete` cleared.
    pub fn counter_sum(&self) -> i128 {
        self.shares.iter().fold(0i128, |sum, (_, s)| sum.saturating_add(s.total.saturating_sub(s.cleared_total)))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(4 + Self::SHARE_LEN * self.shares.len());
        b.extend_from_slice(&(self.shares.len() as u32).to_le_bytes());
        for (author, s) in &self.shares {
            b.extend_from_slice(&author.0);
            b.extend_from_slice(&s.latest_seq.to_le_bytes());
            b.extend_from_slice(&s.latest_hash.0);
            b.extend_from_slice(&s.total.to_le_bytes());
            b.extend_from_slice(&s.cleared.0.to_le_bytes());
            b.extend_from_slice(&s.cleared.1.to_le_bytes());
            b.extend_from_slice(&s.cleared_total.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let count = u32_at(b.get(0..4)?, 0) as usize;
        if b.len() != 4 + count.checked_mul(Self::SHARE_LEN)? {
            return None;
        }
        let shares = (0..count)
            .map(|i| {
                let at = 4 + i * Self::SHARE_LEN;
                let share = AuthorShare {
                    latest_seq: u64_at(b, at + 32),
                    latest_hash: Hash(arr32(b, at + 40)),
                    total: i128_at(b, at + 72),
                    cleared: (u64_at(b, at + 88), u32_at(b, at + 96)),
                    cleared_total: i128_at(b, at + 100),
                };
                (AuthorId(arr32(b, at)), share)
            })
            .collect();
        Some(KindStateRow { shares })
    }
}

/// The row of [`KIND_OPS`]. `observed`: per author, the last seq of its entries on the key that
/// this entry observed (itself included), in author order. Layout: `total i128 | count u32 |
/// (author [32] | seq u64) ...` (LE).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindOpRow {
    pub total: i128,
    pub observed: Vec<(AuthorId, u64)>,
}

impl KindOpRow {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(20 + 40 * self.observed.len());
        b.extend_from_slice(&self.total.to_le_bytes());
        b.extend_from_slice(&(self.observed.len() as u32).to_le_bytes());
        for (author, seq) in &self.observed {
            b.extend_from_slice(&author.0);
            b.extend_from_slice(&seq.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let count = u32_at(b.get(16..20)?, 0) as usize;
        if b.len() != 20 + count.checked_mul(40)? {
            return None;
        }
        let observed = (0..count).map(|i| (AuthorId(arr32(b, 20 + 40 * i)), u64_at(b, 52 + 40 * i))).collect();
        Some(KindOpRow { total: i128_at(b, 0), observed })
    }
}

/// The row of [`SET_MEMBERS`]: per author with a surviving add, the position of its latest add,
/// in author order. Layout: `count u32 | (author [32] | seq u64 | index u32) ...` (LE).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberRow {
    pub adds: Vec<(AuthorId, Pos)>,
}

impl MemberRow {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(4 + 44 * self.adds.len());
        b.extend_from_slice(&(self.adds.len() as u32).to_le_bytes());
        for (author, (seq, index)) in &self.adds {
            b.extend_from_slice(&author.0);
            b.extend_from_slice(&seq.to_le_bytes());
            b.extend_from_slice(&index.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let count = u32_at(b.get(0..4)?, 0) as usize;
        if b.len() != 4 + count.checked_mul(44)? {
            return None;
        }
        let adds = (0..count)
            .map(|i| {
                let at = 4 + 44 * i;
                (AuthorId(arr32(b, at)), (u64_at(b, at + 32), u32_at(b, at + 40)))
            })
            .collect();
        Some(MemberRow { adds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_rows_round_trip() {
        let mut state = KindStateRow::default();
        *state.share_mut(AuthorId([9; 32])) = AuthorShare {
            latest_seq: 4,
            latest_hash: Hash([5; 32]),
            total: -(1 << 70),
            cleared: (3, WHOLE_ENTRY),
            cleared_total: 17,
        };
        state.share_mut(AuthorId([1; 32])).total = 5;
        assert_eq!(state.shares[0].0, AuthorId([1; 32]), "shares stay in author order");
        assert_eq!(KindStateRow::decode(&state.encode()), Some(state.clone()));
        assert_eq!(state.counter_sum(), 5 - (1 << 70) - 17);
        assert_eq!(KindStateRow::decode(&state.encode()[..10]), None);
        let op = KindOpRow { total: -3, observed: vec![(AuthorId([1; 32]), 2), (AuthorId([2; 32]), 9)] };
        assert_eq!(KindOpRow::decode(&op.encode()), Some(op));
        assert_eq!(KindOpRow::decode(&[0; 19]), None);
        let member = MemberRow { adds: vec![(AuthorId([3; 32]), (7, 1))] };
        assert_eq!(MemberRow::decode(&member.encode()), Some(member));
        assert_eq!(MemberRow::decode(&[1, 0, 0, 0]), None);
        assert_eq!(MemberRow::decode(&[0xff, 0xff, 0xff, 0xff]), None, "a count that overflows is refused");
    }
}
