//! Counters and sets on real stores: the wrong kind and an overflow are refused locally; a
//! remove concurrent with an add keeps the member; a delete clears only what it observed; a
//! rebuild from the logs gives the same values; kinds meeting from two nodes settle alike on
//! both; watch events carry the new values.

mod common;

use common::{Chain, fast_tempdir, sync_into};
use lattice_core::{Identity, Kind, Op, StoreId};
use lattice_store::{KvStore, StoreConfig, StoreError, StoreHandle, SyncStore, Value, WatchEvent};

fn members(list: &[&str]) -> Value {
    Value::Set(list.iter().map(|m| m.as_bytes().to_vec()).collect())
}

/// Two replicas of one store, each with its own identity.
fn pair(dir: &std::path::Path) -> (StoreHandle, StoreHandle, StoreId) {
    let sid = StoreId::new_random();
    let a = common::open(&dir.join("a"), sid, &Identity::generate());
    let b = common::open(&dir.join("b"), sid, &Identity::generate());
    (a, b, sid)
}

async fn exchange(a: &StoreHandle, b: &StoreHandle) {
    sync_into(a, b).await;
    sync_into(b, a).await;
}

#[tokio::test]
async fn counters_sum_and_sets_hold_members() {
    let dir = fast_tempdir();
    let (a, _, _) = pair(dir.path());
    a.incr(b"c".to_vec(), 5).await.unwrap();
    a.incr(b"c".to_vec(), -2).await.unwrap();
    assert_eq!(a.value(b"c").await.unwrap(), Some(Value::Counter(3)));
    assert_eq!(a.get(b"c").await.unwrap(), Some(b"3".to_vec()), "a byte read shows the sum in decimal");
    a.sadd(b"s".to_vec(), vec![b"y".to_vec(), b"x".to_vec()]).await.unwrap();
    a.srem(b"s".to_vec(), vec![b"y".to_vec(), b"absent".to_vec()]).await.unwrap();
    a.sadd(b"s".to_vec(), vec![b"x".to_vec()]).await.unwrap();
    assert_eq!(a.value(b"s").await.unwrap(), Some(members(&["x"])));
    a.put(b"r".to_vec(), b"v".to_vec()).await.unwrap();
    let listed = a.list_values(b"", None, 10).await.unwrap();
    let want = vec![
        (b"c".to_vec(), Value::Counter(3)),
        (b"r".to_vec(), Value::Register(b"v".to_vec())),
        (b"s".to_vec(), members(&["x"])),
    ];
    assert_eq!(listed, want);
    assert_eq!(a.get_heads(b"c").await.unwrap()[0].kind, Kind::Counter);
    assert_eq!(a.status().await.unwrap().keys, 3);
    // Ops of one entry apply in order: an add then a remove of one member leaves it out, a
    // delete then an increment leaves the increment.
    a.batch(vec![Op::set_add("s", "z"), Op::set_remove("s", "z"), Op::set_add("s", "w")]).await.unwrap();
    assert_eq!(a.value(b"s").await.unwrap(), Some(members(&["w", "x"])));
    a.batch(vec![Op::delete("c"), Op::counter_add("c", 7)]).await.unwrap();
    assert_eq!(a.value(b"c").await.unwrap(), Some(Value::Counter(7)));
}

#[tokio::test]
async fn an_op_of_the_wrong_kind_is_refused_and_writes_nothing() {
    let dir = fast_tempdir();
    let (a, _, _) = pair(dir.path());
    a.put(b"r".to_vec(), b"v".to_vec()).await.unwrap();
    a.incr(b"c".to_vec(), 1).await.unwrap();
    a.sadd(b"s".to_vec(), vec![b"m".to_vec()]).await.unwrap();
    let before = a.sync_state().await.unwrap();
    let refused = [
        (a.incr(b"r".to_vec(), 1).await, Kind::Register, Kind::Counter),
        (a.sadd(b"c".to_vec(), vec![b"m".to_vec()]).await, Kind::Counter, Kind::Set),
        (a.put(b"s".to_vec(), b"v".to_vec()).await, Kind::Set, Kind::Register),
        (a.batch(vec![Op::put("fresh", "v"), Op::counter_add("fresh", 1)]).await, Kind::Register, Kind::Counter),
    ];
    for (result, holds, wanted) in refused {
        match result {
            Err(StoreError::WrongKind { holds: h, wanted: w, .. }) => assert_eq!((h, w), (holds, wanted)),
            other => panic!("expected a wrong-kind refusal, got {other:?}"),
        }
    }
    let message = a.incr(b"r".to_vec(), 1).await.unwrap_err().to_string();
    assert_eq!(message, "key r holds a register, not a counter");
    assert_eq!(a.sync_state().await.unwrap(), before, "nothing was written, not even a seq");
    assert_eq!(a.get(b"fresh").await.unwrap(), None);
    // A deleted key takes any kind.
    a.delete(b"r".to_vec()).await.unwrap();
    a.incr(b"r".to_vec(), 4).await.unwrap();
    assert_eq!(a.value(b"r").await.unwrap(), Some(Value::Counter(4)));
}

