//! The Merkle tree of the store's keys (DESIGN.md §10; the hashes are lattice-core's `merkle`),
//! kept in `state.db` ([`tables::MERKLE_NODES`], the root slot in `meta_v1`).
//!
//! Every applied entry gives each key it touches a new heads digest (`apply`), collected in the
//! batch's [`Work::leaves`]. The tree itself is updated lazily, once for many entries: leaves
//! wait in memory ([`Store::merkle_pending`], those of committed batches), then, at each durable
//! commit or past [`MEMORY_MAX`], in the waiting table ([`tables::MERKLE_PENDING`], small: it
//! stays in the page cache), and are merged into the tree
//! - when [`MERGE_MAX`] leaves wait in all (fixed, not growing with the store: a merge costs
//!   about the size of the tree, and it runs on the actor, so a status after a large sync waits
//!   for one merge of at most that many leaves), or
//! - before any read of the root (status, an attestation, a proof).
//!
//! A merge walks down the trie once over the sorted changed paths and rewrites each node on a
//! changed path once, whatever the number of leaves below it that changed. The tree's rows are
//! keyed by hashed paths, so a merge dirties pages all over the table: merging rarely, many
//! leaves at a time, is what keeps the tree cheap (a merge per checkpoint made a 1M-entry sync
//! 60% slower).
//!
//! Why this is safe: every durable commit holds tree + waiting table = the heads it holds.
//! Between durable commits, `state.db` commits are not durable (a crash takes the index back to
//! the last durable commit, and the replay at open re-applies the log records after it, giving
//! their leaves again), so leaves in memory are never lost.
//!
//! Why a radix trie over `blake3(key)` (and not a Merkle search tree or a prolly tree): its
//! shape is a pure function of the key set with no balancing (so incremental updates in any
//! order give the same bytes), paths are uniformly distributed whatever the keys (no adversarial
//! deep spine from chosen keys short of blake3 collisions), absence proofs come for free (the
//! path ends at an empty slot or at another key's leaf), and subtrees are ranges of hashed keys,
//! so two trees diff by descending into the slots whose hashes differ. Nodes are 16-ary (short
//! updates) while proofs stay binary (4 siblings per node).
//!
//! Rows: a node per row above [`BUCKET_DEPTH`]; at it, a bucket holding the leaves of every key
//! under its prefix, whose lower levels are hashed from them when wanted (`merkle::subtree_hash`,
//! `merkle::path_in`). About n/16 rows at a million keys instead of a row per node (n/3), so a
//! merge rewrites far fewer rows; the hashes are the same either way.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use lattice_core::merkle::{self, Attestation, Digest, MerklePath, Terminal, nibble};
use lattice_core::{Head, Hlc, SyncState};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use super::read::frontier;
use super::{Store, Work};
use crate::error::StoreError;
use crate::tables::{
    self, BUCKET_DEPTH, Bucket, MERKLE_NODES, MERKLE_PENDING, META_MERKLE_ROOT, NodeRow, Slot, decode_heads,
    decode_pending, encode_pending, node_key,
};
use crate::types::KeyProof;

/// Leaves held in memory at most; more go to the waiting table (bounds the memory of a long
/// replay or sync to a few MB). Small in unit tests, so they cross every threshold.
#[cfg(not(test))]
pub(super) const MEMORY_MAX: usize = 64 * 1024;
#[cfg(test)]
pub(super) const MEMORY_MAX: usize = 16;
/// Leaves waiting in all (table and memory) before they are merged into the tree.
#[cfg(not(test))]
pub(super) const MERGE_MAX: usize = 256 * 1024;
#[cfg(test)]
pub(super) const MERGE_MAX: usize = 64;

/// A changed leaf: its path and its new heads digest (`None`: the key is gone).
type Change = (Digest, Option<Digest>);

impl Work {
    /// Records the heads `key` holds now (the last call for a key in a batch wins).
    pub(super) fn leaf_changed(&mut self, key: &[u8], heads: &[Head]) {
        self.leaves.insert(merkle::key_path(key), Some(merkle::heads_digest(key, heads)));
    }
}

