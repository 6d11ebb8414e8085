//! Per-author hash chains (the roadmap's SigChain).
//!
//! Each author's entries in a store form a chain: seq 1, 2, 3…, each citing the hash of the one
//! before and carrying a strictly larger HLC. [`check_next`] decides, for an entry whose signature
//! and structure are already verified, whether it extends the chain, is already held, must wait
//! for a missing predecessor, or is invalid — without touching any storage.

use crate::entry::VerifiedEntry;
use crate::hlc::Hlc;
use crate::ids::{AuthorId, Hash, StoreId};

/// The last entry of an author's chain as held locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainTip {
    /// Seq of the last entry held, from 1.
    pub seq: u64,
    /// Hash of that entry: what the next entry must cite as `prev_hash`.
    pub hash: Hash,
    /// HLC of that entry: the next entry's must be strictly greater.
    pub hlc: Hlc,
}

/// An entry that cannot be accepted, ever. Each variant says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The entry was signed for a different store than the one being checked.
    #[error("entry belongs to store {got}, not {expected}")]
    WrongStore {
        /// The store being checked.
        expected: StoreId,
        /// The store the entry names.
        got: StoreId,
    },
    /// The entry is not held, but its seq is at or below the author's tip: the author signed
    /// two different entries at one seq (a fork).
    #[error(
        "equivocation: author {author} signed two different entries at seq {seq} (held {held}, received {received})"
    )]
    Equivocation {
        /// The author who forked.
        author: AuthorId,
        /// The seq signed twice.
        seq: u64,
        /// Hash of the entry held at that seq ([`Hash::ZERO`] if the lookup found none).
        held: Hash,
        /// Hash of the conflicting entry received.
        received: Hash,
    },
    /// The entry is next in seq but its `prev_hash` is not the hash of the tip.
    #[error("entry seq {seq} by {author} cites prev_hash {got}, but the entry at seq {} is {expected}", seq - 1)]
    ForgedPrevHash {
        /// The entry's author.
        author: AuthorId,
        /// The entry's seq.
        seq: u64,
        /// Hash of the held entry at `seq - 1` (the tip).
        expected: Hash,
        /// The `prev_hash` the entry cites.
        got: Hash,
    },
    /// The entry is next in seq but its HLC is not strictly greater than the tip's.
    #[error("entry seq {seq} by {author} has HLC {got}, not after its predecessor's {prev}")]
    HlcNotIncreasing {
        /// The entry's author.
        author: AuthorId,
        /// The entry's seq.
        seq: u64,
        /// HLC of the held predecessor (the tip).
        prev: Hlc,
        /// The entry's HLC.
        got: Hlc,
    },
}

/// What to do with an entry that passed [`check_next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextCheck {
    /// It extends the author's chain: apply it.
    Next,
    /// It is already held: nothing to do.
    Duplicate,
    /// Entries between `have_seq` and it are missing: hold it until they arrive.
    Gap {
        /// Seq of the author's tip; 0 if nothing is held from the author.
        have_seq: u64,
        /// Last missing seq (the entry's seq minus 1): `have_seq + 1 ..= need_seq` are missing.
        need_seq: u64,
    },
}

/// Decides the fate of `entry` given its author's current tip (`None`: nothing held from this
/// author) and whether an entry with its hash is already held.
///
/// A different entry at a seq already held is equivocation whatever the held seq: entries are
/// indexed by hash, so "not held" plus "seq ≤ tip" can only mean a second, conflicting entry.
/// `held_at_seq` returns the hash held at a seq (for the error message); it is only called then.
pub fn check_next(
    store: StoreId,
    tip: Option<&ChainTip>,
    entry: &VerifiedEntry,
    already_held: bool,
    held_at_seq: impl FnOnce(u64) -> Option<Hash>,
) -> Result<NextCheck, ChainError> {
    if entry.store_id() != store {
        return Err(ChainError::WrongStore { expected: store, got: entry.store_id() });
    }
    if already_held {
        return Ok(NextCheck::Duplicate);
    }
    let have_seq = tip.map_or(0, |t| t.seq);
    let seq = entry.seq();
    if seq <= have_seq {
        let held = held_at_seq(seq).unwrap_or(Hash::ZERO);
        return Err(ChainError::Equivocation { author: entry.author(), seq, held, received: entry.hash() });
    }
    if seq > have_seq + 1 {
        return Ok(NextCheck::Gap { have_seq, need_seq: seq - 1 });
    }
    if let Some(tip) = tip {
        if entry.prev_hash() != tip.hash {
            return Err(ChainError::ForgedPrevHash {
                author: entry.author(),
                seq,
                expected: tip.hash,
                got: entry.prev_hash(),
            });
        }
        if entry.hlc() <= tip.hlc {
            return Err(ChainError::HlcNotIncreasing { author: entry.author(), seq, prev: tip.hlc, got: entry.hlc() });
        }
    }
    Ok(NextCheck::Next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EntryBuilder, Identity, Op};

    fn entry(id: &Identity, store: StoreId, seq: u64, prev: Hash, wall: u64) -> VerifiedEntry {
        EntryBuilder::new(store, seq)
            .prev_hash(prev)
            .timestamp(Hlc::new(wall, 0))
            .op(Op::put("k", format!("v{seq}")))
            .sign(id)
            .unwrap()
    }

    #[test]
    fn every_outcome() {
        let id = Identity::generate();
        let store = StoreId::new_random();
        let e1 = entry(&id, store, 1, Hash::ZERO, 10);
        let tip1 = ChainTip { seq: 1, hash: e1.hash(), hlc: e1.hlc() };
        let none = |_| None;
        assert_eq!(check_next(store, None, &e1, false, none), Ok(NextCheck::Next));
        assert_eq!(check_next(store, Some(&tip1), &e1, true, none), Ok(NextCheck::Duplicate));

        let e2 = entry(&id, store, 2, e1.hash(), 11);
        assert_eq!(check_next(store, Some(&tip1), &e2, false, none), Ok(NextCheck::Next));
        let e3 = entry(&id, store, 3, e2.hash(), 12);
        assert_eq!(check_next(store, Some(&tip1), &e3, false, none), Ok(NextCheck::Gap { have_seq: 1, need_seq: 2 }));
        assert_eq!(check_next(store, None, &e3, false, none), Ok(NextCheck::Gap { have_seq: 0, need_seq: 2 }));

        let other = StoreId::new_random();
        assert_eq!(
            check_next(other, Some(&tip1), &e2, false, none),
            Err(ChainError::WrongStore { expected: other, got: store })
        );

        let forged = entry(&id, store, 2, Hash::of(b"nope"), 11);
        assert!(matches!(check_next(store, Some(&tip1), &forged, false, none), Err(ChainError::ForgedPrevHash { .. })));

        let stale_clock = entry(&id, store, 2, e1.hash(), 10);
        assert!(matches!(
            check_next(store, Some(&tip1), &stale_clock, false, none),
            Err(ChainError::HlcNotIncreasing { .. })
        ));

        let twin = entry(&id, store, 1, Hash::ZERO, 99);
        let err = check_next(store, Some(&tip1), &twin, false, |_| Some(e1.hash())).unwrap_err();
        assert_eq!(
            err,
            ChainError::Equivocation { author: id.author(), seq: 1, held: e1.hash(), received: twin.hash() }
        );
        assert!(err.to_string().contains("equivocation"));
    }
}
