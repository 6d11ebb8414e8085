//! Entries: building, signing, decoding and verifying.
//!
//! An entry is an `Entry` message (store, seq, prev_hash, HLC, DAG parents, ops) encoded to bytes,
//! signed by its author, and wrapped in a `SignedEntry`. Its hash is blake3 of the encoded
//! `SignedEntry`. [`VerifiedEntry`] is the only way to hold a decoded entry: constructing one
//! checks the structure, the size limits and (except for records read back from our own fsynced
//! log, see [`VerifiedEntry::from_trusted_log`]) the signature.

use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message;

use crate::batch::{self, KeyCache, SignedMessage};
use crate::hlc::Hlc;
use crate::identity::Identity;
use crate::ids::{AuthorId, Hash, StoreId};
pub use crate::op::{Op, check_op};
use crate::proto;

/// Entry format version written by this code.
pub const ENTRY_VERSION: u32 = 1;
/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Largest encoded `SignedEntry`, in bytes.
pub const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;

/// Why bytes are not a valid entry. Each variant names the one thing that was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The encoded `SignedEntry` is larger than [`MAX_ENTRY_BYTES`]; checked before decoding.
    #[error("entry is {size} bytes, over the {max}-byte limit")]
    EntryTooLarge {
        /// Size of the encoded entry, in bytes.
        size: usize,
        /// The limit it broke, in bytes.
        max: usize,
    },
    /// The `SignedEntry` or the `Entry` inside it does not decode as protobuf; holds prost's reason.
    #[error("entry is not a valid protobuf message: {0}")]
    Malformed(String),
    /// The author id is not 32 bytes; holds its length.
    #[error("author id must be 32 bytes, got {0}")]
    AuthorLength(usize),
    /// The author id is 32 bytes but not a valid Ed25519 public key.
    #[error("author id is not a valid Ed25519 public key")]
    AuthorKey,
    /// The signature is not 64 bytes; holds its length.
    #[error("signature must be 64 bytes, got {0}")]
    SignatureLength(usize),
    /// The signature does not verify over the entry bytes with the author's key (under the one
    /// rule of single and batch verification, see `batch`).
    #[error("signature does not verify against the author's key")]
    BadSignature,
    /// The entry's `version` is not [`ENTRY_VERSION`]; holds the version found.
    #[error("unsupported entry version {0} (this build reads version {ENTRY_VERSION})")]
    UnsupportedVersion(u32),
    /// The store id is not 16 bytes; holds its length.
    #[error("store id must be 16 bytes, got {0}")]
    StoreIdLength(usize),
    /// The entry's `seq` is 0; sequence numbers start at 1.
    #[error("seq must be at least 1")]
    ZeroSeq,
    /// `prev_hash` is not 32 bytes; holds its length.
    #[error("prev_hash must be 32 bytes, got {0}")]
    PrevHashLength(usize),
    /// An entry with seq 1 cites a `prev_hash` other than [`Hash::ZERO`].
    #[error("the first entry of a log (seq 1) must have an all-zero prev_hash")]
    FirstEntryPrevHash,
    /// The entry carries no HLC timestamp.
    #[error("entry has no timestamp")]
    MissingTimestamp,
    /// One of the DAG parent hashes is not 32 bytes.
    #[error("parent hash #{index} must be 32 bytes, got {len}")]
    ParentHashLength {
        /// Position of the bad hash in `parent_hashes`, from 0.
        index: usize,
        /// Its length, in bytes.
        len: usize,
    },
    /// The entry has no operations.
    #[error("entry has no operations")]
    NoOps,
    /// An operation holds no op this build knows; holds its index, from 0.
    #[error("operation #{0} is empty")]
    EmptyOp(usize),
    /// An operation has a zero-length key; holds its index, from 0.
    #[error("operation #{0} has an empty key")]
    EmptyKey(usize),
    /// An operation's key is longer than [`MAX_KEY_BYTES`].
    #[error("key of {len} bytes in operation #{index} is over the {MAX_KEY_BYTES}-byte limit")]
    KeyTooLarge {
        /// Index of the operation, from 0.
        index: usize,
        /// Length of the key, in bytes.
        len: usize,
    },
    /// A put's value is longer than [`MAX_VALUE_BYTES`].
    #[error("value of {len} bytes in operation #{index} is over the {MAX_VALUE_BYTES}-byte limit")]
    ValueTooLarge {
        /// Index of the operation, from 0.
        index: usize,
        /// Length of the value, in bytes.
        len: usize,
    },
    /// A set member is longer than [`MAX_VALUE_BYTES`].
    #[error("member of {len} bytes in operation #{index} is over the {MAX_VALUE_BYTES}-byte limit")]
    MemberTooLarge {
        /// Index of the operation, from 0.
        index: usize,
        /// Length of the member, in bytes.
        len: usize,
    },
}