impl Store {
    /// Puts the leaves waiting in memory (committed batches' and the batch `w`'s, whose
    /// transaction `state` is) where they belong at this point: still in memory (few, and the
    /// commit is not durable), or in the waiting table (a durable commit, or many in memory).
    /// With `merge_here` (the replay's one long transaction), many waiting in all are merged
    /// into the tree in `state` instead. If the batch aborts, the committed ones are given back
    /// ([`Store::abort`]). Returns whether a merge is due (see [`Store::merge_waiting`]).
    pub(super) fn place_leaves(
        &mut self,
        state: &WriteTransaction,
        w: &mut Work,
        durable: bool,
        merge_here: bool,
    ) -> Result<bool, StoreError> {
        let in_memory = self.merkle_pending.len() + w.leaves.len();
        if in_memory == 0 || (!durable && in_memory < MEMORY_MAX) {
            return Ok(false);
        }
        let waiting = state.open_table(MERKLE_PENDING)?.len()? as usize;
        let mut changes = std::mem::take(&mut self.merkle_pending);
        w.taken_pending.extend(changes.iter().map(|(p, d)| (*p, *d)));
        // A key changed by the batch after it changed in a committed one: the batch's is newer.
        changes.extend(std::mem::take(&mut w.leaves));
        let due = waiting + in_memory >= MERGE_MAX;
        if merge_here && due {
            merge_tree(state, changes, 0..=u8::MAX)?;
            return Ok(false);
        }
        let mut table = state.open_table(MERKLE_PENDING)?;
        let mut sorted: Vec<Change> = changes.into_iter().collect();
        sorted.sort_unstable_by_key(|(path, _)| *path);
        for (path, digest) in sorted {
            self.merkle_placed += 1;
            table.insert((path[0], self.merkle_placed), encode_pending(&path, digest.as_ref()).as_slice())?;
        }
        Ok(due)
    }

    /// Moves a committed batch's leaves to the waiting set in memory.
    pub(super) fn leaves_committed(&mut self, leaves: HashMap<Digest, Option<Digest>>) {
        self.merkle_pending.extend(leaves);
    }

    /// Merges every waiting leaf (table and memory) into the tree, in 16 transactions of its own,
    /// one per first nibble of the paths: each moves its leaves from the table and memory into
    /// the tree at once (so tree + table + memory is the heads between any two), and dirties only
    /// a sixteenth of the tree's pages (a merge of the whole tree in one transaction held ~60 MB
    /// more in memory during a 1M-entry sync). Not durable: see the module docs.
    pub(super) fn merge_waiting(&mut self) -> Result<(), StoreError> {
        self.check_running()?;
        for nibble in 0u8..16 {
            let bytes = nibble << 4..=(nibble << 4 | 0x0f);
            let mut tx = self.state.begin_write()?;
            let memory: HashMap<Digest, Option<Digest>> =
                self.merkle_pending.iter().filter(|(p, _)| bytes.contains(&p[0])).map(|(p, d)| (*p, *d)).collect();
            // The last chunk empties memory: the flag goes with it.
            let empties_memory = nibble == 15 && self.merkle_pending.len() == memory.len();
            let result = merge_tree(&tx, memory, bytes.clone()).and_then(|()| {
                if empties_memory {
                    tx.open_table(tables::META)?.remove(tables::META_MERKLE_DIRTY)?;
                }
                tx.set_durability(redb::Durability::None).map_err(|e| StoreError::Db(e.into()))?;
                Ok(tx.commit()?)
            });
            if let Err(e) = result {
                // `tx` is gone with its writes; the leaves still wait.
                tracing::error!(store = %self.store_id, error = %e, "could not update the Merkle tree");
                return Err(e);
            }
            self.merkle_pending.retain(|p, _| !bytes.contains(&p[0]));
        }
        self.merkle_dirty = false;
        Ok(())
    }

    /// Merges the waiting leaves if any wait (a read of the root wants the tree current).
    fn settle_tree(&mut self) -> Result<(), StoreError> {
        self.check_running()?;
        let waiting = {
            let tx = self.state.begin_read().map_err(redb::Error::from)?;
            match tx.open_table(MERKLE_PENDING) {
                Ok(table) => table.len()?,
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(e.into()),
            }
        };
        if self.merkle_pending.is_empty() && waiting == 0 {
            return Ok(());
        }
        self.merge_waiting()
    }

    /// The root of the tree over every key's heads.
    pub(crate) fn merkle_root(&mut self) -> Result<Digest, StoreError> {
        self.settle_tree()?;
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        Ok(root_slot(&tx.open_table(tables::META)?)?.hash())
    }

