//! The store as an application sees it: writes, reads, restart, rebuild, watch, status.

mod common;

use common::{open, sync_into};
use lattice_core::{Identity, Op, StoreId};
use lattice_store::{Change, KvStore, WatchEvent, WriteReceipt};

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

#[tokio::test]
async fn put_get_delete_list_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::generate();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &id);
    let r1 = s.put(b"a/1".to_vec(), b"one".to_vec()).await.unwrap();
    let r2 = s.put(b"a/2".to_vec(), b"two".to_vec()).await.unwrap();
    assert_eq!((r1.seq, r2.seq), (1, 2));
    assert!(r2.hlc > r1.hlc);
    s.put(b"b".to_vec(), b"bee".to_vec()).await.unwrap();
    s.batch(vec![Op::put("a/3", "three"), Op::put("a/4", "four"), Op::delete("a/3")]).await.unwrap();
    assert_eq!(s.get(b"a/1").await.unwrap(), Some(b"one".to_vec()));
    assert_eq!(s.get(b"a/3").await.unwrap(), None, "a later op in the same entry wins");
    assert!(s.delete(b"a/2".to_vec()).await.unwrap().is_some());
    assert!(s.delete(b"a/2".to_vec()).await.unwrap().is_none(), "deleting a missing key writes nothing");
    assert!(s.delete(b"never".to_vec()).await.unwrap().is_none());
    assert_eq!(s.list(b"a/", None, 100).await.unwrap(), vec![kv("a/1", "one"), kv("a/4", "four")]);
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.authors, st.keys, st.conflicts), (5, 1, 3, 0));
    s.close().await.unwrap();

    let s = open(dir.path(), sid, &id);
    assert_eq!(s.get(b"a/1").await.unwrap(), Some(b"one".to_vec()));
    assert_eq!(s.get(b"a/2").await.unwrap(), None);
    let r = s.put(b"c".to_vec(), b"sea".to_vec()).await.unwrap();
    assert_eq!(r.seq, 6, "the chain continues after a restart");
    assert_eq!(s.status().await.unwrap().entries, 6);
}

#[tokio::test]
async fn list_pages_with_limit_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::generate();
    let s = open(dir.path(), StoreId::new_random(), &id);
    for i in 0..25 {
        s.put(format!("k/{i:02}").into_bytes(), vec![i]).await.unwrap();
    }
    s.put(b"z".to_vec(), b"outside".to_vec()).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list(b"k/", after.clone(), 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = Some(page.last().unwrap().0.clone());
        seen.extend(page);
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(s.list(b"", None, 1000).await.unwrap().len(), 26);
}

#[tokio::test]
async fn deleting_state_db_rebuilds_identical_state() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Identity::generate(), Identity::generate());
    let sid = StoreId::new_random();
    let da = dir.path().join("a");
    let sa = open(&da, sid, &a);
    let sb = open(&dir.path().join("b"), sid, &b);
    for i in 0..50u32 {
        sa.put(format!("k{}", i % 7).into_bytes(), i.to_le_bytes().to_vec()).await.unwrap();
        sb.put(format!("k{}", i % 5).into_bytes(), (i * 3).to_le_bytes().to_vec()).await.unwrap();
        if i % 9 == 0 {
            sb.delete(format!("k{}", i % 4).into_bytes()).await.unwrap();
        }
    }
    sync_into(&sb, &sa).await;
    let before = sa.list(b"", None, 1000).await.unwrap();
    let mut heads_before = Vec::new();
    for (k, _) in &before {
        heads_before.push(sa.get_heads(k).await.unwrap());
    }
    let status_before = sa.status().await.unwrap();
    sa.close().await.unwrap();
    std::fs::remove_file(da.join("state.db")).unwrap();
    let sa = open(&da, sid, &a);
    assert_eq!(sa.list(b"", None, 1000).await.unwrap(), before);
    for ((k, _), heads) in before.iter().zip(heads_before) {
        assert_eq!(sa.get_heads(k).await.unwrap(), heads);
    }
    assert_eq!(sa.status().await.unwrap(), status_before);
}

#[tokio::test]
async fn concurrent_writes_fork_then_merge() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Identity::generate(), Identity::generate());
    let sid = StoreId::new_random();
    let sa = open(&dir.path().join("a"), sid, &a);
    let sb = open(&dir.path().join("b"), sid, &b);
    sa.put(b"x".to_vec(), b"from-a".to_vec()).await.unwrap();
    sb.put(b"x".to_vec(), b"from-b".to_vec()).await.unwrap();
    sync_into(&sa, &sb).await;
    sync_into(&sb, &sa).await;
    let ha = sa.get_heads(b"x").await.unwrap();
    let hb = sb.get_heads(b"x").await.unwrap();
    assert_eq!(ha.len(), 2);
    assert_eq!(ha, hb, "same heads in the same order on both replicas");
    assert_eq!(sa.get(b"x").await.unwrap(), sb.get(b"x").await.unwrap());
    let expected = ha.iter().max_by_key(|h| (h.hlc, h.author)).unwrap().value.clone();
    assert_eq!(sa.get(b"x").await.unwrap(), Some(expected));
    assert_eq!(sa.status().await.unwrap().conflicts, 1);

    // The next write cites both heads and merges them.
    sa.put(b"x".to_vec(), b"merged".to_vec()).await.unwrap();
    sync_into(&sa, &sb).await;
    let hb = sb.get_heads(b"x").await.unwrap();
    assert_eq!(hb.len(), 1);
    assert_eq!(sb.get(b"x").await.unwrap(), Some(b"merged".to_vec()));
    assert_eq!(sb.status().await.unwrap().conflicts, 0);
}

