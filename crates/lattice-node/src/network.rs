//! The node on the network: a [`Network`] binds the node's [`LatticeServer`], keeps the mesh's
//! member list in step with `/nodes/` of the root store, materialises stores declared in
//! `/stores/`, and runs `join` and `sync` for the CLI.
//!
//! The network layer sees the node only through [`NodeCtx`] (a `NodeContext`): statuses from the
//! root store, active stores as `SyncStore`s, and peer events recorded in `meta.db`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lattice_core::{AuthorId, MemberStatus, StoreId};
use lattice_net::{LatticeServer, NetConfig, NetError, NodeContext, PeerAddr, PeerEvent, SyncOutcome, SyncProgress};
use lattice_store::{KvStore, WatchEvent};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{NODES_PREFIX, NodeRecord, STORES_PREFIX};
use crate::error::NodeError;
use crate::meta::{LocalState, MeshBinding};
use crate::node::{Node, hostname};
use crate::own_log::NodeStore;
use crate::time::{now_ms, rfc3339};

/// How long one peer may take for a whole `sync` before it is skipped.
const PEER_SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait, after [`Network::stop`], for the endpoint's fixed port to be free again.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`Network::stop`] checks whether the port is free.
const RELEASE_POLL: Duration = Duration::from_millis(10);

/// How often a store whose own log is behind a peer's copy asks again for a catch-up sync.
const CATCH_UP_RETRY: Duration = Duration::from_secs(2);

/// What the network layer may ask of the node (its [`NodeContext`]).
pub struct NodeCtx {
    node: Arc<Node>,
}

impl NodeContext for NodeCtx {
    type Store = NodeStore;

    fn root_store_id(&self) -> Option<StoreId> {
        Some(self.node.root_store().id)
    }

    fn mesh_binding(&self) -> Option<(AuthorId, [u8; 16])> {
        self.node.binding().map(|b| (b.genesis, b.nonce))
    }

    async fn peer_status(&self, peer: AuthorId) -> Option<MemberStatus> {
        self.node.node_status(peer).await.ok().flatten()
    }

    async fn store(&self, id: StoreId) -> Option<NodeStore> {
        let active = self.node.active_store_ids().await.ok()?;
        if !active.contains(&id) {
            return None;
        }
        self.node.sync_store(id).await.ok()
    }

    fn peer_event(&self, event: PeerEvent) {
        let now = rfc3339(now_ms());
        let meta = self.node.meta();
        let result = match event {
            PeerEvent::Connected { peer, addr } => meta.update_peer(peer, |r| {
                r.last_seen = Some(now);
                if let Some(a) = addr {
                    r.remember_addr(a.to_string());
                }
            }),
            PeerEvent::Synced { peer, store, outcome } => meta.update_peer(peer, |r| {
                r.last_seen = Some(now.clone());
                r.last_sync = Some(format!("{now} ok ({store}: {} received, {} sent)", outcome.received, outcome.sent));
                r.last_sync_ok = Some(true);
            }),
            PeerEvent::SyncFailed { peer, store, error } => meta.update_peer(peer, |r| {
                r.last_sync = Some(format!("{now} failed ({store}: {error})"));
                r.last_sync_ok = Some(false);
            }),
            PeerEvent::Refused { .. } => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record peer activity in meta.db");
        }
    }
}

/// The result of syncing one store with a peer (the error as text).
pub type StoreSync = (StoreId, Result<SyncOutcome, String>);

/// The result of syncing with one peer: per store, or why the peer could not be reached.
#[derive(Debug)]
pub struct PeerSync {
    /// The peer.
    pub peer: AuthorId,
    /// Per store, or why the peer could not be reached.
    pub result: Result<Vec<StoreSync>, String>,
}

/// The node and its server: what the network's background task needs too (cheap to clone).
#[derive(Clone)]
struct Presence {
    node: Arc<Node>,
    server: Arc<LatticeServer<NodeCtx>>,
    /// Nodes this presence has expelled (status `removed`), so a re-invite readmits them once.
    expelled: Arc<std::sync::Mutex<HashSet<AuthorId>>>,
    /// Whether the mesh has members besides this node: only then are stores checked for an
    /// own log behind a peer's copy (a lone node cannot know).
    has_peers: Arc<AtomicBool>,
    /// The stores this presence has put on the mesh (each is armed, or not, once: as it opens).
    opened: Arc<std::sync::Mutex<HashSet<StoreId>>>,
    /// Serialises publishing this node's record (the start task and `sync` both do it).
    publishing: Arc<tokio::sync::Mutex<()>>,
}

