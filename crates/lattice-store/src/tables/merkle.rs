//! The Merkle tree's rows in `state.db` (the hashes are lattice-core's `merkle`). Like every
//! derived table, it is dropped and rebuilt from the logs by a rebuild.

use lattice_core::merkle::{self, Digest, EMPTY};
use redb::TableDefinition;

use crate::error::StoreError;

/// Key: [`node_key`] (depth, then the path's first `depth` nibbles). A node exists where two or
/// more keys share the prefix. Value: above [`BUCKET_DEPTH`], a [`NodeRow`] (the node's 16 child
/// slots); at [`BUCKET_DEPTH`], a [`Bucket`]: the leaves of every key under the prefix, the
/// subtree's lower levels computed from them when needed.
pub const MERKLE_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("merkle_nodes_v2");

/// The depth at which a subtree is kept as the list of its leaves, not as nodes: 65,536
/// prefixes, so at a million keys a bucket holds about 16 leaves (1 KiB) and the whole tree is
/// about 70 Ki rows, not the 360 Ki of a row per node. A merge then rewrites few rows; a bucket's
/// hash and a proof inside it hash its leaves again (a few microseconds at that size). Shallower
/// in unit tests, so their few hundred keys fill buckets.
#[cfg(not(test))]
pub const BUCKET_DEPTH: usize = 4;
#[cfg(test)]
pub const BUCKET_DEPTH: usize = 2;

/// The first layout (`merkle_nodes_v1`, a row per node at every depth, its root in
/// `meta_v1.merkle_root`): dropped at open, and the tree built again in this one.
pub const LEGACY_MERKLE_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("merkle_nodes_v1");
/// The first layout's root slot in `meta_v1`.
pub const LEGACY_META_MERKLE_ROOT: &str = "merkle_root";

/// Key: (the first byte of a key's path, the order it was placed in). Value: [`encode_pending`]:
/// the path and its new heads digest, or the path alone (the key is gone). Leaves not yet merged
/// into [`MERKLE_NODES`], kept here across durable commits (see lattice-store's `store/merkle`);
/// a path placed twice has two rows, the later one current. Keyed by placing order, not by path,
/// so placing leaves appends at the end of 256 runs instead of inserting all over the table (by
/// path, placing cost a 1M-entry rebuild 7%); a merge reads a range of first bytes. Emptied by
/// each merge.
pub const MERKLE_PENDING: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("merkle_pending_v2");

/// The waiting leaves keyed by path (the first layout): dropped at open with the tree.
pub const LEGACY_MERKLE_PENDING: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("merkle_pending_v1");

/// A [`MERKLE_PENDING`] value: `path [32]`, then `digest [32]` unless the key is gone.
pub fn encode_pending(path: &Digest, digest: Option<&Digest>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(path);
    if let Some(digest) = digest {
        out.extend_from_slice(digest);
    }
    out
}

/// Reads a [`MERKLE_PENDING`] value back.
pub fn decode_pending(b: &[u8]) -> Result<(Digest, Option<Digest>), StoreError> {
    let corrupt = || StoreError::CorruptIndex("merkle waiting leaf".into());
    let path: Digest = b.get(..32).and_then(|s| s.try_into().ok()).ok_or_else(corrupt)?;
    match b.len() {
        32 => Ok((path, None)),
        64 => Ok((path, b[32..].try_into().ok())),
        _ => Err(corrupt()),
    }
}

/// In `meta_v1`: the root slot ([`Slot::encode`]); absent in a store indexed before this layout
/// of the tree existed (the open then builds it from the heads).
pub const META_MERKLE_ROOT: &str = "merkle_root_v2";

/// In `meta_v1`, present (one byte, 1) while leaves of committed batches wait in memory only:
/// written by the first commit that leaves some there, removed by the commit that places them.
/// A durable commit never has it (it places every leaf), so a crash never finds it; a process
/// that ended without its last checkpoint (redb makes the last commit durable when the file
/// closes) does, and the open then rebuilds the tree from the heads.
pub const META_MERKLE_DIRTY: &str = "merkle_dirty";

/// One slot of the tree: nothing, one key's leaf, or a node (whose row holds its children).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Slot {
    /// No key under this prefix.
    #[default]
    Empty,
    /// Exactly one key under this prefix: its path and heads digest.
    Leaf {
        /// `blake3(key)`.
        path: Digest,
        /// The digest of the key's heads.
        digest: Digest,
    },
    /// Two or more keys: a node, with its hash.
    Node(Digest),
}

impl Slot {
    /// The slot's hash in its parent.
    pub fn hash(&self) -> Digest {
        match self {
            Slot::Empty => EMPTY,
            Slot::Leaf { path, digest } => merkle::leaf_hash(path, digest),
            Slot::Node(hash) => *hash,
        }
    }

    /// `0` | `1 ‖ path ‖ digest` | `2 ‖ hash`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65);
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Slot::Empty => out.push(0),
            Slot::Leaf { path, digest } => {
                out.push(1);
                out.extend_from_slice(path);
                out.extend_from_slice(digest);
            }
            Slot::Node(hash) => {
                out.push(2);
                out.extend_from_slice(hash);
            }
        }
    }

    /// Reads a slot back; returns it and the bytes it took.
    pub fn decode(b: &[u8]) -> Result<(Slot, usize), StoreError> {
        let corrupt = || StoreError::CorruptIndex("merkle slot".into());
        let arr = |at: usize| -> Result<Digest, StoreError> {
            b.get(at..at + 32).and_then(|s| s.try_into().ok()).ok_or_else(corrupt)
        };
        match b.first() {
            Some(0) => Ok((Slot::Empty, 1)),
            Some(1) => Ok((Slot::Leaf { path: arr(1)?, digest: arr(33)? }, 65)),
            Some(2) => Ok((Slot::Node(arr(1)?), 33)),
            _ => Err(corrupt()),
        }
    }
}

