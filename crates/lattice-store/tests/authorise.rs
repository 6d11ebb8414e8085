//! Entries of authors who are not admitted wait in orphans.db until `set_authorisation` admits
//! them (or the orphan TTL drops them); no gap is reported for them.

mod common;

use std::time::Duration;

use common::{Chain, open};
use lattice_core::{Identity, StoreId};
use lattice_store::{Authorisation, IngestOutcome, KvStore, StoreConfig, StoreHandle, SyncStore};
use tokio::sync::broadcast::error::TryRecvError;

fn set(chains: &[&Chain]) -> Option<Authorisation> {
    Some(Authorisation { members: chains.iter().map(|c| c.id.author()).collect(), ..Authorisation::default() })
}

#[tokio::test]
async fn entries_of_unadmitted_authors_wait_until_admitted_then_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let me = Identity::generate();
    let s = open(dir.path(), sid, &me);
    let mut gaps = s.subscribe_gaps();
    let (mut member, mut stranger) = (Chain::new(sid), Chain::new(sid));
    let m1 = member.put("m", "1");
    let (s1, s2) = (stranger.put("s", "1"), stranger.put("s", "2"));
    assert_eq!(s.set_authorisation(set(&[&member])).await.unwrap(), 0);

    assert_eq!(s.ingest(m1.bytes().to_vec()).await.unwrap(), IngestOutcome::Applied { released: 0 });
    // Out of order on purpose: the held entries are re-checked, in seq order, when admitted.
    assert_eq!(s.ingest(s2.bytes().to_vec()).await.unwrap(), IngestOutcome::Unauthorised);
    assert_eq!(s.ingest(s1.bytes().to_vec()).await.unwrap(), IngestOutcome::Unauthorised);
    assert_eq!(s.ingest(s1.bytes().to_vec()).await.unwrap(), IngestOutcome::Unauthorised, "held once");
    assert_eq!(s.get(b"s").await.unwrap(), None, "a held entry is not visible");
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.orphans), (1, 2));
    assert!(!s.sync_state().await.unwrap().authors.contains_key(&stranger.id.author()));
    assert!(matches!(gaps.try_recv(), Err(TryRecvError::Empty)), "no gap is reported for a stranger");
    // Our own writes always pass.
    s.put(b"mine".to_vec(), b"x".to_vec()).await.unwrap();

    assert_eq!(s.set_authorisation(set(&[&member, &stranger])).await.unwrap(), 2);
    assert_eq!(s.get(b"s").await.unwrap(), Some(b"2".to_vec()));
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.orphans), (4, 0));
    assert_eq!(s.sync_state().await.unwrap().authors[&stranger.id.author()].seq, 2);

    // Narrowing the set holds new entries back but keeps what was applied.
    assert_eq!(s.set_authorisation(set(&[&member])).await.unwrap(), 0);
    let s3 = stranger.put("s", "3");
    assert_eq!(s.ingest(s3.bytes().to_vec()).await.unwrap(), IngestOutcome::Unauthorised);
    assert_eq!(s.ingest(s2.bytes().to_vec()).await.unwrap(), IngestOutcome::Duplicate, "already applied");
    assert_eq!(s.get(b"s").await.unwrap(), Some(b"2".to_vec()));
    // `None` admits everyone.
    assert_eq!(s.set_authorisation(None).await.unwrap(), 1);
    assert_eq!(s.get(b"s").await.unwrap(), Some(b"3".to_vec()));
}

#[tokio::test]
async fn held_entries_survive_a_restart_and_expire_at_the_orphan_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let me = Identity::generate();
    let mut stranger = Chain::new(sid);
    let e1 = stranger.put("k", "v");
    let wrong_store = Chain::new(StoreId::new_random()).put("k", "v");
    {
        let s = open(dir.path(), sid, &me);
        s.set_authorisation(Some(Authorisation::default())).await.unwrap();
        assert_eq!(s.ingest(e1.bytes().to_vec()).await.unwrap(), IngestOutcome::Unauthorised);
        assert!(s.ingest(wrong_store.bytes().to_vec()).await.is_err(), "a wrong-store entry is refused, not held");
        assert_eq!(s.status().await.unwrap().orphans, 1);
        s.close().await.unwrap();
    }
    {
        // The admission set is persisted, and so is the held entry.
        let s = open(dir.path(), sid, &me);
        assert_eq!(s.status().await.unwrap().orphans, 1);
        let late = stranger.put("k", "w");
        assert_eq!(s.ingest(late.bytes().to_vec()).await.unwrap(), IngestOutcome::Unauthorised);
        assert_eq!(s.set_authorisation(set(&[&stranger])).await.unwrap(), 2);
        assert_eq!(s.get(b"k").await.unwrap(), Some(b"w".to_vec()));
        s.close().await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { orphan_ttl: Duration::ZERO, ..StoreConfig::default() };
    let s = StoreHandle::open(dir.path(), sid, me, config).unwrap();
    s.set_authorisation(Some(Authorisation::default())).await.unwrap();
    assert_eq!(s.ingest(e1.bytes().to_vec()).await.unwrap(), IngestOutcome::Unauthorised);
    assert_eq!(s.expire_orphans().await.unwrap(), 1);
    assert_eq!(s.set_authorisation(None).await.unwrap(), 0, "nothing left to apply");
    assert_eq!(s.get(b"k").await.unwrap(), None);
}
