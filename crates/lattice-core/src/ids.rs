//! Fixed-size identifiers: authors (Ed25519 public keys), entry hashes (blake3), store ids (UUID).

use std::fmt;

/// Why a textual or binary identifier could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The hex text has the wrong number of characters.
    #[error("{what} must be {expected} lowercase hex characters, got {got} characters")]
    HexLength {
        /// Which kind of identifier was being parsed (e.g. `"hash"`).
        what: &'static str,
        /// Required length, in hex characters.
        expected: usize,
        /// Length of the given text, in bytes.
        got: usize,
    },
    /// The text has the right length but contains a non-hex character.
    #[error("{what} is not valid hex: {text:?}")]
    NotHex {
        /// Which kind of identifier was being parsed (e.g. `"hash"`).
        what: &'static str,
        /// The offending text, lowercased.
        text: String,
    },
    /// A byte slice has the wrong length for the identifier.
    #[error("{what} must be {expected} bytes, got {got}")]
    ByteLength {
        /// Which kind of identifier was being parsed (e.g. `"store id"`).
        what: &'static str,
        /// Required length, in bytes.
        expected: usize,
        /// Length of the given slice, in bytes.
        got: usize,
    },
    /// [`StoreId::parse`] was given text `uuid` cannot parse; holds that text.
    #[error("not a valid UUID: {0:?}")]
    Uuid(String),
    /// 32 bytes that do not decode to an Ed25519 public key; holds the library's reason.
    #[error("not a valid Ed25519 public key: {0}")]
    PublicKey(String),
}

fn parse_hex32(what: &'static str, text: &str) -> Result<[u8; 32], IdError> {
    if text.len() != 64 {
        return Err(IdError::HexLength { what, expected: 64, got: text.len() });
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| IdError::NotHex { what, text: text.to_string() })?;
    Ok(out)
}

fn bytes32(what: &'static str, bytes: &[u8]) -> Result<[u8; 32], IdError> {
    bytes.try_into().map_err(|_| IdError::ByteLength { what, expected: 32, got: bytes.len() })
}

/// The text and byte forms shared by the 32-byte identifiers: lowercase hex for display,
/// the first 8 hex characters in `Debug` (logs), and the raw bytes.
macro_rules! hex32_id {
    ($name:ident) => {
        impl $name {
            /// 64 lowercase hex characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// First 8 hex characters, for logs.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short())
            }
        }
        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }
    };
}

/// An author: the Ed25519 public key that signs entries. Also the node id on the network.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthorId(pub [u8; 32]);

hex32_id!(AuthorId);

impl AuthorId {
    /// Parses 64 hex characters (upper or lower case). The key must be a valid curve point.
    pub fn from_hex(text: &str) -> Result<Self, IdError> {
        let bytes = parse_hex32("public key", &text.to_ascii_lowercase())?;
        Self::from_bytes(&bytes)
    }
    /// Accepts exactly 32 bytes that form a valid Ed25519 public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
        let bytes = bytes32("public key", bytes)?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| IdError::PublicKey(e.to_string()))?;
        Ok(AuthorId(bytes))
    }
}

/// blake3 hash of an encoded `SignedEntry`. All zeros means "no entry" (prev of seq 1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

hex32_id!(Hash);

impl Hash {
    /// "No entry": the `prev_hash` of an author's first entry.
    pub const ZERO: Hash = Hash([0; 32]);
    /// The blake3 hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Hash(*blake3::hash(bytes).as_bytes())
    }
    /// Accepts exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
        Ok(Hash(bytes32("hash", bytes)?))
    }
    /// Parses 64 hex characters (upper or lower case).
    pub fn from_hex(text: &str) -> Result<Self, IdError> {
        Ok(Hash(parse_hex32("hash", &text.to_ascii_lowercase())?))
    }
}

/// A store: a 16-byte UUID, shown in its hyphenated lowercase form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId(pub uuid::Uuid);

impl StoreId {
    /// A fresh random (v4) store id.
    pub fn new_random() -> Self {
        StoreId(uuid::Uuid::new_v4())
    }
    /// The root store id of a mesh, bound to its genesis admin: the first 16 bytes of
    /// `blake3("lattice/root/v1" || genesis || nonce)`. A joiner recomputes it from what the mesh
    /// tells it and refuses a mismatch, so every member agrees on who the genesis admin is.
    pub fn root_of(genesis: &AuthorId, nonce: &[u8; 16]) -> StoreId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"lattice/root/v1");
        hasher.update(genesis.as_bytes());
        hasher.update(nonce);
        let digest = hasher.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest.as_bytes()[..16]);
        StoreId(uuid::Uuid::from_bytes(id))
    }
    /// Accepts exactly 16 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
        let b: [u8; 16] =
            bytes.try_into().map_err(|_| IdError::ByteLength { what: "store id", expected: 16, got: bytes.len() })?;
        Ok(StoreId(uuid::Uuid::from_bytes(b)))
    }
    /// Parses a UUID in any form `uuid` accepts (hyphenated, simple, braced, urn).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        uuid::Uuid::parse_str(text).map(StoreId).map_err(|_| IdError::Uuid(text.to_string()))
    }
    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}
impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}
impl fmt::Debug for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreId({})", self.0.hyphenated())
    }
}
impl std::str::FromStr for StoreId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn author_hex_round_trip_and_errors() {
        let id = crate::Identity::generate().author();
        let text = id.to_hex();
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(AuthorId::from_hex(&text).unwrap(), id);
        assert_eq!(AuthorId::from_hex(&text.to_uppercase()).unwrap(), id);
        assert!(matches!(AuthorId::from_hex("abc"), Err(IdError::HexLength { got: 3, .. })));
        let bad = "zz".repeat(32);
        assert!(matches!(AuthorId::from_hex(&bad), Err(IdError::NotHex { .. })));
        assert!(matches!(AuthorId::from_bytes(&[1; 31]), Err(IdError::ByteLength { got: 31, .. })));
    }

    #[test]
    fn store_id_parse() {
        let s = StoreId::new_random();
        assert_eq!(StoreId::parse(&s.to_string()).unwrap(), s);
        assert!(matches!(StoreId::parse("not-a-uuid"), Err(IdError::Uuid(_))));
        assert!(StoreId::from_bytes(&[0; 15]).is_err());
    }

    #[test]
    fn the_root_id_is_bound_to_its_genesis_and_nonce() {
        let genesis = crate::Identity::generate().author();
        let other = crate::Identity::generate().author();
        let root = StoreId::root_of(&genesis, &[7; 16]);
        assert_eq!(root, StoreId::root_of(&genesis, &[7; 16]));
        assert_ne!(root, StoreId::root_of(&other, &[7; 16]));
        assert_ne!(root, StoreId::root_of(&genesis, &[8; 16]));
        // The derivation is part of the protocol: a fixed input keeps its output across versions.
        let fixed = AuthorId([0x11; 32]);
        let expected = blake3::hash(&[&b"lattice/root/v1"[..], &[0x11; 32], &[0u8; 16]].concat());
        assert_eq!(StoreId::root_of(&fixed, &[0; 16]).as_bytes()[..], expected.as_bytes()[..16]);
    }

    #[test]
    fn hash_parse() {
        let h = Hash::of(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        assert!(Hash::from_bytes(&[0; 33]).is_err());
    }
}
