//! Out-of-order arrival: orphans, gap events, release, expiry, persistence.

mod common;

use std::time::Duration;

use common::{Chain, open, snapshot};
use lattice_core::{Hash, Identity, Op, StoreId};
use lattice_store::{GapInfo, IngestOutcome, KvStore, StoreConfig, StoreHandle, SyncStore};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

fn open_with(dir: &std::path::Path, sid: StoreId, config: StoreConfig) -> StoreHandle {
    StoreHandle::open(dir, sid, Identity::generate(), config).unwrap()
}

/// The next gap event, failing the test if none comes within 10 s.
async fn next_gap(rx: &mut broadcast::Receiver<GapInfo>) -> Result<GapInfo, RecvError> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("no gap event within 10 s")
}

fn pred_gap(author: &Chain, have_seq: u64, need_seq: u64) -> GapInfo {
    GapInfo { author: author.id.author(), have_seq, need_seq, missing_parent: None }
}

async fn orphans(s: &StoreHandle) -> u64 {
    s.status().await.unwrap().orphans
}

#[tokio::test]
async fn entries_arriving_3_2_1_are_orphaned_then_applied_in_one_go() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &Identity::generate());
    let mut r = Chain::new(sid);
    let (e1, e2, e3) = (r.put("k1", "v1"), r.put("k2", "v2"), r.put("k3", "v3"));

    assert_eq!(s.ingest(e3.bytes().to_vec()).await.unwrap(), IngestOutcome::Orphaned(pred_gap(&r, 0, 2)));
    assert_eq!(s.ingest(e2.bytes().to_vec()).await.unwrap(), IngestOutcome::Orphaned(pred_gap(&r, 0, 1)));
    assert_eq!(orphans(&s).await, 2);
    assert_eq!(s.get(b"k3").await.unwrap(), None, "an orphan is not visible");
    assert!(s.sync_state().await.unwrap().authors.is_empty());

    assert_eq!(s.ingest(e1.bytes().to_vec()).await.unwrap(), IngestOutcome::Applied { released: 2 });
    let st = s.status().await.unwrap();
    assert_eq!((st.orphans, st.entries, st.keys), (0, 3, 3));
    assert_eq!(s.sync_state().await.unwrap().authors[&r.id.author()].seq, 3);
    assert_eq!(s.get(b"k3").await.unwrap(), Some(b"v3".to_vec()));
    // Re-sending a released orphan is a duplicate.
    assert_eq!(s.ingest(e3.into_bytes()).await.unwrap(), IngestOutcome::Duplicate);
}

#[tokio::test]
async fn a_seq_gap_is_announced_on_subscribe_gaps_once() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &Identity::generate());
    let mut gaps = s.subscribe_gaps();
    let mut r = Chain::new(sid);
    for i in 1..=5 {
        r.put(&format!("k{i}"), "v");
    }
    s.ingest_batch(r.bytes()[..2].to_vec()).await.unwrap().into_iter().for_each(|r| assert!(r.is_ok()));
    let e5 = r.entries[4].bytes().to_vec();
    assert_eq!(s.ingest(e5.clone()).await.unwrap(), IngestOutcome::Orphaned(pred_gap(&r, 2, 4)));
    assert_eq!(next_gap(&mut gaps).await.unwrap(), pred_gap(&r, 2, 4));
    // The same orphan again: still an orphan, but no second event.
    assert_eq!(s.ingest(e5).await.unwrap(), IngestOutcome::Orphaned(pred_gap(&r, 2, 4)));
    let mut other = Chain::new(sid);
    other.put("o1", "v");
    let o2 = other.put("o2", "v");
    s.ingest(o2.into_bytes()).await.unwrap();
    assert_eq!(next_gap(&mut gaps).await.unwrap(), pred_gap(&other, 0, 1), "the repeat emitted nothing");
    assert_eq!(orphans(&s).await, 2);
}

