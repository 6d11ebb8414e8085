//! Own-log catch-up (issue 14), with real nodes on loopback: a node restarted from a backup of
//! its data dir never signs an entry on an old tip of its own chain. It catches up from a peer
//! first, and refuses writes, with a clear error, while it cannot.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{Up, copy_dir, mesh, open};
use lattice_net::NetConfig;
use lattice_node::{DataDir, Node, NodeError, StoreRef};
use lattice_store::WriteReceipt;
use lattice_testkit::DEADLINE;

/// Writes `key`, retrying while the node says its own log is behind (it is catching up).
async fn write(node: &Node, store: &StoreRef, key: &str) -> WriteReceipt {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        match node.put(store, key.as_bytes().to_vec(), b"v".to_vec()).await {
            Ok(receipt) => return receipt,
            Err(NodeError::Behind { .. }) if tokio::time::Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("writing {key}: {e}"),
        }
    }
}

/// A writes k1..k3, is stopped and backed up, writes k4 and k5 (which B receives), and is
/// stopped again: returns the backup (A as of seq 3 in the default store) and the store.
async fn backup_behind_b(tmp: &Path, a: Up, a_dir: &DataDir, b: &Up) -> (DataDir, StoreRef) {
    let store = a.node.current_store().await.unwrap().unwrap();
    for seq in 1..=3 {
        assert_eq!(write(&a.node, &store, &format!("k{seq}")).await.seq, seq);
    }
    a.sync_with(b.id()).await;
    a.stop().await;
    let backup = DataDir::new(tmp.join("backup")).unwrap();
    copy_dir(a_dir.path(), backup.path());
    let a = Up::start(open(a_dir).await, NetConfig::loopback()).await;
    for seq in 4..=5 {
        assert_eq!(write(&a.node, &store, &format!("k{seq}")).await.seq, seq);
    }
    a.sync_with(b.id()).await;
    assert!(b.node.get(&store, b"k5").await.unwrap().is_some(), "B holds A's seq 5");
    a.stop().await;
    (backup, store)
}

/// No store of `node` holds an equivocation proof.
async fn no_equivocation(node: &Node, who: &str) {
    for (store, status) in node.status().await.unwrap().stores {
        assert!(status.equivocated.is_empty(), "{who} sees equivocation in {}: {:?}", store.name, status.equivocated);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_node_catches_up_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, a_dir, b, _b_dir) = mesh(tmp.path()).await;
    let (backup, store) = backup_behind_b(tmp.path(), a, &a_dir, &b).await;

    let a = Up::start(open(&backup).await, NetConfig::loopback()).await;
    let receipt = write(&a.node, &store, "k6").await;
    assert_eq!(receipt.seq, 6, "the restored node must write after its own seq 5, not on the old tip 3");
    assert!(a.node.get(&store, b"k5").await.unwrap().is_some(), "A caught its own entries up from B");
    a.sync_with(b.id()).await;
    assert!(b.node.get(&store, b"k6").await.unwrap().is_some());
    no_equivocation(&b.node, "B").await;
    no_equivocation(&a.node, "A").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_while_behind_and_unable_to_catch_up_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, a_dir, b, b_dir) = mesh(tmp.path()).await;
    let (backup, store) = backup_behind_b(tmp.path(), a, &a_dir, &b).await;
    // B, on the same address, now says what it holds but sends nothing: every session it
    // would send entries in is cut before the first batch.
    let b_id = b.id();
    let bind = SocketAddr::from(([127, 0, 0, 1], b.addr().addrs[0].port()));
    b.stop().await;
    let mut cut = NetConfig { bind, ..NetConfig::loopback() };
    cut.sync.cut_after_batches = Some(0);
    let b = Up::start(open(&b_dir).await, cut).await;

    // Failed catch-ups back off briefly, so the healed B below is asked again soon.
    let mut config = NetConfig::loopback();
    config.mesh.backoff_max = Duration::from_millis(500);
    let a = Up::start(open(&backup).await, config).await;
    let refused = a.node.put(&store, b"k6".to_vec(), b"v".to_vec()).await;
    match refused {
        Err(NodeError::Behind { ref store, peer, ours, theirs }) => {
            assert_eq!((store.as_str(), peer, ours, theirs), ("default", Some(b_id), 3, 5));
        }
        Ok(r) => panic!("wrote seq {} on a tip behind what B holds", r.seq),
        Err(e) => panic!("expected the behind error, got: {e}"),
    }
    let line = refused.unwrap_err().to_string();
    assert_eq!(
        line,
        format!(
            "this node's log in store default is behind what peer {b_id} holds of it (seq 3 < 5); \
             catching up — retry shortly"
        )
    );
    assert!(a.node.get(&store, b"k4").await.unwrap().is_none(), "nothing caught up from the cut peer");
    assert!(
        matches!(a.node.delete(&store, b"k1".to_vec()).await, Err(NodeError::Behind { .. })),
        "still refused while behind"
    );

    // Once B sends again, A catches up by itself (nobody asks it to sync) and writes seq 6.
    b.stop().await;
    let b = Up::start(open(&b_dir).await, NetConfig { bind, ..NetConfig::loopback() }).await;
    let receipt = write(&a.node, &store, "k6").await;
    assert_eq!(receipt.seq, 6);
    a.sync_with(b.id()).await;
    no_equivocation(&b.node, "B").await;
    no_equivocation(&a.node, "A").await;
    a.stop().await;
    b.stop().await;
}
