//! `LatticeServer`: the endpoint, the router, and the `lattice/sync/1` protocol handler.
//!
//! The handler is a thin adapter: it asks the node ([`NodeContext`]) whether the peer may talk
//! to us and which store it means, then hands the stream to [`crate::sync`]. Every task it starts
//! belongs to the router, which `shutdown` stops before closing the endpoint.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use iroh::Endpoint;
use iroh::address_lookup::memory::MemoryLookup;
use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh_gossip::Gossip;
use lattice_core::proto::{self, peer_message::Message as Msg};
use lattice_core::{AuthorId, Identity, MemberStatus, StoreId};
use lattice_store::SyncStore;
use std::collections::HashMap;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::endpoint::{self, NetConfig, PeerAddr};
use crate::error::NetError;
use crate::framing::{self, FrameReceiver, FrameSender};
use crate::mesh::{GossipGate, Mesh, StoreSync};
use crate::policy::PeerHealth;
use crate::sync::{self, SyncOutcome, SyncProgress};

/// ALPN of the join and sync protocol.
pub const SYNC_ALPN: &[u8] = b"lattice/sync/1";

/// What happened with a peer, reported to the node for `peers` (last seen, last sync).
#[derive(Clone, Debug)]
pub enum PeerEvent {
    Connected { peer: AuthorId, addr: Option<SocketAddr> },
    Refused { peer: AuthorId, reason: String },
    Synced { peer: AuthorId, store: StoreId, outcome: SyncOutcome },
    SyncFailed { peer: AuthorId, store: StoreId, error: String },
}

/// What the network layer needs from the node. The network sees stores only as `SyncStore`.
pub trait NodeContext: Send + Sync + 'static {
    type Store: SyncStore;
    /// The mesh's root store id (the answer to a join), if this node has one.
    fn root_store_id(&self) -> Option<StoreId>;
    /// The peer's status in the root store (`None`: the mesh does not know it).
    fn peer_status(&self, peer: AuthorId) -> impl Future<Output = Option<MemberStatus>> + Send;
    /// An active local store by id.
    fn store(&self, id: StoreId) -> impl Future<Output = Option<Self::Store>> + Send;
    /// Something happened with a peer (default: nothing to record).
    fn peer_event(&self, _event: PeerEvent) {}
}

struct SyncHandler<C: NodeContext> {
    mesh: Arc<Mesh<C>>,
}

impl<C: NodeContext> std::fmt::Debug for SyncHandler<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncHandler")
    }
}

fn author_of(conn: &Connection) -> AuthorId {
    AuthorId(*conn.remote_id().as_bytes())
}

impl<C: NodeContext> ProtocolHandler for SyncHandler<C> {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = author_of(&conn);
        let mesh = &self.mesh;
        if mesh.config.faults.blocks(peer) {
            conn.close(1u32.into(), b"partitioned");
            return Ok(());
        }
        let joined = Arc::new(AtomicBool::new(false));
        let mut streams = JoinSet::new();
        mesh.heard_from(peer);
        mesh.ctx.peer_event(PeerEvent::Connected { peer, addr: None });
        loop {
            tokio::select! {
                _ = mesh.cancel.cancelled() => break,
                next = conn.accept_bi() => match next {
                    Ok((send, recv)) => {
                        let (tx, rx) = framing::split(send, recv, peer, mesh.config.sync.idle_timeout);
                        let ctx = mesh.ctx.clone();
                        let config = mesh.config.clone();
                        let joined = joined.clone();
                        streams.spawn(async move { serve_stream(ctx, config, peer, joined, tx, rx).await });
                    }
                    Err(_) => break,
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
            }
        }
        // Let running sessions end on their own (the connection is gone or we are stopping).
        if mesh.cancel.is_cancelled() {
            streams.abort_all();
        }
        while streams.join_next().await.is_some() {}
        Ok(())
    }
}