#[tokio::test]
async fn an_entry_whose_dag_parent_is_missing_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &Identity::generate());
    let mut gaps = s.subscribe_gaps();
    let (mut p, mut q) = (Chain::new(sid), Chain::new(sid));
    let p1 = p.put("k", "from p");
    q.wall = p.wall + 10;
    let q1 = q.next_with(vec![p1.hash()], vec![Op::put("k", "from q, superseding p")]);

    let gap = GapInfo { author: q.id.author(), have_seq: 0, need_seq: 0, missing_parent: Some(p1.hash()) };
    assert_eq!(s.ingest(q1.bytes().to_vec()).await.unwrap(), IngestOutcome::Orphaned(gap));
    assert_eq!(next_gap(&mut gaps).await.unwrap(), gap);
    assert_eq!(s.get(b"k").await.unwrap(), None);
    assert_eq!(orphans(&s).await, 1);

    assert_eq!(s.ingest(p1.bytes().to_vec()).await.unwrap(), IngestOutcome::Applied { released: 1 });
    let heads = s.get_heads(b"k").await.unwrap();
    assert_eq!(heads.iter().map(|h| h.hash).collect::<Vec<_>>(), vec![q1.hash()], "q1 superseded p1");
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"from q, superseding p".to_vec()));
    let st = s.status().await.unwrap();
    assert_eq!((st.orphans, st.entries, st.authors, st.conflicts), (0, 2, 2, 0));
}

#[tokio::test]
async fn an_orphan_released_by_its_predecessor_then_waits_for_a_missing_parent() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &Identity::generate());
    let mut gaps = s.subscribe_gaps();
    let (mut p, mut q) = (Chain::new(sid), Chain::new(sid));
    let p1 = p.put("x", "p");
    q.wall = p.wall + 10;
    let q1 = q.put("y", "q1");
    let q2 = q.next_with(vec![p1.hash()], vec![Op::put("x", "q2")]);

    assert_eq!(s.ingest(q2.bytes().to_vec()).await.unwrap(), IngestOutcome::Orphaned(pred_gap(&q, 0, 1)));
    assert_eq!(next_gap(&mut gaps).await.unwrap(), pred_gap(&q, 0, 1));
    // q1 releases q2 from the predecessor wait, but q2 now waits for p1.
    assert_eq!(s.ingest(q1.bytes().to_vec()).await.unwrap(), IngestOutcome::Applied { released: 0 });
    let parent_gap = GapInfo { author: q.id.author(), have_seq: 1, need_seq: 1, missing_parent: Some(p1.hash()) };
    assert_eq!(next_gap(&mut gaps).await.unwrap(), parent_gap);
    assert_eq!(orphans(&s).await, 1);
    assert_eq!(s.get(b"x").await.unwrap(), None);

    assert_eq!(s.ingest(p1.bytes().to_vec()).await.unwrap(), IngestOutcome::Applied { released: 1 });
    assert_eq!(s.get(b"x").await.unwrap(), Some(b"q2".to_vec()));
    assert_eq!(orphans(&s).await, 0);
    assert_eq!(s.sync_state().await.unwrap().authors[&q.id.author()].seq, 2);
}

#[tokio::test]
async fn a_forged_orphan_is_dropped_when_its_gap_closes() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &Identity::generate());
    let mut r = Chain::new(sid);
    let e1 = r.put("a", "1");
    let e2 = r.put("b", "2");
    // Seq 3 citing a prev_hash that is not e2: cannot be checked until e2 is held.
    let forged = r.builder().prev_hash(Hash::of(b"forged")).op(Op::put("c", "forged")).sign(&r.id).unwrap();
    assert!(matches!(s.ingest(forged.into_bytes()).await.unwrap(), IngestOutcome::Orphaned(_)));
    s.ingest(e1.into_bytes()).await.unwrap();
    assert_eq!(s.ingest(e2.into_bytes()).await.unwrap(), IngestOutcome::Applied { released: 0 });
    assert_eq!(orphans(&s).await, 0);
    assert_eq!(s.get(b"c").await.unwrap(), None);
    // The genuine seq 3 is still welcome.
    let e3 = r.put("c", "genuine");
    assert_eq!(s.ingest(e3.into_bytes()).await.unwrap(), IngestOutcome::Applied { released: 0 });
    assert_eq!(s.get(b"c").await.unwrap(), Some(b"genuine".to_vec()));
}

