//! The Merkle structure over a store's keys (DESIGN.md §10), and the proofs and signed
//! attestations built on it. Pure functions: the store keeps the tree's nodes in `state.db`
//! (`lattice-store`'s `store/merkle`), this module says what every hash is.
//!
//! **The tree** is a 16-ary radix trie over the key's path `blake3(key)`, read as 64 nibbles.
//! Its shape is a function of the set of paths alone, so two nodes holding the same head sets
//! hold the same tree, byte for byte, whatever order they learned them in:
//! - a subtree with no key is empty ([`EMPTY`]);
//! - a subtree with one key is that key's leaf, `blake3_keyed(LEAF_KEY, path ‖ digest)`, where `digest`
//!   is [`heads_digest`] of the key's heads (every head, so a fork shows in the root);
//! - a subtree with two or more keys is a node with 16 child slots (the next nibble); its hash
//!   is a binary Merkle tree over the 16 child hashes, `branch(l, r) = blake3_keyed(BRANCH_KEY, l ‖ r)`
//!   (`EMPTY` if both are empty), so a proof carries 4 sibling hashes per node, not 15.
//!
//! A proof of a key is the 4 siblings of each node from the root down to the slot where the
//! key's path ends: its own leaf (inclusion), an empty slot or another key's leaf (absence).
//! With `n` random keys that is about `log16(n)` nodes: 5 at a million keys, 640 bytes.
//!
//! **An attestation** is a node's signature over `(store, root, frontier, entries, hlc)`: the
//! root of its tree as of the frontier (the last entry held of each author) it had then.

use crate::batch::{self, SignedMessage};
use crate::heads::Head;
use crate::hlc::Hlc;
use crate::identity::Identity;
use crate::ids::{AuthorId, StoreId};
use crate::proto;
use crate::sync::SyncState;

/// A 32-byte blake3 digest.
pub type Digest = [u8; 32];

/// The hash of an empty subtree (and the root of an empty store).
pub const EMPTY: Digest = [0; 32];

/// The blake3 keys that keep the three kinds of hash apart. Keys, not a prefix byte: a leaf's and a
/// branch's input is then 64 bytes, one blake3 block, so each costs one compression, not two (the
/// tree's hashing is most of what a merge costs).
pub const LEAF_KEY: [u8; 32] = *b"lattice/merkle/leaf/v2\0\0\0\0\0\0\0\0\0\0";
/// See [`LEAF_KEY`].
pub const BRANCH_KEY: [u8; 32] = *b"lattice/merkle/branch/v2\0\0\0\0\0\0\0\0";
/// See [`LEAF_KEY`].
pub const HEADS_KEY: [u8; 32] = *b"lattice/merkle/heads/v2\0\0\0\0\0\0\0\0\0";

/// Nibbles in a path (a path is 32 bytes): the deepest a node can sit.
pub const MAX_DEPTH: usize = 64;

/// Where a key sits in the tree: `blake3(key)`.
pub fn key_path(key: &[u8]) -> Digest {
    *blake3::hash(key).as_bytes()
}

/// The nibble of `path` at `depth` (0 = the high half of the first byte).
pub fn nibble(path: &Digest, depth: usize) -> usize {
    let byte = path[depth / 2];
    if depth.is_multiple_of(2) { (byte >> 4) as usize } else { (byte & 0x0f) as usize }
}

/// The digest of a key's head set, in the canonical order the store keeps (winner first). It
/// covers, per head, the entry hash, HLC, author, kind, whether it is a tombstone and the
/// blake3 of its value, so a proof can show the value and who wrote it.
pub fn heads_digest(key: &[u8], heads: &[Head]) -> Digest {
    let mut h = blake3::Hasher::new_keyed(&HEADS_KEY);
    h.update(&(key.len() as u64).to_be_bytes());
    h.update(key);
    h.update(&(heads.len() as u32).to_be_bytes());
    for head in heads {
        h.update(&head.hash.0);
        h.update(&head.hlc.wall_ms.to_be_bytes());
        h.update(&head.hlc.counter.to_be_bytes());
        h.update(&head.author.0);
        h.update(&[head.kind.to_wire() as u8, head.tombstone as u8]);
        h.update(blake3::hash(&head.value).as_bytes());
    }
    *h.finalize().as_bytes()
}

