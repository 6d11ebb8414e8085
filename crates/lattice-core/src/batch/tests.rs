use super::*;
use crate::entry::{EntryBuilder, VerifiedEntry};
use crate::hlc::Hlc;
use crate::ids::StoreId;
use crate::{Op, proto};
use curve25519_dalek::constants::EIGHT_TORSION;
use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use rand::{Rng, RngCore};

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
        assert!(items(&m, &s, &k).iter().all(verify_one));
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
    // s not below the group order: refused, alone or in a batch.
    let mut high_s = s.clone();
    let mut bytes = high_s[5].to_bytes();
    bytes[63] |= 0xf0;
    high_s[5] = Signature::from_bytes(&bytes);
    assert!(!verify_all(&items(&m, &high_s, &k)));
    assert!(!verify_one(&items(&m, &high_s, &k)[5]));
}

#[test]
fn agrees_with_dalek_on_honest_signatures() {
    let (m, s, k) = signed(200, 7);
    let refs: Vec<&[u8]> = m.iter().map(|x| x.as_slice()).collect();
    assert_eq!(verify_all(&items(&m, &s, &k)), ed25519_dalek::verify_batch(&refs, &s, &k).is_ok());
    for item in items(&m, &s, &k) {
        assert_eq!(verify_one(&item), item.key.verify_strict(item.message, item.signature).is_ok());
    }
}

#[test]
fn key_cache_refuses_non_points_weak_and_non_canonical_keys() {
    let mut cache = KeyCache::default();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(cache.key(&identity).is_none(), "the identity point is a small-order key");
    let good = SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert_eq!(cache.key(good.as_bytes()), Some(good));
    assert_eq!(cache.key(good.as_bytes()), Some(good));
    // y = p + 2 decodes like y = 2 (if that is a point): a second spelling, refused.
    let mut y_over_p = [0xff; 32];
    y_over_p[0] = 0xef;
    y_over_p[31] = 0x7f;
    assert!(cache.key(&y_over_p).is_none());
}

/// Every encoding the decoder accepts is canonical exactly when it survives a round trip, but
/// for the small-order points (refused whatever their spelling).
#[test]
fn is_canonical_is_the_round_trip() {
    let mut encodings: Vec<[u8; 32]> = Vec::new();
    for low in 0xd0..=0xffu8 {
        for sign in [0u8, 0x80] {
            let mut b = [0xff; 32];
            b[0] = low;
            b[31] = 0x7f | sign;
            encodings.push(b);
        }
    }
    for y in 0..40u8 {
        for sign in [0u8, 0x80] {
            let mut b = [0; 32];
            b[0] = y;
            b[31] = sign;
            encodings.push(b);
        }
    }
    let mut rng = lattice_testkit::seeded_rng("is_canonical");
    for _ in 0..2000 {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        encodings.push(b);
    }
    let mut decoded = 0;
    for b in encodings {
        let Some(point) = CompressedEdwardsY(b).decompress() else { continue };
        decoded += 1;
        if point.is_small_order() {
            continue;
        }
        assert_eq!(is_canonical(&b), point.compress().to_bytes() == b, "{b:02x?}");
    }
    assert!(decoded > 500, "too few encodings decoded ({decoded}) to mean anything");
}

/// A key whose secret scalar the test knows, to forge the signatures honest signers never make.
struct Forger {
    a: Scalar,
    key: VerifyingKey,
}

impl Forger {
    fn new(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let forger = Forger { a: signing.to_scalar(), key: signing.verifying_key() };
        assert_eq!(EdwardsPoint::mul_base(&forger.a), forger.key.to_edwards());
        forger
    }

    /// The same secret, under the key `A + torsion` (a valid point, not of small order).
    fn with_torsion_key(&self, torsion: EdwardsPoint) -> Self {
        let point = self.key.to_edwards() + torsion;
        let key = VerifyingKey::from_bytes(point.compress().as_bytes()).unwrap();
        assert!(!key.is_weak());
        Forger { a: self.a, key }
    }

