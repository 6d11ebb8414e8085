//! The self-healing mesh: one gossip topic per active store, and a sync scheduler (gap filling,
//! reconnects, anti-entropy) with per-peer backoff. Decisions come from [`crate::policy`] and
//! [`crate::admission`]; this module only moves bytes and owns tasks.
//!
//! Every task is spawned on the mesh's `TaskTracker` and watches its `CancellationToken`;
//! [`Mesh::shutdown`] cancels and waits for the tracker, then stops gossip.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use iroh::address_lookup::memory::MemoryLookup;
use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler};
use iroh::{Endpoint, EndpointId};
use iroh_gossip::api::{Event, GossipSender};
use iroh_gossip::{Gossip, TopicId};
use lattice_core::proto::{self, AuthorState};
use lattice_core::{AuthorId, StoreId, SyncState};
use lattice_store::{IngestOutcome, SyncStore};
use prost::Message;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{self, Admission, Purpose};
use crate::connection::{PeerConnection, SYNC_ALPN};
use crate::context::{NodeContext, PeerEvent};
use crate::endpoint::{Discovery, NetConfig, PeerAddr};
use crate::error::NetError;
use crate::policy::{self, PeerHealth};
use crate::sync::{SyncOutcome, SyncProgress};

/// The gossip topic of a store: `blake3("lattice/{store_uuid}")`.
fn topic_for(store: StoreId) -> TopicId {
    TopicId::from_bytes(*blake3::hash(format!("lattice/{store}").as_bytes()).as_bytes())
}

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

