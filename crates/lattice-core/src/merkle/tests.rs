use proptest::prelude::*;

use super::*;
use crate::ids::Hash;
use crate::op::Kind;

/// Proves `key` over `leaves` the slow way (a reference prover, independent of the store's).
fn prove(leaves: &[(Digest, Digest)], key: &[u8]) -> MerklePath {
    let path = key_path(key);
    let mut sorted = leaves.to_vec();
    sorted.sort_unstable();
    let mut siblings = Vec::new();
    let mut here: Vec<(Digest, Digest)> = sorted;
    let mut depth = 0;
    loop {
        match here.as_slice() {
            [] => return MerklePath { path, siblings, terminal: Terminal::Empty },
            [(p, d)] => return MerklePath { path, siblings, terminal: Terminal::Leaf { path: *p, digest: *d } },
            _ => {
                let children: [Digest; 16] = std::array::from_fn(|slot| {
                    let group: Vec<_> = here.iter().filter(|(p, _)| nibble(p, depth) == slot).copied().collect();
                    root_at(&group, depth + 1)
                });
                let slot = nibble(&path, depth);
                siblings.push(node_siblings(&children, slot));
                here.retain(|(p, _)| nibble(p, depth) == slot);
                depth += 1;
            }
        }
    }
}

fn root_at(leaves: &[(Digest, Digest)], depth: usize) -> Digest {
    let mut sorted = leaves.to_vec();
    sorted.sort_unstable();
    subtree_hash(&sorted, depth)
}

fn head(value: &[u8], wall: u64, author: u8) -> Head {
    Head {
        value: value.to_vec(),
        hlc: Hlc::new(wall, 0),
        author: AuthorId([author; 32]),
        hash: Hash::of(&[author, wall as u8]),
        tombstone: false,
        kind: Kind::Register,
    }
}

fn leaves_of(keys: &[String]) -> Vec<(Digest, Digest)> {
    keys.iter().map(|k| (key_path(k.as_bytes()), heads_digest(k.as_bytes(), &[head(k.as_bytes(), 1, 1)]))).collect()
}

#[test]
fn empty_and_single_key_roots() {
    assert_eq!(root_of(&[]), EMPTY);
    let leaves = leaves_of(&["a".into()]);
    assert_eq!(root_of(&leaves), leaf_hash(&leaves[0].0, &leaves[0].1));
}

#[test]
fn node_siblings_join_each_slot_to_the_node_hash() {
    let children: [Digest; 16] = std::array::from_fn(|i| if i % 3 == 0 { EMPTY } else { [i as u8; 32] });
    let root = node_hash(&children);
    for slot in 0..16 {
        let path = MerklePath {
            path: [(slot as u8) << 4; 32],
            siblings: vec![node_siblings(&children, slot)],
            terminal: Terminal::Empty,
        };
        // Fold the child's own hash up through its siblings, as `MerklePath::root` does.
        let mut hash = children[slot];
        for (level, sibling) in path.siblings[0].iter().enumerate() {
            hash = if (slot >> level) & 1 == 0 { branch(&hash, sibling) } else { branch(sibling, &hash) };
        }
        assert_eq!(hash, root, "slot {slot}");
    }
}

#[test]
fn heads_digest_covers_every_field_of_every_head() {
    let base = vec![head(b"v", 5, 2), head(b"w", 4, 1)];
    let d = heads_digest(b"k", &base);
    let mut variants: Vec<Vec<Head>> = Vec::new();
    for i in 0..2 {
        let mut h = base.clone();
        h[i].value.push(b'!');
        variants.push(h);
        let mut h = base.clone();
        h[i].hlc.counter += 1;
        variants.push(h);
        let mut h = base.clone();
        h[i].author.0[0] ^= 1;
        variants.push(h);
        let mut h = base.clone();
        h[i].hash.0[0] ^= 1;
        variants.push(h);
        let mut h = base.clone();
        h[i].tombstone = true;
        variants.push(h);
        let mut h = base.clone();
        h[i].kind = Kind::Counter;
        variants.push(h);
    }
    variants.push(base[..1].to_vec());
    variants.push(vec![base[1].clone(), base[0].clone()]);
    for v in variants {
        assert_ne!(heads_digest(b"k", &v), d);
    }
    assert_ne!(heads_digest(b"k2", &base), d);
}