/// Builds and signs an entry.
#[derive(Clone, Debug)]
pub struct EntryBuilder {
    store_id: StoreId,
    seq: u64,
    prev_hash: Hash,
    timestamp: Hlc,
    parent_hashes: Vec<Hash>,
    ops: Vec<Op>,
}

impl EntryBuilder {
    /// Starts entry `seq` (from 1) of a log in `store_id`, with a zero `prev_hash`, a zero
    /// timestamp, no parents and no operations.
    pub fn new(store_id: StoreId, seq: u64) -> Self {
        EntryBuilder {
            store_id,
            seq,
            prev_hash: Hash::ZERO,
            timestamp: Hlc::ZERO,
            parent_hashes: Vec::new(),
            ops: Vec::new(),
        }
    }
    /// Sets the hash of the author's previous entry (leave unset, i.e. zero, for seq 1).
    pub fn prev_hash(mut self, hash: Hash) -> Self {
        self.prev_hash = hash;
        self
    }
    /// Sets the entry's HLC; it must be later than the author's previous entry's.
    pub fn timestamp(mut self, hlc: Hlc) -> Self {
        self.timestamp = hlc;
        self
    }
    /// Sets the DAG parents: the heads this write supersedes. Replaces any set before.
    pub fn parent_hashes(mut self, parents: Vec<Hash>) -> Self {
        self.parent_hashes = parents;
        self
    }
    /// Appends one operation.
    pub fn op(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }
    /// Appends operations, in order.
    pub fn ops(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.ops.extend(ops);
        self
    }

    /// Encodes and signs the entry. Fails if it breaks a structural rule or a size limit, so
    /// nothing this returns can be refused by a peer for its shape.
    pub fn sign(self, identity: &Identity) -> Result<VerifiedEntry, EntryError> {
        let entry = proto::Entry {
            version: ENTRY_VERSION,
            store_id: self.store_id.as_bytes().to_vec(),
            seq: self.seq,
            prev_hash: self.prev_hash.0.to_vec(),
            timestamp: Some(self.timestamp.to_proto()),
            parent_hashes: self.parent_hashes.iter().map(|h| h.0.to_vec()).collect(),
            ops: self.ops.iter().map(Op::to_proto).collect(),
        };
        let entry_bytes = entry.encode_to_vec();
        let signature = identity.sign(&entry_bytes);
        let signed =
            proto::SignedEntry { entry_bytes, signature: signature.to_vec(), author_id: identity.author().0.to_vec() };
        // Re-validating our own output keeps one definition of "valid".
        VerifiedEntry::parse(signed.encode_to_vec(), None).map(|(entry, _)| entry)
    }
}

/// What verifying one signature needs, taken apart once while decoding.
struct SignatureParts {
    message: Vec<u8>,
    signature: Signature,
    key: VerifyingKey,
}

impl SignatureParts {
    fn verify(&self) -> Result<(), EntryError> {
        let item = SignedMessage { message: &self.message, signature: &self.signature, key: &self.key };
        if batch::verify_one(&item) { Ok(()) } else { Err(EntryError::BadSignature) }
    }
}

/// A decoded entry whose structure, limits and signature have been checked (the signature is
/// not re-checked for entries from [`from_trusted_log`](Self::from_trusted_log)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEntry {
    bytes: Vec<u8>,
    hash: Hash,
    author: AuthorId,
    store_id: StoreId,
    seq: u64,
    prev_hash: Hash,
    hlc: Hlc,
    parents: Vec<Hash>,
    ops: Vec<Op>,
}

impl VerifiedEntry {
    /// Decodes an encoded `SignedEntry` and verifies its signature.
    pub fn decode(bytes: Vec<u8>) -> Result<Self, EntryError> {
        let (entry, sig) = Self::parse(bytes, Some(&mut KeyCache::default()))?;
        match sig {
            Some(sig) => sig.verify().map(|()| entry),
            None => Err(EntryError::BadSignature),
        }
    }