/// The hash of a leaf: a key's path and the digest of its heads.
pub fn leaf_hash(path: &Digest, digest: &Digest) -> Digest {
    keyed_pair(&LEAF_KEY, path, digest)
}

fn keyed_pair(key: &[u8; 32], a: &Digest, b: &Digest) -> Digest {
    let mut input = [0u8; 64];
    input[..32].copy_from_slice(a);
    input[32..].copy_from_slice(b);
    *blake3::keyed_hash(key, &input).as_bytes()
}

/// Two sibling subtrees joined; two empty ones stay empty (so empty slots cost nothing).
pub fn branch(left: &Digest, right: &Digest) -> Digest {
    if left == &EMPTY && right == &EMPTY {
        return EMPTY;
    }
    keyed_pair(&BRANCH_KEY, left, right)
}

/// The hash of a node from the hashes of its 16 child slots.
pub fn node_hash(children: &[Digest; 16]) -> Digest {
    let mut level: Vec<Digest> = children.to_vec();
    while level.len() > 1 {
        level = level.chunks_exact(2).map(|pair| branch(&pair[0], &pair[1])).collect();
    }
    level[0]
}

/// The 4 sibling hashes that join child `slot` to the node's hash, lowest level first.
pub fn node_siblings(children: &[Digest; 16], slot: usize) -> [Digest; 4] {
    let mut out = [EMPTY; 4];
    let mut level: Vec<Digest> = children.to_vec();
    let mut at = slot & 0x0f;
    for sibling in &mut out {
        *sibling = level[at ^ 1];
        level = level.chunks_exact(2).map(|pair| branch(&pair[0], &pair[1])).collect();
        at >>= 1;
    }
    out
}

/// The root of a set of leaves `(path, heads digest)` computed from scratch, in any order: the
/// reference the store's incremental tree is checked against (and what a light client could
/// recompute from a full listing).
pub fn root_of(leaves: &[(Digest, Digest)]) -> Digest {
    let mut sorted = leaves.to_vec();
    sorted.sort_unstable();
    sorted.dedup_by_key(|(path, _)| *path);
    subtree_hash(&sorted, 0)
}

/// The hash of the subtree at `depth` holding `leaves` (sorted by path, all sharing the first
/// `depth` nibbles).
pub fn subtree_hash(leaves: &[(Digest, Digest)], depth: usize) -> Digest {
    match leaves {
        [] => EMPTY,
        [(path, digest)] => leaf_hash(path, digest),
        // Two leaves with one path (not a set: the caller's slip) end where paths do.
        [(path, digest), ..] if depth >= MAX_DEPTH => leaf_hash(path, digest),
        _ => node_hash(&child_hashes(leaves, depth)),
    }
}

/// The hashes of the 16 child slots of the node at `depth` holding `leaves` (sorted, sharing
/// the prefix).
fn child_hashes(leaves: &[(Digest, Digest)], depth: usize) -> [Digest; 16] {
    let mut children = [EMPTY; 16];
    for (slot, run) in by_nibble(leaves, depth) {
        children[slot] = subtree_hash(run, depth + 1);
    }
    children
}

/// `items` (sorted by path) cut into runs of one nibble at `depth`: `(nibble, run)`. Leaves or
/// changes (the store's tree walks runs of both).
pub fn by_nibble<V>(items: &[(Digest, V)], depth: usize) -> impl Iterator<Item = (usize, &[(Digest, V)])> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let (first, _) = rest.first()?;
        let slot = nibble(first, depth);
        let len = rest.iter().take_while(|(p, _)| nibble(p, depth) == slot).count();
        let (run, tail) = rest.split_at(len);
        rest = tail;
        Some((slot, run))
    })
}

