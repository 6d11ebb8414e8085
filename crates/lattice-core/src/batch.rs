//! Batch verification of Ed25519 signatures from few authors.
//!
//! Sync delivers thousands of entries written by a handful of authors. ed25519-dalek's
//! `verify_batch` checks `Σ zᵢ·(Rᵢ + hᵢ·Aᵢ − sᵢ·B) = 0` (random 128-bit `zᵢ`) as one
//! multiscalar multiplication over `2n + 1` points, and every caller decompresses each author
//! key once per signature. Here the terms of one author are folded: `Σ (Σ zᵢ·hᵢ)·A` per distinct
//! key, so the multiplication has `n + authors + 1` points, and each key is decompressed once per
//! batch. The equation, and so what is accepted, is the same as `verify_batch`'s (cofactorless).
//!
//! A `false` answer does not say which signature is bad: callers then check each one alone
//! (`verify_strict`), as with any batch verification.

use std::collections::HashMap;
use std::iter::once;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Digest, Sha512, Signature, VerifyingKey};

/// Author keys decompressed once per batch (a key is a point on the curve; decoding one costs
/// a square root, about as much as a quarter of a signature check).
#[derive(Default)]
pub(crate) struct KeyCache {
    keys: HashMap<[u8; 32], Option<VerifyingKey>>,
}

impl KeyCache {
    /// The author's key, or `None` if the bytes are not a point or are a weak (small-order) key;
    /// weak keys are refused so that batch and single verification agree.
    pub(crate) fn key(&mut self, bytes: &[u8; 32]) -> Option<VerifyingKey> {
        *self.keys.entry(*bytes).or_insert_with(|| VerifyingKey::from_bytes(bytes).ok().filter(|k| !k.is_weak()))
    }
}

/// One signature to check: the signed message, the signature, the author's key.
pub(crate) struct SignedMessage<'a> {
    pub message: &'a [u8],
    pub signature: &'a Signature,
    pub key: &'a VerifyingKey,
}

/// True if every signature verifies (see the module docs for the equation). Empty: true.
#[allow(non_snake_case)]
pub(crate) fn verify_all(items: &[SignedMessage<'_>]) -> bool {
    if items.is_empty() {
        return true;
    }
    let mut B_coefficient = Scalar::ZERO;
    let mut R_coefficients = Vec::with_capacity(items.len());
    let mut Rs = Vec::with_capacity(items.len());
    // Per distinct key: its point and the sum of zᵢ·hᵢ of its signatures.
    let mut key_slot: HashMap<[u8; 32], usize> = HashMap::new();
    let mut As: Vec<EdwardsPoint> = Vec::new();
    let mut A_coefficients: Vec<Scalar> = Vec::new();
    for item in items {
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*item.signature.s_bytes())) else {
            return false;
        };
        let Some(R) = CompressedEdwardsY(*item.signature.r_bytes()).decompress() else {
            return false;
        };
        let mut h = Sha512::new();
        h.update(item.signature.r_bytes());
        h.update(item.key.as_bytes());
        h.update(item.message);
        let hram = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let z = Scalar::from(rand::random::<u128>());
        B_coefficient += z * s;
        R_coefficients.push(z);
        Rs.push(R);
        let slot = *key_slot.entry(item.key.to_bytes()).or_insert_with(|| {
            As.push(item.key.to_edwards());
            A_coefficients.push(Scalar::ZERO);
            As.len() - 1
        });
        A_coefficients[slot] += z * hram;
    }
    let sum = EdwardsPoint::vartime_multiscalar_mul(
        once(-B_coefficient).chain(R_coefficients).chain(A_coefficients),
        once(ED25519_BASEPOINT_POINT).chain(Rs).chain(As),
    );
    sum.is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(n: usize, authors: u8) -> (Vec<Vec<u8>>, Vec<Signature>, Vec<VerifyingKey>) {
        let keys: Vec<SigningKey> = (0..authors).map(|i| SigningKey::from_bytes(&[i + 1; 32])).collect();
        let messages: Vec<Vec<u8>> = (0..n).map(|i| format!("message {i}").into_bytes()).collect();
        let sigs = messages.iter().enumerate().map(|(i, m)| keys[i % keys.len()].sign(m)).collect();
        let vks = (0..n).map(|i| keys[i % keys.len()].verifying_key()).collect();
        (messages, sigs, vks)
    }

    fn items<'a>(m: &'a [Vec<u8>], s: &'a [Signature], k: &'a [VerifyingKey]) -> Vec<SignedMessage<'a>> {
        (0..m.len()).map(|i| SignedMessage { message: &m[i], signature: &s[i], key: &k[i] }).collect()
    }

    #[test]
    fn accepts_valid_batches_of_any_author_mix() {
        for (n, authors) in [(1, 1), (2, 2), (64, 3), (300, 16), (100, 100)] {
            let (m, s, k) = signed(n, authors);
            assert!(verify_all(&items(&m, &s, &k)), "n={n} authors={authors}");
        }
        assert!(verify_all(&[]));
    }

    #[test]
    fn refuses_a_batch_with_one_bad_signature_message_or_key() {
        let (m, s, k) = signed(50, 4);
        let mut bad_msg = m.clone();
        bad_msg[17].push(b'!');
        assert!(!verify_all(&items(&bad_msg, &s, &k)));
        let mut bad_sig = s.clone();
        let mut bytes = bad_sig[3].to_bytes();
        bytes[40] ^= 1;
        bad_sig[3] = Signature::from_bytes(&bytes);
        assert!(!verify_all(&items(&m, &bad_sig, &k)));
        let mut swapped = k.clone();
        swapped.swap(0, 1);
        assert!(!verify_all(&items(&m, &s, &swapped)));
        // s not below the group order: refused like verify_strict does.
        let mut high_s = s.clone();
        let mut bytes = high_s[5].to_bytes();
        bytes[63] |= 0xf0;
        high_s[5] = Signature::from_bytes(&bytes);
        assert!(!verify_all(&items(&m, &high_s, &k)));
    }

    #[test]
    fn agrees_with_dalek_verify_batch() {
        let (m, s, k) = signed(200, 7);
        let refs: Vec<&[u8]> = m.iter().map(|x| x.as_slice()).collect();
        assert_eq!(verify_all(&items(&m, &s, &k)), ed25519_dalek::verify_batch(&refs, &s, &k).is_ok());
    }

    #[test]
    fn key_cache_refuses_non_points_and_weak_keys() {
        let mut cache = KeyCache::default();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(cache.key(&identity).is_none(), "the identity point is a small-order key");
        let good = SigningKey::from_bytes(&[9; 32]).verifying_key();
        assert_eq!(cache.key(good.as_bytes()), Some(good));
        assert_eq!(cache.key(good.as_bytes()), Some(good));
    }
}
