//! The Merkle root (issue 18, DESIGN.md §10): stores that hold the same entries hold the same
//! root, whatever order the entries arrived in (and through a rebuild from the logs), and it is
//! the root computed from scratch over every key's heads; any entry missing changes it; proofs
//! from a store verify against its signed root.

mod common;

use common::{KEYS, fast_tempdir, history, open};
use lattice_core::merkle::{self, Digest};
use lattice_core::{Identity, Op, StoreId, VerifiedEntry};
use lattice_store::{KvStore, StoreHandle, SyncStore};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// The root over every key's heads, computed from scratch (the reference).
async fn reference_root(store: &StoreHandle) -> Digest {
    let mut leaves = Vec::new();
    let keys = (0..KEYS).map(|k| format!("k{k}")).chain((0..2).map(|c| format!("c{c}")));
    for key in keys {
        let heads = store.get_heads(key.as_bytes()).await.unwrap();
        if !heads.is_empty() {
            leaves.push((merkle::key_path(key.as_bytes()), merkle::heads_digest(key.as_bytes(), &heads)));
        }
    }
    merkle::root_of(&leaves)
}

async fn root(store: &StoreHandle) -> Digest {
    store.status().await.unwrap().root
}

/// A fresh store that receives `entries` in the given order, in batches of random sizes.
async fn receive(id: StoreId, entries: &[VerifiedEntry], rng: &mut StdRng) -> (tempfile::TempDir, StoreHandle) {
    let dir = fast_tempdir();
    let store = open(dir.path(), id, &Identity::generate());
    let mut rest = entries;
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(16));
        let batch = rest[..n].iter().map(|e| e.bytes().to_vec()).collect();
        for r in store.ingest_batch(batch).await.unwrap() {
            r.unwrap();
        }
        rest = &rest[n..];
    }
    (dir, store)
}

proptest! {
    #![proptest_config(lattice_testkit::proptest_config("merkle roots", 24))]

    /// Random histories delivered in random orders give one root, the reference's; it survives
    /// a rebuild of state.db from the logs; and holding one entry fewer always changes it.
    #[test]
    fn same_entries_same_root_any_order(seed in any::<u64>(), writers in 1usize..4, steps in 1usize..60) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
            let (id, entries) = history(seed, writers, steps).await;
            let mut roots = Vec::new();
            let mut kept = Vec::new();
            for _ in 0..3 {
                let mut order = entries.clone();
                order.shuffle(&mut rng);
                let (dir, store) = receive(id, &order, &mut rng).await;
                prop_assert_eq!(store.orphan_count().await.unwrap(), 0);
                let r = root(&store).await;
                prop_assert_eq!(r, reference_root(&store).await, "the incremental tree is not the reference");
                roots.push(r);
                kept.push((dir, store));
            }
            prop_assert!(roots.iter().all(|r| *r == roots[0]), "roots differ by arrival order: {:?}", roots);
            prop_assert_ne!(roots[0], merkle::EMPTY);

            // A rebuild from the logs gives the same root.
            let (dir, store) = kept.pop().unwrap();
            store.close().await.unwrap();
            std::fs::remove_file(dir.path().join("state.db")).unwrap();
            let store = open(dir.path(), id, &Identity::generate());
            prop_assert_eq!(root(&store).await, roots[0]);
            store.close().await.unwrap();

            // Any one entry missing (and with it whatever depends on it): another root.
            let missing = rng.random_range(0..entries.len());
            let mut fewer = entries.clone();
            fewer.remove(missing);
            let (_dir, partial) = receive(id, &fewer, &mut rng).await;
            prop_assert_ne!(root(&partial).await, roots[0], "entry {} missing did not change the root", missing);
            prop_assert_eq!(root(&partial).await, reference_root(&partial).await);
            Ok(())
        })?;
    }
}

/// A proof from a store verifies against its attestation; one of a key written since does not
/// verify against the old root, and an absent key's proof shows it absent.
#[tokio::test]
async fn proofs_verify_against_the_signed_root() {
    let dir = fast_tempdir();
    let id = Identity::generate();
    let store = open(dir.path(), StoreId::new_random(), &id);
    for i in 0..500 {
        store.put(format!("key{i}").into_bytes(), format!("value{i}").into_bytes()).await.unwrap();
    }
    let proof = store.prove(b"key7").await.unwrap();
    proof.attestation.verify().unwrap();
    assert_eq!(proof.attestation.signer, id.author());
    assert_eq!(proof.attestation.entries, 500);
    let digest = merkle::heads_digest(b"key7", &proof.heads);
    assert_eq!(proof.path.verify(b"key7", &proof.attestation.root), Ok(Some(digest)));
    assert_eq!(proof.heads[0].value, b"value7");
    // 500 keys: about log16(500) ≈ 2–3 nodes deep.
    assert!((1..=4).contains(&proof.path.siblings.len()), "depth {}", proof.path.siblings.len());

    let absent = store.prove(b"nokey").await.unwrap();
    assert!(absent.heads.is_empty());
    assert_eq!(absent.path.verify(b"nokey", &absent.attestation.root), Ok(None));

    let old_root = proof.attestation.root;
    store.put(b"key7".to_vec(), b"changed".to_vec()).await.unwrap();
    let newer = store.prove(b"key7").await.unwrap();
    assert_ne!(newer.attestation.root, old_root);
    assert!(newer.path.verify(b"key7", &old_root).is_err());
    assert_eq!(root(&store).await, newer.attestation.root);
    let (attestation, state) = store.attestation().await.unwrap();
    assert_eq!(attestation.root, newer.attestation.root);
    assert_eq!(attestation.frontier, merkle::frontier_digest(&state));
}