/// The rest of the proof of `path` inside the subtree at `depth` holding `leaves` (sorted,
/// sharing the prefix), computed from the leaves: pushes the siblings of each node on the way
/// and returns where the path ends. The store keeps the tree's deepest levels as lists of
/// leaves and proves inside them with this.
pub fn path_in(leaves: &[(Digest, Digest)], depth: usize, path: &Digest, siblings: &mut Vec<[Digest; 4]>) -> Terminal {
    match leaves {
        [] => Terminal::Empty,
        [(at, digest)] => Terminal::Leaf { path: *at, digest: *digest },
        [(at, digest), ..] if depth >= MAX_DEPTH => Terminal::Leaf { path: *at, digest: *digest },
        _ => {
            let slot = nibble(path, depth);
            siblings.push(node_siblings(&child_hashes(leaves, depth), slot));
            let run = by_nibble(leaves, depth).find(|(s, _)| *s == slot).map_or(&[][..], |(_, run)| run);
            path_in(run, depth + 1, path, siblings)
        }
    }
}

/// What a proof's path ends at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// An empty slot: no key with this path prefix.
    Empty,
    /// A leaf: the key itself if `path` is the proven key's, else another key sharing the
    /// prefix (then the proven key is absent).
    Leaf {
        /// The leaf's key path.
        path: Digest,
        /// The digest of that key's heads.
        digest: Digest,
    },
}

/// A path from the root to where `path` ends: the siblings of each node on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerklePath {
    /// The proven key's path (`blake3(key)`).
    pub path: Digest,
    /// Per node from the root down, the 4 siblings (lowest level first).
    pub siblings: Vec<[Digest; 4]>,
    /// What the path ends at.
    pub terminal: Terminal,
}

/// Why a proof does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The path is longer than a path has nibbles.
    #[error("the proof's path is {0} nodes deep; at most 64 are possible")]
    TooDeep(usize),
    /// The leaf at the end does not share the prefix the path walked.
    #[error("the leaf at the end of the path does not lie on the key's path")]
    OffPath,
    /// The path hashes to another root.
    #[error("the path leads to root {computed}, not to the root {claimed}")]
    WrongRoot {
        /// Hex of the root the path computes.
        computed: String,
        /// Hex of the root the proof claims.
        claimed: String,
    },
    /// The key's path is not `blake3(key)`.
    #[error("the proof's key path is not blake3 of its key")]
    WrongKeyPath,
    /// The heads do not hash to the leaf's digest.
    #[error("the heads in the proof do not match the digest in the tree")]
    WrongHeads,
    /// A present key with a leaf of another path, or an absent one with its own leaf.
    #[error("{0}")]
    Inconsistent(&'static str),
    /// The attestation's signature does not verify.
    #[error("the attestation's signature does not verify")]
    BadSignature,
    /// The attestation is for another store or root than the proof.
    #[error("the attestation signs another {0} than the proof's")]
    AttestationMismatch(&'static str),
}

impl MerklePath {
    /// The root this path leads to, after checking its shape.
    pub fn root(&self) -> Result<Digest, ProofError> {
        let depth = self.siblings.len();
        if depth > MAX_DEPTH {
            return Err(ProofError::TooDeep(depth));
        }
        let mut hash = match &self.terminal {
            Terminal::Empty => EMPTY,
            Terminal::Leaf { path, digest } => {
                if (0..depth).any(|d| nibble(path, d) != nibble(&self.path, d)) {
                    return Err(ProofError::OffPath);
                }
                leaf_hash(path, digest)
            }
        };
        for (depth, siblings) in self.siblings.iter().enumerate().rev() {
            let slot = nibble(&self.path, depth);
            for (level, sibling) in siblings.iter().enumerate() {
                hash = if (slot >> level) & 1 == 0 { branch(&hash, sibling) } else { branch(sibling, &hash) };
            }
        }
        Ok(hash)
    }

    /// Whether the path proves its key present (its own leaf is at the end).
    pub fn proves_presence(&self) -> bool {
        matches!(self.terminal, Terminal::Leaf { path, .. } if path == self.path)
    }

    /// Checks that the path leads to `root` and says what it proves of `key`: `Some(digest)`
    /// (present, with that heads digest) or `None` (absent).
    pub fn verify(&self, key: &[u8], root: &Digest) -> Result<Option<Digest>, ProofError> {
        if key_path(key) != self.path {
            return Err(ProofError::WrongKeyPath);
        }
        let computed = self.root()?;
        if &computed != root {
            return Err(ProofError::WrongRoot { computed: hex::encode(computed), claimed: hex::encode(root) });
        }
        Ok(match self.terminal {
            Terminal::Leaf { path, digest } if path == self.path => Some(digest),
            _ => None,
        })
    }
}

/// A node's signed statement of its tree's root for a store, as of a frontier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// The store.
    pub store: StoreId,
    /// The root of its Merkle tree.
    pub root: Digest,
    /// [`frontier_digest`] of the entries held when the root was taken.
    pub frontier: Digest,
    /// Entries held then (the sum of the frontier's seqs).
    pub entries: u64,
    /// The signer's clock then.
    pub hlc: Hlc,
    /// Who signed.
    pub signer: AuthorId,
    /// Ed25519 over [`Attestation::message`].
    pub signature: [u8; 64],
}

