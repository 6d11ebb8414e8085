//! Gossip per store: the topic task (local commits and new equivocation proofs out, received
//! entries and proofs in, gap-triggered syncs), the per-message membership check, and
//! reconnecting gossip with a readmitted peer.
//!
//! Each node also gossips its signed attestation of the store's Merkle root (DESIGN.md §10)
//! once the store has been quiet for [`ATTEST_DELAY`] after a commit or a new neighbour, or
//! [`ATTEST_MAX`] after the first of them under constant writes (a root read merges the tree's
//! waiting leaves, which is cheapest done rarely), and never while the store is idle. A member's attestation of more entries than we hold, if we still
//! hold fewer [`ATTEST_DELAY`] later (gossip in flight has had its time), means gossip lost
//! something: we sync with that member rather than wait for anti-entropy.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use iroh::EndpointId;
use iroh_gossip::TopicId;
use iroh_gossip::api::{Event, GossipSender};
use lattice_core::proto::{self, AuthorState};
use lattice_core::{Attestation, AuthorId, StoreId, SyncState};
use lattice_store::{IngestOutcome, SyncStore};
use prost::Message;
use tokio_util::sync::CancellationToken;

use super::{Mesh, endpoint_id};
use crate::admission::Admission;
use crate::context::{NodeContext, PeerEvent};
use crate::endpoint::PeerAddr;

/// How long a store stays quiet after a commit (or a new neighbour) before its attestation goes
/// out.
pub(crate) const ATTEST_DELAY: Duration = Duration::from_secs(1);
/// The longest an attestation waits under constant writes.
pub(crate) const ATTEST_MAX: Duration = Duration::from_secs(10);

/// A member attested more entries than we held: checked again [`ATTEST_DELAY`] later.
struct Behind {
    signer: AuthorId,
    entries: u64,
}

/// The gossip topic of a store: `blake3("lattice/{store_uuid}")`.
fn topic_for(store: StoreId) -> TopicId {
    TopicId::from_bytes(*blake3::hash(format!("lattice/{store}").as_bytes()).as_bytes())
}

/// What a store's gossip task listens to, subscribed when the store joins the mesh.
pub(super) struct TopicInputs {
    pub(super) commits: tokio::sync::broadcast::Receiver<Arc<lattice_store::Committed>>,
    pub(super) gaps: tokio::sync::broadcast::Receiver<lattice_store::GapInfo>,
}

impl<C: NodeContext> Mesh<C> {
    /// Hands gossip a fresh connection to a readmitted peer (best effort: the peer may dial us
    /// first), then has every topic join the member list again.
    pub(super) async fn redial_gossip(&self, peer: AuthorId) {
        let addr = self.peers.borrow().iter().find(|p| p.id == peer).cloned().unwrap_or_else(|| PeerAddr::new(peer));
        if let Ok(addr) = addr.to_endpoint_addr() {
            let connecting = self.endpoint.connect(addr, iroh_gossip::ALPN);
            match tokio::time::timeout(self.config.connect_timeout, connecting).await {
                Ok(Ok(conn)) => {
                    if let Err(e) = self.gossip.handle_connection(conn).await {
                        tracing::debug!(%peer, error = %e, "gossip did not take the connection");
                    }
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "cannot reconnect gossip with a readmitted peer"),
                Err(_) => tracing::debug!(%peer, "reconnecting gossip with a readmitted peer timed out"),
            }
        }
        self.peers.send_modify(|_| {});
    }

