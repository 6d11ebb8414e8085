//! Fault injection for tests: partitions (traffic to and from chosen peers refused or dropped)
//! and gossip loss. Without the `fault-injection` feature every check is a constant `false`.
//!
//! With the feature, the endpoint carries a [`FaultHook`]: it refuses connections with blocked
//! peers (both directions, every ALPN) and remembers the others, so that a partition also cuts
//! the connections already open. Without that, a gossip connection made before the partition
//! kept relaying: the application dropped the partitioned peer's messages, but iroh-gossip
//! still forwarded them to the node's other neighbours, across the cut.

use lattice_core::AuthorId;

/// Per-node fault rules. Share one `Arc<Faults>` between the test and the node.
#[derive(Debug, Default)]
pub struct Faults {
    #[cfg(feature = "fault-injection")]
    state: std::sync::Mutex<FaultState>,
}

#[cfg(feature = "fault-injection")]
#[derive(Debug, Default)]
struct FaultState {
    blocked: std::collections::HashSet<AuthorId>,
    gossip_loss: f64,
    /// The membership gate lets everyone in at the handshake (see [`Faults::open_gate`]).
    gate_open: bool,
    /// Open connections by remote peer (weak handles: they do not keep a connection alive).
    conns: Vec<(AuthorId, iroh::endpoint::WeakConnectionHandle)>,
}

impl Faults {
    /// Is all traffic with `peer` cut?
    pub fn blocks(&self, #[allow(unused)] peer: AuthorId) -> bool {
        #[cfg(feature = "fault-injection")]
        if let Ok(s) = self.state.lock() {
            return s.blocked.contains(&peer);
        }
        false
    }

    /// Should this received gossip message be dropped?
    pub fn drops_gossip(&self, #[allow(unused)] from: AuthorId) -> bool {
        #[cfg(feature = "fault-injection")]
        if let Ok(s) = self.state.lock() {
            return s.blocked.contains(&from) || (s.gossip_loss > 0.0 && rand::random::<f64>() < s.gossip_loss);
        }
        false
    }

    /// Does the membership gate let every peer through at the handshake?
    pub(crate) fn gate_open(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        if let Ok(s) = self.state.lock() {
            return s.gate_open;
        }
        false
    }
}

#[cfg(feature = "fault-injection")]
impl Faults {
    /// Cuts all traffic with these peers (both directions, from this node's side): closes the
    /// connections open with them and refuses new ones until [`Faults::heal`].
    pub fn partition(&self, peers: impl IntoIterator<Item = AuthorId>) {
        let cut = match self.state.lock() {
            Ok(mut s) => {
                s.blocked.extend(peers);
                let (cut, keep) = std::mem::take(&mut s.conns).into_iter().partition(|(p, _)| s.blocked.contains(p));
                s.conns = keep;
                cut
            }
            Err(_) => Vec::new(),
        };
        for (_, conn) in cut {
            if let Some(conn) = conn.upgrade() {
                conn.close(2u32.into(), b"partitioned (fault injection)");
            }
        }
    }
    /// Restores traffic with every peer.
    pub fn heal(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.blocked.clear();
        }
    }
    /// Lets every peer through the membership check at the handshake, as if it were a member
    /// (the gate still records it as what it is), so tests reach the checks behind it: gossip
    /// delivered from a non-member is dropped, its streams are refused.
    pub fn open_gate(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.gate_open = true;
        }
    }
    /// Drops this fraction (0..1) of received gossip messages.
    pub fn set_gossip_loss(&self, fraction: f64) {
        if let Ok(mut s) = self.state.lock() {
            s.gossip_loss = fraction;
        }
    }
}

/// Endpoint hook (with `fault-injection`): refuses connections with blocked peers, and records
/// the others so that [`Faults::partition`] can close them.
#[cfg(feature = "fault-injection")]
#[derive(Debug)]
pub(crate) struct FaultHook(pub(crate) std::sync::Arc<Faults>);

#[cfg(feature = "fault-injection")]
impl iroh::endpoint::EndpointHooks for FaultHook {
    async fn before_connect<'a>(
        &'a self,
        remote: &'a iroh::EndpointAddr,
        _alpn: &'a [u8],
    ) -> iroh::endpoint::BeforeConnectOutcome {
        if self.0.blocks(AuthorId(*remote.id.as_bytes())) {
            return iroh::endpoint::BeforeConnectOutcome::Reject;
        }
        iroh::endpoint::BeforeConnectOutcome::Accept
    }

    async fn after_handshake<'a>(
        &'a self,
        conn: &'a iroh::endpoint::Connection,
    ) -> iroh::endpoint::AfterHandshakeOutcome {
        let peer = AuthorId(*conn.remote_id().as_bytes());
        let Ok(mut s) = self.0.state.lock() else { return iroh::endpoint::AfterHandshakeOutcome::accept() };
        if s.blocked.contains(&peer) {
            return iroh::endpoint::AfterHandshakeOutcome::Reject {
                error_code: 2u32.into(),
                reason: b"partitioned (fault injection)".to_vec(),
            };
        }
        s.conns.retain(|(_, c)| c.upgrade().is_some_and(|c| c.close_reason().is_none()));
        s.conns.push((peer, conn.weak_handle()));
        iroh::endpoint::AfterHandshakeOutcome::accept()
    }
}