/// The digest of a frontier: every author's last seq and hash, in author order.
pub fn frontier_digest(state: &SyncState) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"lattice/frontier/v1\0");
    for (author, at) in &state.authors {
        h.update(&author.0);
        h.update(&at.seq.to_be_bytes());
        h.update(&at.hash.0);
    }
    *h.finalize().as_bytes()
}

impl Attestation {
    /// Signs the root of `store` as of `frontier`.
    pub fn sign(identity: &Identity, store: StoreId, root: Digest, frontier: &SyncState, hlc: Hlc) -> Self {
        let mut attestation = Attestation {
            store,
            root,
            frontier: frontier_digest(frontier),
            entries: frontier.total_entries(),
            hlc,
            signer: identity.author(),
            signature: [0; 64],
        };
        attestation.signature = identity.sign(&attestation.message());
        attestation
    }

    /// The signed bytes.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(160);
        m.extend_from_slice(b"lattice/attestation/v1\0");
        m.extend_from_slice(self.store.as_bytes());
        m.extend_from_slice(&self.root);
        m.extend_from_slice(&self.frontier);
        m.extend_from_slice(&self.entries.to_be_bytes());
        m.extend_from_slice(&self.hlc.wall_ms.to_be_bytes());
        m.extend_from_slice(&self.hlc.counter.to_be_bytes());
        m.extend_from_slice(&self.signer.0);
        m
    }

    /// Whether the signature is the signer's (under the one signature rule of `batch`).
    pub fn verify(&self) -> Result<(), ProofError> {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.signer.0) else {
            return Err(ProofError::BadSignature);
        };
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        let message = self.message();
        match batch::verify_one(&SignedMessage { message: &message, signature: &signature, key: &key }) {
            true => Ok(()),
            false => Err(ProofError::BadSignature),
        }
    }

    /// Whether two attestations describe the same state (same root and same frontier): two
    /// nodes whose attestations agree hold the same entries and state.
    pub fn same_state(&self, other: &Attestation) -> bool {
        self.store == other.store && self.root == other.root && self.frontier == other.frontier
    }

    /// The protobuf form (sync and gossip).
    pub fn to_proto(&self) -> proto::Attestation {
        proto::Attestation {
            store_id: self.store.as_bytes().to_vec(),
            root: self.root.to_vec(),
            frontier: self.frontier.to_vec(),
            entries: self.entries,
            hlc: Some(self.hlc.to_proto()),
            signer: self.signer.0.to_vec(),
            signature: self.signature.to_vec(),
        }
    }

    /// Reads an attestation from a peer; `None` if malformed (the signature is not checked).
    pub fn from_proto(p: &proto::Attestation) -> Option<Self> {
        Some(Attestation {
            store: StoreId::from_bytes(&p.store_id).ok()?,
            root: p.root.as_slice().try_into().ok()?,
            frontier: p.frontier.as_slice().try_into().ok()?,
            entries: p.entries,
            hlc: Hlc::from_proto(p.hlc.as_ref()?),
            signer: AuthorId::from_bytes(&p.signer).ok()?,
            signature: p.signature.as_slice().try_into().ok()?,
        })
    }
}

#[cfg(test)]
mod tests;
