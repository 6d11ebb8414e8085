//! The head set of a key and the winner rule.
//!
//! A key holds the entries that wrote it and that no later write of it has cited. Applying an
//! entry removes the heads it cites in `parent_hashes` and adds itself. Given causal delivery
//! (an entry is applied only after its parents), the resulting set does not depend on arrival
//! order, and [`apply`] keeps it in one canonical order (winner first) so two replicas holding the
//! same entries hold byte-identical head lists.

use crate::hlc::Hlc;
use crate::ids::{AuthorId, Hash};
use crate::proto;

/// One head of a key: the value an entry left there (or a tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The value written; empty for a tombstone.
    pub value: Vec<u8>,
    /// HLC of the entry that wrote it; the first key of the winner rule.
    pub hlc: Hlc,
    /// Author of that entry; breaks HLC ties (higher bytes win).
    pub author: AuthorId,
    /// Hash of that entry; later writes cite it in `parent_hashes` to supersede this head.
    pub hash: Hash,
    /// True if the entry deleted the key.
    pub tombstone: bool,
}

impl Head {
    /// Winner order: highest HLC, then highest author bytes; the hash breaks the (impossible
    /// without equivocation) remaining tie so the order is total.
    fn rank(&self) -> (Hlc, AuthorId, Hash) {
        (self.hlc, self.author, self.hash)
    }

    /// The protobuf form, as stored in `state.db` (see [`from_proto`](Self::from_proto)).
    pub fn to_proto(&self) -> proto::HeadInfo {
        proto::HeadInfo {
            value: self.value.clone(),
            hlc: Some(self.hlc.to_proto()),
            author: self.author.0.to_vec(),
            hash: self.hash.0.to_vec(),
            tombstone: self.tombstone,
        }
    }

    /// Reads a head back from `state.db`. `None` if the record is malformed.
    pub fn from_proto(p: proto::HeadInfo) -> Option<Head> {
        Some(Head {
            hlc: Hlc::from_proto(p.hlc.as_ref()?),
            author: AuthorId(p.author.as_slice().try_into().ok()?),
            hash: Hash::from_bytes(&p.hash).ok()?,
            tombstone: p.tombstone,
            value: p.value,
        })
    }
}

/// The winning head: the first in canonical order. `None` for an empty set.
pub fn winner(heads: &[Head]) -> Option<&Head> {
    heads.iter().max_by_key(|h| h.rank())
}

/// Applies a write to a key's head set: drops every head cited in `parents`, adds `new` (once),
/// and restores canonical order (winner first).
pub fn apply(heads: &mut Vec<Head>, parents: &[Hash], new: Head) {
    heads.retain(|h| h.hash != new.hash && !parents.contains(&h.hash));
    heads.push(new);
    heads.sort_by_key(|h| std::cmp::Reverse(h.rank()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(wall: u64, author: u8, tag: &[u8]) -> Head {
        Head {
            value: tag.to_vec(),
            hlc: Hlc::new(wall, 0),
            author: AuthorId([author; 32]),
            hash: Hash::of(tag),
            tombstone: false,
        }
    }

    #[test]
    fn concurrent_writes_fork_and_a_merge_joins_them() {
        let a = head(10, 1, b"a");
        let b = head(10, 2, b"b");
        let mut heads = vec![];
        apply(&mut heads, &[], a.clone());
        apply(&mut heads, &[], b.clone());
        assert_eq!(heads.len(), 2);
        assert_eq!(winner(&heads).unwrap().hash, b.hash, "same HLC: higher author wins");
        let merged = head(11, 1, b"m");
        apply(&mut heads, &[a.hash, b.hash], merged.clone());
        assert_eq!(heads, vec![merged]);
    }

    #[test]
    fn order_independent_for_concurrent_heads() {
        let x = head(5, 9, b"x");
        let y = head(7, 1, b"y");
        let mut h1 = vec![];
        apply(&mut h1, &[], x.clone());
        apply(&mut h1, &[], y.clone());
        let mut h2 = vec![];
        apply(&mut h2, &[], y.clone());
        apply(&mut h2, &[], x);
        assert_eq!(h1, h2);
        assert_eq!(winner(&h1).unwrap(), &y, "higher HLC wins over higher author");
        apply(&mut h2, &[], y);
        assert_eq!(h1, h2, "re-applying is idempotent");
    }

    #[test]
    fn proto_round_trip() {
        let h = head(3, 4, b"v");
        assert_eq!(Head::from_proto(h.to_proto()), Some(h));
        assert_eq!(Head::from_proto(proto::HeadInfo::default()), None);
    }
}