    pub(super) async fn run_topic(self: Arc<Self>, store: C::Store, inputs: TopicInputs, cancel: CancellationToken) {
        let id = store.store_id();
        let topic = topic_for(id);
        let TopicInputs { mut commits, mut gaps } = inputs;
        let mut peers = self.peers.subscribe();
        // (first change since the last attestation, when the next goes out); `None`: no change.
        let mut attest_at: Option<(tokio::time::Instant, tokio::time::Instant)> = None;
        // A member's attestation to check against what we hold then.
        let mut behind: Option<(tokio::time::Instant, Behind)> = None;
        'subscribe: while !cancel.is_cancelled() {
            let bootstrap: Vec<EndpointId> = self.active_peers().into_iter().filter_map(endpoint_id).collect();
            let sub = match self.gossip.subscribe(topic, bootstrap).await {
                Ok(s) => s,
                Err(_) if self.closing.is_cancelled() => return,
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
                    _ = sleep_until(attest_at.map(|(_, at)| at)) => {
                        attest_at = None;
                        self.attest(&sender, &store).await;
                    }
                    _ = sleep_until(behind.as_ref().map(|(at, _)| *at)) => {
                        if let Some((_, b)) = behind.take() {
                            self.check_behind(&store, b).await;
                        }
                    }
                    commit = commits.recv() => match commit {
                        Ok(entries) => {
                            attest_soon(&mut attest_at);
                            self.broadcast(&sender, id, entries).await
                        }
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
                            if !self.takes_gossip_from(id, from, "gossip message") || self.config.faults.drops_gossip(from) {
                                continue;
                            }
                            self.heard_from(from);
                            if let Some(b) = self.receive(&store, from, msg.content).await {
                                behind.get_or_insert_with(|| (tokio::time::Instant::now() + ATTEST_DELAY, b));
                            }
                        }
                        Some(Ok(Event::NeighborUp(peer))) => {
                            self.note_neighbours(id, events.neighbors());
                            let peer = AuthorId(*peer.as_bytes());
                            if !self.takes_gossip_from(id, peer, "gossip neighbour") {
                                continue;
                            }
                            tracing::debug!(store = %id, %peer, "gossip neighbour up: syncing with it");
                            attest_soon(&mut attest_at);
                            self.heard_from(peer);
                            self.submit(Some(id), Some(peer), false);
                        }
                        Some(Ok(Event::NeighborDown(_))) => self.note_neighbours(id, events.neighbors()),
                        Some(Err(_)) | None if self.closing.is_cancelled() => break 'subscribe,
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
        if let Ok(mut n) = self.neighbours.lock() {
            n.remove(&id);
        }
    }

    /// Gossips our signed attestation of the store's root.
    async fn attest(&self, sender: &GossipSender, store: &C::Store) {
        match store.attestation().await {
            Ok((attestation, _)) => {
                let msg = proto::GossipMessage { attestation: Some(attestation.to_proto()), ..Default::default() };
                send(sender, store.store_id(), msg).await;
            }
            Err(e) => tracing::debug!(store = %store.store_id(), error = %e, "no attestation to gossip"),
        }
    }

    /// Takes a member's attestation (relayed or not: the signer need not be the neighbour that
    /// delivered it): `Some` if it counts more entries than we hold now.
    async fn receive_attestation(
        &self,
        store: &C::Store,
        from: AuthorId,
        attestation: proto::Attestation,
    ) -> Option<Behind> {
        let id = store.store_id();
        let Some(attestation) = Attestation::from_proto(&attestation) else {
            tracing::debug!(%from, store = %id, "malformed attestation in gossip");
            return None;
        };
        let signer = attestation.signer;
        // The deliverer passed the gate; the signer must be a member too (the node's list).
        if attestation.store != id || signer == self.me() || !self.active_peers().contains(&signer) {
            return None;
        }
        if attestation.verify().is_err() {
            tracing::warn!(%from, %signer, store = %id, "gossiped attestation with a bad signature");
            return None;
        }
        let held = store.sync_state().await.ok()?.total_entries();
        (held < attestation.entries).then_some(Behind { signer, entries: attestation.entries })
    }

    /// A member attested more entries than we held, [`ATTEST_DELAY`] ago: still fewer now, and
    /// gossip lost some; sync with it.
    async fn check_behind(&self, store: &C::Store, behind: Behind) {
        let Ok(state) = store.sync_state().await else { return };
        let held = state.total_entries();
        if held < behind.entries {
            tracing::debug!(store = %store.store_id(), signer = %behind.signer, held, attested = behind.entries,
                "a member attested entries we still lack: syncing with it");
            self.submit(Some(store.store_id()), Some(behind.signer), true);
        }
    }

    /// Is gossip from `peer` (`what`: a message it delivered, or it as a neighbour) taken? A
    /// synchronous check, once per message: the gate's view of the peer, not a status lookup.
    fn takes_gossip_from(&self, store: StoreId, peer: AuthorId, what: &str) -> bool {
        let Admission::Refuse(refusal) = self.gate.admit_gossip(peer) else { return true };
        let reason = format!("{what} dropped: {}", refusal.message(peer));
        tracing::debug!(%store, %peer, %reason, "dropping gossip from a non-member");
        self.ctx.peer_event(PeerEvent::Refused { peer, reason });
        false
    }

    fn note_neighbours(&self, store: StoreId, neighbours: impl Iterator<Item = EndpointId>) {
        if let Ok(mut n) = self.neighbours.lock() {
            n.insert(store, neighbours.map(|p| AuthorId(*p.as_bytes())).collect());
        }
    }

    /// Broadcasts what a commit made that peers need: the locally written entries, packed into
    /// messages of at most `max_gossip_bytes` (an entry too large for one message is announced
    /// instead and fetched by sync), and the equivocation proofs new to this store, however it
    /// learned them (DESIGN.md §7.4). A proof the store held already is never in a commit, so a
    /// relayed proof stops at every node that knew it: no storm.
    async fn broadcast(&self, sender: &GossipSender, store: StoreId, committed: Arc<lattice_store::Committed>) {
        let limit = self.config.mesh.max_gossip_bytes.saturating_sub(256);
        let mut out = Outbox { sender, store, limit, msg: proto::GossipMessage::default(), size: 0 };
        for e in &committed.local {
            if e.bytes().len() > limit {
                out.msg.announce.push(AuthorState {
                    author: e.author().0.to_vec(),
                    seq: e.seq(),
                    hash: e.hash().0.to_vec(),
                });
                continue;
            }
            out.make_room(e.bytes().len() + 8).await;
            out.msg.entries.push(e.bytes().to_vec());
        }
        for (first, second) in &committed.proofs {
            let size = first.len() + second.len() + 16;
            if size > limit {
                tracing::debug!(%store, size, "an equivocation proof is too large for gossip; sync carries it");
                continue;
            }
            out.make_room(size).await;
            out.msg.proofs.push(proto::EquivocationProof { first: first.clone(), second: second.clone() });
        }
        out.flush().await;
    }

    /// Takes the equivocation proofs of a gossip message (already known to come from a member):
    /// each must verify as a proof for this store (`SyncStore::ingest_proof` checks it). A new
    /// one reaches the store's commit events, and from there our own broadcast.
    async fn receive_proofs(&self, store: &C::Store, from: AuthorId, proofs: Vec<proto::EquivocationProof>) {
        let id = store.store_id();
        for proof in proofs {
            match store.ingest_proof(proof.first, proof.second).await {
                Ok(true) => tracing::warn!(%from, store = %id, "learned of an equivocating author by gossip"),
                Ok(false) => {}
                Err(lattice_store::IngestError::Store(e)) => {
                    tracing::warn!(store = %id, error = %e, "cannot take a gossiped equivocation proof");
                }
                Err(e) => tracing::warn!(%from, store = %id, error = %e, "rejected a gossiped equivocation proof"),
            }
        }
    }

    /// Takes one gossip message; `Some` if it carried an attestation of more than we hold.
    async fn receive(&self, store: &C::Store, from: AuthorId, content: Bytes) -> Option<Behind> {
        let id = store.store_id();
        let msg = match proto::GossipMessage::decode(content) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%from, error = %e, "undecodable gossip message");
                return None;
            }
        };
        // Proofs first: the forked author's entries in the same message are refused at once.
        if !msg.proofs.is_empty() {
            self.receive_proofs(store, from, msg.proofs).await;
        }
        let behind = match msg.attestation {
            Some(attestation) => self.receive_attestation(store, from, attestation).await,
            None => None,
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
        behind
    }
}

