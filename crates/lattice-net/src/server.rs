//! [`LatticeServer`]: the node's network presence. It binds the endpoint behind the membership
//! gate (`gate`), routes `lattice/sync/1` to its handler (`accept`) and gossip to iroh-gossip,
//! and runs the mesh; every other method hands the call to the [`Mesh`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use iroh::address_lookup::memory::MemoryLookup;
use iroh::protocol::Router;
use lattice_core::{AuthorId, Identity, StoreId};
use tokio::sync::watch;

use crate::accept::SyncHandler;
use crate::connection::{PeerConnection, SYNC_ALPN};
use crate::context::NodeContext;
use crate::endpoint::{self, NetConfig, PeerAddr};
use crate::error::NetError;
use crate::gate::{Gate, GateHook};
use crate::mesh::{Mesh, StoreSync};
use crate::policy::PeerHealth;
use crate::sync::SyncProgress;

/// The node's network presence: endpoint + router + protocol handlers + the mesh tasks.
pub struct LatticeServer<C: NodeContext> {
    router: Router,
    mesh: Arc<Mesh<C>>,
}

impl<C: NodeContext> LatticeServer<C> {
    /// Binds the endpoint, starts accepting connections (sync + gossip) and the mesh tasks
    /// (sync scheduler, anti-entropy). Stores join the mesh with [`Self::open_store`].
    pub async fn bind(ctx: Arc<C>, identity: &Identity, config: NetConfig) -> Result<Self, NetError> {
        let lookup = MemoryLookup::new();
        let alpns = vec![SYNC_ALPN.to_vec(), iroh_gossip::ALPN.to_vec()];
        let gate = Gate::new(ctx.clone(), config.faults.clone());
        #[cfg(feature = "fault-injection")]
        config.faults.register(Arc::downgrade(&gate) as std::sync::Weak<dyn crate::faults::Cut>);
        let endpoint = endpoint::bind(identity, &config, lookup.clone(), alpns, GateHook(gate.clone())).await?;
        let mesh = Mesh::new(ctx, gate, endpoint.clone(), lookup, config);
        // Gossip connections reach iroh-gossip only through the gate (at the handshake); the
        // messages they carry are checked again as they arrive (`mesh`).
        let router = Router::builder(endpoint)
            .accept(SYNC_ALPN, SyncHandler { mesh: mesh.clone() })
            .accept(iroh_gossip::ALPN, mesh.gossip().clone())
            .spawn();
        mesh.start();
        tracing::info!(node = %identity.author(), addrs = ?router.endpoint().bound_sockets(), "network up");
        Ok(LatticeServer { router, mesh })
    }

    /// The addresses this node listens on.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.router.endpoint().bound_sockets()
    }

    /// This node as `NODE_ID@ADDR`.
    pub fn peer_addr(&self) -> PeerAddr {
        let me = AuthorId(*self.router.endpoint().id().as_bytes());
        self.listen_addrs().into_iter().fold(PeerAddr::new(me), PeerAddr::with_addr)
    }

    /// The mesh's members (the node derives them from `/nodes/` in the root store). Gossip
    /// topics join new members; anti-entropy and gap filling choose among them; an expelled
    /// peer is never among them. Open connections are checked again against the peers'
    /// statuses (a removed peer loses them, even if it was not expelled).
    pub fn set_peers(&self, peers: Vec<PeerAddr>) {
        self.mesh.set_peers(peers);
    }

    /// Removes `peer` from this node's mesh (its status became `removed`, by any path): refuses
    /// it from now on, whatever its status says (racing handshakes and redials included), and
    /// closes every connection with it, sync and gossip, either direction, so it leaves every
    /// gossip topic's neighbour set. Undone by [`Self::readmit`].
    pub fn expel(&self, peer: AuthorId) {
        self.mesh.expel(peer);
    }

    /// Undoes [`Self::expel`] (the peer was invited again): it is judged by its status again,
    /// and gossip reconnects with it.
    pub fn readmit(&self, peer: AuthorId) {
        self.mesh.readmit(peer);
    }

    /// Open connections with `peer`: sync and gossip, dialled by either side.
    pub fn connections(&self, peer: AuthorId) -> usize {
        self.mesh.connections(peer)
    }

    /// The gossip neighbours of `store`'s topic (empty if the store is not on the mesh).
    pub fn gossip_neighbours(&self, store: StoreId) -> Vec<AuthorId> {
        self.mesh.gossip_neighbours(store)
    }

    /// The mesh, for the hooks of `test_utils`.
    #[cfg(feature = "test-utils")]
    pub(crate) fn mesh(&self) -> &Arc<Mesh<C>> {
        &self.mesh
    }

    /// Puts a store on the mesh: its gossip topic, gap filling, anti-entropy.
    pub fn open_store(&self, store: C::Store) {
        self.mesh.open_store(store);
    }

    /// Takes a store off the mesh (e.g. archived).
    pub fn close_store(&self, id: StoreId) {
        self.mesh.close_store(id);
    }

    /// Schedules a sync of `store` (it must be on the mesh) with the members, tried one after
    /// another until one succeeds: what the node asks for when it learns a peer holds more of
    /// its own log than it does.
    pub fn request_sync(&self, store: StoreId) {
        self.mesh.request_sync(store);
    }

    /// Reachability per peer (for `peers`: last success, last failure, backoff).
    pub fn peer_health(&self) -> HashMap<AuthorId, PeerHealth> {
        self.mesh.peer_health()
    }

    /// Connects to a peer, within the connect timeout.
    pub async fn connect(&self, peer: &PeerAddr) -> Result<PeerConnection, NetError> {
        self.mesh.connect(peer).await
    }

    /// Syncs the given stores with one peer, each over its own stream of one connection, all
    /// concurrently; `progress` (if any) adds up every session's entries.
    pub async fn sync_stores(
        &self,
        peer: &PeerAddr,
        stores: Vec<C::Store>,
        progress: Option<watch::Sender<SyncProgress>>,
    ) -> Result<Vec<StoreSync>, NetError> {
        self.mesh.sync_stores(peer, &stores, progress).await
    }

    /// Stops the mesh tasks, ends running sessions, shuts down gossip, closes the router and
    /// the endpoint. Returns once every task it started has finished.
    pub async fn shutdown(&self) {
        let started = std::time::Instant::now();
        self.mesh.closing();
        // Gossip first (the router shuts its protocols down before it closes the endpoint),
        // while the mesh tasks still hold their topics: a topic whose last handle is dropped
        // makes gossip tell its neighbours, dialling one whose connection had just closed, and
        // a connection in its handshake holds the endpoint's close for 3 s.
        if let Err(e) = self.router.shutdown().await {
            tracing::warn!(error = %e, "router shutdown");
        }
        tracing::debug!(elapsed = ?started.elapsed(), "router and endpoint closed");
        self.mesh.shutdown().await;
        tracing::debug!(elapsed = ?started.elapsed(), "mesh tasks stopped");
    }
}
