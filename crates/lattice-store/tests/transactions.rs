//! Transactions (docs/design.md, Entries): the ops of one transaction are one entry, applied all
//! or none; its conditions are checked against the current winners inside the actor, and a
//! failed one writes nothing at all.

mod common;

use std::sync::Arc;

use common::{open, snapshot};
use lattice_core::entry::MAX_ENTRY_BYTES;
use lattice_core::{Hash, Identity, Op, StoreId};
use lattice_store::{Condition, KvStore, StoreError, SyncStore, Transaction};
use tokio::sync::broadcast::error::TryRecvError;

fn put(key: &str, value: &str) -> Op {
    Op::put(key, value)
}

#[tokio::test]
async fn conditions_that_hold_write_one_entry_for_every_op() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), StoreId::new_random(), &Identity::generate());
    let created = s
        .transact(Transaction::new(vec![put("a", "1"), put("b", "1")]).when(Condition::Absent { key: b"a".to_vec() }))
        .await
        .unwrap();
    let heads = s.get_heads(b"a").await.unwrap();
    assert_eq!(heads[0].hash, created.hash, "the winner's hash is the entry's");
    let moved = s
        .transact(
            Transaction::new(vec![put("a", "2"), Op::Delete { key: b"b".to_vec() }, put("c", "2")])
                .when(Condition::Matches { key: b"a".to_vec(), hash: created.hash })
                .when(Condition::Matches { key: b"b".to_vec(), hash: created.hash }),
        )
        .await
        .unwrap();
    assert_eq!(moved.seq, 2, "one entry per transaction");
    assert_eq!(s.get(b"a").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(s.get(b"b").await.unwrap(), None);
    assert_eq!(s.status().await.unwrap().entries, 2);
    // A deleted key is absent again.
    s.transact(Transaction::new(vec![put("b", "3")]).when(Condition::Absent { key: b"b".to_vec() })).await.unwrap();
}

#[tokio::test]
async fn a_failed_condition_writes_nothing_and_says_where_the_key_is() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), StoreId::new_random(), &Identity::generate());
    let first = s.put(b"k".to_vec(), b"1".to_vec()).await.unwrap();
    let mut commits = s.subscribe_commits();
    let before = snapshot(&s).await;

    let stale = Condition::Matches { key: b"k".to_vec(), hash: Hash::ZERO };
    let err = s.transact(Transaction::new(vec![put("k", "2"), put("other", "x")]).when(stale)).await.unwrap_err();
    match &err {
        StoreError::PreconditionFailed { key, current } => {
            assert_eq!((key.as_slice(), *current), (&b"k"[..], Some(first.hash)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.to_string(), format!("precondition failed: k is at {}", first.hash));
    let err = s.transact(Transaction::new(vec![put("k", "2")]).when(Condition::Absent { key: b"k".to_vec() }));
    assert!(matches!(err.await, Err(StoreError::PreconditionFailed { .. })));
    let err = s
        .transact(
            Transaction::new(vec![put("n", "2")]).when(Condition::Matches { key: b"n".to_vec(), hash: first.hash }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "precondition failed: n is absent");

    let after = snapshot(&s).await;
    assert_eq!(after.sync_state, before.sync_state, "no entry in the log");
    assert_eq!(after.list, before.list, "state unchanged");
    assert_eq!(after.status.entries, before.status.entries);
    assert!(matches!(commits.try_recv(), Err(TryRecvError::Empty)), "nothing to gossip");
    // The next write is the next seq: no hole where the refused ones would have been.
    assert_eq!(s.put(b"k".to_vec(), b"3".to_vec()).await.unwrap().seq, 2);
}

#[tokio::test]
async fn an_entry_over_the_size_limit_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), StoreId::new_random(), &Identity::generate());
    let value = vec![7u8; 1024 * 1024];
    let ops: Vec<Op> =
        (0..MAX_ENTRY_BYTES / value.len() + 1).map(|i| Op::put(format!("k{i}"), value.clone())).collect();
    let err = s.transact(Transaction::new(ops)).await.unwrap_err();
    assert!(err.to_string().contains("over the 4194304-byte limit"), "{err}");
    assert_eq!(s.status().await.unwrap().entries, 0);
    assert_eq!(s.list(b"", None, 10).await.unwrap(), vec![]);
}

/// Many writers race compare-and-set on one key from the same state: each round exactly one
/// wins, and the losers are told the winner's hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_compare_and_set_on_one_node_has_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path(), StoreId::new_random(), &Identity::generate()));
    let mut at = s.put(b"counter".to_vec(), b"0".to_vec()).await.unwrap().hash;
    for round in 0..20 {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let tx = Transaction::new(vec![Op::put("counter", format!("{round}-{i}"))])
                        .when(Condition::Matches { key: b"counter".to_vec(), hash: at });
                    s.transact(tx).await
                })
            })
            .collect();
        let mut results = Vec::new();
        for racer in racers {
            results.push(racer.await.unwrap());
        }
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let winner = winners[0].hash;
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, StoreError::PreconditionFailed { current: Some(h), .. } if *h == winner), "{e}");
            }
        }
        at = winner;
    }
    assert_eq!(s.status().await.unwrap().entries, 21);
}