/// A node's 16 child slots. Row: `u16` bitmap of the non-empty slots (bit i = slot i), then
/// each non-empty slot in order ([`Slot::encode`]).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeRow {
    pub children: [Slot; 16],
}

impl NodeRow {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 16 * 65);
        let bitmap =
            self.children.iter().enumerate().filter(|(_, c)| **c != Slot::Empty).fold(0u16, |m, (i, _)| m | 1 << i);
        out.extend_from_slice(&bitmap.to_be_bytes());
        for child in self.children.iter().filter(|c| **c != Slot::Empty) {
            child.encode_into(&mut out);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<NodeRow, StoreError> {
        let bitmap = u16::from_be_bytes(
            b.get(..2).and_then(|s| s.try_into().ok()).ok_or_else(|| StoreError::CorruptIndex("merkle node".into()))?,
        );
        let mut row = NodeRow::default();
        let mut at = 2;
        for (i, child) in row.children.iter_mut().enumerate() {
            if bitmap & (1 << i) != 0 {
                let (slot, len) = Slot::decode(&b[at.min(b.len())..])?;
                *child = slot;
                at += len;
            }
        }
        Ok(row)
    }

    /// The hashes of the 16 slots.
    pub fn hashes(&self) -> [Digest; 16] {
        std::array::from_fn(|i| self.children[i].hash())
    }
}

/// The leaves of the keys under a prefix at [`BUCKET_DEPTH`] (two or more), sorted by path.
/// Row: per leaf, `path [32] ‖ digest [32]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Bucket {
    pub leaves: Vec<(Digest, Digest)>,
}

impl Bucket {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.leaves.len() * 64);
        for (path, digest) in &self.leaves {
            out.extend_from_slice(path);
            out.extend_from_slice(digest);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Bucket, StoreError> {
        if !b.len().is_multiple_of(64) {
            return Err(StoreError::CorruptIndex("merkle bucket".into()));
        }
        let digest = |s: &[u8]| -> Digest { s.try_into().unwrap_or(EMPTY) };
        let leaves: Vec<(Digest, Digest)> =
            b.chunks_exact(64).map(|leaf| (digest(&leaf[..32]), digest(&leaf[32..]))).collect();
        if leaves.len() < 2 || !leaves.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err(StoreError::CorruptIndex("merkle bucket not two or more sorted leaves".into()));
        }
        Ok(Bucket { leaves })
    }
}

/// The row key of the node at `depth` on `path`: the depth, then the path's first `depth`
/// nibbles packed two to a byte (an odd last nibble in the high half).
pub fn node_key(depth: usize, path: &Digest) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + depth.div_ceil(2));
    key.push(depth as u8);
    key.extend_from_slice(&path[..depth.div_ceil(2)]);
    if depth % 2 == 1
        && let Some(last) = key.last_mut()
    {
        *last &= 0xf0;
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let mut row = NodeRow::default();
        row.children[0] = Slot::Leaf { path: [1; 32], digest: [2; 32] };
        row.children[7] = Slot::Node([3; 32]);
        row.children[15] = Slot::Leaf { path: [4; 32], digest: [5; 32] };
        assert_eq!(NodeRow::decode(&row.encode()).unwrap(), row);
        assert_eq!(NodeRow::decode(&NodeRow::default().encode()).unwrap(), NodeRow::default());
        assert!(NodeRow::decode(&[0xff, 0xff, 1]).is_err());
        for slot in [Slot::Empty, Slot::Node([9; 32]), Slot::Leaf { path: [1; 32], digest: [2; 32] }] {
            assert_eq!(Slot::decode(&slot.encode()).unwrap().0, slot);
        }
        let bucket = Bucket { leaves: vec![([1; 32], [2; 32]), ([3; 32], [4; 32])] };
        assert_eq!(Bucket::decode(&bucket.encode()).unwrap(), bucket);
        assert!(Bucket::decode(&[0; 65]).is_err());
        for digest in [None, Some([7; 32])] {
            assert_eq!(decode_pending(&encode_pending(&[6; 32], digest.as_ref())).unwrap(), ([6; 32], digest));
        }
        assert!(decode_pending(&[0; 40]).is_err());
        assert!(Bucket::decode(&[0; 128]).is_err(), "one path twice");
        assert!(Bucket::decode(&bucket.encode()[..64]).is_err(), "one leaf is a leaf slot, not a bucket");
    }

    #[test]
    fn node_keys_keep_only_the_prefix() {
        let path = [0xab; 32];
        assert_eq!(node_key(0, &path), vec![0]);
        assert_eq!(node_key(1, &path), vec![1, 0xa0]);
        assert_eq!(node_key(2, &path), vec![2, 0xab]);
        assert_eq!(node_key(3, &path), vec![3, 0xab, 0xa0]);
    }
}
