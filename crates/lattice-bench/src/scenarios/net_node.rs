//! A small in-process Lattice node for the network scenarios: its stores in a map, peer statuses
//! in a map (with a default for peers it was not told about), served by a `LatticeServer` on
//! loopback. The same shape as the test node of `crates/lattice-net/tests/common`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use lattice_core::{AuthorId, Identity, MemberStatus, StoreId};
use lattice_net::{LatticeServer, NetConfig, NodeContext};
use lattice_store::{StoreConfig, StoreHandle};

/// What the network layer sees of a benchmark node.
pub struct BenchNode {
    pub identity: Identity,
    stores: Mutex<HashMap<StoreId, StoreHandle>>,
    peers: Mutex<HashMap<AuthorId, MemberStatus>>,
    /// The status of a peer not in `peers`.
    default_status: Option<MemberStatus>,
}

impl NodeContext for BenchNode {
    type Store = StoreHandle;
    fn root_store_id(&self) -> Option<StoreId> {
        None
    }
    async fn peer_status(&self, peer: AuthorId) -> Option<MemberStatus> {
        self.peers.lock().ok().and_then(|p| p.get(&peer).copied()).or(self.default_status)
    }
    async fn store(&self, id: StoreId) -> Option<StoreHandle> {
        self.stores.lock().ok()?.get(&id).cloned()
    }
}

impl BenchNode {
    /// A node with a fresh identity that treats peers it was not told about as `default_status`.
    pub fn new(default_status: Option<MemberStatus>) -> Arc<Self> {
        Arc::new(BenchNode {
            identity: Identity::generate(),
            stores: Mutex::default(),
            peers: Mutex::default(),
            default_status,
        })
    }

    pub fn author(&self) -> AuthorId {
        self.identity.author()
    }

    /// Opens (or creates) `store` in `dir` under this node's identity and serves it to peers.
    pub fn open_store(&self, dir: &Path, store: StoreId) -> Result<StoreHandle> {
        let handle = StoreHandle::open(dir, store, self.identity.clone(), StoreConfig::default())
            .with_context(|| format!("opening the store in {}", dir.display()))?;
        self.add_store(handle.clone());
        Ok(handle)
    }

    /// Serves an already open store to peers.
    pub fn add_store(&self, store: StoreHandle) {
        if let Ok(mut stores) = self.stores.lock() {
            stores.insert(store.store_id(), store);
        }
    }

    pub fn set_peer(&self, peer: AuthorId, status: MemberStatus) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.insert(peer, status);
        }
    }

    /// Binds this node's endpoint with `config` (call inside a tokio runtime).
    pub async fn serve(self: &Arc<Self>, config: NetConfig) -> Result<LatticeServer<BenchNode>> {
        LatticeServer::bind(self.clone(), &self.identity.clone(), config).await.context("binding a Lattice endpoint")
    }
}
