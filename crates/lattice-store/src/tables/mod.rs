//! Every redb table of a store, with its key and value layout, and the codec of every row: no
//! other file spells a row's bytes. Names carry a version suffix: a layout change gets a new
//! name (and, since `state.db` is derived, a rebuild from the logs). The tables of counters and
//! sets are in `kinds`, the Merkle tree's in `merkle`.

use std::collections::{HashMap, HashSet};

use lattice_core::chain::ChainTip;
use lattice_core::heads::Head;
use lattice_core::proto;
use lattice_core::{AuthorId, Hash, Hlc};
use prost::Message;
use redb::{MultimapTableDefinition, TableDefinition};

use crate::error::StoreError;
use crate::types::{Authorisation, Cutoff};

mod kinds;
mod merkle;
pub use kinds::*;
pub use merkle::*;

// ---------- state.db: derived from the logs ----------

/// Key: user key bytes. Value: encoded `HeadList` (heads of the key, winner first, at most one
/// per author).
pub const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv_v2");
/// The heads of a store indexed before a key held at most one head per author: found at open,
/// it is dropped and the index rebuilt from the logs under the current rule.
pub const LEGACY_KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv_v1");

/// Key: author public key. Value: [`AuthorRow`] (60 bytes).
pub const AUTHORS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("authors_v1");

/// Key: entry hash. Value: [`EntryRow`] (52 bytes): where the entry sits in its author's log.
pub const ENTRIES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("entries_v1");

/// Key: (user key, HLC wall ms, HLC counter, author) of every applied entry that touched the key
/// and is no longer one of its heads (the heads, in [`KV`], are its other versions). Value: the
/// entry's hash (its ops on the key are read from its log record, via [`ENTRIES`]). Written when
/// a head leaves, so a key written once has no row. `history` lists rows and heads in HLC order;
/// `get --at` takes the last at or before a time. An author's HLCs rise along its chain, so no
/// two rows share a key.
pub const VERSIONS: TableDefinition<VersionKey<'static>, [u8; 32]> = TableDefinition::new("versions_v1");
/// The key of a [`VERSIONS`] row: (user key, HLC wall ms, HLC counter, author).
pub type VersionKey<'k> = (&'k [u8], u64, u32, [u8; 32]);

/// Key: name. Value: bytes (see the `META_*` names).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_v1");

/// 16-byte store id: opening a store directory under another id is refused.
pub const META_STORE_ID: &str = "store_id";
/// [`ClockRow`] (12 bytes): the store clock at the last commit.
pub const META_CLOCK: &str = "clock";
/// [`Counters`] (32 bytes): entries, live keys, conflicted keys, refused entries.
pub const META_COUNTERS: &str = "counters";
/// Present (one byte, 1) when [`VERSIONS`] holds every applied entry that is no longer a head: written by the open of a
/// new (or just reset) index. A store indexed before the table existed lacks it, and its open
/// rebuilds the index from the logs once.
pub const META_VERSIONS: &str = "versions";
/// Present (one byte, 1) while the index still reflects an older policy than [`POLICY`] holds:
/// the policy change committed, the recomputation did not yet. The open then rebuilds the index.
/// The rebuild drops `meta_v1`, and with it this row.
pub const META_RECOMPUTE: &str = "recompute";

// ---------- state.db: what the logs cannot tell (kept when the index is rebuilt) ----------

/// Key: name. Value: see [`POLICY_AUTHORISATION`].
pub const POLICY: TableDefinition<&str, &[u8]> = TableDefinition::new("policy_v1");
/// [`AuthorisationRow`]: who may write (absent: everyone).
pub const POLICY_AUTHORISATION: &str = "authorisation";

/// Key: (author, fork seq). Value: [`ProofRow`]: the two SignedEntry bytes signed at that seq.
/// At most one row per author, the lowest fork seq known (only it decides what is refused).
pub const PROOFS: TableDefinition<([u8; 32], u64), &[u8]> = TableDefinition::new("equivocations_v1");

