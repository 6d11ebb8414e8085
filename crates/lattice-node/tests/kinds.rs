//! Counters and sets through the node's key-value path (issue 17): `incr`, `sadd`, `srem`,
//! `smembers`, typed reads, refusals with their error kinds, the root store's reserved prefixes,
//! and two nodes of a mesh that write apart and converge after a sync.

mod common;

use std::sync::Arc;

use common::mesh;
use lattice_core::{Kind, Op};
use lattice_node::{DataDir, DirLock, ErrorKind, Node, NodeError};
use lattice_store::{StoreError, Transaction, Value};

fn set(members: &[&str]) -> Value {
    Value::Set(members.iter().map(|m| m.as_bytes().to_vec()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_sets_through_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data")).unwrap();
    dir.create().unwrap();
    let lock = Arc::new(DirLock::try_acquire(&dir).unwrap());
    let node = Node::init(dir.clone(), lock, Some("test".into())).await.unwrap();
    let store = node.current_store().await.unwrap().unwrap();

    node.incr(&store, b"hits".to_vec(), 3).await.unwrap();
    node.incr(&store, b"hits".to_vec(), -1).await.unwrap();
    assert_eq!(node.value(&store, b"hits").await.unwrap(), Some(Value::Counter(2)));
    assert_eq!(node.get(&store, b"hits").await.unwrap(), Some(b"2".to_vec()));
    let lookup = node.lookup(&store, b"hits").await.unwrap();
    assert_eq!((lookup.typed, lookup.value), (Some(Value::Counter(2)), Some(b"2".to_vec())));
    assert_eq!(lookup.heads[0].kind, Kind::Counter);

    node.sadd(&store, b"peers".to_vec(), vec![b"b".to_vec(), b"a".to_vec()]).await.unwrap();
    node.srem(&store, b"peers".to_vec(), vec![b"b".to_vec()]).await.unwrap();
    assert_eq!(node.smembers(&store, b"peers").await.unwrap(), Some(vec![b"a".to_vec()]));
    assert_eq!(node.smembers(&store, b"nothing").await.unwrap(), None);
    let batch = Transaction::new(vec![Op::counter_add("hits", 10), Op::set_add("peers", "c")]);
    node.transact(&store, batch).await.unwrap();
    let listed = node.list_values(&store, b"", None, 10).await.unwrap();
    assert_eq!(listed, vec![(b"hits".to_vec(), Value::Counter(12)), (b"peers".to_vec(), set(&["a", "c"]))]);

    let wrong = node.sadd(&store, b"hits".to_vec(), vec![b"x".to_vec()]).await.unwrap_err();
    assert!(matches!(wrong, NodeError::Store(StoreError::WrongKind { holds: Kind::Counter, wanted: Kind::Set, .. })));
    assert_eq!(wrong.kind(), ErrorKind::Other);
    assert_eq!(wrong.to_string(), "key hits holds a counter, not a set");
    let read = node.smembers(&store, b"hits").await.unwrap_err();
    assert!(matches!(read, NodeError::Store(StoreError::WrongKind { .. })), "{read}");
    node.incr(&store, b"big".to_vec(), i64::MAX).await.unwrap();
    let overflow = node.incr(&store, b"big".to_vec(), 1).await.unwrap_err();
    assert!(matches!(overflow, NodeError::Store(StoreError::CounterOverflow { .. })), "{overflow}");
    let big = vec![0u8; lattice_core::entry::MAX_VALUE_BYTES + 1];
    let too_large = node.sadd(&store, b"peers".to_vec(), vec![big]).await.unwrap_err();
    assert_eq!(too_large.kind(), ErrorKind::Usage, "{too_large}");

    // The root store's reserved prefixes stay refused, whatever the op.
    let root = node.resolve(Some("root")).await.unwrap();
    let reserved = node.incr(&root, b"/nodes/x".to_vec(), 1).await.unwrap_err();
    assert!(matches!(reserved, NodeError::Reserved { .. }), "{reserved}");
    node.shutdown().await.unwrap();
}

/// Two nodes of a mesh writing at once: increments on both all count, and the members each adds
/// are on both. (Concurrent remove and add of one member: lattice-store's `tests/kinds.rs`, where
/// delivery is controlled.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_write_apart_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _a_dir, b, _b_dir) = mesh(tmp.path()).await;
    let store = a.node.current_store().await.unwrap().unwrap();
    let on_b = b.node.resolve(Some(&store.id.to_string())).await.unwrap();
    a.node.sadd(&store, b"s".to_vec(), vec![b"shared".to_vec()]).await.unwrap();
    a.sync_with(b.id()).await;
    // Gossip may carry some of what follows at once; the outcome is the same either way,
    // because each write below is made without seeing the other side's.
    let (ra, rb) = tokio::join!(
        async {
            for _ in 0..20 {
                a.node.incr(&store, b"c".to_vec(), 1).await.unwrap();
            }
            a.node.srem(&store, b"s".to_vec(), vec![b"shared".to_vec()]).await.unwrap();
            a.node.sadd(&store, b"s".to_vec(), vec![b"from a".to_vec()]).await
        },
        async {
            for _ in 0..30 {
                b.node.incr(&on_b, b"c".to_vec(), 1).await.unwrap();
            }
            b.node.sadd(&on_b, b"s".to_vec(), vec![b"from b".to_vec()]).await
        }
    );
    ra.unwrap();
    rb.unwrap();
    a.sync_with(b.id()).await;
    b.sync_with(a.id()).await;
    for (node, store) in [(&a.node, &store), (&b.node, &on_b)] {
        assert_eq!(node.value(store, b"c").await.unwrap(), Some(Value::Counter(50)));
        let members = node.smembers(store, b"s").await.unwrap().unwrap();
        assert!(members.contains(&b"from a".to_vec()) && members.contains(&b"from b".to_vec()), "{members:?}");
    }
    assert_eq!(
        a.node.smembers(&store, b"s").await.unwrap(),
        b.node.smembers(&on_b, b"s").await.unwrap(),
        "both nodes hold the same members"
    );
    a.stop().await;
    b.stop().await;
}
