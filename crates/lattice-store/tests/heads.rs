//! The head rule (DESIGN.md §4): an entry removes the heads it cites and its own author's
//! earlier heads of the key, so a key holds at most one head per author, whether the entry
//! arrives live, out of order (released from orphans.db), or is replayed by a rebuild.

mod common;

use common::{Chain, open, snapshot};
use lattice_core::{Hash, Identity, Op, StoreId};
use lattice_store::{IngestOutcome, KvStore, StoreHandle, SyncStore};

async fn head_hashes(s: &StoreHandle, key: &[u8]) -> Vec<Hash> {
    s.get_heads(key).await.unwrap().into_iter().map(|h| h.hash).collect()
}

#[tokio::test]
async fn entries_that_cite_nothing_keep_one_head_per_author() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let s = open(dir.path(), sid, &id);
    let (mut a, mut b) = (Chain::new(sid), Chain::new(sid));
    b.wall += 100;
    // a writes k three times without citing its own heads; b twice; a stale citation (a's
    // first entry, no longer a head) changes nothing more.
    let a1 = a.put("k", "a1");
    let b1 = b.put("k", "b1");
    a.put("k", "a2");
    let a3 = a.next_with(vec![a1.hash()], vec![Op::put("k", "a3")]);
    let b2 = b.put("k", "b2");
    let in_order: Vec<Vec<u8>> = a.bytes().into_iter().chain(b.bytes()).collect();
    for r in s.ingest_batch(in_order).await.unwrap() {
        assert!(matches!(r.unwrap(), IngestOutcome::Applied { .. }));
    }
    let mut want = vec![b2.hash(), a3.hash()]; // b's HLCs are later: b2 wins
    assert_eq!(head_hashes(&s, b"k").await, want);
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"b2".to_vec()));
    assert_eq!(s.status().await.unwrap().conflicts, 1);
    assert_ne!(b1.hash(), b2.hash());

    // A local write cites both heads and merges them; it is then the only head.
    let merged = s.put(b"k".to_vec(), b"m".to_vec()).await.unwrap();
    want = vec![merged.hash];
    assert_eq!(head_hashes(&s, b"k").await, want);
    assert_eq!(s.status().await.unwrap().conflicts, 0);

    // The rebuild from the logs replays the same rule.
    let before = snapshot(&s).await;
    s.close().await.unwrap();
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let s = open(dir.path(), sid, &id);
    assert_eq!(snapshot(&s).await, before);
    assert_eq!(head_hashes(&s, b"k").await, want);
}

/// The same entries in reverse order (each author's chain released from orphans.db) give the
/// same heads as in order.
#[tokio::test]
async fn arrival_order_does_not_change_the_heads() {
    let sid = StoreId::new_random();
    let (mut a, mut b) = (Chain::new(sid), Chain::new(sid));
    b.wall += 1;
    for i in 0..5 {
        a.put("k", &format!("a{i}"));
        b.put(if i % 2 == 0 { "k" } else { "j" }, &format!("b{i}"));
    }
    let forward: Vec<Vec<u8>> = a.bytes().into_iter().zip(b.bytes()).flat_map(|(x, y)| [x, y]).collect();
    let mut backward = forward.clone();
    backward.reverse();
    let mut seen = Vec::new();
    for entries in [forward, backward] {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), sid, &Identity::generate());
        for r in s.ingest_batch(entries).await.unwrap() {
            r.unwrap();
        }
        assert_eq!(s.status().await.unwrap().orphans, 0);
        seen.push((head_hashes(&s, b"k").await, head_hashes(&s, b"j").await));
    }
    assert_eq!(seen[0], seen[1]);
    let (k, j) = &seen[0];
    assert_eq!(k, &vec![b.entries[4].hash(), a.entries[4].hash()]);
    assert_eq!(j, &vec![b.entries[3].hash()]);
}