/// A chain of `n` single-put entries by one author.
fn long_chain(sid: StoreId, n: usize) -> Chain {
    let mut r = Chain::new(sid);
    for i in 0..n {
        r.put(&format!("k{:05}", i % 97), &i.to_string());
    }
    r
}

#[tokio::test]
async fn five_thousand_entries_in_reverse_release_iteratively() {
    const N: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &Identity::generate());
    let r = long_chain(sid, N);
    let mut reversed = r.bytes();
    reversed.reverse();
    // Several batches, so the orphans are committed to orphans.db before their release.
    let chunks: Vec<&[Vec<u8>]> = reversed.chunks(1_000).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        if i == chunks.len() - 1 {
            assert_eq!(orphans(&s).await, (N - chunk.len()) as u64);
        }
        let results = s.ingest_batch(chunk.to_vec()).await.unwrap();
        for (j, res) in results.into_iter().enumerate() {
            let outcome = res.unwrap();
            if i == chunks.len() - 1 && j == chunk.len() - 1 {
                assert_eq!(outcome, IngestOutcome::Applied { released: N - 1 }, "entry 1 releases the rest");
            } else {
                assert!(matches!(outcome, IngestOutcome::Orphaned(_)), "{outcome:?}");
            }
        }
    }
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.orphans, st.keys), (N as u64, 0, 97));
    assert_eq!(s.sync_state().await.unwrap().authors[&r.id.author()].seq, N as u64);
    assert_eq!(s.get(b"k00000").await.unwrap(), Some(4947.to_string().into_bytes()), "the last write of k0 wins");
}

#[tokio::test]
async fn orphans_expire_after_the_ttl_and_are_not_resurrected() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let config = StoreConfig { orphan_ttl: Duration::from_millis(1), ..Default::default() };
    let s = open_with(dir.path(), sid, config);
    let mut r = Chain::new(sid);
    let (e1, e2, e3) = (r.put("k1", "1"), r.put("k2", "2"), r.put("k3", "3"));
    s.ingest(e3.bytes().to_vec()).await.unwrap();
    s.ingest(e2.bytes().to_vec()).await.unwrap();
    assert_eq!(orphans(&s).await, 2);

    // Expiry runs on request; the TTL is 1 ms, so poll until both have aged past it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut expired = 0;
    while expired < 2 {
        assert!(std::time::Instant::now() < deadline, "orphans did not expire");
        expired += s.expire_orphans().await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(expired, 2);
    assert_eq!(orphans(&s).await, 0);

    // The predecessor arriving now releases nothing: the expired orphans are gone for good.
    assert_eq!(s.ingest(e1.into_bytes()).await.unwrap(), IngestOutcome::Applied { released: 0 });
    assert_eq!(s.sync_state().await.unwrap().authors[&r.id.author()].seq, 1);
    assert_eq!(s.get(b"k2").await.unwrap(), None);
    assert_eq!(s.get(b"k3").await.unwrap(), None);
    assert_eq!(orphans(&s).await, 0);
    // Sync brings them again, and then they apply.
    assert_eq!(s.ingest(e3.bytes().to_vec()).await.unwrap(), IngestOutcome::Orphaned(pred_gap(&r, 1, 2)));
    assert_eq!(s.ingest(e2.into_bytes()).await.unwrap(), IngestOutcome::Applied { released: 1 });
    assert_eq!(s.get(b"k3").await.unwrap(), Some(b"3".to_vec()));
}