// ---------- orphans.db: entries waiting for something ----------
//
// A derived buffer (sync brings its entries again): a layout change gets new table names, and
// the open drops the tables of older layouts (see [`LEGACY_ORPHAN_TABLES`]).

/// Key: orphan entry hash. Value: [`OrphanRow`] header + encoded SignedEntry.
pub const ORPHANS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("orphans_v2");
/// Key: (author, seq of the missing predecessor). Values: hashes of orphans waiting for it.
pub const WAIT_PREDECESSOR: MultimapTableDefinition<([u8; 32], u64), [u8; 32]> =
    MultimapTableDefinition::new("wait_predecessor_v2");
/// Key: missing DAG parent hash. Values: hashes of orphans waiting for it.
pub const WAIT_PARENT: MultimapTableDefinition<[u8; 32], [u8; 32]> = MultimapTableDefinition::new("wait_parent_v2");
/// Key: author not admitted (yet). Values: hashes of its orphans waiting for its admission.
pub const WAIT_ADMISSION: MultimapTableDefinition<[u8; 32], [u8; 32]> =
    MultimapTableDefinition::new("wait_admission_v2");
/// Key: (author, seq, hash) of every orphan: an author's orphans in seq order, found without
/// reading the others (a limit lowered takes those past it).
pub const ORPHANS_BY_AUTHOR: TableDefinition<([u8; 32], u64, [u8; 32]), ()> =
    TableDefinition::new("orphans_by_author_v2");
/// Key: (received_ms, hash) of every orphan: expiry reads only the expired ones.
pub const ORPHANS_BY_AGE: TableDefinition<(u64, [u8; 32]), ()> = TableDefinition::new("orphans_by_age_v2");
/// Key: author. Value: [`UsageRow`]: its orphans and the bytes they are charged.
pub const ORPHAN_USAGE: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("orphan_usage_v2");
/// Key: name. Value: see the `ORPHAN_META_*` names.
pub const ORPHAN_META: TableDefinition<&str, &[u8]> = TableDefinition::new("orphan_meta_v2");
/// [`UsageRow`] of the whole buffer (the sum of the [`ORPHAN_USAGE`] rows).
pub const ORPHAN_META_TOTAL: &str = "total";
/// u64 LE: entries refused since the buffer was made because they did not fit.
pub const ORPHAN_META_REFUSED: &str = "refused";

/// The tables of the orphan buffer of older layouts (`orphans_v1` and its wait indexes, whose
/// byte totals and indexes cannot be derived without a scan): dropped at open with a warning.
pub const LEGACY_ORPHANS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("orphans_v1");
/// See [`LEGACY_ORPHANS`].
pub const LEGACY_ORPHAN_WAITS: [&str; 2] = ["wait_predecessor_v1", "wait_parent_v1"];

/// What an orphan is charged beyond its record: its rows in the indexes, so a flood of tiny
/// entries is bounded too.
pub const ORPHAN_INDEX_CHARGE: u64 = 192;

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}
fn arr32(b: &[u8], at: usize) -> [u8; 32] {
    let mut x = [0u8; 32];
    x.copy_from_slice(&b[at..at + 32]);
    x
}

/// Encodes the value of a [`KV`] row: the key's heads, winner first, as a `HeadList`.
pub fn encode_heads(heads: &[Head]) -> Vec<u8> {
    proto::HeadList { heads: heads.iter().map(Head::to_proto).collect() }.encode_to_vec()
}

/// Decodes the value of a [`KV`] row.
pub fn decode_heads(bytes: &[u8]) -> Result<Vec<Head>, StoreError> {
    let list = proto::HeadList::decode(bytes).map_err(|e| StoreError::CorruptIndex(format!("head list: {e}")))?;
    list.heads
        .into_iter()
        .map(|h| Head::from_proto(h).ok_or_else(|| StoreError::CorruptIndex("malformed head".into())))
        .collect()
}

