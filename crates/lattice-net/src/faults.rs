//! Fault injection for tests: partitions (traffic to and from chosen peers refused or dropped)
//! and gossip loss. Without the `fault-injection` feature every check is a constant `false`.

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
}

#[cfg(feature = "fault-injection")]
impl Faults {
    /// Cuts all traffic with these peers (both directions, from this node's side).
    pub fn partition(&self, peers: impl IntoIterator<Item = AuthorId>) {
        if let Ok(mut s) = self.state.lock() {
            s.blocked.extend(peers);
        }
    }
    /// Restores traffic with every peer.
    pub fn heal(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.blocked.clear();
        }
    }
    /// Drops this fraction (0..1) of received gossip messages.
    pub fn set_gossip_loss(&self, fraction: f64) {
        if let Ok(mut s) = self.state.lock() {
            s.gossip_loss = fraction;
        }
    }
}
