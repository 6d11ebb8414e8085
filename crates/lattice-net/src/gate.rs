//! The membership gate: an endpoint hook that admits every connection, incoming and outgoing,
//! on both ALPNs (`lattice/sync/1` and iroh-gossip's, whose dialer connects on its own), once
//! the TLS handshake has proved the remote's node id and before any stream of it is read. A
//! refused connection reaches no protocol handler, so it leaves no trace but a log line and a
//! [`PeerEvent::Refused`].
//!
//! The gate also keeps a weak handle to every connection it admitted, by peer, so that
//! [`Gate::expel`] closes all of them (sync and gossip, either direction): iroh has no
//! per-peer connection list, and a gossip connection left open keeps relaying.
//!
//! Until a connection is admitted, the peer may have at most [`PRE_ADMISSION_WINDOW`] bytes in
//! flight to us (QUIC connection-level flow control, set for every connection at bind): a
//! refused peer costs no more than that, however much it tries to send. The gate opens the
//! window when it admits a connection, except an incoming `lattice/sync/1` one from a peer that
//! is not an active member (an invited node, or any peer while the fault-injected gate lets
//! everyone in): its window opens only once one of its sessions is admitted (`accept`), and its
//! first frames are capped too. An active member is known to be one at the handshake, so
//! nothing it sends is capped below `framing::MAX_FRAME` (DESIGN.md §7.3: the cap holds "until
//! a peer is known to be a member").
//!
//! Gossip asks for an answer per message, without waiting: [`Gate::admit_gossip`] judges by the
//! status the gate saw when it last checked the peer (at a handshake or in [`Gate::recheck`]).
//! A peer this node expelled counts as removed whatever the node says, until readmitted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use iroh::EndpointAddr;
use iroh::endpoint::{
    AfterHandshakeOutcome, BeforeConnectOutcome, Connection, EndpointHooks, Side, VarInt, WeakConnectionHandle,
};
use lattice_core::{AuthorId, MemberStatus};

use crate::admission::{self, Admission, EXPELLED, PARTITIONED, Purpose, REFUSED, Refusal};
use crate::connection::SYNC_ALPN;
use crate::context::{NodeContext, PeerEvent};
use crate::faults::Faults;

/// What a peer may send us before its connection (or, on `lattice/sync/1`, one of its
/// sessions) is admitted: the QUIC connection-level receive window every connection starts with.
pub(crate) const PRE_ADMISSION_WINDOW: u32 = 64 * 1024;

/// Lifts the pre-admission window (to QUIC's default: unbounded at the connection level, each
/// stream still bounded by its own window).
pub(crate) fn open_window(conn: &Connection) {
    conn.set_receive_window(VarInt::MAX);
}

/// The peer of a connection: the node id its handshake proved.
pub(crate) fn author_of(conn: &Connection) -> AuthorId {
    AuthorId(*conn.remote_id().as_bytes())
}

/// What a connection asks for, by its direction and ALPN.
fn purpose_of(conn: &Connection) -> Purpose {
    match conn.side() {
        Side::Server => Purpose::Connect,
        Side::Client => Purpose::Dial { gossip: conn.alpn() == iroh_gossip::ALPN },
    }
}

fn is_open(handle: &WeakConnectionHandle) -> bool {
    handle.upgrade().is_some_and(|c| c.close_reason().is_none())
}

fn close_all(handles: Vec<WeakConnectionHandle>, code: u32, reason: &[u8]) {
    for conn in handles.iter().filter_map(WeakConnectionHandle::upgrade) {
        conn.close(code.into(), reason);
    }
}

/// Who this node lets in, and the connections it let in.
pub(crate) struct Gate<C: NodeContext> {
    ctx: Arc<C>,
    faults: Arc<Faults>,
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// Expelled: removed as far as this node is concerned, whatever the node's status says.
    denied: HashSet<AuthorId>,
    /// The status each admitted peer had when last checked: what gossip is judged by.
    known: HashMap<AuthorId, Option<MemberStatus>>,
    /// Every connection admitted, by peer (weak: the gate never keeps one alive).
    conns: HashMap<AuthorId, Vec<WeakConnectionHandle>>,
}