/// The tip of an author's chain and how far its log is indexed.
///
/// Layout: `seq u64 | hash [32] | hlc.wall u64 | hlc.counter u32 | log_len u64` (LE), 60 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthorRow {
    pub seq: u64,
    pub hash: Hash,
    pub hlc: Hlc,
    /// Bytes of the author's log covered by the index; records past it are replayed at open.
    pub log_len: u64,
}

impl AuthorRow {
    pub const LEN: usize = 60;
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..40].copy_from_slice(&self.hash.0);
        b[40..48].copy_from_slice(&self.hlc.wall_ms.to_le_bytes());
        b[48..52].copy_from_slice(&self.hlc.counter.to_le_bytes());
        b[52..60].copy_from_slice(&self.log_len.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8]) -> Option<Self> {
        (b.len() == Self::LEN).then(|| AuthorRow {
            seq: u64_at(b, 0),
            hash: Hash(arr32(b, 8)),
            hlc: Hlc::new(u64_at(b, 40), u32_at(b, 48)),
            log_len: u64_at(b, 52),
        })
    }
    /// [`AuthorRow::decode`] of a stored row: one that does not decode is a corrupt index.
    pub fn read(b: &[u8]) -> Result<Self, StoreError> {
        Self::decode(b).ok_or_else(|| StoreError::CorruptIndex("author row".into()))
    }
    /// The tip the chain rules check the author's next entry against.
    pub fn tip(&self) -> ChainTip {
        ChainTip { seq: self.seq, hash: self.hash, hlc: self.hlc }
    }
}

/// Where an entry is stored. Layout: `author [32] | seq u64 | offset u64 | record_len u32`, 52 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRow {
    pub author: AuthorId,
    pub seq: u64,
    /// Offset of the record in the author's log.
    pub offset: u64,
    /// Length of the whole record (header + payload).
    pub record_len: u32,
}

impl EntryRow {
    pub const LEN: usize = 52;
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..32].copy_from_slice(&self.author.0);
        b[32..40].copy_from_slice(&self.seq.to_le_bytes());
        b[40..48].copy_from_slice(&self.offset.to_le_bytes());
        b[48..52].copy_from_slice(&self.record_len.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8]) -> Option<Self> {
        (b.len() == Self::LEN).then(|| EntryRow {
            author: AuthorId(arr32(b, 0)),
            seq: u64_at(b, 32),
            offset: u64_at(b, 40),
            record_len: u32_at(b, 48),
        })
    }
    pub fn end(&self) -> u64 {
        self.offset + self.record_len as u64
    }
}

/// What an orphan waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// The author's entry at this seq (the orphan's predecessor).
    Predecessor { author: AuthorId, seq: u64 },
    /// A DAG parent, by hash.
    Parent(Hash),
    /// The author's admission to the mesh (see `StoreHandle::set_authorisation`).
    Authorisation(AuthorId),
}

/// Where the wait index files an orphan: `wait_predecessor` under `(author, seq)`,
/// `wait_parent` under the parent's hash, or `wait_admission` under the author.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKey {
    Predecessor(([u8; 32], u64)),
    Parent([u8; 32]),
    Admission([u8; 32]),
}

impl Waiting {
    pub fn key(&self) -> WaitKey {
        match *self {
            Waiting::Predecessor { author, seq } => WaitKey::Predecessor((author.0, seq)),
            Waiting::Parent(parent) => WaitKey::Parent(parent.0),
            Waiting::Authorisation(author) => WaitKey::Admission(author.0),
        }
    }
}

/// Header of an orphan record. Layout: `received_ms u64 | author [32] | seq u64 | kind u8 |
/// author_or_parent [32] | wait_seq u64`, 89 bytes, followed by the encoded SignedEntry.
/// `kind`: 0 predecessor, 1 parent, 2 authorisation (of `author_or_parent`, `wait_seq` 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrphanRow {
    pub received_ms: u64,
    pub author: AuthorId,
    pub seq: u64,
    pub waiting: Waiting,
}