#[tokio::test]
async fn a_counter_overflow_is_refused_never_wrapped() {
    let dir = fast_tempdir();
    let (a, _, _) = pair(dir.path());
    a.incr(b"c".to_vec(), i64::MAX - 1).await.unwrap();
    a.incr(b"c".to_vec(), 1).await.unwrap();
    let err = a.incr(b"c".to_vec(), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::CounterOverflow { value: i64::MAX, delta: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("would overflow"), "{err}");
    a.incr(b"d".to_vec(), i64::MIN).await.unwrap();
    assert!(matches!(a.incr(b"d".to_vec(), -1).await, Err(StoreError::CounterOverflow { .. })));
    assert_eq!(a.value(b"c").await.unwrap(), Some(Value::Counter(i64::MAX)));
    assert_eq!(a.value(b"d").await.unwrap(), Some(Value::Counter(i64::MIN)));
    a.incr(b"c".to_vec(), -5).await.unwrap();
    assert_eq!(a.value(b"c").await.unwrap(), Some(Value::Counter(i64::MAX - 5)));
}

/// Two nodes that each add to a counter near the bound: every node shows the same, saturated,
/// sum (the exact sum is kept), and a local write may only bring it back into range.
#[tokio::test]
async fn a_remote_sum_beyond_the_range_reads_as_the_bound_everywhere() {
    let dir = fast_tempdir();
    let (a, b, _) = pair(dir.path());
    a.incr(b"c".to_vec(), i64::MAX).await.unwrap();
    b.incr(b"c".to_vec(), i64::MAX).await.unwrap();
    exchange(&a, &b).await;
    for s in [&a, &b] {
        assert_eq!(s.value(b"c").await.unwrap(), Some(Value::Counter(i64::MAX)));
        assert!(matches!(s.incr(b"c".to_vec(), -1).await, Err(StoreError::CounterOverflow { .. })));
    }
    a.incr(b"c".to_vec(), i64::MIN).await.unwrap();
    exchange(&a, &b).await;
    assert_eq!(b.value(b"c").await.unwrap(), Some(Value::Counter(i64::MAX - 1)));
}

#[tokio::test]
async fn concurrent_increments_all_count_and_a_remove_keeps_a_concurrent_add() {
    let dir = fast_tempdir();
    let (a, b, _) = pair(dir.path());
    a.sadd(b"s".to_vec(), vec![b"m".to_vec()]).await.unwrap();
    exchange(&a, &b).await;
    // Partitioned: A removes m (the add it saw), B adds m again, and both count.
    a.srem(b"s".to_vec(), vec![b"m".to_vec()]).await.unwrap();
    b.sadd(b"s".to_vec(), vec![b"m".to_vec(), b"n".to_vec()]).await.unwrap();
    a.sadd(b"s".to_vec(), vec![b"o".to_vec()]).await.unwrap();
    for i in 0..10 {
        let s = if i % 2 == 0 { &a } else { &b };
        s.incr(b"c".to_vec(), 1).await.unwrap();
    }
    assert_eq!(a.value(b"s").await.unwrap(), Some(members(&["o"])));
    exchange(&a, &b).await;
    for s in [&a, &b] {
        assert_eq!(s.value(b"s").await.unwrap(), Some(members(&["m", "n", "o"])), "B's add was concurrent");
        assert_eq!(s.value(b"c").await.unwrap(), Some(Value::Counter(10)));
    }
    // A remove after seeing everything takes m out everywhere.
    b.srem(b"s".to_vec(), vec![b"m".to_vec()]).await.unwrap();
    exchange(&a, &b).await;
    assert_eq!(a.value(b"s").await.unwrap(), Some(members(&["n", "o"])));
}

#[tokio::test]
async fn a_delete_clears_only_what_it_observed() {
    let dir = fast_tempdir();
    let (a, b, _) = pair(dir.path());
    a.incr(b"c".to_vec(), 3).await.unwrap();
    a.sadd(b"s".to_vec(), vec![b"seen".to_vec()]).await.unwrap();
    exchange(&a, &b).await;
    b.incr(b"c".to_vec(), 4).await.unwrap(); // concurrent with A's delete
    b.sadd(b"s".to_vec(), vec![b"concurrent".to_vec()]).await.unwrap();
    a.incr(b"c".to_vec(), 100).await.unwrap(); // observed by A's delete
    a.delete(b"c".to_vec()).await.unwrap().unwrap();
    a.delete(b"s".to_vec()).await.unwrap().unwrap();
    assert_eq!(a.value(b"c").await.unwrap(), None);
    exchange(&a, &b).await;
    for s in [&a, &b] {
        assert_eq!(s.value(b"c").await.unwrap(), Some(Value::Counter(4)), "B's concurrent increment survives");
        assert_eq!(s.value(b"s").await.unwrap(), Some(members(&["concurrent"])));
    }
    // A delete that saw everything clears everything; the key then takes any kind.
    b.delete(b"c".to_vec()).await.unwrap().unwrap();
    exchange(&a, &b).await;
    assert_eq!(a.value(b"c").await.unwrap(), None);
    a.sadd(b"c".to_vec(), vec![b"now a set".to_vec()]).await.unwrap();
    assert_eq!(a.value(b"c").await.unwrap(), Some(members(&["now a set"])));
}

/// DESIGN.md §4 and ARCHITECTURE.md: kinds meeting on one key from two nodes settle on the kind
/// of the visible head (the winner, or past a winning tombstone the highest counter or set
/// head), the same on both, whatever the order.
#[tokio::test]
async fn kinds_that_meet_from_two_nodes_settle_alike() {
    let dir = fast_tempdir();
    let sid = StoreId::new_random();
    let mut put = Chain::new(sid);
    let mut incr = Chain::new(sid);
    let early = incr.next_with(Vec::new(), vec![Op::counter_add("k", 2)]);
    put.wall = 2_000;
    let late = put.next_with(Vec::new(), vec![Op::put("k", "register")]);
    assert!(late.hlc() > early.hlc());
    let stores: Vec<StoreHandle> =
        (0..2).map(|i| common::open(&dir.path().join(i.to_string()), sid, &Identity::generate())).collect();
    stores[0].ingest_batch(vec![early.bytes().to_vec(), late.bytes().to_vec()]).await.unwrap();
    stores[1].ingest_batch(vec![late.bytes().to_vec(), early.bytes().to_vec()]).await.unwrap();
    for s in &stores {
        assert_eq!(s.value(b"k").await.unwrap(), Some(Value::Register(b"register".to_vec())), "the put wins");
        assert!(matches!(s.incr(b"k".to_vec(), 1).await, Err(StoreError::WrongKind { .. })));
    }
    // A later counter op that did not see the put (it cites nothing) wins by its HLC.
    incr.wall = 3_000;
    let later = incr.next_with(Vec::new(), vec![Op::counter_add("k", 5)]);
    for s in &stores {
        s.ingest(later.bytes().to_vec()).await.unwrap();
        assert_eq!(s.value(b"k").await.unwrap(), Some(Value::Counter(7)));
    }
}

#[tokio::test]
async fn a_rebuild_from_the_logs_gives_the_same_values() {
    let dir = fast_tempdir();
    let (a, b, sid) = pair(dir.path());
    a.incr(b"c".to_vec(), 3).await.unwrap();
    b.incr(b"c".to_vec(), 4).await.unwrap();
    a.sadd(b"s".to_vec(), vec![b"x".to_vec(), b"y".to_vec()]).await.unwrap();
    exchange(&a, &b).await;
    b.srem(b"s".to_vec(), vec![b"x".to_vec()]).await.unwrap();
    a.sadd(b"s".to_vec(), vec![b"x".to_vec()]).await.unwrap();
    a.delete(b"c".to_vec()).await.unwrap();
    b.incr(b"c".to_vec(), 10).await.unwrap();
    exchange(&a, &b).await;
    let before = a.list_values(b"", None, 100).await.unwrap();
    assert_eq!(before, vec![(b"c".to_vec(), Value::Counter(10)), (b"s".to_vec(), members(&["x", "y"]))]);
    let id = Identity::generate();
    a.close().await.unwrap();
    std::fs::remove_file(dir.path().join("a").join("state.db")).unwrap();
    let a = StoreHandle::open(&dir.path().join("a"), sid, id, StoreConfig::default()).unwrap();
    assert_eq!(a.list_values(b"", None, 100).await.unwrap(), before);
    assert_eq!(b.list_values(b"", None, 100).await.unwrap(), before);
}

#[tokio::test]
async fn watch_events_carry_the_new_values() {
    let dir = fast_tempdir();
    let (a, b, _) = pair(dir.path());
    let (_, mut events) = a.watch("^[cs]$").await.unwrap();
    a.incr(b"c".to_vec(), 2).await.unwrap();
    a.sadd(b"s".to_vec(), vec![b"m".to_vec()]).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(lattice_testkit::DEADLINE, events.recv()).await.unwrap().unwrap();
        seen.push((event.key().to_vec(), event.value()));
    }
    assert_eq!(seen, vec![(b"c".to_vec(), Some(Value::Counter(2))), (b"s".to_vec(), Some(members(&["m"])))]);
    // A remote increment that loses to A's later head still changes the sum: an event.
    let (_, mut remote) = a.watch("^c$").await.unwrap();
    b.incr(b"c".to_vec(), 5).await.unwrap();
    a.incr(b"c".to_vec(), 1).await.unwrap();
    sync_into(&b, &a).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(lattice_testkit::DEADLINE, remote.recv()).await.unwrap().unwrap();
        seen.push(event.value());
    }
    assert_eq!(seen, vec![Some(Value::Counter(3)), Some(Value::Counter(8))]);
    a.delete(b"c".to_vec()).await.unwrap();
    let event = tokio::time::timeout(lattice_testkit::DEADLINE, remote.recv()).await.unwrap().unwrap();
    assert!(matches!(event, WatchEvent::Delete { .. }), "{event:?}");
}