impl Presence {
    fn advertised_addrs(&self) -> Vec<String> {
        self.server.listen_addrs().iter().filter(|a| !a.ip().is_unspecified()).map(|a| a.to_string()).collect()
    }

    /// The members (active or invited) among `records`, with every address known for them:
    /// announced in the root store, or remembered locally in `meta.db`.
    fn members(&self, records: &BTreeMap<AuthorId, NodeRecord>) -> Result<Vec<PeerAddr>, NodeError> {
        let me = self.node.node_id();
        let mut out = Vec::new();
        for (&id, record) in records {
            if id == me || !record.status.is_some_and(MemberStatus::is_member) {
                continue;
            }
            let mut addrs: Vec<String> = self.node.meta().peer(id)?.addrs;
            addrs.extend(record.info.iter().flat_map(|i| i.addrs.iter().cloned()));
            let mut peer = PeerAddr::new(id);
            for a in addrs {
                if let Ok(a) = a.parse::<SocketAddr>()
                    && !peer.addrs.contains(&a)
                {
                    peer.addrs.push(a);
                }
            }
            out.push(peer);
        }
        Ok(out)
    }

    /// Gives the mesh the current members, expels every node whose status became `removed`
    /// (however the removal arrived: every connection to it closes, it leaves every topic) and
    /// readmits one that was invited again.
    async fn refresh_peers(&self) -> Result<(), NodeError> {
        let records = self.node.node_records().await?;
        {
            let mut expelled = self.expelled.lock().map_err(|_| NodeError::Corrupt("expelled set lock".into()))?;
            for (id, record) in &records {
                match record.status {
                    Some(MemberStatus::Removed) if expelled.insert(*id) => {
                        tracing::info!(peer = %id, "expelling a removed node");
                        self.server.expel(*id);
                    }
                    Some(status) if status.is_member() && expelled.remove(id) => self.server.readmit(*id),
                    _ => {}
                }
            }
        }
        let members = self.members(&records)?;
        self.has_peers.store(!members.is_empty(), Ordering::Relaxed);
        self.server.set_peers(members);
        Ok(())
    }

    /// Every store, the root store too, applies only the entries of members (the effective
    /// control plane's `invited`/`active` nodes and the genesis admin) and of removed nodes up to
    /// their cut-off; strangers' entries wait until admitted or the orphan TTL drops them
    /// (docs/design.md, Control plane).
    async fn admit_members(&self) -> Result<(), NodeError> {
        self.node.admit_members().await
    }

    /// Puts every active store on the mesh (and takes archived ones off). Run after
    /// [`admit_members`](Self::admit_members), so a store syncs only once it knows the members.
    /// A store put on the mesh while the node has peers is armed first: its local writes wait
    /// for the store's first sync (which opening it starts) to say how much of this node's own
    /// log the peer holds (`own_log`).
    async fn refresh_stores(&self) -> Result<(), NodeError> {
        for id in self.node.active_store_ids().await? {
            let new = self.opened.lock().map_err(|_| NodeError::Corrupt("opened set lock".into()))?.insert(id);
            if new && self.has_peers.load(Ordering::Relaxed) {
                self.node.own_logs().arm(id);
            }
            self.server.open_store(self.node.sync_store(id).await?);
        }
        for (id, state) in self.node.meta().local_stores()? {
            if state == LocalState::Archived {
                if let Ok(mut opened) = self.opened.lock() {
                    opened.remove(&id);
                }
                self.server.close_store(id);
            }
        }
        Ok(())
    }

    /// Publishes this node's addresses in its `/nodes/{self}/info` (only once it is a member).
    /// Like every local write it waits for the root store's own-log check. True if it wrote.
    async fn publish_addrs(&self) -> Result<bool, NodeError> {
        let _one = self.publishing.lock().await;
        let node = &self.node;
        if node.node_status(node.node_id()).await? == Some(MemberStatus::Active) {
            return node.publish_self(None, self.advertised_addrs()).await;
        }
        Ok(false)
    }

    /// Syncs the root store with every member, each bounded by [`PEER_SYNC_TIMEOUT`]: a new
    /// address of ours must not wait for anti-entropy (gossip on the root topic may not be up).
    async fn push_root(&self) -> Result<(), NodeError> {
        let root = self.node.sync_store(self.node.root_store().id).await?;
        let members = self.members(&self.node.node_records().await?)?;
        let runs = members
            .iter()
            .map(|m| tokio::time::timeout(PEER_SYNC_TIMEOUT, self.server.sync_stores(m, vec![root.clone()], None)));
        futures::future::join_all(runs).await;
        Ok(())
    }