/// Serves one stream: a join or a sync of one store.
async fn serve_stream<C: NodeContext>(
    ctx: Arc<C>,
    config: NetConfig,
    peer: AuthorId,
    joined: Arc<AtomicBool>,
    mut tx: FrameSender,
    mut rx: FrameReceiver,
) {
    let first = match rx.recv().await {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "stream ended before its first message");
            return;
        }
    };
    let status = ctx.peer_status(peer).await;
    let refuse = |reason: String| {
        tracing::warn!(%peer, %reason, "refusing peer");
        ctx.peer_event(PeerEvent::Refused { peer, reason: reason.clone() });
        reason
    };
    match first {
        Msg::JoinRequest(req) => {
            if !status.is_some_and(MemberStatus::is_member) {
                let reason = refuse(format!("node {peer} is not invited to this mesh"));
                return tx.refuse(reason).await;
            }
            let Some(root) = ctx.root_store_id() else {
                return tx.refuse("this node has no mesh to join".into()).await;
            };
            tracing::info!(%peer, name = %req.name, "peer joins the mesh");
            joined.store(true, Ordering::SeqCst);
            let _ = tx.send(Msg::JoinResponse(proto::JoinResponse { root_store_id: root.as_bytes().to_vec() })).await;
            tx.finish().await;
        }
        Msg::SyncRequest(req) => {
            let store_id = match sync::requested_store(peer, &req) {
                Ok(s) => s,
                Err(e) => return tx.refuse(e.to_string()).await,
            };
            // An invited node may fetch the root store (to learn the mesh, then declare itself
            // active); any other sync needs an active member, or one that joined on this connection.
            let joining = status == Some(MemberStatus::Invited)
                && (joined.load(Ordering::SeqCst) || ctx.root_store_id() == Some(store_id));
            if status != Some(MemberStatus::Active) && !joining {
                let reason = refuse(format!("node {peer} is not an active member of this mesh ({status:?})"));
                return tx.refuse(reason).await;
            }
            let Some(store) = ctx.store(store_id).await else {
                return tx.refuse(format!("store {store_id} is not active on this node")).await;
            };
            match sync::respond(&store, peer, req, tx, rx, &config.sync).await {
                Ok(outcome) => {
                    tracing::debug!(%peer, store = %store_id, ?outcome, "served sync");
                    ctx.peer_event(PeerEvent::Synced { peer, store: store_id, outcome });
                }
                Err(e) => {
                    tracing::warn!(%peer, store = %store_id, error = %e, "sync with peer failed");
                    ctx.peer_event(PeerEvent::SyncFailed { peer, store: store_id, error: e.to_string() });
                }
            }
        }
        _ => tx.refuse("expected a join or sync request".into()).await,
    }
}

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
        let endpoint = endpoint::bind(identity, &config, lookup.clone(), alpns).await?;
        let broadcast = iroh_gossip::proto::PlumtreeConfig {
            graft_timeout_1: config.mesh.graft_timeout,
            graft_timeout_2: config.mesh.graft_timeout / 2,
            ..Default::default()
        };
        let gossip = Gossip::builder()
            .max_message_size(config.mesh.max_gossip_bytes)
            .broadcast_config(broadcast)
            .spawn(endpoint.clone());
        let mesh = Mesh::new(ctx, endpoint.clone(), lookup, gossip, config);
        let router = Router::builder(endpoint)
            .accept(SYNC_ALPN, SyncHandler { mesh: mesh.clone() })
            .accept(iroh_gossip::ALPN, GossipGate { mesh: mesh.clone() })
            .spawn();
        mesh.start();
        tracing::info!(node = %identity.author(), addrs = ?router.endpoint().bound_sockets(), "network up");
        Ok(LatticeServer { router, mesh })
    }

    pub fn node_id(&self) -> AuthorId {
        AuthorId(*self.router.endpoint().id().as_bytes())
    }

    pub fn endpoint(&self) -> &Endpoint {
        self.router.endpoint()
    }

    pub fn context(&self) -> &Arc<C> {
        &self.mesh.ctx
    }

    /// The addresses this node listens on.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.router.endpoint().bound_sockets()
    }

    /// This node as `NODE_ID@ADDR`.
    pub fn peer_addr(&self) -> PeerAddr {
        self.listen_addrs().into_iter().fold(PeerAddr::new(self.node_id()), PeerAddr::with_addr)
    }

    /// Remembers direct addresses for a peer (used by every later connect to it).
    pub fn add_peer_addr(&self, peer: &PeerAddr) {
        self.mesh.add_addr(peer);
    }

    /// The mesh's members (the node derives them from `/nodes/` in the root store). Gossip
    /// topics join new members; anti-entropy and gap filling choose among them.
    pub fn set_peers(&self, peers: Vec<PeerAddr>) {
        self.mesh.set_peers(peers);
    }

    /// Puts a store on the mesh: its gossip topic, gap filling, anti-entropy.
    pub fn open_store(&self, store: C::Store) {
        self.mesh.open_store(store);
    }

    /// Takes a store off the mesh (e.g. archived).
    pub fn close_store(&self, id: StoreId) {
        self.mesh.close_store(id);
    }

    /// Asks the scheduler for a sync of one store (or all) with a peer (or one it picks).
    pub fn request_sync(&self, store: Option<StoreId>, peer: Option<AuthorId>) {
        self.mesh.submit(store, peer, false);
    }

    /// Reachability per peer (for `peers`: last success, last failure, backoff).
    pub fn peer_health(&self) -> HashMap<AuthorId, PeerHealth> {
        self.mesh.health.lock().map(|h| h.clone()).unwrap_or_default()
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
        self.mesh.cancel.cancel();
        self.mesh.tracker.close();
        self.mesh.tracker.wait().await;
        if let Err(e) = self.mesh.gossip.shutdown().await {
            tracing::debug!(error = %e, "gossip shutdown");
        }
        if let Err(e) = self.router.shutdown().await {
            tracing::warn!(error = %e, "router shutdown");
        }
    }
}

