//! The self-healing mesh: one gossip topic per active store, and a sync scheduler (gap filling,
//! reconnects, anti-entropy) with per-peer backoff. Decisions come from [`crate::policy`] and
//! [`crate::admission`]; this module only moves bytes and owns tasks.
//!
//! Every task is spawned on the mesh's `TaskTracker` and watches its `CancellationToken`;
//! [`Mesh::shutdown`] cancels and waits for the tracker, then stops gossip.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use iroh::address_lookup::memory::MemoryLookup;
use iroh::{Endpoint, EndpointId};
use iroh_gossip::Gossip;
use lattice_core::{AuthorId, StoreId};
use lattice_store::SyncStore;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, Purpose};
use crate::connection::{PeerConnection, SYNC_ALPN};
use crate::context::{NodeContext, PeerEvent};
use crate::endpoint::{Discovery, NetConfig, PeerAddr};
use crate::error::NetError;
use crate::gate::Gate;
use crate::policy::{self, PeerHealth};
use crate::sync::{SyncOutcome, SyncProgress};

mod gossip;
use gossip::TopicInputs;

fn endpoint_id(a: AuthorId) -> Option<EndpointId> {
    EndpointId::from_bytes(&a.0).ok()
}

/// A request to sync: one store or all, with peers to try in order (empty: the mesh picks).
#[derive(Clone, Debug)]
struct Job {
    store: Option<StoreId>,
    prefer: Option<AuthorId>,
    /// Keep asking further peers while the store still holds orphans (a gap to fill).
    fill_gap: bool,
}

/// The outcome of one store's session with a peer.
pub type StoreSync = (StoreId, Result<SyncOutcome, NetError>);

/// Jobs with the same key are not run twice at once.
type JobKey = (Option<StoreId>, Option<AuthorId>);

/// The mesh of one node: its endpoint and gossip, the peers and stores on the mesh, the
/// scheduler's queue, and the tasks it owns.
pub(crate) struct Mesh<C: NodeContext> {
    ctx: Arc<C>,
    endpoint: Endpoint,
    lookup: MemoryLookup,
    gossip: Gossip,
    gate: Arc<Gate<C>>,
    config: NetConfig,
    /// The members as the node last gave them (expelled ones are filtered out where used).
    peers: watch::Sender<Vec<PeerAddr>>,
    /// Each open store's gossip neighbours, as iroh-gossip last reported them.
    neighbours: Mutex<HashMap<StoreId, Vec<AuthorId>>>,
    health: Mutex<HashMap<AuthorId, PeerHealth>>,
    stores: Mutex<HashMap<StoreId, (C::Store, CancellationToken)>>,
    jobs: mpsc::UnboundedSender<Job>,
    jobs_rx: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    cancel: CancellationToken,
    /// Cancelled when shutdown begins, before gossip stops (see [`Self::closing`]).
    closing: CancellationToken,
    tracker: TaskTracker,
}

impl<C: NodeContext> Mesh<C> {
    /// The mesh on `endpoint` (bound behind `gate`), with its gossip instance.
    pub(crate) fn new(
        ctx: Arc<C>,
        gate: Arc<Gate<C>>,
        endpoint: Endpoint,
        lookup: MemoryLookup,
        config: NetConfig,
    ) -> Arc<Self> {
        let broadcast = iroh_gossip::proto::PlumtreeConfig {
            graft_timeout_1: config.mesh.graft_timeout,
            graft_timeout_2: config.mesh.graft_timeout / 2,
            ..Default::default()
        };
        let gossip = Gossip::builder()
            .max_message_size(config.mesh.max_gossip_bytes)
            .broadcast_config(broadcast)
            .spawn(endpoint.clone());
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        Arc::new(Mesh {
            ctx,
            endpoint,
            lookup,
            gossip,
            gate,
            config,
            peers: watch::Sender::new(Vec::new()),
            neighbours: Mutex::default(),
            health: Mutex::new(HashMap::new()),
            stores: Mutex::new(HashMap::new()),
            jobs,
            jobs_rx: Mutex::new(Some(jobs_rx)),
            cancel: CancellationToken::new(),
            closing: CancellationToken::new(),
            tracker: TaskTracker::new(),
        })
    }