    /// This node's signed attestation of the store's root as of the entries it holds now, with
    /// that frontier.
    pub(crate) fn attestation(&mut self) -> Result<(Attestation, SyncState), StoreError> {
        self.settle_tree()?;
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let root = root_slot(&tx.open_table(tables::META)?)?.hash();
        let state = frontier(&tx)?;
        Ok((self.sign_root(root, &state), state))
    }

    fn sign_root(&self, root: Digest, state: &SyncState) -> Attestation {
        let last = self.clock.last();
        let now = self.now();
        let hlc = if now > last.wall_ms { Hlc::new(now, 0) } else { last };
        Attestation::sign(&self.identity, self.store_id, root, state, hlc)
    }

    /// A proof of `key` (its heads, or its absence) against the current root, with this node's
    /// attestation of that root: everything read in one transaction.
    pub(crate) fn prove(&mut self, key: &[u8]) -> Result<KeyProof, StoreError> {
        self.settle_tree()?;
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let root = root_slot(&tx.open_table(tables::META)?)?;
        let nodes = tx.open_table(MERKLE_NODES)?;
        let path = walk(&nodes, root, merkle::key_path(key))?;
        let heads = match tx.open_table(tables::KV)?.get(key)? {
            Some(v) => decode_heads(v.value())?,
            None => Vec::new(),
        };
        let state = frontier(&tx)?;
        let attestation = self.sign_root(root.hash(), &state);
        Ok(KeyProof { key: key.to_vec(), heads, path, attestation })
    }

    /// Builds the tree from the heads (once, at open) where it is not current: a store indexed
    /// before the tree or before its present layout, or one whose last leaves were in memory only
    /// when its process ended. In runs of [`MERGE_MAX`] keys.
    pub(super) fn build_tree(&mut self) -> Result<(), StoreError> {
        let tx = self.state.begin_write()?;
        {
            let mut meta = tx.open_table(tables::META)?;
            if meta.get(tables::META_MERKLE_DIRTY)?.is_some() {
                tracing::warn!(store = %self.store_id, "the store was not closed cleanly after its last commits; rebuilding its Merkle tree");
            } else if meta.get(META_MERKLE_ROOT)?.is_some() {
                drop(meta);
                self.merkle_placed = last_placed(&tx)?;
                return Ok(());
            }
            meta.remove(tables::META_MERKLE_DIRTY)?;
            meta.remove(META_MERKLE_ROOT)?;
            meta.remove(tables::LEGACY_META_MERKLE_ROOT)?;
        }
        tx.delete_table(tables::LEGACY_MERKLE_NODES)?;
        tx.delete_table(tables::LEGACY_MERKLE_PENDING)?;
        tx.delete_table(MERKLE_NODES)?;
        tx.delete_table(MERKLE_PENDING)?;
        tx.open_table(MERKLE_NODES)?;
        tx.open_table(MERKLE_PENDING)?;
        let started = std::time::Instant::now();
        let mut keys = 0u64;
        {
            let kv = tx.open_table(tables::KV)?;
            let mut run = Vec::with_capacity(MERGE_MAX);
            for item in kv.iter()? {
                let (k, v) = item?;
                let heads = decode_heads(v.value())?;
                run.push((merkle::key_path(k.value()), Some(merkle::heads_digest(k.value(), &heads))));
                if run.len() == MERGE_MAX {
                    keys += run.len() as u64;
                    update_tree(&tx, std::mem::take(&mut run))?;
                }
            }
            keys += run.len() as u64;
            update_tree(&tx, run)?;
        }
        tx.commit()?;
        if keys > 0 {
            tracing::info!(store = %self.store_id, keys, elapsed_ms = started.elapsed().as_millis() as u64, "built the Merkle tree of the store's keys");
        }
        Ok(())
    }
}

