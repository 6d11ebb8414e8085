//! Fault injection for tests: partitions (traffic to and from chosen peers refused or dropped)
//! and gossip loss. Without the `fault-injection` feature every check is a constant `false`.
//!
//! The membership gate (`gate`) enforces partitions at the endpoint: it refuses connections with
//! blocked peers (both directions, every ALPN), and [`Faults::partition`] has every gate that
//! registered with these rules cut the connections already open. Without that, a gossip
//! connection made before the partition kept relaying: the application dropped the partitioned
//! peer's messages, but iroh-gossip still forwarded them to the node's other neighbours.

use lattice_core::AuthorId;

/// Per-node fault rules. Share one `Arc<Faults>` between the test and the node.
#[derive(Debug, Default)]
pub struct Faults {
    #[cfg(feature = "fault-injection")]
    state: std::sync::Mutex<FaultState>,
}

/// What closes the open connections with partitioned peers: the gates of the nodes that use
/// these rules (one `Faults` may be shared by several nodes).
#[cfg(feature = "fault-injection")]
pub(crate) trait Cut: Send + Sync {
    /// Closes every connection with these peers.
    fn cut(&self, peers: &std::collections::HashSet<AuthorId>);
}

#[cfg(feature = "fault-injection")]
#[derive(Default)]
struct FaultState {
    blocked: std::collections::HashSet<AuthorId>,
    gossip_loss: f64,
    /// The membership gate lets everyone in at the handshake (see [`Faults::open_gate`]).
    gate_open: bool,
    /// The gates to tell about a partition (weak: the rules do not keep a node alive).
    gates: Vec<std::sync::Weak<dyn Cut>>,
}

#[cfg(feature = "fault-injection")]
impl std::fmt::Debug for FaultState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultState")
            .field("blocked", &self.blocked)
            .field("gossip_loss", &self.gossip_loss)
            .field("gate_open", &self.gate_open)
            .finish_non_exhaustive()
    }
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
        let (blocked, gates) = match self.state.lock() {
            Ok(mut s) => {
                s.blocked.extend(peers);
                s.gates.retain(|g| g.strong_count() > 0);
                (s.blocked.clone(), s.gates.iter().filter_map(std::sync::Weak::upgrade).collect::<Vec<_>>())
            }
            Err(_) => return,
        };
        for gate in gates {
            gate.cut(&blocked);
        }
    }
    /// Tells `gate` about the partitions to come.
    pub(crate) fn register(&self, gate: std::sync::Weak<dyn Cut>) {
        if let Ok(mut s) = self.state.lock() {
            s.gates.push(gate);
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