    /// Publishes this node's addresses once its own log in the root store is known not to be
    /// behind a peer's copy (retrying while it catches up), then pushes them to the members.
    async fn publish_when_ready(self, cancel: CancellationToken) {
        loop {
            let error = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.publish_addrs() => match r {
                    Ok(false) => return,
                    Ok(true) => {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            r = self.push_root() => if let Err(e) = r {
                                tracing::warn!(error = %e, "cannot push this node's addresses to the members");
                            },
                        }
                        return;
                    }
                    Err(e) => e,
                },
            };
            if !matches!(error, NodeError::Behind { .. }) {
                tracing::warn!(error = %error, "cannot publish this node's addresses");
                return;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(CATCH_UP_RETRY) => {}
            }
        }
    }

    /// Asks for a catch-up sync of every store whose own log is behind a peer's copy (or not
    /// yet confirmed), when one turns so and every [`CATCH_UP_RETRY`] while one is, until
    /// cancelled.
    async fn catch_up(self, cancel: CancellationToken) {
        let own = self.node.own_logs().clone();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = own.wanted() => {}
                _ = tokio::time::sleep(CATCH_UP_RETRY) => {}
            }
            for id in own.pending() {
                self.server.request_sync(id);
            }
        }
    }

    /// Follows `/nodes/` and `/stores/` of the root store until cancelled: members and stores
    /// follow the mesh.
    async fn follow_root(self, mut events: mpsc::Receiver<WatchEvent>, cancel: CancellationToken) {
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                e = events.recv() => match e { Some(e) => e, None => return },
            };
            let mut nodes = event.key().starts_with(NODES_PREFIX.as_bytes());
            let mut stores = !nodes;
            // Fold a burst of changes (a sync brings many) into one refresh.
            while let Ok(e) = events.try_recv() {
                nodes |= e.key().starts_with(NODES_PREFIX.as_bytes());
                stores |= e.key().starts_with(STORES_PREFIX.as_bytes());
            }
            if nodes && let Err(e) = self.refresh_peers().await {
                tracing::warn!(error = %e, "cannot refresh the member list");
            }
            if stores && let Err(e) = self.node.reconcile().await {
                tracing::warn!(error = %e, "cannot materialise declared stores");
            }
            // New members, or new stores that must learn who the members are.
            if let Err(e) = self.admit_members().await {
                tracing::warn!(error = %e, "cannot update the authors each store admits");
            }
            if stores && let Err(e) = self.refresh_stores().await {
                tracing::warn!(error = %e, "cannot put stores on the mesh");
            }
        }
    }
}

/// A node's network presence. Stop it with [`shutdown`](Self::shutdown) before the node.
pub struct Network {
    presence: Presence,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// The address asked for (`--bind`): a fixed port must be free again after [`Self::stop`].
    bind: SocketAddr,
}

impl Network {
    /// Binds the endpoint, publishes this node's addresses, joins the mesh with every active
    /// store, and follows changes to `/nodes/` and `/stores/`.
    pub async fn start(node: Arc<Node>, config: NetConfig) -> Result<Network, NodeError> {
        let ctx = Arc::new(NodeCtx { node: node.clone() });
        let identity = node.identity().clone();
        let bind = config.bind;
        let server = Arc::new(LatticeServer::bind(ctx, &identity, config).await?);
        let presence = Presence {
            node,
            server,
            expelled: Default::default(),
            has_peers: Default::default(),
            opened: Default::default(),
            publishing: Default::default(),
        };
        let network = Network { presence, cancel: CancellationToken::new(), tasks: TaskTracker::new(), bind };
        network.presence.refresh_peers().await?;
        network.presence.admit_members().await?;
        // Each store's first sync (the mesh runs one as it opens the store) says how much of
        // our own log the peer holds, and catches up if we are behind.
        network.presence.refresh_stores().await?;
        let node = &network.presence.node;
        let followed = format!("^({NODES_PREFIX}|{STORES_PREFIX})");
        let (_, events) = node.store_handle(node.root_store().id).await?.watch(&followed).await?;
        let (presence, cancel) = (&network.presence, &network.cancel);
        network.tasks.spawn(presence.clone().follow_root(events, cancel.clone()));
        network.tasks.spawn(presence.clone().catch_up(cancel.clone()));
        // Our addresses go into the root store: only once our own log there is not behind.
        network.tasks.spawn(presence.clone().publish_when_ready(cancel.clone()));
        Ok(network)
    }