/// Enough keys that many share the tree's bucket prefixes (4 nibbles): the root stays the
/// reference's and proofs verify, as buckets fill and as deletions rewrite them (the unit tests
/// of the tree cover buckets emptying back to single leaves).
#[tokio::test]
async fn buckets_of_leaves_prove_and_empty() {
    let dir = fast_tempdir();
    let store = open(dir.path(), StoreId::new_random(), &Identity::generate());
    let keys: Vec<Vec<u8>> = (0..3_000).map(|i| format!("bucket-key-{i}").into_bytes()).collect();
    for chunk in keys.chunks(500) {
        store.batch(chunk.iter().map(|k| Op::put(k.clone(), "v")).collect()).await.unwrap();
    }
    let reference = |present: &[Vec<u8>], heads: &[Vec<lattice_core::Head>]| {
        let leaves: Vec<_> =
            present.iter().zip(heads).map(|(k, h)| (merkle::key_path(k), merkle::heads_digest(k, h))).collect();
        merkle::root_of(&leaves)
    };
    let mut heads = Vec::new();
    for key in &keys {
        heads.push(store.get_heads(key).await.unwrap());
    }
    assert_eq!(root(&store).await, reference(&keys, &heads));
    let mut deepest = 0;
    for key in keys.iter().step_by(7) {
        let proof = store.prove(key).await.unwrap();
        let digest = merkle::heads_digest(key, &proof.heads);
        assert_eq!(proof.path.verify(key, &proof.attestation.root), Ok(Some(digest)));
        deepest = deepest.max(proof.path.siblings.len());
    }
    assert!(deepest > 4, "some proofs reach inside a bucket (deepest {deepest})");
    for absent in 0..50 {
        let key = format!("absent-{absent}").into_bytes();
        let proof = store.prove(&key).await.unwrap();
        assert_eq!(proof.path.verify(&key, &proof.attestation.root), Ok(None));
    }
    // Deleting most keys rewrites the buckets (a tombstone is a head: its key stays a leaf).
    store.batch(keys[..2_900].iter().map(|k| Op::delete(k.clone())).collect()).await.unwrap();
    let mut heads = Vec::new();
    for key in &keys {
        heads.push(store.get_heads(key).await.unwrap());
    }
    assert_eq!(root(&store).await, reference(&keys, &heads));
    for key in keys.iter().step_by(97) {
        let proof = store.prove(key).await.unwrap();
        assert!(proof.path.verify(key, &proof.attestation.root).unwrap().is_some());
    }
}

/// A store indexed before the tree existed gets it built at open, equal to the one a store
/// maintains as it goes.
#[tokio::test]
async fn the_tree_is_built_for_a_store_indexed_without_it() {
    let dir = fast_tempdir();
    let id = Identity::generate();
    let store_id = StoreId::new_random();
    let store = open(dir.path(), store_id, &id);
    for i in 0..300 {
        store.put(format!("k{i}").into_bytes(), b"v".to_vec()).await.unwrap();
    }
    let expected = root(&store).await;
    store.close().await.unwrap();
    // What an older build left: no tree rows, no root row; or the tree's first layout (a row
    // per node, its root under another name).
    let legacy = redb::TableDefinition::<&[u8], &[u8]>::new("merkle_nodes_v1");
    let meta = redb::TableDefinition::<&str, &[u8]>::new("meta_v1");
    let db = redb::Database::open(dir.path().join("state.db")).unwrap();
    let tx = db.begin_write().unwrap();
    assert!(tx.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new("merkle_nodes_v2")).unwrap());
    tx.open_table(meta).unwrap().remove("merkle_root_v2").unwrap();
    tx.open_table(legacy).unwrap().insert([0u8].as_slice(), [0u8, 0].as_slice()).unwrap();
    tx.open_table(meta).unwrap().insert("merkle_root", [2u8; 33].as_slice()).unwrap();
    tx.commit().unwrap();
    drop(db);
    let store = open(dir.path(), store_id, &id);
    assert_eq!(root(&store).await, expected);
    store.close().await.unwrap();
    let db = redb::Database::open(dir.path().join("state.db")).unwrap();
    let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
    assert!(tx.open_table(legacy).is_err(), "the first layout's rows are gone");
    assert!(tx.open_table(meta).unwrap().get("merkle_root").unwrap().is_none());
}
