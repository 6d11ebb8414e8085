//! The orphan buffer's bounds: bytes overall and per author, refusals that change nothing but
//! a counter, totals kept across releases, expiry and reopens, and expiry by age.

mod common;

use common::{Chain, snapshot};
use lattice_core::{Identity, StoreId};
use lattice_store::{IngestError, IngestOutcome, KvStore, StoreConfig, StoreHandle, SyncStore};

fn open_with(dir: &std::path::Path, sid: StoreId, id: &Identity, config: StoreConfig) -> StoreHandle {
    StoreHandle::open(dir, sid, id.clone(), config).unwrap()
}

/// A chain of `n` entries of one size (same-length keys and values), so each orphan of it is
/// charged the same.
fn chain(sid: StoreId, n: usize) -> Chain {
    let mut r = Chain::new(sid);
    for i in 0..n {
        r.put(&format!("k{i:03}"), "value");
    }
    r
}

/// What one orphan of [`chain`] is charged, as the store reports it.
async fn charge_of_one(sid: StoreId) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(dir.path(), sid, &Identity::generate(), StoreConfig::default());
    let r = chain(sid, 2);
    assert!(matches!(s.ingest(r.entries[1].bytes().to_vec()).await.unwrap(), IngestOutcome::Orphaned(_)));
    let st = s.status().await.unwrap();
    assert_eq!(st.orphans, 1);
    assert!(st.orphan_bytes > r.entries[1].bytes().len() as u64, "an orphan is charged at least its entry");
    st.orphan_bytes
}

fn assert_full(result: Result<IngestOutcome, IngestError>, scope: &str) {
    match result {
        Err(e @ IngestError::OrphanBufferFull { .. }) => {
            assert!(e.to_string().contains(scope), "{e}");
        }
        other => panic!("expected OrphanBufferFull ({scope}), got {other:?}"),
    }
}

#[tokio::test]
async fn an_author_cannot_hold_more_than_its_share_of_the_buffer() {
    let sid = StoreId::new_random();
    let c = charge_of_one(sid).await;
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { max_orphan_bytes_per_author: 3 * c, max_orphan_bytes: 100 * c, ..Default::default() };
    let s = open_with(dir.path(), sid, &Identity::generate(), config);
    let r = chain(sid, 8);
    // Entries 8, 7, 6 fit in the author's share; 5..=2 are refused.
    for e in r.entries[5..].iter().rev() {
        assert!(matches!(s.ingest(e.bytes().to_vec()).await.unwrap(), IngestOutcome::Orphaned(_)));
    }
    for e in r.entries[1..5].iter().rev() {
        assert_full(s.ingest(e.bytes().to_vec()).await, "its author's share");
    }
    let st = s.status().await.unwrap();
    assert_eq!((st.orphans, st.orphan_bytes, st.orphans_refused), (3, 3 * c, 4));
    // Another author's orphan still fits: the share is per author.
    let mut other = chain(sid, 2);
    assert!(matches!(s.ingest(other.entries[1].bytes().to_vec()).await.unwrap(), IngestOutcome::Orphaned(_)));

    // Entry 1 applies; 2 was refused, so 6..=8 keep waiting until a sync brings 2..=5.
    assert_eq!(s.ingest(r.entries[0].bytes().to_vec()).await.unwrap(), IngestOutcome::Applied { released: 0 });
    assert_eq!(s.status().await.unwrap().orphans, 4);
    let results = s.ingest_batch(r.bytes()[1..5].to_vec()).await.unwrap();
    assert_eq!(*results[3].as_ref().unwrap(), IngestOutcome::Applied { released: 3 });
    let first = other.entries.remove(0);
    assert_eq!(s.ingest(first.into_bytes()).await.unwrap(), IngestOutcome::Applied { released: 1 });
    // The totals follow every release: nothing is charged once nothing waits.
    let st = s.status().await.unwrap();
    assert_eq!((st.orphans, st.orphan_bytes, st.entries), (0, 0, 10));
    assert_eq!(s.get(b"k007").await.unwrap(), Some(b"value".to_vec()));
}

