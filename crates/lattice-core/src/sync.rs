//! What a peer is missing: [`SyncState`] is, per author, the seq and hash of the last entry held;
//! [`SyncState::missing_for`] compares two states and says which ranges of which authors' logs
//! the other side lacks. Pure data, no I/O: the store streams the ranges, the network moves them.

use std::collections::BTreeMap;

use crate::ids::{AuthorId, Hash};
use crate::proto;

/// The last entry held from one author.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthorSyncState {
    /// Seq of the last entry held from this author (its chain tip).
    pub seq: u64,
    /// Hash of the entry at `seq`.
    pub hash: Hash,
}

/// Per author, the last entry held. Authors with nothing held are absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncState {
    /// The last entry held from each author, keyed (and so ordered) by author.
    pub authors: BTreeMap<AuthorId, AuthorSyncState>,
}

/// A run of one author's log that the other side lacks: the entries after `after_seq`
/// (whose hash is `after_hash`, zero when `after_seq` is 0) up to and including `to_seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingRange {
    /// Whose log the range is in.
    pub author: AuthorId,
    /// Last seq the other side holds (0 for none); the range starts at `after_seq + 1`.
    pub after_seq: u64,
    /// Hash the other side reports at `after_seq`; [`Hash::ZERO`] when `after_seq` is 0.
    pub after_hash: Hash,
    /// Last seq of the range, inclusive: the last entry we hold.
    pub to_seq: u64,
}

impl MissingRange {
    /// Number of entries in the range (`to_seq - after_seq`).
    pub fn len(&self) -> u64 {
        self.to_seq - self.after_seq
    }
    /// True if the range holds no entries; [`SyncState::missing_for`] never returns one.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `SyncState` received from a peer that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncStateError {
    /// An author id is not 32 bytes; holds its length.
    #[error("sync state names author bytes of length {0}, not 32")]
    AuthorLength(usize),
    /// A hash is not 32 bytes; holds its length.
    #[error("sync state has a hash of length {0}, not 32")]
    HashLength(usize),
    /// The same author appears twice; holds that author.
    #[error("sync state names author {0} twice")]
    DuplicateAuthor(AuthorId),
}

impl SyncState {
    /// Ranges `self` (ours) holds and `remote` lacks, one per author, in author order.
    ///
    /// If the remote's hash at its seq is not ours at that seq (a forked author), the range still
    /// starts after the remote's seq: the entries we send will then be refused as equivocation by
    /// the receiver, which is the right outcome — the conflict is the author's, and is reported.
    pub fn missing_for(&self, remote: &SyncState) -> Vec<MissingRange> {
        self.authors
            .iter()
            .filter_map(|(author, ours)| {
                let (after_seq, after_hash) = match remote.authors.get(author) {
                    Some(theirs) => (theirs.seq, theirs.hash),
                    None => (0, Hash::ZERO),
                };
                (ours.seq > after_seq).then_some(MissingRange {
                    author: *author,
                    after_seq,
                    after_hash,
                    to_seq: ours.seq,
                })
            })
            .collect()
    }

    /// Number of entries `self` holds in all.
    pub fn total_entries(&self) -> u64 {
        self.authors.values().map(|a| a.seq).sum()
    }

    /// The protobuf form sent to peers, one `AuthorState` per author in author order.
    pub fn to_proto(&self) -> proto::SyncState {
        proto::SyncState {
            authors: self
                .authors
                .iter()
                .map(|(a, s)| proto::AuthorState { author: a.0.to_vec(), seq: s.seq, hash: s.hash.0.to_vec() })
                .collect(),
        }
    }

    /// Parses a peer's state; fails on a malformed author id or hash, or a repeated author.
    /// Author ids are not checked to be valid Ed25519 keys.
    pub fn from_proto(p: &proto::SyncState) -> Result<Self, SyncStateError> {
        let mut authors = BTreeMap::new();
        for a in &p.authors {
            let author =
                AuthorId(a.author.as_slice().try_into().map_err(|_| SyncStateError::AuthorLength(a.author.len()))?);
            let hash = Hash::from_bytes(&a.hash).map_err(|_| SyncStateError::HashLength(a.hash.len()))?;
            if authors.insert(author, AuthorSyncState { seq: a.seq, hash }).is_some() {
                return Err(SyncStateError::DuplicateAuthor(author));
            }
        }
        Ok(SyncState { authors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn st(items: &[(u8, u64)]) -> SyncState {
        SyncState {
            authors: items
                .iter()
                .map(|(a, s)| (AuthorId([*a; 32]), AuthorSyncState { seq: *s, hash: Hash([*s as u8; 32]) }))
                .collect(),
        }
    }

    #[test]
    fn diff_lists_what_the_other_side_lacks() {
        let ours = st(&[(1, 5), (2, 3), (3, 1)]);
        let theirs = st(&[(1, 2), (2, 3), (4, 9)]);
        let m = ours.missing_for(&theirs);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0],
            MissingRange { author: AuthorId([1; 32]), after_seq: 2, after_hash: Hash([2; 32]), to_seq: 5 }
        );
        assert_eq!(m[1], MissingRange { author: AuthorId([3; 32]), after_seq: 0, after_hash: Hash::ZERO, to_seq: 1 });
        assert_eq!(m.iter().map(|r| r.len()).sum::<u64>(), 4);
        assert!(theirs.missing_for(&theirs).is_empty());
    }

    #[test]
    fn proto_rejects_malformed_states() {
        let mut p = st(&[(1, 1)]).to_proto();
        assert_eq!(SyncState::from_proto(&p).unwrap(), st(&[(1, 1)]));
        p.authors.push(p.authors[0].clone());
        assert!(matches!(SyncState::from_proto(&p), Err(SyncStateError::DuplicateAuthor(_))));
        p.authors[1].author = vec![1; 3];
        assert_eq!(SyncState::from_proto(&p), Err(SyncStateError::AuthorLength(3)));
    }

    proptest! {
        #![proptest_config(lattice_testkit::proptest_config("sync properties", 256))]

        #[test]
        fn diff_plus_apply_equalises(a in proptest::collection::btree_map(0u8..8, 1u64..50, 0..8),
                                      b in proptest::collection::btree_map(0u8..8, 1u64..50, 0..8)) {
            let sa = st(&a.into_iter().collect::<Vec<_>>());
            let sb = st(&b.into_iter().collect::<Vec<_>>());
            let mut merged_b = sb.clone();
            for r in sa.missing_for(&sb) {
                merged_b.authors.insert(r.author, sa.authors[&r.author]);
            }
            prop_assert!(sa.missing_for(&merged_b).is_empty());
        }
    }
}
