use super::*;
use lattice_core::merkle::root_of;
use proptest::prelude::*;

fn root_after(db: &redb::Database, changes: Vec<Change>) -> Digest {
    let tx = db.begin_write().unwrap();
    update_tree(&tx, changes).unwrap();
    tx.commit().unwrap();
    let tx = db.begin_read().unwrap();
    match tx.open_table(tables::META) {
        Ok(meta) => root_slot(&meta).unwrap().hash(),
        Err(_) => merkle::EMPTY,
    }
}

fn node_rows(db: &redb::Database) -> usize {
    let tx = db.begin_read().unwrap();
    let Ok(nodes) = tx.open_table(MERKLE_NODES) else { return 0 };
    nodes.iter().unwrap().count()
}

/// The root from scratch over the store's heads (the reference).
fn reference(store: &Store) -> Digest {
    let tx = store.state.begin_read().unwrap();
    let kv = tx.open_table(tables::KV).unwrap();
    let leaves: Vec<_> = kv
        .iter()
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            (merkle::key_path(k.value()), merkle::heads_digest(k.value(), &decode_heads(v.value()).unwrap()))
        })
        .collect();
    root_of(&leaves)
}

fn waiting_rows(store: &Store) -> u64 {
    let tx = store.state.begin_read().unwrap();
    tx.open_table(MERKLE_PENDING).unwrap().len().unwrap()
}

/// Leaves pass through memory, the waiting table (durable commits, or many) and the tree
/// (many waiting), and the root is the reference's at every step; a store dropped without a
/// checkpoint (a crash: only durable commits survive) reopens with the same root.
#[test]
fn leaves_wait_in_memory_then_the_table_then_merge_and_survive_a_crash() {
    use crate::types::{StoreConfig, Transaction};
    let dir = tempfile::tempdir().unwrap();
    let (sid, id) = (lattice_core::StoreId::new_random(), lattice_core::Identity::generate());
    let config = StoreConfig { checkpoint_interval: std::time::Duration::from_secs(3600), ..StoreConfig::default() };
    let mut store = Store::open(dir.path(), sid, id.clone(), config.clone()).unwrap();
    store.checkpoint().unwrap();
    let write = |store: &mut Store, keys: std::ops::Range<u32>| {
        let mut tx = store.begin(false).unwrap();
        {
            let (mut t, w) = tx.split().unwrap();
            let ops = keys.map(|k| lattice_core::Op::put(format!("k{k}"), "v")).collect();
            store.local_write(&mut t, w, Transaction::new(ops)).unwrap();
        }
        store.commit(tx).unwrap();
    };
    write(&mut store, 0..5);
    assert_eq!((store.merkle_pending.len(), waiting_rows(&store)), (5, 0), "few: in memory");
    write(&mut store, 5..20);
    assert_eq!((store.merkle_pending.len(), waiting_rows(&store)), (0, 20), "past MEMORY_MAX: the table");
    store.checkpoint().unwrap();
    write(&mut store, 0..3);
    store.checkpoint().unwrap();
    assert_eq!(waiting_rows(&store), 23, "a durable commit moves memory to the table (k0..k2 again: 2 rows)");
    write(&mut store, 20..70);
    assert_eq!(waiting_rows(&store), 0, "past MERGE_MAX: merged");
    assert_eq!(store.merkle_pending.len(), 0);
    write(&mut store, 70..75);
    let root = store.merkle_root().unwrap();
    assert_eq!(root, reference(&store));
    assert_eq!((store.merkle_pending.len(), waiting_rows(&store)), (0, 0), "a root read merges");

    write(&mut store, 75..80);
    store.checkpoint().unwrap();
    write(&mut store, 80..85);
    assert!(store.merkle_dirty, "leaves wait in memory only");
    // Closed without its checkpoint: redb makes the last commit durable as the file closes,
    // while its leaves were in memory only. The open finds the dirty flag and rebuilds.
    drop(store);
    let mut store = Store::open(dir.path(), sid, id.clone(), config.clone()).unwrap();
    assert!(!store.merkle_dirty);
    assert_eq!(store.merkle_root().unwrap(), reference(&store));
    assert_ne!(store.merkle_root().unwrap(), root);
    assert_eq!(store.get(b"k84").unwrap(), Some(b"v".to_vec()));

    // Leaves waiting in the table across a clean close: the numbering goes on after them.
    write(&mut store, 85..90);
    store.checkpoint().unwrap();
    let placed = store.merkle_placed;
    assert_eq!((waiting_rows(&store), placed), (5, 5));
    drop(store);
    let mut store = Store::open(dir.path(), sid, id, config).unwrap();
    assert_eq!(store.merkle_placed, placed);
    write(&mut store, 0..5);
    store.checkpoint().unwrap();
    assert_eq!(waiting_rows(&store), 10);
    assert_eq!(store.merkle_root().unwrap(), reference(&store));
}

proptest! {
    #![proptest_config(lattice_testkit::proptest_config("merkle tree updates", 64))]

    /// Any sequence of batched upserts and removals leaves the tree the reference computes
    /// from the final leaf set; proofs walk to that root; removing every key leaves no row.
    #[test]
    fn incremental_updates_match_the_reference(
        batches in proptest::collection::vec(
            proptest::collection::vec((0u16..400, proptest::option::weighted(0.8, any::<u8>())), 0..60),
            1..12,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.db")).unwrap();
        let mut model: HashMap<Digest, Digest> = HashMap::new();
        for batch in batches {
            let mut changes: HashMap<Digest, Option<Digest>> = HashMap::new();
            for (key, digest) in batch {
                let path = merkle::key_path(&key.to_be_bytes());
                let digest = digest.map(|d| [d; 32]);
                changes.insert(path, digest);
                match digest {
                    Some(d) => { model.insert(path, d); }
                    None => { model.remove(&path); }
                }
            }
            let root = root_after(&db, changes.into_iter().collect());
            let leaves: Vec<_> = model.iter().map(|(p, d)| (*p, *d)).collect();
            prop_assert_eq!(root, root_of(&leaves));
            let tx = db.begin_read().unwrap();
            if let (Ok(meta), Ok(nodes)) = (tx.open_table(tables::META), tx.open_table(MERKLE_NODES)) {
                let slot = root_slot(&meta).unwrap();
                for probe in 0u16..20 {
                    let key = probe.to_be_bytes();
                    let proof = walk(&nodes, slot, merkle::key_path(&key)).unwrap();
                    let expect = model.get(&merkle::key_path(&key)).copied();
                    prop_assert_eq!(proof.verify(&key, &root), Ok(expect));
                }
            }
        }
        let all: Vec<Change> = model.keys().map(|p| (*p, None)).collect();
        prop_assert_eq!(root_after(&db, all), merkle::EMPTY);
        prop_assert_eq!(node_rows(&db), 0);
    }
}
