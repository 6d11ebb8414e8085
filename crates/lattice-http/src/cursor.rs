//! The listing's `next`: an opaque cursor that names the last key of a page whatever its bytes,
//! so paging never repeats or skips a key that is not UTF-8.
//!
//! A cursor is the key and an 8-byte tag (a BLAKE3 hash of the key) in unpadded base64url. The
//! tag is what tells a cursor from a plain key: `after` accepted the plain (UTF-8) key before
//! cursors existed and still does, and a plain key that happens to read as a cursor would need
//! those 64 bits to match. Clients must treat a cursor as opaque; its format may change.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

/// Bytes of the tag: a plain key mistaken for a cursor has a 2^-64 chance.
const TAG_LEN: usize = 8;

/// Separates this hash from every other BLAKE3 use in Lattice.
const TAG_CONTEXT: &str = "lattice-http 2025 listing cursor v1";

/// The cursor naming `key`.
pub(crate) fn encode(key: &[u8]) -> String {
    let mut raw = key.to_vec();
    raw.extend_from_slice(&tag(key));
    B64URL.encode(raw)
}

/// The key an `after` parameter names: the key of a cursor from `next`, else the text itself.
pub(crate) fn after_key(after: &str) -> Vec<u8> {
    decode(after).unwrap_or_else(|| after.as_bytes().to_vec())
}

fn decode(cursor: &str) -> Option<Vec<u8>> {
    let mut raw = B64URL.decode(cursor).ok()?;
    let key_len = raw.len().checked_sub(TAG_LEN)?;
    let key_tag = tag(&raw[..key_len]);
    if raw[key_len..] != key_tag {
        return None;
    }
    raw.truncate(key_len);
    Some(raw)
}

fn tag(key: &[u8]) -> [u8; TAG_LEN] {
    let hash = blake3::Hasher::new_derive_key(TAG_CONTEXT).update(key).finalize();
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&hash.as_bytes()[..TAG_LEN]);
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_key_bytes_round_trip() {
        for key in [&b""[..], b"a", b"\xff", b"\xff\x00", b"users/alice", &[0u8; 300]] {
            let cursor = encode(key);
            assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{cursor}");
            assert_eq!(after_key(&cursor), key, "{cursor}");
        }
    }

    #[test]
    fn a_plain_key_is_its_own_after() {
        // Valid base64url that is not a cursor, and text that is not base64url at all.
        for plain in ["users/bin", "abcdefghijkl", "a", "", "caf\u{e9}", "AAAAAAAAAAAAAAAAAAAA"] {
            assert_eq!(after_key(plain), plain.as_bytes(), "{plain:?}");
        }
        let mut forged = encode(b"k").into_bytes();
        forged[0] ^= 1; // one bit off: the tag no longer matches
        let forged = String::from_utf8(forged).unwrap_or_default();
        assert_eq!(after_key(&forged), forged.as_bytes());
    }
}
