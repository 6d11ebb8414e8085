#![allow(dead_code)]
//! Helpers of the network tests around `lattice_net::test_utils::TestNode` (stores on a
//! tempdir, peer statuses in a map): mesh configs, serving, bulk writes, dumps.

use std::sync::Arc;

use lattice_core::{EntryBuilder, Hash, Hlc, Identity, MemberStatus, Op, StoreId};
pub use lattice_net::test_utils::TestNode;
use lattice_net::test_utils::link;
use lattice_net::{Faults, LatticeServer, NetConfig};
use lattice_store::{KvStore, StoreHandle};

/// `mesh_config()` with fault rules of its own (`mesh_config().clone()` shares one `Faults`).
pub fn faulty_mesh_config() -> (NetConfig, Arc<Faults>) {
    let mut c = mesh_config();
    let faults = Arc::new(Faults::default());
    c.faults = faults.clone();
    (c, faults)
}

/// A fast-healing mesh config for tests: short anti-entropy and backoff.
pub fn mesh_config() -> NetConfig {
    let mut c = NetConfig::loopback();
    c.mesh.anti_entropy_interval = std::time::Duration::from_millis(300);
    c.mesh.backoff_base = std::time::Duration::from_millis(50);
    c.mesh.backoff_max = std::time::Duration::from_millis(500);
    c.mesh.stale_after = std::time::Duration::from_secs(2);
    c.connect_timeout = std::time::Duration::from_secs(2);
    c
}

/// Serves `node` on loopback with the default config.
pub async fn serve(node: &Arc<TestNode>) -> LatticeServer<TestNode> {
    node.serve(NetConfig::loopback()).await.unwrap()
}

/// Starts a node on the mesh: serves with `config`, joins `peers`, puts its stores on the mesh.
pub async fn join_mesh(node: &Arc<TestNode>, config: NetConfig) -> LatticeServer<TestNode> {
    let server = node.serve(config).await.unwrap();
    for store in node.stores() {
        server.open_store(store);
    }
    server
}

/// `n` nodes of the mesh whose root store is `root`, each serving with `config` and its stores on
/// the mesh, all active members of each other's mesh.
pub async fn full_mesh(
    n: usize,
    root: StoreId,
    config: NetConfig,
) -> (Vec<Arc<TestNode>>, Vec<LatticeServer<TestNode>>) {
    let nodes: Vec<_> = (0..n).map(|_| TestNode::new(root).unwrap()).collect();
    let mut servers = Vec::new();
    for node in &nodes {
        servers.push(join_mesh(node, config.clone()).await);
    }
    link(&nodes.iter().zip(servers.iter()).collect::<Vec<_>>(), |_, _| true);
    (nodes, servers)
}

/// Makes two nodes active members of each other's mesh.
pub fn befriend(a: &TestNode, b: &TestNode) {
    a.set_peer(b.author(), MemberStatus::Active);
    b.set_peer(a.author(), MemberStatus::Active);
}

/// Writes `n` keys `{prefix}{i}` concurrently (group commit makes it fast).
pub async fn write_many(store: &StoreHandle, prefix: &str, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..16 {
        let s = store.clone();
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            for i in (chunk..n).step_by(16) {
                s.put(format!("{prefix}{i:06}").into_bytes(), format!("value-{i}").into_bytes()).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

/// Everything visible in a store, for comparing replicas.
pub async fn dump(store: &StoreHandle) -> Vec<(Vec<u8>, Vec<u8>)> {
    store.list(b"", None, usize::MAX).await.unwrap()
}

/// One branch of a fork: `forker`'s seq 1 in `store`, putting `k = value` (two values, two
/// entries with the same seq: an equivocation). Encoded `SignedEntry` bytes.
pub fn fork_at_seq_1(store: StoreId, forker: &Identity, value: &str) -> Vec<u8> {
    EntryBuilder::new(store, 1)
        .prev_hash(Hash::ZERO)
        .timestamp(Hlc::new(1_000, 0))
        .op(Op::put("k", value))
        .sign(forker)
        .unwrap()
        .bytes()
        .to_vec()
}