/// An open connection to a peer on `lattice/sync/1`.
pub struct PeerConnection {
    conn: Connection,
    peer: AuthorId,
    config: NetConfig,
}

impl PeerConnection {
    pub(crate) fn new(conn: Connection, peer: AuthorId, config: NetConfig) -> Self {
        PeerConnection { conn, peer, config }
    }

    pub fn peer(&self) -> AuthorId {
        self.peer
    }

    async fn open(&self) -> Result<(FrameSender, FrameReceiver), NetError> {
        let (send, recv) =
            self.conn.open_bi().await.map_err(|e| NetError::Connection { peer: self.peer, reason: e.to_string() })?;
        Ok(framing::split(send, recv, self.peer, self.config.sync.idle_timeout))
    }

    /// Asks to join the peer's mesh; returns its root store id.
    pub async fn join(&self, name: &str, hostname: &str) -> Result<StoreId, NetError> {
        let (mut tx, mut rx) = self.open().await?;
        tx.send(Msg::JoinRequest(proto::JoinRequest { name: name.into(), hostname: hostname.into() })).await?;
        let reply = rx.expect().await?;
        tx.finish().await;
        match reply {
            Msg::JoinResponse(r) => StoreId::from_bytes(&r.root_store_id)
                .map_err(|e| NetError::Protocol { peer: self.peer, reason: format!("bad root store id: {e}") }),
            _ => Err(NetError::Protocol { peer: self.peer, reason: "expected a join response".into() }),
        }
    }

    /// One bidirectional sync session for `store`.
    pub async fn sync<S: SyncStore>(
        &self,
        store: &S,
        progress: Option<watch::Sender<SyncProgress>>,
    ) -> Result<SyncOutcome, NetError> {
        let (tx, rx) = self.open().await?;
        sync::initiate(store, self.peer, tx, rx, &self.config.sync, progress).await
    }

    pub fn close(&self) {
        self.conn.close(0u32.into(), b"done");
    }

    /// Waits (bounded) until the peer has seen our close.
    pub async fn closed(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.conn.closed()).await;
    }
}