#[cfg(feature = "test-utils")]
impl<C: NodeContext> Mesh<C> {
    /// Broadcasts `message` as is on `store`'s topic (which the store must have joined): what a
    /// member that sends whatever it likes would put on the wire.
    pub(crate) async fn gossip_raw(&self, store: StoreId, message: Bytes) -> Result<(), crate::NetError> {
        let failed =
            |e: iroh_gossip::api::ApiError| crate::NetError::Connection { peer: self.me(), reason: e.to_string() };
        let mut topic = self.gossip.subscribe(topic_for(store), Vec::new()).await.map_err(failed)?;
        topic.broadcast(message).await.map_err(failed)
    }
}

/// Gossip messages being packed: each at most `limit` bytes (what is too big is left out by
/// the caller), sent as they fill.
struct Outbox<'a> {
    sender: &'a GossipSender,
    store: StoreId,
    limit: usize,
    msg: proto::GossipMessage,
    size: usize,
}

impl Outbox<'_> {
    /// Sends the message being packed if `bytes` more would not fit in it.
    async fn make_room(&mut self, bytes: usize) {
        if self.size + bytes > self.limit && !(self.msg.entries.is_empty() && self.msg.proofs.is_empty()) {
            send(self.sender, self.store, std::mem::take(&mut self.msg)).await;
            self.size = 0;
        }
        self.size += bytes;
    }

    /// Sends what is left, if anything.
    async fn flush(self) {
        let m = &self.msg;
        if !(m.entries.is_empty() && m.announce.is_empty() && m.proofs.is_empty()) {
            send(self.sender, self.store, self.msg).await;
        }
    }
}

/// Puts our next attestation [`ATTEST_DELAY`] from now, but no later than [`ATTEST_MAX`] after
/// the first change it covers.
fn attest_soon(at: &mut Option<(tokio::time::Instant, tokio::time::Instant)>) {
    let now = tokio::time::Instant::now();
    let first = at.map_or(now, |(first, _)| first);
    *at = Some((first, (now + ATTEST_DELAY).min(first + ATTEST_MAX)));
}

/// Sleeps until `at`, or forever if `None`.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn send(sender: &GossipSender, store: StoreId, msg: proto::GossipMessage) {
    if let Err(e) = sender.broadcast(Bytes::from(msg.encode_to_vec())).await {
        tracing::debug!(store = %store, error = %e, "gossip broadcast failed; sync will deliver");
    }
}
