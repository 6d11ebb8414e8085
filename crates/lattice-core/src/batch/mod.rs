//! The signature rule, and batch verification of Ed25519 signatures from few authors.
//!
//! One rule decides whether a signature is valid, whether it is checked alone
//! ([`verify_one`]) or in a batch ([`verify_all`]); whether an entry is accepted can therefore
//! not depend on which path a node took, or on the random coefficients of a batch. The rule:
//! - `s` is canonical (below the group order);
//! - `R` and the author key `A` are canonical encodings (`y < p`) of points that are not of
//!   small order;
//! - the **cofactored** equation holds: `[8]·(R + h·A − s·B) = 0`, `h = SHA-512(R ‖ A ‖ M)`.
//!
//! Why cofactored, not `verify_strict`'s cofactorless `R = s·B − h·A`: a random linear
//! combination `Σ zᵢ·(Rᵢ + hᵢ·Aᵢ − sᵢ·B) = 0` is sound only in a group of prime order. A term
//! with a torsion component (an `R` or `A` with a small-order point added) vanishes whenever
//! `zᵢ` is a multiple of its order, so a cofactorless batch accepted, by chance (up to one try in
//! two), signatures that `verify_strict` refuses. Making the batch exact for the cofactorless
//! equation needs a prime-order-subgroup check of every `R`, which costs about as much as a
//! verification and would take away the batch's gain. Multiplying by the cofactor removes the
//! torsion from every term, so batch and single agree (a batch with a bad signature passes with
//! probability below 2⁻¹²⁸). The two rules differ only on signatures with torsion components,
//! which no honest signer makes (its `A` and `R` are multiples of the base point), and such a
//! signature can only be made by the key's holder (the torsion changes `h`).
//!
//! Sync delivers thousands of entries written by a handful of authors, so the batch folds the
//! terms of one author: `Σ (Σ zᵢ·hᵢ)·A` per distinct key, and the multiplication has
//! `n + authors + 1` points, with each key decompressed once per batch.
//!
//! A `false` answer from [`verify_all`] does not say which signature is bad: callers then check
//! each one alone with [`verify_one`].

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
    /// The author's key, or `None` if the bytes are not the canonical encoding of a point, or
    /// encode a weak (small-order) key: such keys are refused under the rule (module docs).
    pub(crate) fn key(&mut self, bytes: &[u8; 32]) -> Option<VerifyingKey> {
        *self.keys.entry(*bytes).or_insert_with(|| {
            if !is_canonical(bytes) {
                return None;
            }
            VerifyingKey::from_bytes(bytes).ok().filter(|k| !k.is_weak())
        })
    }
}

/// One signature to check: the signed message, the signature, the author's key.
pub(crate) struct SignedMessage<'a> {
    pub message: &'a [u8],
    pub signature: &'a Signature,
    pub key: &'a VerifyingKey,
}

/// Whether `bytes` is the canonical encoding of a point's `y` (`y < p = 2²⁵⁵ − 19`; the top bit
/// is the sign of `x`). The decoder reduces `y` modulo `p`, so the 19 values from `p` on would
/// give a second encoding of a point. The other non-canonical form, `x = 0` with the sign bit
/// set, is only possible for `y = ±1`, points of small order, refused anyway.
fn is_canonical(bytes: &[u8; 32]) -> bool {
    // y >= p exactly when bytes 1..31 are all 0xff, the top byte (sign masked) is 0x7f, and the
    // low byte is at least 0xed (p = 2²⁵⁵ − 19 ends in 0xed).
    let high_all_ones = bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff);
    !(high_all_ones && bytes[0] >= 0xed)
}

/// The parts of one signature the equation needs, after the checks that do not need it:
/// `(s, R, h)`, or `None` if `s`, `R` or the key breaks the rule.
#[allow(non_snake_case)]
fn parts(item: &SignedMessage<'_>) -> Option<(Scalar, EdwardsPoint, Scalar)> {
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*item.signature.s_bytes()))?;
    let r_bytes = item.signature.r_bytes();
    if !is_canonical(r_bytes) || !is_canonical(item.key.as_bytes()) || item.key.is_weak() {
        return None;
    }
    let R = CompressedEdwardsY(*r_bytes).decompress().filter(|R| !R.is_small_order())?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(item.key.as_bytes());
    h.update(item.message);
    Some((s, R, Scalar::from_bytes_mod_order_wide(&h.finalize().into())))
}

/// True if the signature is valid under the rule (see the module docs).
#[allow(non_snake_case)]
pub(crate) fn verify_one(item: &SignedMessage<'_>) -> bool {
    let Some((s, R, h)) = parts(item) else {
        return false;
    };
    let minus_A = -item.key.to_edwards();
    // s·B − h·A
    let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&h, &minus_A, &s);
    (R - expected).mul_by_cofactor().is_identity()
}

/// True if every signature is valid under the rule (the same as [`verify_one`] on each, but
/// for a chance below 2⁻¹²⁸ per batch that one bad signature passes). Empty: true.
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
        let Some((s, R, hram)) = parts(item) else {
            return false;
        };
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
    sum.mul_by_cofactor().is_identity()
}

#[cfg(test)]
mod tests;