    /// Decodes a record read back from this node's own log. The log's checksum guards against
    /// corruption and every record was verified before it was written, so the signature is not
    /// checked again: replay runs at decode speed, not at signature-verification speed.
    pub fn from_trusted_log(bytes: Vec<u8>) -> Result<Self, EntryError> {
        Self::parse(bytes, None).map(|(entry, _)| entry)
    }

    /// Decodes many entries, verifying their signatures as one Ed25519 batch (about twice as
    /// fast as one by one). If the batch fails, each entry is checked alone, so one bad
    /// entry never condemns its neighbours.
    pub fn decode_batch(items: Vec<Vec<u8>>) -> Vec<Result<Self, EntryError>> {
        let mut keys = KeyCache::default();
        let parsed: Vec<Result<(Self, Option<SignatureParts>), EntryError>> =
            items.into_iter().map(|b| Self::parse(b, Some(&mut keys))).collect();
        let batch: Vec<SignedMessage<'_>> = parsed
            .iter()
            .filter_map(|r| r.as_ref().ok()?.1.as_ref())
            .map(|p| SignedMessage { message: &p.message, signature: &p.signature, key: &p.key })
            .collect();
        let batch_ok = !batch.is_empty() && batch::verify_all(&batch);
        drop(batch);
        parsed
            .into_iter()
            .map(|r| {
                let (entry, sig) = r?;
                match sig {
                    Some(_) if batch_ok => Ok(entry),
                    Some(sig) => sig.verify().map(|()| entry),
                    None => Err(EntryError::BadSignature),
                }
            })
            .collect()
    }

