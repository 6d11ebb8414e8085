//! Versions and time travel (issue 19, DESIGN.md §11): a store lists every applied entry that
//! touched a key, and the version that won as of any time; both agree with a model over random
//! histories (the model of "as of T" is a fresh store holding only the entries up to T), through
//! any arrival order and a rebuild of the index from the logs.

mod common;

use common::{KEYS, fast_tempdir, history, open};
use lattice_core::{Hlc, Identity, Op, StoreId, VerifiedEntry};
use lattice_store::{KvStore, StoreHandle, SyncStore};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn keys() -> Vec<Vec<u8>> {
    (0..KEYS).map(|k| format!("k{k}").into_bytes()).chain((0..2).map(|c| format!("c{c}").into_bytes())).collect()
}

async fn ingest(store: &StoreHandle, entries: &[VerifiedEntry]) {
    let batch = entries.iter().map(|e| e.bytes().to_vec()).collect();
    for r in store.ingest_batch(batch).await.unwrap() {
        r.unwrap();
    }
}

/// Checks `store`'s versions of every key against `entries` (all it holds): each entry that
/// touched the key, in (HLC, author) order, with its ops on the key, heads marked.
async fn check_versions(store: &StoreHandle, entries: &[VerifiedEntry]) -> Result<(), TestCaseError> {
    for key in keys() {
        let mut expect: Vec<&VerifiedEntry> =
            entries.iter().filter(|e| e.ops().iter().any(|op| op.key() == key.as_slice())).collect();
        expect.sort_by_key(|e| (e.hlc(), e.author()));
        let versions = store.versions(&key).await.unwrap();
        let heads: Vec<_> = store.get_heads(&key).await.unwrap().iter().map(|h| h.hash).collect();
        prop_assert_eq!(versions.len(), expect.len());
        for (version, entry) in versions.iter().zip(&expect) {
            prop_assert_eq!(version.hash, entry.hash());
            prop_assert_eq!((version.hlc, version.author), (entry.hlc(), entry.author()));
            let ops: Vec<Op> = entry.ops().iter().filter(|op| op.key() == key.as_slice()).cloned().collect();
            prop_assert_eq!(&version.ops, &ops);
            prop_assert_eq!(version.head, heads.contains(&version.hash));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(lattice_testkit::proptest_config("versions and time travel", 24))]

    /// `versions` lists what the entries say; `version_at(T)` is the winner of a store that holds
    /// only the entries up to T, for times at, between and around the entries' HLCs.
    #[test]
    fn history_and_time_travel_agree_with_a_model(seed in any::<u64>(), writers in 1usize..4, steps in 1usize..50) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x7157);
            let (id, mut entries) = history(seed, writers, steps).await;
            entries.shuffle(&mut rng);
            let dir = fast_tempdir();
            let store = open(dir.path(), id, &Identity::generate());
            ingest(&store, &entries).await;
            check_versions(&store, &entries).await?;

            let mut times: Vec<Hlc> = entries.iter().map(|e| e.hlc()).collect();
            times.sort();
            let first = times[0];
            let mut probes = vec![Hlc::new(first.wall_ms.saturating_sub(1), 0), Hlc::new(u64::MAX, u32::MAX)];
            for _ in 0..4 {
                let at = times[rng.random_range(0..times.len())];
                probes.push(at);
                probes.push(Hlc::new(at.wall_ms, at.counter.saturating_sub(1)));
            }
            for at in probes {
                let upto: Vec<VerifiedEntry> = entries.iter().filter(|e| e.hlc() <= at).cloned().collect();
                let model_dir = fast_tempdir();
                let model = open(model_dir.path(), id, &Identity::generate());
                // HLC order is causal order: a prefix in it is a closed set, so all of it applies.
                ingest(&model, &upto).await;
                prop_assert_eq!(model.orphan_count().await.unwrap(), 0);
                for key in keys() {
                    let winner = model.get_heads(&key).await.unwrap().first().map(|h| h.hash);
                    let got = store.version_at(&key, at).await.unwrap().map(|v| v.hash);
                    prop_assert_eq!(got, winner, "key {:?} at {}", String::from_utf8_lossy(&key), at);
                }
                model.close().await.unwrap();
            }

            // The versions come back, the same, from a rebuild of the index from the logs.
            store.close().await.unwrap();
            std::fs::remove_file(dir.path().join("state.db")).unwrap();
            let store = open(dir.path(), id, &Identity::generate());
            check_versions(&store, &entries).await?;
            store.close().await.unwrap();
            Ok(())
        })?;
    }
}

