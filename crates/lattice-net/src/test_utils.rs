//! An in-process node for tests and benchmarks (`test-utils` feature): its stores in a map,
//! peer statuses in a map (with a default for peers it was not told about), served by a
//! [`LatticeServer`] on whatever [`NetConfig`] the caller gives. Also the raw frames of
//! `lattice/sync/1`, for tests that play a peer breaking the protocol.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lattice_core::{AuthorId, Identity, MemberStatus, StoreId};
use lattice_store::{StoreConfig, StoreError, StoreHandle};

use crate::{LatticeServer, NetConfig, NetError, NodeContext, PeerConnection, PeerEvent};

pub use crate::framing::{FrameReceiver, FrameSender};

/// Why a test node could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TestNodeError {
    /// The node's directory could not be created.
    #[error("cannot create the node's directory: {0}")]
    Dir(#[from] std::io::Error),
    /// A store could not be opened.
    #[error("cannot open the store in {}: {source}", dir.display())]
    Store {
        /// The store's directory.
        dir: PathBuf,
        /// Why it could not be opened.
        source: StoreError,
    },
}

/// How a [`TestNode`] is set up.
#[derive(Clone, Debug, Default)]
pub struct TestNodeConfig {
    /// The mesh's root store: opened in the node's directory, and the answer to a join. `None`:
    /// the node has no mesh to join (joins are refused).
    pub root: Option<StoreId>,
    /// The status of a peer never given to [`TestNode::set_peer`] (`None`: unknown, refused).
    pub default_status: Option<MemberStatus>,
    /// The config every store of this node opens with (e.g. a skewed clock).
    pub store: StoreConfig,
}

/// A node as the network layer sees it, with a fresh identity and its own temporary directory.
pub struct TestNode {
    identity: Identity,
    config: TestNodeConfig,
    stores: Mutex<HashMap<StoreId, StoreHandle>>,
    peers: Mutex<HashMap<AuthorId, MemberStatus>>,
    /// Every peer event the network reported, in order.
    events: Mutex<Vec<PeerEvent>>,
    /// Where [`TestNode::open_store`] puts stores; removed with the node.
    dir: tempfile::TempDir,
}

impl NodeContext for TestNode {
    type Store = StoreHandle;
    fn root_store_id(&self) -> Option<StoreId> {
        self.config.root
    }
    async fn peer_status(&self, peer: AuthorId) -> Option<MemberStatus> {
        self.peers.lock().ok().and_then(|p| p.get(&peer).copied()).or(self.config.default_status)
    }
    async fn store(&self, id: StoreId) -> Option<StoreHandle> {
        TestNode::store(self, id)
    }
    fn peer_event(&self, event: PeerEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

impl TestNode {
    /// A member of the mesh whose root store is `root` (opened in the node's directory).
    pub fn new(root: StoreId) -> Result<Arc<Self>, TestNodeError> {
        Self::with_config(TestNodeConfig { root: Some(root), ..TestNodeConfig::default() })
    }

    /// A node set up as `config` says.
    pub fn with_config(config: TestNodeConfig) -> Result<Arc<Self>, TestNodeError> {
        let node = Arc::new(TestNode {
            identity: Identity::generate(),
            config,
            stores: Mutex::default(),
            peers: Mutex::default(),
            events: Mutex::default(),
            dir: tempfile::tempdir()?,
        });
        if let Some(root) = node.config.root {
            node.open_store(root)?;
        }
        Ok(node)
    }

    /// The node's key: its node id and the author of its entries.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The node's id.
    pub fn author(&self) -> AuthorId {
        self.identity.author()
    }

    /// Opens (or creates) `id` in the node's directory and serves it to peers.
    pub fn open_store(&self, id: StoreId) -> Result<StoreHandle, TestNodeError> {
        self.open_store_at(&self.dir.path().join(id.to_string()), id)
    }

    /// Opens (or creates) `id` in `dir` and serves it to peers.
    pub fn open_store_at(&self, dir: &Path, id: StoreId) -> Result<StoreHandle, TestNodeError> {
        let handle = StoreHandle::open(dir, id, self.identity.clone(), self.config.store.clone())
            .map_err(|source| TestNodeError::Store { dir: dir.to_path_buf(), source })?;
        if let Ok(mut stores) = self.stores.lock() {
            stores.insert(id, handle.clone());
        }
        Ok(handle)
    }

    /// An open store by id.
    pub fn store(&self, id: StoreId) -> Option<StoreHandle> {
        self.stores.lock().ok()?.get(&id).cloned()
    }

    /// Every open store.
    pub fn stores(&self) -> Vec<StoreHandle> {
        self.stores.lock().map(|s| s.values().cloned().collect()).unwrap_or_default()
    }

    /// Sets a peer's membership status, as `/nodes/{peer}/status` would.
    pub fn set_peer(&self, peer: AuthorId, status: MemberStatus) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.insert(peer, status);
        }
    }

    /// Every peer event the network reported so far (what a node would record), in order.
    pub fn events(&self) -> Vec<PeerEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Binds this node's endpoint with `config` (call inside a tokio runtime).
    pub async fn serve(self: &Arc<Self>, config: NetConfig) -> Result<LatticeServer<TestNode>, NetError> {
        LatticeServer::bind(self.clone(), &self.identity, config).await
    }
}

/// Tells every server about every other (as the root store's `/nodes/` would), limited to the
/// pairs `linked` allows, and marks those pairs active on both sides.
pub fn link(nodes: &[(&Arc<TestNode>, &LatticeServer<TestNode>)], linked: impl Fn(usize, usize) -> bool) {
    for (i, (node, server)) in nodes.iter().enumerate() {
        let mut peers = Vec::new();
        for (j, (other, other_server)) in nodes.iter().enumerate() {
            if i != j && linked(i, j) {
                node.set_peer(other.author(), MemberStatus::Active);
                peers.push(other_server.peer_addr());
            }
        }
        server.set_peers(peers);
    }
}

/// Opens a stream on `conn` and returns its raw frames, to speak `lattice/sync/1` message by
/// message (as a peer that breaks the protocol would).
pub async fn raw_stream(conn: &PeerConnection) -> Result<(FrameSender, FrameReceiver), NetError> {
    conn.open().await
}

/// The QUIC connection under `conn`, to inspect what it carried (`stats`) or how it ended
/// (`closed`, `close_reason`).
pub fn quic_connection(conn: &PeerConnection) -> iroh::endpoint::Connection {
    conn.inner().clone()
}

/// Broadcasts `message` on `store`'s gossip topic from `server` as it is, bypassing what the
/// mesh would send (as a member that gossips anything it likes would).
pub async fn gossip_raw(
    server: &LatticeServer<TestNode>,
    store: StoreId,
    message: &lattice_core::proto::GossipMessage,
) -> Result<(), NetError> {
    server.mesh().gossip_raw(store, prost::Message::encode_to_vec(message).into()).await
}