impl OrphanRow {
    pub const LEN: usize = 89;
    pub fn encode_with(&self, entry: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::LEN + entry.len());
        b.extend_from_slice(&self.received_ms.to_le_bytes());
        b.extend_from_slice(&self.author.0);
        b.extend_from_slice(&self.seq.to_le_bytes());
        let (kind, who, wait_seq) = match self.waiting {
            Waiting::Predecessor { author, seq } => (0, author.0, seq),
            Waiting::Parent(hash) => (1, hash.0, 0),
            Waiting::Authorisation(author) => (2, author.0, 0),
        };
        b.push(kind);
        b.extend_from_slice(&who);
        b.extend_from_slice(&wait_seq.to_le_bytes());
        b.extend_from_slice(entry);
        b
    }
    /// Splits a stored value into its header and the entry bytes.
    pub fn decode(b: &[u8]) -> Option<(Self, &[u8])> {
        if b.len() < Self::LEN {
            return None;
        }
        let who = arr32(b, 49);
        let waiting = match b[48] {
            0 => Waiting::Predecessor { author: AuthorId(who), seq: u64_at(b, 81) },
            1 => Waiting::Parent(Hash(who)),
            2 => Waiting::Authorisation(AuthorId(who)),
            _ => return None,
        };
        let row = OrphanRow { received_ms: u64_at(b, 0), author: AuthorId(arr32(b, 8)), seq: u64_at(b, 40), waiting };
        Some((row, &b[Self::LEN..]))
    }
    /// The bytes an orphan of `entry_len` bytes is charged against the buffer's limits.
    pub fn charge(entry_len: usize) -> u64 {
        (Self::LEN + entry_len) as u64 + ORPHAN_INDEX_CHARGE
    }
}

/// Orphans and the bytes they are charged (of one author, or of the whole buffer).
/// Layout: `count u64 | bytes u64` (LE), 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageRow {
    pub count: u64,
    pub bytes: u64,
}

impl UsageRow {
    pub const LEN: usize = 16;
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.count.to_le_bytes());
        b[8..16].copy_from_slice(&self.bytes.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8]) -> Option<Self> {
        (b.len() == Self::LEN).then(|| UsageRow { count: u64_at(b, 0), bytes: u64_at(b, 8) })
    }
    /// [`UsageRow::decode`] of a stored row, if any: one that does not decode is a corrupt index.
    pub fn read(b: Option<&[u8]>) -> Result<Self, StoreError> {
        b.map_or(Ok(UsageRow::default()), |b| {
            Self::decode(b).ok_or_else(|| StoreError::CorruptIndex("orphan usage".into()))
        })
    }
}

/// The store clock at the last commit, kept in `META_CLOCK`: the next open resumes from it, so
/// a local write never goes back in time. Layout: `wall_ms u64 | counter u32` (LE), 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockRow {
    pub hlc: Hlc,
}

impl ClockRow {
    pub const LEN: usize = 12;
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.hlc.wall_ms.to_le_bytes());
        b[8..12].copy_from_slice(&self.hlc.counter.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8]) -> Option<Self> {
        (b.len() == Self::LEN).then(|| ClockRow { hlc: Hlc::new(u64_at(b, 0), u32_at(b, 8)) })
    }
}

/// Counters kept in `META_COUNTERS`, updated with every stored entry.
/// Layout: `entries u64 | live_keys u64 | conflicts u64 | refused u64` (LE), 32 bytes. A 24-byte
/// row (written before entries could be refused) decodes with `refused` 0, which it was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub entries: u64,
    pub live_keys: u64,
    pub conflicts: u64,
    pub refused: u64,
}

