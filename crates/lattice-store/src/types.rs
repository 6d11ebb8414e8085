//! The value types of the store's API: its configuration, what a write or an ingest produced,
//! gaps, status figures, watch events and the entries of a commit.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lattice_core::{AuthorId, Hash, Hlc, Kind, Op, VerifiedEntry};

/// Tunables of a store. `Default` gives production values.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// How far a remote HLC may pull the local clock ahead of the wall clock.
    pub max_drift_ms: u64,
    /// How long an orphan waits for its missing predecessor or parent before it is dropped.
    pub orphan_ttl: Duration,
    /// Bytes the orphan buffer may hold in all (each orphan is charged its record and its index
    /// rows): an orphan that would exceed it is refused ([`IngestError::OrphanBufferFull`]), so
    /// peers cannot fill the disk with entries that never apply.
    ///
    /// [`IngestError::OrphanBufferFull`]: crate::IngestError::OrphanBufferFull
    pub max_orphan_bytes: u64,
    /// Bytes the orphans of one author may hold: one author (a flood of its entries, or of
    /// entries citing parents that never come) cannot take the whole buffer.
    pub max_orphan_bytes_per_author: u64,
    /// At most this long between durable (fsynced) index commits; bounds replay at open.
    pub checkpoint_interval: Duration,
    /// Added to the wall clock (tests simulate skewed clocks with it).
    pub clock_offset_ms: i64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_drift_ms: lattice_core::hlc::DEFAULT_MAX_DRIFT_MS,
            orphan_ttl: Duration::from_secs(3600),
            max_orphan_bytes: 256 << 20,
            max_orphan_bytes_per_author: 64 << 20,
            checkpoint_interval: Duration::from_secs(1),
            clock_offset_ms: 0,
        }
    }
}

/// An equivocation proof as peers exchange it: two SignedEntry bytes by one author at one seq
/// of one store (see [`SyncStore::ingest_proof`](crate::SyncStore::ingest_proof)).
pub type ProofBytes = (Vec<u8>, Vec<u8>);

/// Keys and values, in key order.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Keys and their typed values, in key order.
pub type KvValues = Vec<(Vec<u8>, Value)>;

/// The value a key shows, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A register's bytes (the winning put).
    Register(Vec<u8>),
    /// A counter's sum. An exact sum beyond the i64 range (possible only through entries of
    /// other nodes: a local write that would leave the range is refused) reads as the nearest
    /// bound, on every node alike.
    Counter(i64),
    /// A set's members, in byte order.
    Set(Vec<Vec<u8>>),
}

impl Value {
    /// The kind of value this is.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Register(_) => Kind::Register,
            Value::Counter(_) => Kind::Counter,
            Value::Set(_) => Kind::Set,
        }
    }

    /// The value as bytes, for byte-oriented reads ([`KvStore::get`](crate::KvStore::get),
    /// `list`, a watch's initial state): a register's bytes, a counter's sum in decimal, a set's
    /// members one per line (a member that holds a newline is ambiguous there: use the typed read).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Value::Register(bytes) => bytes.clone(),
            Value::Counter(sum) => sum.to_string().into_bytes(),
            Value::Set(members) => members.join(&b'\n'),
        }
    }
}

/// A precondition of a [`Transaction`], checked against the key's current winner when the
/// write is made (inside the store's actor, so writes on one node are ordered by it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The key's visible value is the one written by the entry with this hash (its ETag).
    Matches {
        /// The key.
        key: Vec<u8>,
        /// The hash of the entry that wrote the current winner.
        hash: Hash,
    },
    /// The key has no visible value (never written, or deleted).
    Absent {
        /// The key.
        key: Vec<u8>,
    },
}

impl Condition {
    /// The key the condition is about.
    pub fn key(&self) -> &[u8] {
        match self {
            Condition::Matches { key, .. } | Condition::Absent { key } => key,
        }
    }

    /// Whether the condition holds for a key whose visible winner was written by `current`.
    pub fn holds(&self, current: Option<Hash>) -> bool {
        match self {
            Condition::Matches { hash, .. } => current == Some(*hash),
            Condition::Absent { .. } => current.is_none(),
        }
    }
}

/// Operations written as one entry, all or none, if every condition holds; otherwise nothing
/// is written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    /// Applied in order, atomically.
    pub ops: Vec<Op>,
    /// Checked before anything is written.
    pub conditions: Vec<Condition>,
}

impl Transaction {
    /// Operations without conditions.
    pub fn new(ops: Vec<Op>) -> Transaction {
        Transaction { ops, conditions: Vec::new() }
    }

    /// Adds a condition.
    pub fn when(mut self, condition: Condition) -> Transaction {
        self.conditions.push(condition);
        self
    }
}