    /// The addresses the endpoint is bound to.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.presence.server.listen_addrs()
    }

    /// The server (peer health, connections).
    pub fn server(&self) -> &LatticeServer<NodeCtx> {
        &self.presence.server
    }

    /// One round of sync of every active store, with one peer or with every member at once
    /// (each bounded by [`PEER_SYNC_TIMEOUT`], so an offline peer is skipped, not waited for).
    pub async fn sync(
        &self,
        peer: Option<AuthorId>,
        progress: Option<watch::Sender<SyncProgress>>,
    ) -> Result<Vec<PeerSync>, NodeError> {
        let members = self.presence.members(&self.presence.node.node_records().await?)?;
        let targets: Vec<PeerAddr> = match peer {
            Some(p) => vec![members.iter().find(|m| m.id == p).cloned().ok_or_else(|| {
                NodeError::NotFound(format!("node {p} is not a member of this mesh (see `lattice peers`)"))
            })?],
            None => members,
        };
        let node = &self.presence.node;
        // Announce our current addresses first, so this round carries them (unless our own log
        // in the root store is behind: then this round is its catch-up, and they follow later).
        if let Err(e) = self.presence.publish_addrs().await {
            tracing::info!(error = %e, "syncing before this node's addresses are published");
        }
        let mut stores = Vec::new();
        for id in node.active_store_ids().await? {
            stores.push(node.sync_store(id).await?);
        }
        let runs = targets.into_iter().map(|target| {
            let (stores, progress) = (stores.clone(), progress.clone());
            async move {
                let run = self.presence.server.sync_stores(&target, stores, progress);
                let result = match tokio::time::timeout(PEER_SYNC_TIMEOUT, run).await {
                    Ok(Ok(stores)) => {
                        Ok(stores.into_iter().map(|(id, r)| (id, r.map_err(|e| e.to_string()))).collect())
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("timed out after {} s", PEER_SYNC_TIMEOUT.as_secs())),
                };
                PeerSync { peer: target.id, result }
            }
        });
        let results = futures::future::join_all(runs).await;
        // Declarations that arrived with the root store become local stores right away.
        node.reconcile().await?;
        Ok(results)
    }

    /// Stops following the root store, then shuts the server down (mesh tasks, router, endpoint).
    /// The UDP sockets stay bound until the network is dropped: to bind the same port again,
    /// use [`stop`](Self::stop).
    pub async fn shutdown(&self) {
        let started = std::time::Instant::now();
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        tracing::debug!(elapsed = ?started.elapsed(), "network tasks stopped");
        self.presence.server.shutdown().await;
        tracing::debug!(elapsed = ?started.elapsed(), "network server stopped");
        // Nobody can answer for our own log any more: writes go back to unchecked.
        self.presence.node.own_logs().disarm_all();
    }

    /// [`shutdown`](Self::shutdown), waiting at most `grace`; false if it gave up. The network is
    /// then never dropped (dropping an endpoint in the middle of its close makes iroh abort it
    /// and log an error): its sockets stay bound until the process exits. For a process that is
    /// about to exit, or a network that will not need its port again: iroh's close waits for
    /// every peer to acknowledge, which a stopped peer never does, and a connection still in its
    /// handshake holds it for 3 s even with peers that answer.
    pub async fn shutdown_within(self: Arc<Self>, grace: Duration) -> bool {
        if tokio::time::timeout(grace, self.shutdown()).await.is_ok() {
            return true;
        }
        std::mem::forget(self);
        false
    }

    /// [`shutdown`](Self::shutdown), then drops this reference and, if the endpoint was bound to
    /// a fixed port, waits (up to [`RELEASE_TIMEOUT`]) until that port can be bound again.
    ///
    /// iroh closes an endpoint's UDP sockets only once every clone of the endpoint is dropped,
    /// and then on a blocking thread, after `Endpoint::close` has returned: a network started
    /// right after a plain shutdown on the same port found it still bound about half the time.
    pub async fn stop(self: Arc<Self>) {
        let fixed: Vec<SocketAddr> = match self.bind.port() {
            0 => Vec::new(),
            _ => self.listen_addrs(),
        };
        self.shutdown().await;
        drop(self);
        for addr in fixed {
            if !released(addr).await {
                tracing::warn!(%addr, "the network's port is still bound after its shutdown");
            }
        }
    }
}