impl Counters {
    pub const LEN: usize = 32;
    const LEN_BEFORE_REFUSED: usize = 24;
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.entries.to_le_bytes());
        b[8..16].copy_from_slice(&self.live_keys.to_le_bytes());
        b[16..24].copy_from_slice(&self.conflicts.to_le_bytes());
        b[24..32].copy_from_slice(&self.refused.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8]) -> Option<Self> {
        let refused = match b.len() {
            Self::LEN => u64_at(b, 24),
            Self::LEN_BEFORE_REFUSED => 0,
            _ => return None,
        };
        Some(Counters { entries: u64_at(b, 0), live_keys: u64_at(b, 8), conflicts: u64_at(b, 16), refused })
    }
}

/// The [`Authorisation`] a store was given, kept under [`POLICY_AUTHORISATION`].
/// Layout: `members u32 | member [32] ... | cutoffs u32 | (author [32] | seq u64 | hash [32]) ...`
/// (LE), each list in author order, so one policy always encodes to the same bytes. A row of the
/// layout before cut-offs carried hashes (`author [32] | seq u64` per cut-off) decodes with
/// hashes of [`Hash::ZERO`] (unknown); the node gives the store its policy again at startup.
pub struct AuthorisationRow;

impl AuthorisationRow {
    pub fn encode(auth: &Authorisation) -> Vec<u8> {
        let mut members: Vec<&AuthorId> = auth.members.iter().collect();
        members.sort();
        let mut cutoffs: Vec<(&AuthorId, &Cutoff)> = auth.cutoffs.iter().collect();
        cutoffs.sort_by_key(|(author, _)| **author);
        let mut b = Vec::with_capacity(8 + 32 * members.len() + 72 * cutoffs.len());
        b.extend_from_slice(&(members.len() as u32).to_le_bytes());
        for m in members {
            b.extend_from_slice(&m.0);
        }
        b.extend_from_slice(&(cutoffs.len() as u32).to_le_bytes());
        for (author, cutoff) in cutoffs {
            b.extend_from_slice(&author.0);
            b.extend_from_slice(&cutoff.seq.to_le_bytes());
            b.extend_from_slice(&cutoff.hash.0);
        }
        b
    }
    pub fn decode(b: &[u8]) -> Option<Authorisation> {
        Self::decode_with(b, true).or_else(|| Self::decode_with(b, false))
    }
    fn decode_with(b: &[u8], hashed: bool) -> Option<Authorisation> {
        let cutoff_len = if hashed { 72 } else { 40 };
        let count = |at: usize| b.get(at..at + 4).map(|_| u32_at(b, at) as usize);
        let members_len = count(0)?;
        let mut at = 4;
        let mut members = HashSet::with_capacity(members_len);
        for _ in 0..members_len {
            b.get(at..at + 32)?;
            members.insert(AuthorId(arr32(b, at)));
            at += 32;
        }
        let cutoffs_len = count(at)?;
        at += 4;
        let mut cutoffs = HashMap::with_capacity(cutoffs_len);
        for _ in 0..cutoffs_len {
            b.get(at..at + cutoff_len)?;
            let hash = if hashed { Hash(arr32(b, at + 40)) } else { Hash::ZERO };
            cutoffs.insert(AuthorId(arr32(b, at)), Cutoff { seq: u64_at(b, at + 32), hash });
            at += cutoff_len;
        }
        (at == b.len()).then_some(Authorisation { members, cutoffs })
    }
}

/// An equivocation proof, kept in [`PROOFS`]: two SignedEntry bytes by one author at one seq,
/// lower hash first (so every node stores the same bytes for the same pair).
/// Layout: `first_len u32 | first | second` (LE).
pub struct ProofRow;

