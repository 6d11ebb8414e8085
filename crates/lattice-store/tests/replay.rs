//! Replay at open: an up-to-date index replays nothing; a rebuild from the logs reproduces the
//! store even when HLC order and causal order disagree (clocks beyond the drift bound), and the
//! clock it resumes with keeps the local chain valid.

mod common;

use common::{Chain, all_entries, open, snapshot};
use lattice_core::{Identity, Op, StoreId};
use lattice_store::{IngestOutcome, KvStore, StoreConfig, StoreHandle, SyncStore};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test]
async fn reopening_a_cleanly_closed_store_replays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let s = open(dir.path(), sid, &id);
    assert_eq!(s.replayed_on_open(), 0, "a new store has nothing to replay");
    // 2,000 entries, in concurrent writers so they group-commit.
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..20u32 {
        let s = s.clone();
        tasks.spawn(async move {
            for i in 0..100u32 {
                s.put(format!("w{w}/{i}").into_bytes(), i.to_le_bytes().to_vec()).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let before = snapshot(&s).await;
    assert_eq!(before.status.entries, 2_000);
    s.close().await.unwrap();

    let s = open(dir.path(), sid, &id);
    assert_eq!(s.replayed_on_open(), 0, "the index was checkpointed at close");
    assert_eq!(snapshot(&s).await, before);
    s.close().await.unwrap();

    // Control: without the index, the same open replays every record.
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let s = open(dir.path(), sid, &id);
    assert_eq!(s.replayed_on_open(), 2_000);
    assert_eq!(snapshot(&s).await, before);
}

#[tokio::test]
async fn a_write_after_a_rebuild_continues_a_chain_whose_clock_was_pulled_ahead() {
    // A peer 30 s ahead (within the 60 s drift bound) pulls our clock ahead; our writes carry
    // that clock. After a rebuild of the index, our next write must still be later than them,
    // or every peer refuses it (and everything we write after it) as HlcNotIncreasing.
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let s = open(dir.path(), sid, &id);
    let mut ahead = Chain::new(sid);
    ahead.wall = now_ms() + 30_000;
    let p1 = ahead.put("k", "from the future");
    assert_eq!(s.ingest(p1.bytes().to_vec()).await.unwrap(), IngestOutcome::Applied { released: 0 });
    let r1 = s.put(b"k".to_vec(), b"mine".to_vec()).await.unwrap();
    assert!(r1.hlc > p1.hlc());
    s.close().await.unwrap();

    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let s = open(dir.path(), sid, &id);
    let r2 = s.put(b"k".to_vec(), b"mine again".to_vec()).await.unwrap();
    assert!(r2.hlc > r1.hlc, "the chain's HLC went backwards: {} after {}", r2.hlc, r1.hlc);
    let p2 = ahead.put("other", "x");
    s.ingest(p2.into_bytes()).await.unwrap();
    let r3 = s.put(b"other".to_vec(), b"mine".to_vec()).await.unwrap();
    assert!(r3.hlc > r2.hlc);

    // A fresh replica accepts the whole chain, and a second rebuild opens.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open(fresh_dir.path(), sid, &Identity::generate());
    let entries: Vec<Vec<u8>> = all_entries(&s).await.into_iter().map(|e| e.into_bytes()).collect();
    for res in fresh.ingest_batch(entries).await.unwrap() {
        res.expect("a peer refused our chain");
    }
    assert_eq!(fresh.get(b"k").await.unwrap(), Some(b"mine again".to_vec()));
    let before = snapshot(&s).await;
    s.close().await.unwrap();
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let s = open(dir.path(), sid, &id);
    assert_eq!(snapshot(&s).await, before);
}

#[tokio::test]
async fn a_rebuild_replays_entries_whose_parents_come_later_in_hlc_order() {
    // Two peers far beyond the drift bound: our clock is clamped, so our write citing both of
    // their entries carries an HLC lower than either parent. Replaying in HLC order meets our
    // entries first; they must wait for both parents, one after the other, with the rest of our
    // log queued behind them.
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let s = open(dir.path(), sid, &id);
    let (mut p, mut q) = (Chain::new(sid), Chain::new(sid));
    p.wall = now_ms() + 600_000;
    q.wall = now_ms() + 700_000;
    let p1 = p.put("p", "p1");
    let q1 = q.put("q", "q1");
    s.ingest_batch(vec![p1.bytes().to_vec(), q1.bytes().to_vec()]).await.unwrap();
    let merge = s.batch(vec![Op::put("p", "merged"), Op::put("q", "merged")]).await.unwrap();
    assert!(merge.hlc < p1.hlc() && merge.hlc < q1.hlc(), "the test needs a clamped clock");
    assert_eq!(s.get_heads(b"p").await.unwrap().len(), 1);
    s.put(b"z".to_vec(), b"after the merge".to_vec()).await.unwrap();
    s.put(b"p".to_vec(), b"last".to_vec()).await.unwrap();
    let before = snapshot(&s).await;
    let heads_before = (s.get_heads(b"p").await.unwrap(), s.get_heads(b"q").await.unwrap());
    s.close().await.unwrap();

    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let s = StoreHandle::open(dir.path(), sid, id.clone(), StoreConfig::default()).expect("the rebuild must open");
    assert_eq!(snapshot(&s).await, before);
    assert_eq!((s.get_heads(b"p").await.unwrap(), s.get_heads(b"q").await.unwrap()), heads_before);
    assert_eq!(s.status().await.unwrap().orphans, 0);
    assert_eq!(s.get(b"q").await.unwrap(), Some(b"merged".to_vec()));
}