/// A store indexed before the versions table (no rows, no marker) rebuilds its index once at
/// open, which fills the table; a plain reopen after that does not rebuild.
#[tokio::test]
async fn a_store_indexed_without_versions_gets_them_at_open() {
    let dir = fast_tempdir();
    let id = Identity::generate();
    let store_id = StoreId::new_random();
    let store = open(dir.path(), store_id, &id);
    store.put(b"a".to_vec(), b"1".to_vec()).await.unwrap();
    store.put(b"a".to_vec(), b"2".to_vec()).await.unwrap();
    store.delete(b"a".to_vec()).await.unwrap();
    let expected = store.versions(b"a").await.unwrap();
    assert_eq!(expected.len(), 3);
    assert_eq!(expected.iter().map(|v| v.head).collect::<Vec<_>>(), [false, false, true]);
    store.close().await.unwrap();

    let db = redb::Database::open(dir.path().join("state.db")).unwrap();
    let tx = db.begin_write().unwrap();
    tx.delete_table(redb::TableDefinition::<(&[u8], u64, u32, [u8; 32]), [u8; 32]>::new("versions_v1")).unwrap();
    tx.open_table(redb::TableDefinition::<&str, &[u8]>::new("meta_v1")).unwrap().remove("versions").unwrap();
    tx.commit().unwrap();
    drop(db);
    let store = open(dir.path(), store_id, &id);
    assert_eq!(store.versions(b"a").await.unwrap(), expected);
    let at_first = store.version_at(b"a", expected[0].hlc).await.unwrap().unwrap();
    assert_eq!(at_first.ops, vec![Op::put("a", "1")]);
    assert_eq!(store.version_at(b"a", Hlc::new(expected[0].hlc.wall_ms - 1, 0)).await.unwrap(), None);
    assert_eq!(store.versions(b"nothing").await.unwrap(), vec![]);
    store.close().await.unwrap();
}

/// Writing a key many times keeps every version, in order, and the time of each one reads back
/// its value; versions of one key do not spill into a key that extends it.
#[tokio::test]
async fn every_overwrite_is_a_version() {
    let dir = fast_tempdir();
    let store = open(dir.path(), StoreId::new_random(), &Identity::generate());
    for i in 0..300 {
        store.put(b"key".to_vec(), format!("v{i}").into_bytes()).await.unwrap();
        store.put(b"key2".to_vec(), b"other".to_vec()).await.unwrap();
    }
    let versions = store.versions(b"key").await.unwrap();
    assert_eq!(versions.len(), 300);
    assert!(versions.windows(2).all(|w| w[0].hlc < w[1].hlc));
    for (i, version) in versions.iter().enumerate().step_by(37) {
        let at = store.version_at(b"key", version.hlc).await.unwrap().unwrap();
        assert_eq!(at.ops, vec![Op::put("key", format!("v{i}"))]);
    }
    assert!(versions.last().unwrap().head && versions.iter().filter(|v| v.head).count() == 1);
}

/// A key written once costs no version row (its version is its head); each overwrite writes one,
/// for the head it displaced.
#[tokio::test]
async fn only_displaced_heads_take_a_row() {
    let dir = fast_tempdir();
    let store = open(dir.path(), StoreId::new_random(), &Identity::generate());
    store.batch((0..100).map(|i| Op::put(format!("once/{i}"), "v")).collect()).await.unwrap();
    for v in ["1", "2", "3"] {
        store.put(b"thrice".to_vec(), v.as_bytes().to_vec()).await.unwrap();
    }
    assert_eq!(store.versions(b"once/7").await.unwrap().len(), 1);
    assert_eq!(store.versions(b"thrice").await.unwrap().len(), 3);
    store.close().await.unwrap();
    let db = redb::Database::open(dir.path().join("state.db")).unwrap();
    let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
    let table =
        tx.open_table(redb::TableDefinition::<(&[u8], u64, u32, [u8; 32]), [u8; 32]>::new("versions_v1")).unwrap();
    assert_eq!(redb::ReadableTableMetadata::len(&table).unwrap(), 2, "rows for the two displaced heads only");
}