/// The source of a watch event: the entry `receipt` names, by `id`.
fn by(receipt: &WriteReceipt, id: &Identity) -> Change {
    Change { hash: receipt.hash, hlc: receipt.hlc, author: id.author() }
}

#[tokio::test]
async fn watch_sees_local_and_ingested_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Identity::generate(), Identity::generate());
    let sid = StoreId::new_random();
    let sa = open(&dir.path().join("a"), sid, &a);
    let sb = open(&dir.path().join("b"), sid, &b);
    sa.put(b"user/1".to_vec(), b"ann".to_vec()).await.unwrap();
    sa.put(b"other".to_vec(), b"x".to_vec()).await.unwrap();
    let (initial, mut events) = sa.watch("^user/").await.unwrap();
    assert_eq!(initial, vec![kv("user/1", "ann")]);
    let put2 = sa.put(b"user/2".to_vec(), b"bob".to_vec()).await.unwrap();
    sa.put(b"other".to_vec(), b"y".to_vec()).await.unwrap();
    let delete1 = sa.delete(b"user/1".to_vec()).await.unwrap().unwrap();
    let put3 = sb.put(b"user/3".to_vec(), b"cy".to_vec()).await.unwrap();
    sync_into(&sb, &sa).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(events.recv().await.unwrap());
    }
    assert_eq!(
        got,
        vec![
            WatchEvent::Put { key: b"user/2".to_vec(), value: b"bob".to_vec(), source: by(&put2, &a) },
            WatchEvent::Delete { key: b"user/1".to_vec(), source: by(&delete1, &a) },
            WatchEvent::Put { key: b"user/3".to_vec(), value: b"cy".to_vec(), source: by(&put3, &b) },
        ]
    );
    assert!(events.try_recv().is_err(), "no event for keys outside the pattern");
    assert!(sa.watch("(unclosed").await.is_err());
}

#[tokio::test]
async fn sixty_four_concurrent_writers_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::generate();
    let s = open(dir.path(), StoreId::new_random(), &id);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..64u32 {
        let s = s.clone();
        tasks.spawn(async move {
            for i in 0..20u32 {
                s.put(format!("w{w}/{i}").into_bytes(), vec![1]).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.keys), (1280, 1280));
}

#[tokio::test]
async fn history_reads_the_entries_after_a_timestamp_in_hlc_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Identity::generate(), Identity::generate());
    let sid = StoreId::new_random();
    let sa = open(&dir.path().join("a"), sid, &a);
    let sb = open(&dir.path().join("b"), sid, &b);
    let mut written = Vec::new();
    for i in 1..6 {
        let (store, id) = if i % 2 == 0 { (&sb, &b) } else { (&sa, &a) };
        let receipt = store.put(format!("k/{i}").into_bytes(), b"v".to_vec()).await.unwrap();
        written.push((receipt.hlc, id.author(), receipt.hash));
    }
    sync_into(&sb, &sa).await;
    // (HLC, author) order: two stores can stamp the same HLC.
    written.sort();
    let read = |since| {
        let sa = sa.clone();
        async move {
            let history = sa.history(since).await.unwrap();
            tokio::task::spawn_blocking(move || history.map(|e| e.unwrap().hash()).collect::<Vec<_>>()).await.unwrap()
        }
    };
    let after = |since| written.iter().filter(|w| w.0 > since).map(|w| w.2).collect::<Vec<_>>();
    assert_eq!(read(lattice_core::Hlc::ZERO).await, after(lattice_core::Hlc::ZERO));
    assert_eq!(after(lattice_core::Hlc::ZERO).len(), 5);
    for (hlc, _, _) in written.clone() {
        assert_eq!(read(hlc).await, after(hlc), "strictly after {hlc}");
    }
    // What a reader covers: every entry held when it was made, none written later.
    let history = sa.history(lattice_core::Hlc::ZERO).await.unwrap();
    assert!(written.iter().all(|(hlc, author, _)| history.covers(author, *hlc)));
    let later = sa.put(b"k/later".to_vec(), b"v".to_vec()).await.unwrap();
    assert!(!history.covers(&a.author(), later.hlc));
    assert!(!history.covers(&Identity::generate().author(), lattice_core::Hlc::ZERO), "an unknown author");
}