    /// Starts the scheduler and the anti-entropy timer.
    pub(crate) fn start(self: &Arc<Self>) {
        if let Some(rx) = self.jobs_rx.lock().ok().and_then(|mut r| r.take()) {
            let me = self.clone();
            self.tracker.spawn(async move { me.schedule(rx).await });
        }
        let me = self.clone();
        self.tracker.spawn(async move { me.anti_entropy().await });
    }

    /// Shutdown has begun: gossip is stopping under the topics the mesh tasks hold, which then
    /// end quietly instead of rejoining (the server stops gossip before the tasks, see
    /// `LatticeServer::shutdown`).
    pub(crate) fn closing(&self) {
        self.closing.cancel();
    }

    /// Stops every mesh task and waits for them. Gossip itself is one of the router's protocols:
    /// the router shuts it down first (shutting it down here too made the router's second
    /// attempt warn `ActorDropped` on stderr).
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// The gossip instance, to route its ALPN to.
    pub(crate) fn gossip(&self) -> &Gossip {
        &self.gossip
    }

    pub(crate) fn ctx(&self) -> &Arc<C> {
        &self.ctx
    }

    pub(crate) fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Cancelled when the mesh shuts down.
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Asks admission whether `peer` may do `purpose`, given its current status and the faults.
    pub(crate) async fn admit(&self, peer: AuthorId, purpose: Purpose) -> Admission {
        self.gate.admit(peer, purpose).await
    }

    /// Was `peer` an active member at its last check (see [`Gate::known_active`])?
    pub(crate) fn known_active(&self, peer: AuthorId) -> bool {
        self.gate.known_active(peer)
    }

    /// Denies `peer` and closes every connection with it (see [`Gate::expel`]). Gossip then
    /// sees the neighbour go down on every topic, and its redials fail at `before_connect`.
    pub(crate) fn expel(&self, peer: AuthorId) {
        self.gate.expel(peer);
    }