impl GateState {
    /// The status to judge `peer` by, given the one the node reports.
    fn status(&self, peer: AuthorId, reported: Option<MemberStatus>) -> Option<MemberStatus> {
        if self.denied.contains(&peer) { Some(MemberStatus::Removed) } else { reported }
    }

    /// Records an admitted connection, forgetting the ones that have closed since.
    fn record(&mut self, peer: AuthorId, status: Option<MemberStatus>, conn: &Connection) {
        self.known.insert(peer, status);
        self.conns.retain(|_, handles| {
            handles.retain(is_open);
            !handles.is_empty()
        });
        self.conns.entry(peer).or_default().push(conn.weak_handle());
    }
}

impl<C: NodeContext> Gate<C> {
    pub(crate) fn new(ctx: Arc<C>, faults: Arc<Faults>) -> Arc<Self> {
        Arc::new(Gate { ctx, faults, state: Mutex::default() })
    }

    /// The state; a panic elsewhere while it was held leaves it consistent (every update is a
    /// single insert or remove), so a poisoned lock is still used.
    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The status to judge `peer` by now: removed if expelled, else what the node says.
    pub(crate) async fn status(&self, peer: AuthorId) -> Option<MemberStatus> {
        let reported = self.ctx.peer_status(peer).await;
        self.state().status(peer, reported)
    }

    /// May `peer` do `purpose`, given its status now and the faults?
    pub(crate) async fn admit(&self, peer: AuthorId, purpose: Purpose) -> Admission {
        admission::admit(self.status(peer).await, self.faults.blocks(peer), purpose)
    }

    /// May gossip from `peer` (a message it delivered, or it as a neighbour) be taken? Answered
    /// without waiting, by the status the gate last saw for it.
    pub(crate) fn admit_gossip(&self, peer: AuthorId) -> Admission {
        let status = {
            let s = self.state();
            s.status(peer, s.known.get(&peer).copied().flatten())
        };
        admission::admit(status, self.faults.blocks(peer), Purpose::Gossip)
    }

    /// Was `peer` an active member when the gate last checked it (at a handshake or in
    /// [`Gate::recheck`]), and not expelled since? Such a peer's frames are not held to
    /// `framing::FIRST_FRAME`.
    pub(crate) fn known_active(&self, peer: AuthorId) -> bool {
        let s = self.state();
        s.status(peer, s.known.get(&peer).copied().flatten()) == Some(MemberStatus::Active)
    }

    /// Has this node expelled `peer` (and not readmitted it)?
    pub(crate) fn is_denied(&self, peer: AuthorId) -> bool {
        self.state().denied.contains(&peer)
    }

    /// Denies `peer` and closes every connection with it. Denying first, in the same critical
    /// section that takes the handles, means a handshake racing with this is refused: it
    /// checks the denial when it records its connection.
    pub(crate) fn expel(&self, peer: AuthorId) {
        let handles = {
            let mut s = self.state();
            s.denied.insert(peer);
            s.known.insert(peer, Some(MemberStatus::Removed));
            s.conns.remove(&peer).unwrap_or_default()
        };
        tracing::info!(%peer, connections = handles.len(), "expelling peer");
        close_all(handles, EXPELLED, b"removed from the mesh");
    }

    /// Undoes [`Gate::expel`]: `peer` is judged by its status again from its next handshake.
    pub(crate) fn readmit(&self, peer: AuthorId) {
        let mut s = self.state();
        s.denied.remove(&peer);
        s.known.remove(&peer);
    }

    /// Open connections with `peer` (sync and gossip, either direction).
    pub(crate) fn connections(&self, peer: AuthorId) -> usize {
        self.state().conns.get(&peer).map_or(0, |handles| handles.iter().filter(|h| is_open(h)).count())
    }