/// What a store's gossip task listens to, subscribed when the store joins the mesh.
struct TopicInputs {
    commits: tokio::sync::broadcast::Receiver<Arc<lattice_store::Committed>>,
    gaps: tokio::sync::broadcast::Receiver<lattice_store::GapInfo>,
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
    config: NetConfig,
    peers: watch::Sender<Vec<PeerAddr>>,
    health: Mutex<HashMap<AuthorId, PeerHealth>>,
    stores: Mutex<HashMap<StoreId, (C::Store, CancellationToken)>>,
    jobs: mpsc::UnboundedSender<Job>,
    jobs_rx: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl<C: NodeContext> Mesh<C> {
    pub(crate) fn new(
        ctx: Arc<C>,
        endpoint: Endpoint,
        lookup: MemoryLookup,
        gossip: Gossip,
        config: NetConfig,
    ) -> Arc<Self> {
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        Arc::new(Mesh {
            ctx,
            endpoint,
            lookup,
            gossip,
            config,
            peers: watch::Sender::new(Vec::new()),
            health: Mutex::new(HashMap::new()),
            stores: Mutex::new(HashMap::new()),
            jobs,
            jobs_rx: Mutex::new(Some(jobs_rx)),
            cancel: CancellationToken::new(),
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

    /// Stops every mesh task and waits for them, then shuts gossip down.
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        if let Err(e) = self.gossip.shutdown().await {
            tracing::debug!(error = %e, "gossip shutdown");
        }
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

    /// Hands an admitted gossip connection to gossip.
    pub(crate) async fn accept_gossip(&self, conn: Connection) -> Result<(), AcceptError> {
        self.gossip.accept(conn).await
    }

    /// Asks admission whether `peer` may do `purpose`, given its current status and the faults.
    pub(crate) async fn admit(&self, peer: AuthorId, purpose: Purpose) -> Admission {
        let status = self.ctx.peer_status(peer).await;
        admission::admit(status, self.config.faults.blocks(peer), purpose)
    }

    /// Reachability per peer (last success, last failure, backoff).
    pub(crate) fn peer_health(&self) -> HashMap<AuthorId, PeerHealth> {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn me(&self) -> AuthorId {
        AuthorId(*self.endpoint.id().as_bytes())
    }

    fn active_peers(&self) -> Vec<AuthorId> {
        let me = self.me();
        self.peers.borrow().iter().map(|p| p.id).filter(|p| *p != me).collect()
    }

    pub(crate) fn set_peers(&self, peers: Vec<PeerAddr>) {
        for p in &peers {
            self.add_addr(p);
        }
        self.peers.send_replace(peers);
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
        Ok(PeerConnection::new(conn, peer.id, self.config.clone()))
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

    async fn run_topic(self: Arc<Self>, store: C::Store, inputs: TopicInputs, cancel: CancellationToken) {
        let id = store.store_id();
        let topic = topic_for(id);
        let TopicInputs { mut commits, mut gaps } = inputs;
        let mut peers = self.peers.subscribe();
        'subscribe: while !cancel.is_cancelled() {
            let bootstrap: Vec<EndpointId> = self.active_peers().into_iter().filter_map(endpoint_id).collect();
            let sub = match self.gossip.subscribe(topic, bootstrap).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(store = %id, error = %e, "cannot join gossip topic");
                    return;
                }
            };
            let (sender, mut events) = sub.split();
            tracing::debug!(store = %id, topic = %topic.fmt_short(), "joined gossip topic");
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break 'subscribe,
                    commit = commits.recv() => match commit {
                        Ok(entries) => self.broadcast(&sender, id, entries).await,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(store = %id, missed = n, "gossip fell behind local commits; peers will catch up by sync");
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break 'subscribe,
                    },
                    gap = gaps.recv() => match gap {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.submit(Some(id), None, true),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break 'subscribe,
                    },
                    changed = peers.changed() => {
                        if changed.is_err() { break 'subscribe; }
                        let ids: Vec<EndpointId> = self.active_peers().into_iter().filter_map(endpoint_id).collect();
                        let _ = sender.join_peers(ids).await;
                    },
                    event = events.next() => match event {
                        Some(Ok(Event::Received(msg))) => {
                            let from = AuthorId(*msg.delivered_from.as_bytes());
                            if self.config.faults.drops_gossip(from) {
                                continue;
                            }
                            self.heard_from(from);
                            self.receive(&store, from, msg.content).await;
                        }
                        Some(Ok(Event::NeighborUp(peer))) => {
                            let peer = AuthorId(*peer.as_bytes());
                            tracing::debug!(store = %id, %peer, "gossip neighbour up: syncing with it");
                            self.heard_from(peer);
                            self.submit(Some(id), Some(peer), false);
                        }
                        Some(Ok(Event::NeighborDown(_))) => {}
                        Some(Ok(Event::Lagged)) | Some(Err(_)) | None => {
                            // The subscription is gone or lost messages: rejoin, and let sync
                            // fetch whatever we missed.
                            tracing::debug!(store = %id, "gossip subscription lagged or closed; rejoining");
                            self.submit(Some(id), None, false);
                            continue 'subscribe;
                        }
                    }
                }
            }
        }
    }

    /// Broadcasts locally committed entries, packed into messages of at most `max_gossip_bytes`;
    /// an entry too large for one message is announced instead and fetched by sync.
    async fn broadcast(&self, sender: &GossipSender, store: StoreId, committed: Arc<lattice_store::Committed>) {
        let limit = self.config.mesh.max_gossip_bytes.saturating_sub(256);
        let mut msg = proto::GossipMessage::default();
        let mut size = 0;
        for e in &committed.local {
            if e.bytes().len() > limit {
                msg.announce.push(AuthorState {
                    author: e.author().0.to_vec(),
                    seq: e.seq(),
                    hash: e.hash().0.to_vec(),
                });
                continue;
            }
            if size + e.bytes().len() > limit && !msg.entries.is_empty() {
                send(sender, store, std::mem::take(&mut msg)).await;
                size = 0;
            }
            size += e.bytes().len() + 8;
            msg.entries.push(e.bytes().to_vec());
        }
        if !msg.entries.is_empty() || !msg.announce.is_empty() {
            send(sender, store, msg).await;
        }
    }

    async fn receive(&self, store: &C::Store, from: AuthorId, content: Bytes) {
        let id = store.store_id();
        let msg = match proto::GossipMessage::decode(content) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%from, error = %e, "undecodable gossip message");
                return;
            }
        };
        let mut need_sync = false;
        if !msg.entries.is_empty() {
            match store.ingest_batch(msg.entries).await {
                Ok(results) => {
                    for r in results {
                        match r {
                            Ok(IngestOutcome::Orphaned(_)) => need_sync = true,
                            Ok(_) => {}
                            Err(e) => tracing::warn!(%from, store = %id, error = %e, "rejected gossiped entry"),
                        }
                    }
                }
                Err(e) => tracing::warn!(store = %id, error = %e, "cannot ingest gossip"),
            }
        }
        if !msg.announce.is_empty() {
            let ours = store.sync_state().await.unwrap_or_default();
            let announced = SyncState::from_proto(&proto::SyncState { authors: msg.announce }).unwrap_or_default();
            need_sync |= !announced.missing_for(&ours).is_empty();
        }
        if need_sync {
            self.submit(Some(id), Some(from), true);
        }
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

async fn send(sender: &GossipSender, store: StoreId, msg: proto::GossipMessage) {
    if let Err(e) = sender.broadcast(Bytes::from(msg.encode_to_vec())).await {
        tracing::debug!(store = %store, error = %e, "gossip broadcast failed; sync will deliver");
    }
}