/// Waits until `addr` (a UDP address this process had bound) can be bound again; false if it
/// still cannot after [`RELEASE_TIMEOUT`].
async fn released(addr: SocketAddr) -> bool {
    let deadline = tokio::time::Instant::now() + RELEASE_TIMEOUT;
    loop {
        match std::net::UdpSocket::bind(addr) {
            // Closed at once: the probe does not hold the port.
            Ok(_probe) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(RELEASE_POLL).await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return false,
            // Any other refusal is not ours to wait for; the next bind reports it.
            Err(_) => return true,
        }
    }
}

/// Waits (briefly) until `node` has no other owner: tasks of a network that was just shut down
/// drop their references as they finish.
async fn sole_owner(mut node: Arc<Node>) -> Result<Node, NodeError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Arc::try_unwrap(node) {
            Ok(node) => return Ok(node),
            Err(shared) if tokio::time::Instant::now() < deadline => {
                node = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => return Err(NodeError::Invalid("the node is busy (commands are running); retry the join".into())),
        }
    }
}

/// Joins the mesh of `peer` from a fresh node (one whose root store holds only its own entries):
/// asks for the mesh's root store id, switches this node to it, fetches the root store,
/// declares itself active, then fetches every declared store. Returns the reopened node.
pub async fn join(
    node: Arc<Node>,
    peer: PeerAddr,
    name: Option<String>,
    config: NetConfig,
    progress: Option<watch::Sender<SyncProgress>>,
) -> Result<Arc<Node>, NodeError> {
    if peer.id == node.node_id() {
        return Err(NodeError::Invalid("a node cannot join itself".into()));
    }
    // Without --name, the name given at `init` (its record is in the root store being left).
    let name = match name {
        Some(name) => Some(name),
        None => node.node_records().await?.remove(&node.node_id()).and_then(|r| r.info).map(|i| i.name),
    };
    // 1. Ask for the root store id (a short-lived endpoint; the node is still on its own mesh).
    let network = Network::start(node.clone(), config.clone()).await?;
    let asked = async {
        let conn = network.server().connect(&peer).await?;
        let name_text = name.clone().unwrap_or_else(hostname);
        let joined = conn.join(&name_text, &hostname()).await?;
        conn.close();
        Ok::<_, NetError>(joined)
    }
    .await;
    Arc::new(network).stop().await;
    let joined = asked?;
    let Some((genesis, nonce)) = joined.binding else {
        return Err(NodeError::Invalid(format!(
            "{} runs a mesh whose root id is not bound to its genesis admin (made by an older lattice); \
             it cannot be joined safely",
            peer.id
        )));
    };
    let binding = MeshBinding { genesis, nonce };
    let root = joined.root;
    let node = if root == node.root_store().id {
        node
    } else {
        if !node.is_fresh().await? {
            return Err(NodeError::Exists(format!(
                "this node already belongs to mesh {} with data of other nodes; join from a fresh data dir",
                node.root_store().id
            )));
        }
        let node = sole_owner(node).await?;
        let (dir, lock) = node.switch_root(binding).await?;
        Arc::new(Node::open(dir, lock).await?)
    };
    node.meta().update_peer(peer.id, |r| peer.addrs.iter().for_each(|a| r.remember_addr(a.to_string())))?;
    // 2. Fetch the root store, declare ourselves, push that, then fetch every declared store.
    let network = Network::start(node.clone(), config).await?;
    let result = async {
        let root_handle = node.sync_store(root).await?;
        let conn = network.server().connect(&peer).await?;
        conn.sync(&root_handle, progress.clone()).await?;
        node.publish_self(name, network.presence.advertised_addrs()).await?;
        conn.sync(&root_handle, None).await?;
        conn.close();
        node.reconcile().await?;
        node.pick_default_store().await?;
        for r in network.sync(Some(peer.id), progress).await? {
            let failure = match r.result {
                Err(e) => Some(e),
                Ok(stores) => stores.into_iter().find_map(|(id, s)| s.err().map(|e| format!("store {id}: {e}"))),
            };
            if let Some(e) = failure {
                return Err(NodeError::Invalid(format!("joined, but syncing the stores failed: {e}")));
            }
        }
        Ok::<_, NodeError>(())
    }
    .await;
    Arc::new(network).stop().await;
    result?;
    Ok(node)
}