    /// Undoes [`Mesh::expel`], and reconnects gossip with the peer: after a refused dial,
    /// iroh-gossip keeps a peer pending and never dials it again, so it is handed a fresh
    /// connection; then every topic joins the peer again.
    pub(crate) fn readmit(self: &Arc<Self>, peer: AuthorId) {
        self.gate.readmit(peer);
        let me = self.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = me.cancel.cancelled() => {}
                _ = me.redial_gossip(peer) => {}
            }
        });
    }

    /// Open connections with `peer` (sync and gossip, either direction).
    pub(crate) fn connections(&self, peer: AuthorId) -> usize {
        self.gate.connections(peer)
    }

    /// The gossip neighbours of `store`'s topic.
    pub(crate) fn gossip_neighbours(&self, store: StoreId) -> Vec<AuthorId> {
        self.neighbours.lock().ok().and_then(|n| n.get(&store).cloned()).unwrap_or_default()
    }

    /// Reachability per peer (last success, last failure, backoff).
    pub(crate) fn peer_health(&self) -> HashMap<AuthorId, PeerHealth> {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn me(&self) -> AuthorId {
        AuthorId(*self.endpoint.id().as_bytes())
    }

    /// The members to gossip and sync with: never this node, never an expelled peer.
    fn active_peers(&self) -> Vec<AuthorId> {
        let me = self.me();
        self.peers.borrow().iter().map(|p| p.id).filter(|p| *p != me && !self.gate.is_denied(*p)).collect()
    }

    /// Takes the node's member list, and checks the open connections against the statuses
    /// behind it: the list changes when `/nodes/` does, so a peer removed by any path loses its
    /// connections here even if nobody expelled it.
    pub(crate) fn set_peers(&self, peers: Vec<PeerAddr>) {
        for p in &peers {
            self.add_addr(p);
        }
        self.peers.send_replace(peers);
        let (gate, cancel) = (self.gate.clone(), self.cancel.clone());
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = gate.recheck() => {}
            }
        });
    }

    fn add_addr(&self, peer: &PeerAddr) {
        if !peer.addrs.is_empty()
            && let Ok(addr) = peer.to_endpoint_addr()
        {
            self.lookup.add_endpoint_info(addr);
        }
    }

    pub(crate) fn heard_from(&self, peer: AuthorId) {
        if let Ok(mut h) = self.health.lock() {
            h.entry(peer).or_default().last_heard = Some(Instant::now());
        }
    }

    fn submit(&self, store: Option<StoreId>, prefer: Option<AuthorId>, fill_gap: bool) {
        let _ = self.jobs.send(Job { store, prefer, fill_gap });
    }

    /// Asks for a sync of `store` with the members, one after another until one succeeds (and
    /// on while the store still holds orphans).
    pub(crate) fn request_sync(&self, store: StoreId) {
        self.submit(Some(store), None, true);
    }

    pub(crate) async fn connect(&self, peer: &PeerAddr) -> Result<PeerConnection, NetError> {
        if self.config.faults.blocks(peer.id) {
            return Err(NetError::Connect { peer: peer.id, reason: "partitioned (fault injection)".into() });
        }
        self.add_addr(peer);
        let key = endpoint_id(peer.id)
            .ok_or_else(|| NetError::BadAddress { text: peer.id.to_hex(), reason: "not a public key".into() })?;
        let known = !peer.addrs.is_empty() || self.lookup.get_endpoint_info(key).is_some();
        if !known && self.config.discovery == Discovery::None {
            return Err(NetError::NoAddress(peer.id));
        }
        let addr = peer.to_endpoint_addr()?;
        let timeout = self.config.connect_timeout;
        let connecting = self.endpoint.connect(addr, SYNC_ALPN);
        let conn = tokio::select! {
            _ = self.cancel.cancelled() => return Err(NetError::Shutdown),
            r = tokio::time::timeout(timeout, connecting) => r
                .map_err(|_| NetError::Timeout { peer: peer.id, what: "connecting", secs: timeout.as_secs() })?
                .map_err(|e| NetError::Connect { peer: peer.id, reason: e.to_string() })?,
        };
        self.heard_from(peer.id);
        self.ctx.peer_event(PeerEvent::Connected { peer: peer.id, addr: peer.addrs.first().copied() });
        // The handshake just checked the peer: an active member's replies are not capped.
        let member = self.gate.known_active(peer.id);
        Ok(PeerConnection::new(conn, peer.id, self.config.clone(), member))
    }

    // ---------- stores and their gossip topics ----------

    pub(crate) fn open_store(self: &Arc<Self>, store: C::Store) {
        let id = store.store_id();
        let cancel = self.cancel.child_token();
        {
            let Ok(mut stores) = self.stores.lock() else { return };
            if stores.contains_key(&id) {
                return;
            }
            stores.insert(id, (store.clone(), cancel.clone()));
        }
        // Subscribe before returning, so no commit made after `open_store` is missed.
        let events = TopicInputs { commits: store.subscribe_commits(), gaps: store.subscribe_gaps() };
        let me = self.clone();
        self.tracker.spawn(async move { me.run_topic(store, events, cancel).await });
        self.submit(Some(id), None, false);
    }

    pub(crate) fn close_store(&self, id: StoreId) {
        if let Ok(mut stores) = self.stores.lock()
            && let Some((_, cancel)) = stores.remove(&id)
        {
            cancel.cancel();
        }
    }

    fn open_stores(&self) -> Vec<C::Store> {
        self.stores.lock().map(|s| s.values().map(|(s, _)| s.clone()).collect()).unwrap_or_default()
    }

    fn store(&self, id: StoreId) -> Option<C::Store> {
        self.stores.lock().ok()?.get(&id).map(|(s, _)| s.clone())
    }

    // ---------- the sync scheduler ----------

    async fn schedule(self: Arc<Self>, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let running: Arc<Mutex<HashSet<JobKey>>> = Arc::default();
        let limit = Arc::new(Semaphore::new(self.config.mesh.max_concurrent_syncs.max(1)));
        loop {
            let job = tokio::select! {
                _ = self.cancel.cancelled() => return,
                j = jobs.recv() => match j { Some(j) => j, None => return },
            };
            let key = (job.store, job.prefer);
            // A job identical to one already running adds nothing: skip it.
            if !running.lock().map(|mut r| r.insert(key)).unwrap_or(false) {
                continue;
            }
            let me = self.clone();
            let running = running.clone();
            let limit = limit.clone();
            self.tracker.spawn(async move {
                let Ok(_permit) = limit.acquire().await else { return };
                tokio::select! {
                    _ = me.cancel.cancelled() => {}
                    _ = me.run_job(job) => {}
                }
                if let Ok(mut r) = running.lock() {
                    r.remove(&key);
                }
            });
        }
    }

    async fn run_job(&self, job: Job) {
        let peers = self.active_peers();
        let order = {
            let health = self.peer_health();
            let prefer = job.prefer.filter(|p| peers.contains(p));
            let mut order = policy::gap_fill_order(prefer, &peers, &health, Instant::now(), rand::random());
            if !job.fill_gap {
                order.truncate(1);
            }
            order
        };
        let stores: Vec<C::Store> = match job.store {
            Some(id) => self.store(id).into_iter().collect(),
            None => self.open_stores(),
        };
        if stores.is_empty() {
            return;
        }
        for peer in order {
            if let Admission::Refuse(_) = self.admit(peer, Purpose::ScheduleSync).await {
                continue;
            }
            let ok = self.sync_peer(peer, &stores).await;
            if ok && !(job.fill_gap && self.has_orphans(&stores).await) {
                return;
            }
        }
    }

    async fn has_orphans(&self, stores: &[C::Store]) -> bool {
        for s in stores {
            if s.orphan_count().await.unwrap_or(0) > 0 {
                return true;
            }
        }
        false
    }

    /// Syncs `stores` with one peer over one connection, all sessions at once, and reports each
    /// store's outcome as a peer event. Fails only if the peer cannot be reached.
    pub(crate) async fn sync_stores(
        &self,
        peer: &PeerAddr,
        stores: &[C::Store],
        progress: Option<watch::Sender<SyncProgress>>,
    ) -> Result<Vec<StoreSync>, NetError> {
        let conn = self.connect(peer).await?;
        let runs = stores.iter().map(|s| async { (s.store_id(), conn.sync(s, progress.clone()).await) });
        let results = futures::future::join_all(runs).await;
        conn.close();
        for (store, result) in &results {
            let (peer, store) = (peer.id, *store);
            match result {
                Ok(outcome) => self.ctx.peer_event(PeerEvent::Synced { peer, store, outcome: *outcome }),
                Err(e) => self.ctx.peer_event(PeerEvent::SyncFailed { peer, store, error: e.to_string() }),
            }
        }
        Ok(results)
    }

    /// Syncs `stores` with one peer and records the outcome in its health. True on success.
    async fn sync_peer(&self, peer: AuthorId, stores: &[C::Store]) -> bool {
        let addr = self.peers.borrow().iter().find(|p| p.id == peer).cloned().unwrap_or_else(|| PeerAddr::new(peer));
        let error = match self.sync_stores(&addr, stores, None).await {
            Ok(results) => results.into_iter().find_map(|(_, r)| r.err()).map(|e| e.to_string()),
            Err(e) => {
                for s in stores {
                    self.ctx.peer_event(PeerEvent::SyncFailed { peer, store: s.store_id(), error: e.to_string() });
                }
                Some(e.to_string())
            }
        };
        let now = Instant::now();
        let Ok(mut health) = self.health.lock() else { return error.is_none() };
        let h = health.entry(peer).or_default();
        match error {
            None => {
                h.succeeded(now);
                true
            }
            Some(e) => {
                tracing::debug!(%peer, error = %e, "sync failed; backing off");
                h.failed(now, e, &self.config.mesh, rand::random());
                false
            }
        }
    }

    async fn anti_entropy(self: Arc<Self>) {
        loop {
            let mesh = &self.config.mesh;
            let delay = policy::jittered(mesh.anti_entropy_interval, mesh.jitter, rand::random());
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let peers = self.active_peers();
            let pick = {
                let health = self.peer_health();
                policy::pick_peer(&peers, &health, Instant::now(), mesh.stale_after, rand::random())
            };
            if let Some(peer) = pick {
                tracing::trace!(%peer, "anti-entropy sync");
                self.submit(None, Some(peer), false);
            }
        }
    }
}