impl ProofRow {
    pub fn encode(first: &[u8], second: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(4 + first.len() + second.len());
        b.extend_from_slice(&(first.len() as u32).to_le_bytes());
        b.extend_from_slice(first);
        b.extend_from_slice(second);
        b
    }
    pub fn decode(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let len = u32_at(b.get(0..4)?, 0) as usize;
        let rest = &b[4..];
        (len <= rest.len()).then(|| rest.split_at(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let a = AuthorRow { seq: 7, hash: Hash([3; 32]), hlc: Hlc::new(99, 4), log_len: 1234 };
        assert_eq!(AuthorRow::decode(&a.encode()), Some(a));
        let e = EntryRow { author: AuthorId([9; 32]), seq: 2, offset: 77, record_len: 300 };
        assert_eq!(EntryRow::decode(&e.encode()), Some(e));
        for waiting in [
            Waiting::Predecessor { author: AuthorId([1; 32]), seq: 5 },
            Waiting::Parent(Hash([2; 32])),
            Waiting::Authorisation(AuthorId([1; 32])),
        ] {
            let o = OrphanRow { received_ms: 10, author: AuthorId([1; 32]), seq: 6, waiting };
            let bytes = o.encode_with(b"entry");
            assert_eq!(OrphanRow::decode(&bytes), Some((o, &b"entry"[..])));
        }
        let usage = UsageRow { count: 3, bytes: 1 << 40 };
        assert_eq!(UsageRow::decode(&usage.encode()), Some(usage));
        assert_eq!(UsageRow::read(None).unwrap(), UsageRow::default());
        assert!(UsageRow::read(Some(&[0; 15])).is_err());
        let c = Counters { entries: 1, live_keys: 2, conflicts: 3, refused: 4 };
        assert_eq!(Counters::decode(&c.encode()), Some(c));
        let before_refused = Counters { refused: 0, ..c };
        assert_eq!(Counters::decode(&c.encode()[..24]), Some(before_refused), "a row of older stores");
        let auth = Authorisation {
            members: [AuthorId([5; 32]), AuthorId([1; 32])].into(),
            cutoffs: [
                (AuthorId([7; 32]), Cutoff { seq: 3, hash: Hash([8; 32]) }),
                (AuthorId([2; 32]), Cutoff::at_seq(0)),
            ]
            .into(),
        };
        let bytes = AuthorisationRow::encode(&auth);
        assert_eq!(AuthorisationRow::decode(&bytes), Some(auth.clone()));
        // The layout before cut-offs carried hashes: members, then (author, seq) per cut-off.
        let mut old = bytes[..4 + 64].to_vec();
        old.extend_from_slice(&2u32.to_le_bytes());
        for (author, seq) in [([2u8; 32], 0u64), ([7; 32], 3)] {
            old.extend_from_slice(&author);
            old.extend_from_slice(&seq.to_le_bytes());
        }
        let unhashed = Authorisation {
            cutoffs: auth.cutoffs.keys().map(|a| (*a, Cutoff::at_seq(auth.cutoffs[a].seq))).collect(),
            ..auth.clone()
        };
        assert_eq!(AuthorisationRow::decode(&old), Some(unhashed), "a row of older stores");
        assert_eq!(AuthorisationRow::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(AuthorisationRow::decode(&[bytes.as_slice(), &[0]].concat()), None);
        assert_eq!(
            AuthorisationRow::decode(&AuthorisationRow::encode(&Authorisation::default())),
            Some(Authorisation::default())
        );
        let proof = ProofRow::encode(b"first", b"second!");
        assert_eq!(ProofRow::decode(&proof), Some((&b"first"[..], &b"second!"[..])));
        assert_eq!(ProofRow::decode(&proof[..7]), None);
        assert_eq!(ProofRow::decode(&[1, 0]), None);
        let clock = ClockRow { hlc: Hlc::new(1_700_000_000_000, 9) };
        assert_eq!(ClockRow::decode(&clock.encode()), Some(clock));
        assert_eq!(AuthorRow::decode(&[0; 3]), None);
    }

    /// A meta clock row of any other length is not a clock (it used to be ignored, and the
    /// store then resumed from the wall clock alone).
    #[test]
    fn a_clock_row_of_the_wrong_length_does_not_decode() {
        for len in [0, 8, 11, 13, 24] {
            assert_eq!(ClockRow::decode(&vec![1; len]), None, "{len} bytes");
        }
    }
}