/// What a local write produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteReceipt {
    /// The hash of the signed entry.
    pub hash: Hash,
    /// Its timestamp.
    pub hlc: Hlc,
    /// Its place in this node's chain.
    pub seq: u64,
}

/// A gap: an entry arrived whose predecessor (`have_seq + 1 ..= need_seq` of `author`) or DAG
/// parent (`missing_parent`) is not held. The network layer answers with a targeted sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapInfo {
    /// The author of the entry that arrived.
    pub author: AuthorId,
    /// The last seq of `author` held.
    pub have_seq: u64,
    /// The seq just before the entry that arrived: `have_seq + 1 ..= need_seq` are missing
    /// (none when only a DAG parent is).
    pub need_seq: u64,
    /// The DAG parent missing, if that is what the entry waits for.
    pub missing_parent: Option<Hash>,
}

/// What became of an ingested entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Applied, together with `released` orphans that were waiting for it.
    Applied {
        /// Orphans applied after it, in a chain of releases.
        released: usize,
    },
    /// Already held.
    Duplicate,
    /// Held in orphans.db until the gap closes.
    Orphaned(GapInfo),
    /// Held in orphans.db because its author is not admitted to the mesh (yet); applied when
    /// [`set_authorisation`](crate::StoreHandle::set_authorisation) admits it, dropped at the
    /// orphan TTL.
    Unauthorised,
    /// Its author is removed (past its cut-off) or equivocated (at or past the fork) in this
    /// store (DESIGN.md §7.2, §7.4): the entry is stored and served by sync, never applied. One
    /// that arrives before its predecessor is dropped instead (a sync sends an author's entries
    /// in seq order, so it comes back in order).
    Refused,
}

/// Who may write into a store, as the mesh's control plane says (`None` = everyone: tests, tools).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorisation {
    /// Authors whose entries all apply (members: invited or active).
    pub members: HashSet<AuthorId>,
    /// Removed authors: entries on the chain that ends at the cut-off apply; later ones, and
    /// the one at the cut-off's seq if its hash differs (a fork), are refused. (A removed author
    /// with no entry in this store has cut-off 0.) An author listed in both sets is held to its
    /// cut-off.
    pub cutoffs: HashMap<AuthorId, Cutoff>,
}

/// Where a removed author's valid chain ends in a store (DESIGN.md §7.2): its last valid seq
/// and the hash of the entry there. Chains are hash-linked, so an entry at `seq` with `hash`
/// fixes every entry below it; one below that forks from it is an equivocation (§7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cutoff {
    /// The last seq that applies (0: none does).
    pub seq: u64,
    /// The hash of the author's entry at `seq`: an entry there with another hash is refused.
    /// [`Hash::ZERO`]: not known (seq 0, or a policy persisted before cut-offs carried hashes),
    /// and only `seq` binds.
    pub hash: Hash,
}

impl Cutoff {
    /// A cut-off at `seq` whose hash is not known: only the seq binds.
    pub fn at_seq(seq: u64) -> Self {
        Cutoff { seq, hash: Hash::ZERO }
    }
}

/// Figures for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// Entries applied.
    pub entries: u64,
    /// Authors with at least one entry stored (applied or refused).
    pub authors: u64,
    /// Keys with a visible value.
    pub keys: u64,
    /// Entries waiting in orphans.db.
    pub orphans: u64,
    /// Bytes they are charged against [`StoreConfig::max_orphan_bytes`].
    pub orphan_bytes: u64,
    /// Entries refused because the orphan buffer had no room for them
    /// ([`IngestError::OrphanBufferFull`](crate::IngestError::OrphanBufferFull)), since the
    /// buffer was made.
    pub orphans_refused: u64,
    /// Keys with more than one head.
    pub conflicts: u64,
    /// Entries stored but not applied: their author is removed or equivocated
    /// ([`IngestOutcome::Refused`]).
    pub refused: u64,
    /// Authors proven to have signed two entries at one seq in this store, with that seq (the
    /// fork seq: their entries from it on are refused), in author order.
    pub equivocated: Vec<(AuthorId, u64)>,
    /// The root of the Merkle tree over every key's heads (DESIGN.md §10): equal on two nodes
    /// holding the same entries.
    pub root: lattice_core::merkle::Digest,
}

/// One version of a key (DESIGN.md §11 `history`): an applied entry that touched it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// The entry's HLC.
    pub hlc: lattice_core::Hlc,
    /// Who wrote it.
    pub author: lattice_core::AuthorId,
    /// The entry's hash.
    pub hash: lattice_core::Hash,
    /// Its ops on the key, in order (the last one is the head it left).
    pub ops: Vec<lattice_core::Op>,
    /// Whether the entry is one of the key's heads now.
    pub head: bool,
}