    /// Checks every open connection again, as at its handshake, with the statuses the node
    /// reports now, and closes those that would be refused: a peer whose status became removed
    /// loses its connections even if nobody expelled it.
    pub(crate) async fn recheck(&self) {
        let peers: Vec<AuthorId> = self.state().conns.keys().copied().collect();
        for peer in peers {
            let reported = self.ctx.peer_status(peer).await;
            let (status, refused) = {
                let mut s = self.state();
                let status = s.status(peer, reported);
                s.known.insert(peer, status);
                let handles = s.conns.remove(&peer).unwrap_or_default();
                let (keep, refused): (Vec<_>, Vec<_>) = handles.into_iter().partition(|h| {
                    h.upgrade().is_some_and(|c| {
                        admission::admit(status, false, purpose_of(&c)) == Admission::Allow || self.faults.gate_open()
                    })
                });
                if !keep.is_empty() {
                    s.conns.insert(peer, keep);
                }
                (status, refused)
            };
            if !refused.is_empty() {
                tracing::info!(%peer, ?status, connections = refused.len(), "closing the connections of a non-member");
                close_all(refused, REFUSED, b"not a member of this mesh");
            }
        }
    }
}

#[cfg(feature = "fault-injection")]
impl<C: NodeContext> crate::faults::Cut for Gate<C> {
    fn cut(&self, peers: &HashSet<AuthorId>) {
        let handles: Vec<_> = {
            let mut s = self.state();
            peers.iter().filter_map(|p| s.conns.remove(p)).flatten().collect()
        };
        close_all(handles, PARTITIONED, b"partitioned (fault injection)");
    }
}

/// The gate installed on the endpoint (`Builder::hooks`). It holds no `Endpoint`, so it makes
/// no reference cycle with it.
pub(crate) struct GateHook<C: NodeContext>(pub(crate) Arc<Gate<C>>);

impl<C: NodeContext> std::fmt::Debug for GateHook<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GateHook")
    }
}

impl<C: NodeContext> EndpointHooks for GateHook<C> {
    /// Covers every dial, iroh-gossip's included: an expelled or partitioned peer is never
    /// dialled.
    async fn before_connect<'a>(&'a self, remote: &'a EndpointAddr, _alpn: &'a [u8]) -> BeforeConnectOutcome {
        let peer = AuthorId(*remote.id.as_bytes());
        if self.0.is_denied(peer) || self.0.faults.blocks(peer) {
            return BeforeConnectOutcome::Reject;
        }
        BeforeConnectOutcome::Accept
    }

    async fn after_handshake<'a>(&'a self, conn: &'a Connection) -> AfterHandshakeOutcome {
        let gate = &self.0;
        let peer = author_of(conn);
        let purpose = purpose_of(conn);
        let reported = gate.ctx.peer_status(peer).await;
        let (status, refusal) = {
            let mut s = gate.state();
            let status = s.status(peer, reported);
            match admission::admit(status, gate.faults.blocks(peer), purpose) {
                Admission::Refuse(refusal) if refusal == Refusal::Partitioned || !gate.faults.gate_open() => {
                    (status, Some(refusal))
                }
                _ => {
                    s.record(peer, status, conn);
                    (status, None)
                }
            }
        };
        let Some(refusal) = refusal else {
            let capped = purpose == Purpose::Connect && conn.alpn() == SYNC_ALPN;
            if !capped || status == Some(MemberStatus::Active) {
                open_window(conn);
            }
            return AfterHandshakeOutcome::Accept;
        };
        let reason = refusal.message(peer);
        tracing::debug!(%peer, ?purpose, %reason, "refusing connection at the handshake");
        gate.ctx.peer_event(PeerEvent::Refused { peer, reason: reason.clone() });
        let code = if refusal == Refusal::Partitioned { PARTITIONED } else { REFUSED };
        AfterHandshakeOutcome::Reject { error_code: code.into(), reason: reason.into_bytes() }
    }
}