    fn hram(&self, r_bytes: &[u8; 32], message: &[u8]) -> Scalar {
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(self.key.as_bytes());
        h.update(message);
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    }

    /// `(R, s)` with `R` spelled `r_bytes` and `s = r + h·a`.
    fn sign_raw(&self, r_bytes: [u8; 32], r: Scalar, message: &[u8]) -> Signature {
        let s = r + self.hram(&r_bytes, message) * self.a;
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&r_bytes);
        bytes[32..].copy_from_slice(s.as_bytes());
        Signature::from_bytes(&bytes)
    }

    /// A signature whose `R` is `r·B + torsion`.
    fn sign_with_torsion_r(&self, r: Scalar, torsion: EdwardsPoint, message: &[u8]) -> Signature {
        self.sign_raw((EdwardsPoint::mul_base(&r) + torsion).compress().to_bytes(), r, message)
    }
}

fn random_scalar(rng: &mut impl RngCore) -> Scalar {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// The signature as the payload of a `SignedEntry` over `entry_bytes`, signed by `key`.
fn entry_bytes_signed(entry_bytes: &[u8], signature: &Signature, key: &VerifyingKey) -> Vec<u8> {
    proto::SignedEntry {
        entry_bytes: entry_bytes.to_vec(),
        signature: signature.to_bytes().to_vec(),
        author_id: key.as_bytes().to_vec(),
    }
    .encode_to_vec()
}

fn an_entry_body() -> Vec<u8> {
    let id = crate::Identity::generate();
    let e = EntryBuilder::new(StoreId::new_random(), 1).timestamp(Hlc::new(1, 0)).op(Op::put("k", "v")).sign(&id);
    proto::SignedEntry::decode(e.unwrap().bytes()).unwrap().entry_bytes
}

/// What each path says of one signature: alone, in a batch alone, in a batch of honest ones,
/// and as an entry decoded alone and in a batch.
fn verdicts(message: &[u8], signature: &Signature, key: &VerifyingKey) -> [bool; 5] {
    let item = SignedMessage { message, signature, key };
    let (m, s, k) = signed(20, 3);
    let mut mixed = items(&m, &s, &k);
    mixed.insert(7, SignedMessage { message, signature, key });
    let entry = entry_bytes_signed(message, signature, key);
    let honest = crate::Identity::generate();
    let honest_key = VerifyingKey::from_bytes(&honest.author().0).unwrap();
    let mut batch: Vec<Vec<u8>> = (0..5)
        .map(|_| {
            let body = an_entry_body();
            entry_bytes_signed(&body, &Signature::from_bytes(&honest.sign(&body)), &honest_key)
        })
        .collect();
    batch.insert(2, entry.clone());
    let decoded_in_batch = VerifiedEntry::decode_batch(batch);
    assert!(decoded_in_batch.iter().enumerate().all(|(i, r)| i == 2 || r.is_ok()), "honest neighbours decode");
    [
        verify_one(&item),
        verify_all(std::slice::from_ref(&item)),
        verify_all(&mixed),
        VerifiedEntry::decode(entry).is_ok(),
        decoded_in_batch[2].is_ok(),
    ]
}

/// A signature with a torsion component is judged alike by every path, every time (the
/// cofactorless batch accepted one with an order-2 component one try in two, `verify_strict`
/// never): the cofactored rule accepts it, as only the key's holder can make it.
#[test]
fn torsion_in_r_or_in_the_key_gets_one_verdict_on_every_path_every_try() {
    let mut rng = lattice_testkit::seeded_rng("torsion signatures");
    let honest = Forger::new([3; 32]);
    let body = an_entry_body();
    // EIGHT_TORSION[i] is i times a point of order 8.
    for (index, order) in [(4usize, 2u64), (2, 4), (1, 8)] {
        let torsion = EIGHT_TORSION[index];
        let times = |k: u64| Scalar::from(k) * torsion;
        assert!(!times(order / 2).is_identity() && times(order).is_identity(), "order {order}");
        let mixed_key = honest.with_torsion_key(torsion);
        for _ in 0..24 {
            let r = random_scalar(&mut rng);
            let in_r = honest.sign_with_torsion_r(r, torsion, &body);
            assert!(honest.key.verify_strict(&body, &in_r).is_err(), "verify_strict refuses torsion in R");
            assert_eq!(verdicts(&body, &in_r, &honest.key), [true; 5], "torsion of order {order} in R");
            let r_bytes = EdwardsPoint::mul_base(&r).compress().to_bytes();
            let in_key = mixed_key.sign_raw(r_bytes, r, &body);
            assert_eq!(verdicts(&body, &in_key, &mixed_key.key), [true; 5], "torsion of order {order} in A");
        }
    }
}

/// `R` of small order, however spelled (the identity as `y = 1` and as `y = p + 1`, an order-8
/// point), with `s = h·a` so that the cofactorless equation holds exactly: every path refuses it
/// (the cofactorless batch accepted it every time).
#[test]
fn small_order_and_non_canonical_r_are_refused_on_every_path() {
    let forger = Forger::new([5; 32]);
    let body = an_entry_body();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut identity_over_p = [0xff; 32];
    identity_over_p[0] = 0xee;
    identity_over_p[31] = 0x7f;
    assert!(CompressedEdwardsY(identity_over_p).decompress().is_some_and(|p| p.is_identity()));
    let order_8 = EIGHT_TORSION[1].compress().to_bytes();
    for r_bytes in [identity, identity_over_p, order_8] {
        let signature = forger.sign_raw(r_bytes, Scalar::ZERO, &body);
        assert_eq!(verdicts(&body, &signature, &forger.key), [false; 5], "R = {r_bytes:02x?}");
    }
}

/// Random honest, tampered and forged signatures, alone and in random batches: the batch
/// accepts exactly when every one of its signatures verifies alone.
#[test]
fn batch_and_single_agree_on_random_valid_tampered_and_forged_signatures() {
    let mut rng = lattice_testkit::seeded_rng("batch agreement");
    let forgers: Vec<Forger> = (0..4u8).map(|i| Forger::new([i + 10; 32])).collect();
    let mut sigs: Vec<(Vec<u8>, Signature, VerifyingKey)> = Vec::new();
    for i in 0..400 {
        let forger = &forgers[i % forgers.len()];
        let mut message = vec![0u8; rng.random_range(0..64)];
        rng.fill_bytes(&mut message);
        let r = random_scalar(&mut rng);
        let torsion = EIGHT_TORSION[rng.random_range(0..8)];
        let r_bytes = EdwardsPoint::mul_base(&r).compress().to_bytes();
        let (signature, key) = match rng.random_range(0..6) {
            0 | 1 => (forger.sign_raw(r_bytes, r, &message), forger.key),
            2 => {
                let mut bytes = forger.sign_raw(r_bytes, r, &message).to_bytes();
                bytes[rng.random_range(0..64)] ^= 1 << rng.random_range(0..8);
                (Signature::from_bytes(&bytes), forger.key)
            }
            3 => (forger.sign_with_torsion_r(r, torsion, &message), forger.key),
            4 => {
                let mixed = forger.with_torsion_key(torsion);
                (mixed.sign_raw(r_bytes, r, &message), mixed.key)
            }
            _ => {
                let signature = forger.sign_raw(r_bytes, r, &message);
                message.push(1);
                (signature, forger.key)
            }
        };
        sigs.push((message, signature, key));
    }
    fn item((m, s, k): &(Vec<u8>, Signature, VerifyingKey)) -> SignedMessage<'_> {
        SignedMessage { message: m, signature: s, key: k }
    }
    for sig in &sigs {
        assert_eq!(verify_all(&[item(sig)]), verify_one(&item(sig)));
    }
    for _ in 0..200 {
        let n = rng.random_range(1..12);
        let batch: Vec<SignedMessage<'_>> = (0..n).map(|_| item(&sigs[rng.random_range(0..sigs.len())])).collect();
        assert_eq!(verify_all(&batch), batch.iter().all(verify_one));
    }
}