impl Version {
    /// What the entry's counter ops on the key add up to (exact: several can pass the i64 range).
    pub fn counter_added(&self) -> i128 {
        self.ops
            .iter()
            .map(|op| if let lattice_core::Op::CounterAdd { delta, .. } = op { *delta as i128 } else { 0 })
            .sum()
    }
}

/// A Merkle proof of one key against this node's current root (DESIGN.md §10): its heads
/// (empty if absent), the path from the root, and this node's signed attestation of that root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyProof {
    /// The key proven.
    pub key: Vec<u8>,
    /// Its heads, winner first (empty: absent).
    pub heads: Vec<lattice_core::Head>,
    /// The path from the root to where the key's path ends.
    pub path: lattice_core::MerklePath,
    /// This node's signature over the root the path leads to.
    pub attestation: lattice_core::Attestation,
}

/// The entry behind a [`WatchEvent`]: the head that is now visible (a put), or the tombstone
/// that hid the value (a delete).
///
/// A change of policy (an author removed, an equivocation proven) can change what is visible
/// without a new entry: then a put names the older head that is visible again, and a delete
/// the winning tombstone if any, else the head that was taken out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The entry's hash.
    pub hash: Hash,
    /// Its timestamp.
    pub hlc: Hlc,
    /// Its author.
    pub author: AuthorId,
}

impl Change {
    /// The entry that wrote `head`.
    pub fn of(head: &lattice_core::Head) -> Change {
        Change { hash: head.hash, hlc: head.hlc, author: head.author }
    }
}

/// A change of a key's visible value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key's visible value is now `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// Its new visible value.
        value: Vec<u8>,
        /// The entry that wrote it.
        source: Change,
    },
    /// The counter at the key now sums to `value`.
    Counter {
        /// The key.
        key: Vec<u8>,
        /// Its new sum.
        value: i64,
        /// The entry behind the change: the head now visible, or (an op that lost to another
        /// head of the counter, and still counts) that op's entry.
        source: Change,
    },
    /// The set at the key now holds `members`.
    Set {
        /// The key.
        key: Vec<u8>,
        /// Its members, in byte order.
        members: Vec<Vec<u8>>,
        /// The entry behind the change (as for [`WatchEvent::Counter`]).
        source: Change,
    },
    /// The key has no visible value any more.
    Delete {
        /// The key.
        key: Vec<u8>,
        /// The entry that deleted it (see [`Change`] for a change of policy).
        source: Change,
    },
}

impl WatchEvent {
    /// The key that changed.
    pub fn key(&self) -> &[u8] {
        match self {
            WatchEvent::Put { key, .. }
            | WatchEvent::Counter { key, .. }
            | WatchEvent::Set { key, .. }
            | WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The entry behind the change.
    pub fn source(&self) -> &Change {
        match self {
            WatchEvent::Put { source, .. }
            | WatchEvent::Counter { source, .. }
            | WatchEvent::Set { source, .. }
            | WatchEvent::Delete { source, .. } => source,
        }
    }

    /// The visible value after the change, typed (`None`: deleted).
    pub fn value(&self) -> Option<Value> {
        match self {
            WatchEvent::Put { value, .. } => Some(Value::Register(value.clone())),
            WatchEvent::Counter { value, .. } => Some(Value::Counter(*value)),
            WatchEvent::Set { members, .. } => Some(Value::Set(members.clone())),
            WatchEvent::Delete { .. } => None,
        }
    }

    /// The event that says `key` now shows `value` (the change made by `source`).
    pub fn of_value(key: Vec<u8>, value: Value, source: Change) -> WatchEvent {
        match value {
            Value::Register(value) => WatchEvent::Put { key, value, source },
            Value::Counter(value) => WatchEvent::Counter { key, value, source },
            Value::Set(members) => WatchEvent::Set { key, members, source },
        }
    }
}

/// Entries applied by one group commit. `local` holds the ones written on this node, in
/// commit order, and `proofs` the equivocation proofs the commit made or took in that were new
/// to this store: what gossip broadcasts.
#[derive(Clone, Debug, Default)]
pub struct Committed {
    /// The entries written on this node, in commit order.
    pub local: Vec<VerifiedEntry>,
    /// How many received entries the commit applied.
    pub remote: usize,
    /// Equivocation proofs new to this store (found on ingest, or received from a peer), as
    /// the two SignedEntry bytes. A proof this store already held never appears here again, so
    /// passing these on cannot echo around a mesh.
    pub proofs: Vec<ProofBytes>,
}