#[tokio::test]
async fn unexpired_orphans_are_kept_by_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &Identity::generate()); // default TTL: one hour
    let mut r = Chain::new(sid);
    let e1 = r.put("k1", "1");
    let e2 = r.put("k2", "2");
    s.ingest(e2.into_bytes()).await.unwrap();
    assert_eq!(s.expire_orphans().await.unwrap(), 0);
    assert_eq!(orphans(&s).await, 1);
    assert_eq!(s.ingest(e1.into_bytes()).await.unwrap(), IngestOutcome::Applied { released: 1 });
}

#[tokio::test]
async fn a_lagging_gap_subscriber_sees_lagged_then_keeps_receiving() {
    // More distinct gaps than the gap channel holds (4096), none read meanwhile.
    const N: usize = 4_300;
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &Identity::generate());
    let mut gaps = s.subscribe_gaps();
    let r = long_chain(sid, N + 1);
    // Entries 2..=N+1, each an orphan waiting for its predecessor: one gap event each.
    let results = s.ingest_batch(r.bytes()[1..].to_vec()).await.unwrap();
    assert!(results.iter().all(|r| matches!(r, Ok(IngestOutcome::Orphaned(_)))));

    let skipped = match next_gap(&mut gaps).await {
        Err(RecvError::Lagged(n)) => n,
        other => panic!("expected Lagged, got {other:?}"),
    };
    assert!(skipped > 0 && skipped < N as u64);
    // The subscriber is still alive: it gets the retained events, in order, up to the last one.
    let mut received = Vec::new();
    loop {
        match gaps.try_recv() {
            Ok(g) => received.push(g),
            Err(TryRecvError::Empty) => break,
            Err(e) => panic!("subscriber broke after lagging: {e:?}"),
        }
    }
    assert_eq!(received.len() as u64, N as u64 - skipped);
    assert_eq!(received.last(), Some(&pred_gap(&r, 0, N as u64)));
    assert!(received.windows(2).all(|w| w[1].need_seq == w[0].need_seq + 1));
    // And it keeps receiving new events.
    let mut other = Chain::new(sid);
    other.put("a", "1");
    let o2 = other.put("b", "2");
    s.ingest(o2.into_bytes()).await.unwrap();
    assert_eq!(next_gap(&mut gaps).await.unwrap(), pred_gap(&other, 0, 1));
    // And the first entry releases the whole run.
    let first = r.entries[0].bytes().to_vec();
    assert_eq!(s.ingest(first).await.unwrap(), IngestOutcome::Applied { released: N });
}

#[tokio::test]
async fn orphans_survive_a_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let (mut r, mut p) = (Chain::new(sid), Chain::new(sid));
    let (e1, e2, e3) = (r.put("k1", "1"), r.put("k2", "2"), r.put("k3", "3"));
    let p1 = p.put("x", "p1");
    let mut q = Chain::new(sid);
    q.wall = p.wall + 10;
    let q1 = q.next_with(vec![p1.hash()], vec![Op::put("x", "q1")]);

    let s = open(dir.path(), sid, &id);
    s.ingest(e3.into_bytes()).await.unwrap();
    s.ingest(e2.into_bytes()).await.unwrap();
    s.ingest(q1.into_bytes()).await.unwrap();
    let before = snapshot(&s).await;
    assert_eq!(before.status.orphans, 3);
    s.close().await.unwrap();

    let s = open(dir.path(), sid, &id);
    assert_eq!(snapshot(&s).await, before);
    assert_eq!(s.ingest(e1.into_bytes()).await.unwrap(), IngestOutcome::Applied { released: 2 });
    assert_eq!(s.ingest(p1.into_bytes()).await.unwrap(), IngestOutcome::Applied { released: 1 });
    let st = s.status().await.unwrap();
    assert_eq!((st.orphans, st.entries), (0, 5));
    assert_eq!(s.get(b"k3").await.unwrap(), Some(b"3".to_vec()));
    assert_eq!(s.get(b"x").await.unwrap(), Some(b"q1".to_vec()));
}
