//! A node's network stopped and started again on the same fixed port (what `join` through a
//! daemon does), and the data dir's modes at init and open.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use lattice_net::NetConfig;
use lattice_node::{DataDir, DirLock, Network, Node, NodeError};

async fn fresh() -> (tempfile::TempDir, DataDir, Arc<DirLock>, Node) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data")).unwrap();
    dir.create().unwrap();
    let lock = Arc::new(DirLock::try_acquire(&dir).unwrap());
    let node = Node::init(dir.clone(), lock.clone(), Some("test".into())).await.unwrap();
    (tmp, dir, lock, node)
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_network_frees_its_fixed_port_for_the_next_start() {
    let (_tmp, _dir, _lock, node) = fresh().await;
    let node = Arc::new(node);
    let bind = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = NetConfig { bind, ..NetConfig::loopback() };
    for i in 0..20 {
        let network = match Network::start(node.clone(), config.clone()).await {
            Ok(network) => Arc::new(network),
            Err(e) => panic!("start {i} on {bind}: {e}"),
        };
        assert_eq!(network.listen_addrs(), vec![bind]);
        network.stop().await;
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_makes_an_existing_dir_private_and_open_refuses_an_exposed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data")).unwrap();
    std::fs::create_dir(dir.path()).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let lock = Arc::new(DirLock::try_acquire(&dir).unwrap());
    let node = Node::init(dir.clone(), lock.clone(), Some("test".into())).await.unwrap();
    node.shutdown().await.unwrap();
    drop(node);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&dir.meta_db()), 0o600);
    assert_eq!(mode(&dir.stores_dir()), 0o700);
    for store in std::fs::read_dir(dir.stores_dir()).unwrap() {
        let store = store.unwrap().path();
        assert_eq!(mode(&store), 0o700);
        assert_eq!(mode(&store.join("state.db")), 0o600);
        assert_eq!(mode(&store.join("orphans.db")), 0o600);
        for log in std::fs::read_dir(store.join("logs")).unwrap() {
            assert_eq!(mode(&log.unwrap().path()), 0o600);
        }
    }

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    match Node::open(dir.clone(), lock.clone()).await {
        Err(e @ NodeError::Exposed(_)) => {
            let shown = dir.path().display();
            assert_eq!(e.to_string(), format!("data dir {shown} is accessible by group/other; run chmod 700 {shown}"));
        }
        other => panic!("expected Exposed, got {:?}", other.map(|_| ())),
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    Node::open(dir, lock).await.unwrap().shutdown().await.unwrap();
}