#[test]
fn attestation_signs_and_any_changed_field_fails() {
    let id = Identity::from_seed([7; 32]);
    let mut state = SyncState::default();
    state.authors.insert(id.author(), crate::sync::AuthorSyncState { seq: 3, hash: Hash::of(b"x") });
    let a = Attestation::sign(&id, StoreId::new_random(), [9; 32], &state, Hlc::new(10, 1));
    a.verify().unwrap();
    assert_eq!(a.entries, 3);
    assert_eq!(Attestation::from_proto(&a.to_proto()), Some(a.clone()));
    let mut b = a.clone();
    b.root[0] ^= 1;
    assert_eq!(b.verify(), Err(ProofError::BadSignature));
    let mut b = a.clone();
    b.entries += 1;
    assert!(b.verify().is_err());
    let mut b = a.clone();
    b.signer = Identity::from_seed([8; 32]).author();
    assert!(b.verify().is_err());
    let mut b = a.clone();
    b.hlc.counter += 1;
    assert!(b.verify().is_err());
}

proptest! {
    #![proptest_config(lattice_testkit::proptest_config("merkle proofs", 64))]

    /// The root depends on the set of leaves only; proofs of present and absent keys verify
    /// against it, and fail against any other root or with any bit of the path flipped.
    #[test]
    fn proofs_verify_and_tampering_fails(
        keys in proptest::collection::btree_set("[a-z]{1,6}", 0..200),
        absent in "[A-Z]{1,4}",
        flip in any::<(usize, usize, u8)>(),
    ) {
        let keys: Vec<String> = keys.into_iter().collect();
        let leaves = leaves_of(&keys);
        let root = root_of(&leaves);
        let mut reversed = leaves.clone();
        reversed.reverse();
        prop_assert_eq!(root_of(&reversed), root);
        for key in keys.iter().take(20) {
            let proof = prove(&leaves, key.as_bytes());
            let digest = heads_digest(key.as_bytes(), &[head(key.as_bytes(), 1, 1)]);
            prop_assert_eq!(proof.verify(key.as_bytes(), &root), Ok(Some(digest)));
            prop_assert!(proof.siblings.len() <= 6, "depth {} for {} keys", proof.siblings.len(), keys.len());
            let mut other = root;
            other[0] ^= 1;
            prop_assert!(proof.verify(key.as_bytes(), &other).is_err());
            if !proof.siblings.is_empty() {
                let mut bad = proof.clone();
                let (node, level, bit) = flip;
                let node = node % bad.siblings.len();
                bad.siblings[node][level % 4][(bit % 32) as usize] ^= 1;
                prop_assert!(bad.verify(key.as_bytes(), &root).is_err());
            }
            let mut bad = proof.clone();
            if let Terminal::Leaf { digest, .. } = &mut bad.terminal { digest[0] ^= 1 }
            prop_assert!(bad.verify(key.as_bytes(), &root).is_err());
        }
        let proof = prove(&leaves, absent.as_bytes());
        prop_assert_eq!(proof.verify(absent.as_bytes(), &root), Ok(None));
        // `path_in` (the store's prover inside a bucket of leaves) gives the reference's proofs.
        let mut sorted = leaves.clone();
        sorted.sort_unstable();
        for key in keys.iter().take(5).chain(std::iter::once(&absent)) {
            let path = key_path(key.as_bytes());
            let mut siblings = Vec::new();
            let terminal = path_in(&sorted, 0, &path, &mut siblings);
            prop_assert_eq!(MerklePath { path, siblings, terminal }, prove(&leaves, key.as_bytes()));
        }
        prop_assert!(!proof.proves_presence());
        // The proof of one key is not a proof of another.
        if let Some(key) = keys.first() {
            prop_assert!(prove(&leaves, key.as_bytes()).verify(absent.as_bytes(), &root).is_err());
        }
    }
}