/// The root slot (empty if the tree was never written).
fn root_slot(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Slot, StoreError> {
    match meta.get(META_MERKLE_ROOT)? {
        Some(v) => Ok(Slot::decode(v.value())?.0),
        None => Ok(Slot::Empty),
    }
}

/// The path from `root` to where `path` ends.
fn walk(
    nodes: &impl ReadableTable<&'static [u8], &'static [u8]>,
    root: Slot,
    path: Digest,
) -> Result<MerklePath, StoreError> {
    let mut siblings = Vec::new();
    let mut slot = root;
    loop {
        let depth = siblings.len();
        match slot {
            Slot::Empty => return Ok(MerklePath { path, siblings, terminal: Terminal::Empty }),
            Slot::Leaf { path: at, digest } => {
                return Ok(MerklePath { path, siblings, terminal: Terminal::Leaf { path: at, digest } });
            }
            Slot::Node(_) if depth == BUCKET_DEPTH => {
                let bucket = read_bucket(nodes, depth, &path)?;
                let terminal = merkle::path_in(&bucket.leaves, depth, &path, &mut siblings);
                return Ok(MerklePath { path, siblings, terminal });
            }
            Slot::Node(_) => {
                let row = read_node(nodes, depth, &path)?;
                let child = nibble(&path, depth);
                siblings.push(merkle::node_siblings(&row.hashes(), child));
                slot = row.children[child];
            }
        }
    }
}

fn read_node(
    nodes: &impl ReadableTable<&'static [u8], &'static [u8]>,
    depth: usize,
    path: &Digest,
) -> Result<NodeRow, StoreError> {
    read_row(nodes, depth, path, NodeRow::decode)
}

fn read_bucket(
    nodes: &impl ReadableTable<&'static [u8], &'static [u8]>,
    depth: usize,
    path: &Digest,
) -> Result<Bucket, StoreError> {
    read_row(nodes, depth, path, Bucket::decode)
}

/// The row of the node or bucket at `depth` on `path`, decoded; a missing one is corruption (its
/// parent's slot names it).
fn read_row<T>(
    nodes: &impl ReadableTable<&'static [u8], &'static [u8]>,
    depth: usize,
    path: &Digest,
    decode: fn(&[u8]) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if depth >= merkle::MAX_DEPTH {
        return Err(StoreError::CorruptIndex("merkle tree deeper than a path".into()));
    }
    match nodes.get(node_key(depth, path).as_slice())? {
        Some(v) => decode(v.value()),
        None => Err(StoreError::CorruptIndex(format!("merkle row missing at depth {depth}"))),
    }
}

/// Merges the waiting table's leaves whose path starts with a byte in `first` and `newer` (which
/// win over the table's; all in `first` too) into the tree, and takes those rows out of the table.
/// One first byte at a time, so memory holds a 256th of the waiting leaves.
fn merge_tree(
    state: &WriteTransaction,
    newer: HashMap<Digest, Option<Digest>>,
    first: RangeInclusive<u8>,
) -> Result<(), StoreError> {
    let mut newer_by_byte: Vec<Vec<Change>> = vec![Vec::new(); 256];
    for (path, digest) in newer {
        newer_by_byte[path[0] as usize].push((path, digest));
    }
    let mut table = state.open_table(MERKLE_PENDING)?;
    for byte in first {
        let range = (byte, 0)..=(byte, u64::MAX);
        let mut latest: HashMap<Digest, Option<Digest>> = HashMap::new();
        // In placing order (a path's rows all share its first byte): the last wins.
        for item in table.range(range.clone())? {
            let (path, digest) = decode_pending(item?.1.value())?;
            latest.insert(path, digest);
        }
        table.retain_in(range, |_, _| false)?;
        latest.extend(std::mem::take(&mut newer_by_byte[byte as usize]));
        update_tree(state, latest.into_iter().collect())?;
    }
    Ok(())
}

/// The last placing number in the waiting table (0 if it is empty): where [`Store::place_leaves`]
/// goes on numbering.
pub(super) fn last_placed(state: &WriteTransaction) -> Result<u64, StoreError> {
    let table = state.open_table(MERKLE_PENDING)?;
    let mut last = 0;
    for first in 0..=u8::MAX {
        if let Some(item) = table.range((first, 0)..=(first, u64::MAX))?.next_back() {
            last = last.max(item?.0.value().1);
        }
    }
    Ok(last)
}

/// Applies `changes` (any order, one per path) to the tree in `state`.
pub(super) fn update_tree(state: &WriteTransaction, mut changes: Vec<Change>) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    changes.sort_unstable_by_key(|(path, _)| *path);
    let mut meta = state.open_table(tables::META)?;
    let mut nodes = state.open_table(MERKLE_NODES)?;
    let root = root_slot(&meta)?;
    let root = update_slot(&mut nodes, 0, root, &changes)?;
    meta.insert(META_MERKLE_ROOT, root.encode().as_slice())?;
    Ok(())
}

type Nodes<'t> = Table<'t, &'static [u8], &'static [u8]>;