#[tokio::test]
async fn the_buffer_as_a_whole_is_bounded_and_room_comes_back_as_orphans_leave() {
    let sid = StoreId::new_random();
    let c = charge_of_one(sid).await;
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { max_orphan_bytes_per_author: 3 * c, max_orphan_bytes: 4 * c, ..Default::default() };
    let s = open_with(dir.path(), sid, &Identity::generate(), config);
    let (r, p, q) = (chain(sid, 4), chain(sid, 2), chain(sid, 2));
    for e in r.entries[1..].iter().chain(&p.entries[1..]) {
        assert!(matches!(s.ingest(e.bytes().to_vec()).await.unwrap(), IngestOutcome::Orphaned(_)));
    }
    assert_eq!(s.status().await.unwrap().orphan_bytes, 4 * c);

    // A refusal changes nothing but the counter of refusals.
    let before = snapshot(&s).await;
    assert_full(s.ingest(q.entries[1].bytes().to_vec()).await, "the buffer");
    let mut after = snapshot(&s).await;
    assert_eq!(after.status.orphans_refused, before.status.orphans_refused + 1);
    after.status.orphans_refused = before.status.orphans_refused;
    assert_eq!(after, before);

    // p's predecessor releases its orphan: now q's fits.
    assert_eq!(s.ingest(p.entries[0].bytes().to_vec()).await.unwrap(), IngestOutcome::Applied { released: 1 });
    assert!(matches!(s.ingest(q.entries[1].bytes().to_vec()).await.unwrap(), IngestOutcome::Orphaned(_)));
    let st = s.status().await.unwrap();
    assert_eq!((st.orphans, st.orphan_bytes, st.orphans_refused), (4, 4 * c, 1));
}

/// The totals and the refusal count are in orphans.db: a reopen keeps them, so the bound holds
/// across restarts.
#[tokio::test]
async fn the_totals_survive_a_reopen() {
    let sid = StoreId::new_random();
    let c = charge_of_one(sid).await;
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::generate();
    let config = StoreConfig { max_orphan_bytes_per_author: 2 * c, ..Default::default() };
    let r = chain(sid, 4);
    let s = open_with(dir.path(), sid, &id, config.clone());
    for e in r.entries[2..].iter() {
        s.ingest(e.bytes().to_vec()).await.unwrap();
    }
    assert_full(s.ingest(r.entries[1].bytes().to_vec()).await, "its author's share");
    s.close().await.unwrap();

    let s = open_with(dir.path(), sid, &id, config);
    let st = s.status().await.unwrap();
    assert_eq!((st.orphans, st.orphan_bytes, st.orphans_refused), (2, 2 * c, 1));
    assert_full(s.ingest(r.entries[1].bytes().to_vec()).await, "its author's share");
    let results = s.ingest_batch(r.bytes()[..2].to_vec()).await.unwrap();
    assert_eq!(*results[1].as_ref().unwrap(), IngestOutcome::Applied { released: 2 });
    assert_eq!(s.status().await.unwrap().orphan_bytes, 0);
}

/// Expiry takes the orphans received a TTL ago or more, and keeps the younger ones (and their
/// charge): the store's clock is moved back two hours for the first orphan, by a reopen.
#[tokio::test]
async fn expiry_drops_only_the_orphans_older_than_the_ttl() {
    let sid = StoreId::new_random();
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::generate();
    let (old, young) = (chain(sid, 2), chain(sid, 2));
    let two_hours_ago = StoreConfig { clock_offset_ms: -7_200_000, ..Default::default() };
    let s = open_with(dir.path(), sid, &id, two_hours_ago);
    s.ingest(old.entries[1].bytes().to_vec()).await.unwrap();
    s.close().await.unwrap();

    let s = open_with(dir.path(), sid, &id, StoreConfig::default()); // TTL: one hour
    s.ingest(young.entries[1].bytes().to_vec()).await.unwrap();
    let both = s.status().await.unwrap().orphan_bytes;
    assert_eq!(s.expire_orphans().await.unwrap(), 1);
    let st = s.status().await.unwrap();
    assert_eq!(st.orphans, 1);
    assert!(st.orphan_bytes > 0 && st.orphan_bytes < both);
    assert_eq!(s.expire_orphans().await.unwrap(), 0);
    // The young one is still released by its predecessor; the old one is gone.
    assert_eq!(s.ingest(young.entries[0].bytes().to_vec()).await.unwrap(), IngestOutcome::Applied { released: 1 });
    assert_eq!(s.ingest(old.entries[0].bytes().to_vec()).await.unwrap(), IngestOutcome::Applied { released: 0 });
    let st = s.status().await.unwrap();
    assert_eq!((st.orphans, st.orphan_bytes, st.entries), (0, 0, 3));
}
