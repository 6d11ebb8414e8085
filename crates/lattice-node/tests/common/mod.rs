//! Helpers shared by the node tests: a node with its network, and a mesh of two on loopback.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use lattice_core::AuthorId;
use lattice_net::{NetConfig, PeerAddr};
use lattice_node::{DataDir, DirLock, Network, Node, Role, join};
use lattice_testkit::{DEADLINE, eventually};

/// A node and its network.
pub struct Up {
    pub node: Arc<Node>,
    pub net: Network,
}

impl Up {
    pub async fn start(node: Arc<Node>, config: NetConfig) -> Up {
        let net = Network::start(node.clone(), config).await.unwrap();
        Up { node, net }
    }

    pub async fn stop(self) {
        self.net.shutdown().await;
        self.node.shutdown().await.unwrap();
    }

    pub fn id(&self) -> AuthorId {
        self.node.node_id()
    }

    pub fn addr(&self) -> PeerAddr {
        self.net.server().peer_addr()
    }

    /// One round of sync with `peer`, which must succeed for every store.
    pub async fn sync_with(&self, peer: AuthorId) {
        for r in self.net.sync(Some(peer), None).await.unwrap() {
            for (store, outcome) in r.result.unwrap() {
                outcome.unwrap_or_else(|e| panic!("sync of {store} with {peer}: {e}"));
            }
        }
    }
}

pub fn data_dir(root: &Path, name: &str) -> DataDir {
    let dir = DataDir::new(root.join(name)).unwrap();
    dir.create().unwrap();
    dir
}

/// Opens `dir` once the previous owner's last references (network tasks ending) are gone.
pub async fn open(dir: &DataDir) -> Arc<Node> {
    let mut lock = None;
    eventually("the data dir's lock", DEADLINE, || {
        let taken = lock.is_some() || DirLock::try_acquire(dir).map(|l| lock = Some(l)).is_ok();
        async move { taken }
    })
    .await;
    let lock = Arc::new(lock.expect("taken above"));
    Arc::new(Node::open(dir.clone(), lock).await.unwrap())
}

/// Copies a tree as a careful backup tool would: private dirs (a data dir open to group/other
/// is refused at open), file contents as they are.
pub fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A mesh of two: A (genesis) and B (joined), each knowing the other's current address.
pub async fn mesh(tmp: &Path) -> (Up, DataDir, Up, DataDir) {
    let (a_dir, b_dir) = (data_dir(tmp, "a"), data_dir(tmp, "b"));
    let a_lock = Arc::new(DirLock::try_acquire(&a_dir).unwrap());
    let a =
        Up::start(Arc::new(Node::init(a_dir.clone(), a_lock, Some("a".into())).await.unwrap()), NetConfig::loopback())
            .await;
    let b_lock = Arc::new(DirLock::try_acquire(&b_dir).unwrap());
    let b = Node::init(b_dir.clone(), b_lock, Some("b".into())).await.unwrap();
    a.node.invite(b.node_id(), Role::Member).await.unwrap();
    let b = join(Arc::new(b), a.addr(), Some("b".into()), NetConfig::loopback(), None).await.unwrap();
    let b = Up::start(b, NetConfig::loopback()).await;
    let b_addr = b.addr().addrs[0].to_string();
    eventually("A to learn B's address", DEADLINE, || async {
        let records = a.node.node_records().await.unwrap();
        records.get(&b.id()).and_then(|r| r.info.as_ref()).is_some_and(|i| i.addrs.contains(&b_addr))
    })
    .await;
    (a, a_dir, b, b_dir)
}