/// The new content of the slot at `depth` (on the paths of `changes`, sorted, all sharing the
/// slot's prefix) after `changes`.
fn update_slot(nodes: &mut Nodes<'_>, depth: usize, slot: Slot, changes: &[Change]) -> Result<Slot, StoreError> {
    let Some((first, _)) = changes.first() else { return Ok(slot) };
    match slot {
        Slot::Node(_) if depth == BUCKET_DEPTH => {
            let leaves = read_bucket(nodes, depth, first)?.leaves;
            store_bucket(nodes, depth, first, changed(leaves, changes))
        }
        Slot::Node(_) => {
            let mut row = read_node(nodes, depth, first)?;
            for (child, run) in merkle::by_nibble(changes, depth) {
                row.children[child] = update_slot(nodes, depth + 1, row.children[child], run)?;
            }
            store_node(nodes, depth, first, row)
        }
        Slot::Empty | Slot::Leaf { .. } => {
            // At most one key here so far: the subtree is rebuilt from its keys.
            let here = match slot {
                Slot::Leaf { path, digest } => vec![(path, digest)],
                _ => Vec::new(),
            };
            build(nodes, depth, &changed(here, changes))
        }
    }
}

/// `leaves` (sorted) after `changes` (sorted, one per path): upserted or removed.
fn changed(leaves: Vec<(Digest, Digest)>, changes: &[Change]) -> Vec<(Digest, Digest)> {
    let mut out = Vec::with_capacity(leaves.len() + changes.len());
    let mut old = leaves.into_iter().peekable();
    for (path, digest) in changes {
        while let Some(leaf) = old.next_if(|(p, _)| p < path) {
            out.push(leaf);
        }
        old.next_if(|(p, _)| p == path);
        if let Some(digest) = digest {
            out.push((*path, *digest));
        }
    }
    out.extend(old);
    out
}

/// The subtree at `depth` holding `leaves` (sorted, sharing the prefix), written.
fn build(nodes: &mut Nodes<'_>, depth: usize, leaves: &[(Digest, Digest)]) -> Result<Slot, StoreError> {
    match leaves {
        [] => Ok(Slot::Empty),
        [(path, digest)] => Ok(Slot::Leaf { path: *path, digest: *digest }),
        [(first, _), ..] if depth == BUCKET_DEPTH => store_bucket(nodes, depth, first, leaves.to_vec()),
        [(first, _), ..] => {
            if depth >= merkle::MAX_DEPTH {
                return Err(StoreError::CorruptIndex("two keys with one path".into()));
            }
            let mut row = NodeRow::default();
            for (child, run) in merkle::by_nibble(leaves, depth) {
                row.children[child] = build(nodes, depth + 1, run)?;
            }
            store_node(nodes, depth, first, row)
        }
    }
}

/// Writes the bucket at `depth` on `path` holding `leaves` (sorted): with two or more, its row
/// and a node slot; else no row, and the slot of the one leaf or none.
fn store_bucket(
    nodes: &mut Nodes<'_>,
    depth: usize,
    path: &Digest,
    leaves: Vec<(Digest, Digest)>,
) -> Result<Slot, StoreError> {
    let key = node_key(depth, path);
    match leaves.as_slice() {
        [] | [_] => {
            nodes.remove(key.as_slice())?;
            Ok(leaves.first().map_or(Slot::Empty, |(path, digest)| Slot::Leaf { path: *path, digest: *digest }))
        }
        _ => {
            let hash = merkle::subtree_hash(&leaves, depth);
            nodes.insert(key.as_slice(), Bucket { leaves }.encode().as_slice())?;
            Ok(Slot::Node(hash))
        }
    }
}

/// Writes the node at `depth` on `path` in canonical form: no key left, its row goes and the
/// slot is empty; one leaf left, its row goes and the leaf moves up; else the row is written.
fn store_node(nodes: &mut Nodes<'_>, depth: usize, path: &Digest, row: NodeRow) -> Result<Slot, StoreError> {
    let key = node_key(depth, path);
    let mut occupied = row.children.iter().filter(|c| **c != Slot::Empty);
    let only = match (occupied.next(), occupied.next()) {
        (None, _) => Some(Slot::Empty),
        (Some(leaf @ Slot::Leaf { .. }), None) => Some(*leaf),
        _ => None,
    };
    if let Some(slot) = only {
        nodes.remove(key.as_slice())?;
        return Ok(slot);
    }
    let hash = merkle::node_hash(&row.hashes());
    nodes.insert(key.as_slice(), row.encode().as_slice())?;
    Ok(Slot::Node(hash))
}

#[cfg(test)]
mod tests;
