#![allow(dead_code)]
//! An in-process node for network tests: stores on a tempdir, peer statuses in a map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lattice_core::{AuthorId, Identity, MemberStatus, StoreId};
use lattice_net::{Faults, LatticeServer, NetConfig, NodeContext};
use lattice_store::{KvStore, StoreConfig, StoreHandle};

pub struct TestNode {
    pub identity: Identity,
    pub root: StoreId,
    pub stores: Mutex<HashMap<StoreId, StoreHandle>>,
    pub peers: Mutex<HashMap<AuthorId, MemberStatus>>,
    pub dir: tempfile::TempDir,
    /// The config every store of this node opens with (e.g. a skewed clock).
    pub store_config: StoreConfig,
}

impl NodeContext for TestNode {
    type Store = StoreHandle;
    fn root_store_id(&self) -> Option<StoreId> {
        Some(self.root)
    }
    async fn peer_status(&self, peer: AuthorId) -> Option<MemberStatus> {
        self.peers.lock().unwrap().get(&peer).copied()
    }
    async fn store(&self, id: StoreId) -> Option<StoreHandle> {
        self.stores.lock().unwrap().get(&id).cloned()
    }
}

impl TestNode {
    pub fn new(root: StoreId) -> Arc<Self> {
        Self::with_store_config(root, StoreConfig::default())
    }
    /// A node whose stores open with `store_config` (e.g. `clock_offset_ms` for clock skew).
    pub fn with_store_config(root: StoreId, store_config: StoreConfig) -> Arc<Self> {
        let node = Arc::new(TestNode {
            identity: Identity::generate(),
            root,
            stores: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            dir: tempfile::tempdir().unwrap(),
            store_config,
        });
        node.open_store(root);
        node
    }
    pub fn open_store(&self, id: StoreId) -> StoreHandle {
        let handle = StoreHandle::open(
            &self.dir.path().join(id.to_string()),
            id,
            self.identity.clone(),
            self.store_config.clone(),
        )
        .unwrap();
        self.stores.lock().unwrap().insert(id, handle.clone());
        handle
    }
    pub fn store(&self, id: StoreId) -> StoreHandle {
        self.stores.lock().unwrap()[&id].clone()
    }
    pub fn set_peer(&self, peer: AuthorId, status: MemberStatus) {
        self.peers.lock().unwrap().insert(peer, status);
    }
    pub async fn serve(self: &Arc<Self>) -> LatticeServer<TestNode> {
        LatticeServer::bind(self.clone(), &self.identity.clone(), NetConfig::loopback()).await.unwrap()
    }
    pub async fn serve_with(self: &Arc<Self>, config: NetConfig) -> LatticeServer<TestNode> {
        LatticeServer::bind(self.clone(), &self.identity.clone(), config).await.unwrap()
    }
}

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

/// Polls `check` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Starts a node on the mesh: serves with `config`, joins `peers`, puts its stores on the mesh.
pub async fn join_mesh(node: &Arc<TestNode>, config: NetConfig) -> LatticeServer<TestNode> {
    let server = node.serve_with(config).await;
    for store in node.stores.lock().unwrap().values() {
        server.open_store(store.clone());
    }
    server
}

/// Tells every server about every other (as the root store's `/nodes/` would), limited to the
/// pairs `linked` allows, and marks those pairs active on both sides.
pub fn link(nodes: &[(&Arc<TestNode>, &LatticeServer<TestNode>)], linked: impl Fn(usize, usize) -> bool) {
    for (i, (node, server)) in nodes.iter().enumerate() {
        let mut peers = Vec::new();
        for (j, (other, other_server)) in nodes.iter().enumerate() {
            if i != j && linked(i, j) {
                node.set_peer(other.identity.author(), MemberStatus::Active);
                peers.push(other_server.peer_addr());
            }
        }
        server.set_peers(peers);
    }
}

/// Makes two nodes active members of each other's mesh.
pub fn befriend(a: &TestNode, b: &TestNode) {
    a.set_peer(b.identity.author(), MemberStatus::Active);
    b.set_peer(a.identity.author(), MemberStatus::Active);
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