    /// Decodes and checks structure and limits; given a key cache, also returns what is
    /// needed to verify the signature (the signed bytes, the signature, the author's key).
    fn parse(bytes: Vec<u8>, keys: Option<&mut KeyCache>) -> Result<(Self, Option<SignatureParts>), EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::EntryTooLarge { size: bytes.len(), max: MAX_ENTRY_BYTES });
        }
        let signed = proto::SignedEntry::decode(bytes.as_slice()).map_err(|e| EntryError::Malformed(e.to_string()))?;
        let author_bytes: [u8; 32] =
            signed.author_id.as_slice().try_into().map_err(|_| EntryError::AuthorLength(signed.author_id.len()))?;
        let signature: [u8; 64] =
            signed.signature.as_slice().try_into().map_err(|_| EntryError::SignatureLength(signed.signature.len()))?;
        let key = match keys {
            Some(keys) => Some(keys.key(&author_bytes).ok_or(EntryError::AuthorKey)?),
            None => None,
        };
        let entry =
            proto::Entry::decode(signed.entry_bytes.as_slice()).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if entry.version != ENTRY_VERSION {
            return Err(EntryError::UnsupportedVersion(entry.version));
        }
        let store_id =
            StoreId::from_bytes(&entry.store_id).map_err(|_| EntryError::StoreIdLength(entry.store_id.len()))?;
        if entry.seq == 0 {
            return Err(EntryError::ZeroSeq);
        }
        let prev_hash =
            Hash::from_bytes(&entry.prev_hash).map_err(|_| EntryError::PrevHashLength(entry.prev_hash.len()))?;
        if entry.seq == 1 && prev_hash != Hash::ZERO {
            return Err(EntryError::FirstEntryPrevHash);
        }
        let hlc = entry.timestamp.as_ref().map(Hlc::from_proto).ok_or(EntryError::MissingTimestamp)?;
        let parents = entry
            .parent_hashes
            .iter()
            .enumerate()
            .map(|(index, p)| Hash::from_bytes(p).map_err(|_| EntryError::ParentHashLength { index, len: p.len() }))
            .collect::<Result<Vec<_>, _>>()?;
        if entry.ops.is_empty() {
            return Err(EntryError::NoOps);
        }
        let mut ops = Vec::with_capacity(entry.ops.len());
        for (index, op) in entry.ops.into_iter().enumerate() {
            let op = Op::from_proto(op).ok_or(EntryError::EmptyOp(index))?;
            check_op(index, &op)?;
            ops.push(op);
        }
        let hash = Hash::of(&bytes);
        let seq = entry.seq;
        let parts = key.map(|key| SignatureParts {
            message: signed.entry_bytes,
            signature: Signature::from_bytes(&signature),
            key,
        });
        let entry =
            VerifiedEntry { bytes, hash, author: AuthorId(author_bytes), store_id, seq, prev_hash, hlc, parents, ops };
        Ok((entry, parts))
    }

    /// The encoded `SignedEntry`: what goes into logs and onto the wire.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The encoded `SignedEntry`, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
    /// blake3 of [`bytes`](Self::bytes): the entry's identity.
    pub fn hash(&self) -> Hash {
        self.hash
    }
    /// The author whose key signed the entry.
    pub fn author(&self) -> AuthorId {
        self.author
    }
    /// The store the entry belongs to.
    pub fn store_id(&self) -> StoreId {
        self.store_id
    }
    /// Position in the author's log, from 1.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// Hash of the author's previous entry; [`Hash::ZERO`] for seq 1.
    pub fn prev_hash(&self) -> Hash {
        self.prev_hash
    }
    /// The entry's timestamp.
    pub fn hlc(&self) -> Hlc {
        self.hlc
    }
    /// The DAG parents: heads this write supersedes (`parent_hashes`).
    pub fn parents(&self) -> &[Hash] {
        &self.parents
    }
    /// The operations, in the order they apply.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn builder() -> EntryBuilder {
        EntryBuilder::new(StoreId::new_random(), 1).timestamp(Hlc::new(1, 0)).op(Op::put("k", "v"))
    }

    fn resign(mut signed: proto::SignedEntry, id: &Identity) -> Vec<u8> {
        signed.signature = id.sign(&signed.entry_bytes).to_vec();
        signed.encode_to_vec()
    }

    fn tamper_entry(f: impl FnOnce(&mut proto::Entry)) -> Result<VerifiedEntry, EntryError> {
        let id = Identity::generate();
        let e = builder().sign(&id).unwrap();
        let mut signed = proto::SignedEntry::decode(e.bytes()).unwrap();
        let mut entry = proto::Entry::decode(signed.entry_bytes.as_slice()).unwrap();
        f(&mut entry);
        signed.entry_bytes = entry.encode_to_vec();
        VerifiedEntry::decode(resign(signed, &id))
    }

    #[test]
    fn sign_then_decode() {
        let id = Identity::generate();
        let e = builder().parent_hashes(vec![Hash::of(b"p")]).op(Op::delete("x")).sign(&id).unwrap();
        let d = VerifiedEntry::decode(e.bytes().to_vec()).unwrap();
        assert_eq!(d, e);
        assert_eq!(d.author(), id.author());
        assert_eq!(d.hash(), Hash::of(e.bytes()));
        assert_eq!(d.ops().len(), 2);
    }

    #[test]
    fn bad_signature_is_rejected() {
        let id = Identity::generate();
        let e = builder().sign(&id).unwrap();
        let mut signed = proto::SignedEntry::decode(e.bytes()).unwrap();
        signed.signature[0] ^= 1;
        assert_eq!(VerifiedEntry::decode(signed.encode_to_vec()), Err(EntryError::BadSignature));
    }

    #[test]
    fn author_must_be_signer() {
        let id = Identity::generate();
        let e = builder().sign(&id).unwrap();
        let mut signed = proto::SignedEntry::decode(e.bytes()).unwrap();
        signed.author_id = Identity::generate().author().0.to_vec();
        assert_eq!(VerifiedEntry::decode(signed.encode_to_vec()), Err(EntryError::BadSignature));
    }

    #[test]
    fn structural_errors() {
        let id = Identity::generate();
        let e = builder().sign(&id).unwrap();
        let mut signed = proto::SignedEntry::decode(e.bytes()).unwrap();
        signed.signature.pop();
        assert_eq!(VerifiedEntry::decode(signed.encode_to_vec()), Err(EntryError::SignatureLength(63)));
        let mut signed = proto::SignedEntry::decode(e.bytes()).unwrap();
        signed.author_id.pop();
        assert_eq!(VerifiedEntry::decode(signed.encode_to_vec()), Err(EntryError::AuthorLength(31)));

        assert_eq!(tamper_entry(|e| e.version = 2), Err(EntryError::UnsupportedVersion(2)));
        assert_eq!(tamper_entry(|e| e.store_id.pop().map(|_| ()).unwrap()), Err(EntryError::StoreIdLength(15)));
        assert_eq!(tamper_entry(|e| e.seq = 0), Err(EntryError::ZeroSeq));
        assert_eq!(tamper_entry(|e| e.prev_hash = vec![1; 31]), Err(EntryError::PrevHashLength(31)));
        assert_eq!(tamper_entry(|e| e.prev_hash = vec![1; 32]), Err(EntryError::FirstEntryPrevHash));
        assert_eq!(tamper_entry(|e| e.timestamp = None), Err(EntryError::MissingTimestamp));
        assert_eq!(
            tamper_entry(|e| e.parent_hashes = vec![vec![0; 32], vec![1; 3]]),
            Err(EntryError::ParentHashLength { index: 1, len: 3 })
        );
        assert_eq!(tamper_entry(|e| e.ops.clear()), Err(EntryError::NoOps));
        assert_eq!(tamper_entry(|e| e.ops.push(proto::Operation { op: None })), Err(EntryError::EmptyOp(1)));
        assert!(matches!(VerifiedEntry::decode(vec![0xff, 0xff, 0xff]), Err(EntryError::Malformed(_))));
    }

    #[test]
    fn size_limits() {
        let id = Identity::generate();
        let big_key = vec![b'k'; MAX_KEY_BYTES + 1];
        let r = builder().op(Op::put(big_key, "v")).sign(&id);
        assert_eq!(r, Err(EntryError::KeyTooLarge { index: 1, len: MAX_KEY_BYTES + 1 }));
        let big_value = vec![0u8; MAX_VALUE_BYTES + 1];
        let r = builder().op(Op::put("k", big_value)).sign(&id);
        assert_eq!(r, Err(EntryError::ValueTooLarge { index: 1, len: MAX_VALUE_BYTES + 1 }));
        assert_eq!(builder().op(Op::delete("")).sign(&id), Err(EntryError::EmptyKey(1)));
        // Exactly at the limits is fine.
        builder().op(Op::put(vec![1; MAX_KEY_BYTES], vec![2; MAX_VALUE_BYTES])).sign(&id).unwrap();
        // Five max-size values exceed the entry limit: refused at signing, and at decoding.
        let ops = (0..5).map(|i| Op::put(vec![i + 1], vec![0u8; MAX_VALUE_BYTES]));
        assert!(matches!(builder().ops(ops).sign(&id), Err(EntryError::EntryTooLarge { .. })));
        assert!(matches!(VerifiedEntry::decode(vec![0; MAX_ENTRY_BYTES + 1]), Err(EntryError::EntryTooLarge { .. })));
    }

    #[test]
    fn batch_verification_isolates_bad_entries() {
        let id = Identity::generate();
        let good: Vec<Vec<u8>> =
            (1..=5).map(|i| builder().timestamp(Hlc::new(i, 0)).sign(&id).unwrap().into_bytes()).collect();
        let mut items = good.clone();
        let mut bad = proto::SignedEntry::decode(items[2].as_slice()).unwrap();
        bad.signature[10] ^= 0x40;
        items[2] = bad.encode_to_vec();
        items.push(vec![1, 2, 3]);
        let out = VerifiedEntry::decode_batch(items);
        assert_eq!(out.len(), 6);
        assert!(out[0].is_ok() && out[1].is_ok() && out[3].is_ok() && out[4].is_ok());
        assert_eq!(out[2], Err(EntryError::BadSignature));
        assert!(matches!(out[5], Err(EntryError::Malformed(_))));
        assert!(VerifiedEntry::decode_batch(good).iter().all(|r| r.is_ok()));
    }

    proptest! {
        #![proptest_config(lattice_testkit::proptest_config("entry properties", 256))]

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = VerifiedEntry::decode(bytes.clone());
            let _ = VerifiedEntry::from_trusted_log(bytes.clone());
            let _ = VerifiedEntry::decode_batch(vec![bytes]);
        }

        #[test]
        fn mutated_entries_never_panic(flip in 0usize..400, bit in 0u8..8) {
            let id = Identity::generate();
            let mut bytes = builder().parent_hashes(vec![Hash::of(b"a")]).sign(&id).unwrap().into_bytes();
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            // Either rejected or (if the flip hit a non-signed byte) still decodes consistently.
            if let Ok(e) = VerifiedEntry::decode(bytes.clone()) {
                prop_assert_eq!(e.hash(), Hash::of(&bytes));
            }
        }
    }
}
