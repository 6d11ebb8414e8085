//! A member's key used to sign what the CLI refuses: a test opens the member's data dir (its
//! daemon stopped) with the lattice-node library and writes raw entries straight into the root
//! store, bypassing the node's checks, as a modified binary could. Included with
//! `#[path = "common/forge.rs"] mod forge;` by the tests that need it.

use std::path::Path;
use std::sync::Arc;

use lattice_core::{AuthorId, Op};
use lattice_net::NetConfig;
use lattice_node::{DataDir, DirLock, Network, Node};
use lattice_store::KvStore;

/// A member's node opened in the test process, on the network (loopback) or not.
pub struct Forger {
    // Fields drop in order: the runtime last, after what runs on it.
    network: Option<Network>,
    node: Option<Arc<Node>>,
    rt: tokio::runtime::Runtime,
}

impl Forger {
    /// Opens the data dir at `dir` (its owner must have stopped) and puts it on the network, so
    /// what it writes goes out by gossip as it is written.
    pub fn online(dir: &Path) -> Forger {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (node, network) = rt.block_on(async {
            let dir = DataDir::new(dir).unwrap();
            let lock = Arc::new(DirLock::try_acquire(&dir).unwrap());
            let node = Arc::new(Node::open(dir, lock).await.unwrap());
            let config = NetConfig { bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
            let network = Network::start(node.clone(), config).await.unwrap();
            (node, network)
        });
        Forger { network: Some(network), node: Some(node), rt }
    }

    fn node(&self) -> &Arc<Node> {
        self.node.as_ref().expect("the forger is open")
    }

    /// The nodes the root store's gossip topic reaches from here now.
    pub fn gossip_neighbours(&self) -> Vec<AuthorId> {
        let root = self.node().root_store().id;
        self.network.as_ref().map(|n| n.server().gossip_neighbours(root)).unwrap_or_default()
    }

    /// Signs one root-store entry with the member's key that puts every `(key, value)`,
    /// reserved keys included: the raw store handle checks nothing of the control plane.
    pub fn write(&self, puts: &[(String, String)]) {
        let ops: Vec<Op> = puts.iter().map(|(k, v)| Op::put(k.as_str(), v.as_str())).collect();
        self.rt.block_on(async {
            self.node().root_store_handle().await.unwrap().batch(ops).await.unwrap();
        });
    }

    /// Takes the node off the network; later writes reach the others only by sync.
    pub fn offline(&mut self) {
        if let Some(network) = self.network.take() {
            self.rt.block_on(network.shutdown());
        }
    }

    /// Closes the node and frees the data dir for its owner again.
    pub fn close(mut self) {
        self.offline();
        let node = self.node.take().expect("the forger is open");
        self.rt.block_on(async move {
            // Tasks of the network just shut down drop their references as they finish.
            lattice_testkit::eventually("the forger's node to be released", lattice_testkit::DEADLINE, || {
                let alone = Arc::strong_count(&node) == 1;
                async move { alone }
            })
            .await;
            let node = Arc::try_unwrap(node).ok().expect("the forger's node is released");
            node.shutdown().await.unwrap();
        });
    }
}
