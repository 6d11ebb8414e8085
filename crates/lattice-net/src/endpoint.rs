//! The iroh endpoint: the node's Ed25519 key as its QUIC identity, direct addresses only by
//! default (no relay, no DNS/pkarr, no mDNS, no port mapping); `n0` discovery is opt-in.

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use iroh::address_lookup::memory::MemoryLookup;
use iroh::endpoint::{PortmapperConfig, presets};
use iroh::{Endpoint, EndpointAddr, NetReportConfig, RelayMode, SecretKey};
use lattice_core::{AuthorId, Identity};

use crate::error::NetError;
use crate::faults::Faults;
use crate::policy::MeshConfig;
use crate::sync::SyncConfig;
use std::sync::Arc;

/// How a node finds peers beyond the addresses it is given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Discovery {
    /// Direct addresses only (the default; what every test uses).
    #[default]
    None,
    /// Local-network discovery (not built into this binary: refused with a clear error).
    Mdns,
    /// n0's relays and DNS discovery: reaches nodes behind NAT, contacts the internet.
    N0,
}

impl FromStr for Discovery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Discovery::None),
            "mdns" => Ok(Discovery::Mdns),
            "n0" => Ok(Discovery::N0),
            other => Err(format!("unknown discovery mode {other:?} (expected none, mdns or n0)")),
        }
    }
}

/// Network settings of a node.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The UDP address to listen on (port 0: any free port).
    pub bind: SocketAddr,
    /// How peers are found beyond the addresses given.
    pub discovery: Discovery,
    /// Longest wait for a connection to a peer.
    pub connect_timeout: Duration,
    /// Knobs of each sync session.
    pub sync: SyncConfig,
    /// Tunables of the self-healing mesh.
    pub mesh: MeshConfig,
    /// Test-only traffic faults (no-ops unless built with `fault-injection`).
    pub faults: Arc<Faults>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            discovery: Discovery::None,
            connect_timeout: Duration::from_secs(5),
            sync: SyncConfig::default(),
            mesh: MeshConfig::default(),
            faults: Arc::default(),
        }
    }
}

impl NetConfig {
    /// Loopback on an ephemeral port: what tests use.
    pub fn loopback() -> Self {
        NetConfig { bind: SocketAddr::from(([127, 0, 0, 1], 0)), ..Default::default() }
    }
}

/// A peer: its node id and any direct addresses known for it. Text form: `NODE_ID[@HOST:PORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's node id.
    pub id: AuthorId,
    /// Direct addresses to try, in order (empty: only what is already known or discovered).
    pub addrs: Vec<SocketAddr>,
}

impl PeerAddr {
    /// A peer with no address known yet.
    pub fn new(id: AuthorId) -> Self {
        PeerAddr { id, addrs: Vec::new() }
    }
    /// The same peer with one more direct address.
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addrs.push(addr);
        self
    }
    pub(crate) fn to_endpoint_addr(&self) -> Result<EndpointAddr, NetError> {
        let key = iroh::PublicKey::from_bytes(&self.id.0)
            .map_err(|e| NetError::BadAddress { text: self.id.to_hex(), reason: e.to_string() })?;
        Ok(self.addrs.iter().fold(EndpointAddr::new(key), |a, s| a.with_ip_addr(*s)))
    }
}

impl FromStr for PeerAddr {
    type Err = NetError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| NetError::BadAddress { text: text.to_string(), reason };
        let (id, host) = match text.split_once('@') {
            Some((id, host)) => (id, Some(host)),
            None => (text, None),
        };
        let id = AuthorId::from_hex(id).map_err(|e| bad(e.to_string()))?;
        let mut peer = PeerAddr::new(id);
        if let Some(host) = host {
            let addrs: Vec<SocketAddr> =
                host.to_socket_addrs().map_err(|e| bad(format!("{host:?} is not HOST:PORT ({e})")))?.collect();
            if addrs.is_empty() {
                return Err(bad(format!("{host:?} resolves to no address")));
            }
            peer.addrs = addrs;
        }
        Ok(peer)
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addrs.first() {
            Some(a) => write!(f, "{}@{}", self.id, a),
            None => write!(f, "{}", self.id),
        }
    }
}

/// Binds the endpoint. With [`Discovery::None`], the only way to find a peer is an address in
/// `lookup` (filled from `join NODE_ID@HOST:PORT` and from the root store's peer records).
pub(crate) async fn bind(
    identity: &Identity,
    config: &NetConfig,
    lookup: MemoryLookup,
    alpns: Vec<Vec<u8>>,
) -> Result<Endpoint, NetError> {
    let secret = SecretKey::from_bytes(&identity.seed());
    let bind_err = |e: String| NetError::Bind(e);
    let builder = match config.discovery {
        Discovery::None => Endpoint::builder(presets::Minimal)
            .relay_mode(RelayMode::Disabled)
            .clear_address_lookup()
            .portmapper_config(PortmapperConfig::Disabled)
            .net_report_config(NetReportConfig::minimal()),
        Discovery::N0 => Endpoint::builder(presets::N0),
        Discovery::Mdns => {
            return Err(bind_err("mDNS discovery is not built into this binary; use --discovery none or n0".into()));
        }
    };
    // Test builds: partitions refuse and cut connections at the endpoint (see `faults`).
    #[cfg(feature = "fault-injection")]
    let builder = builder.hooks(crate::faults::FaultHook(config.faults.clone()));
    builder
        .secret_key(secret)
        .address_lookup(lookup)
        .alpns(alpns)
        .clear_ip_transports()
        .bind_addr(config.bind)
        .map_err(|e| bind_err(format!("{}: {e}", config.bind)))?
        .bind()
        .await
        .map_err(|e| bind_err(format!("{}: {e}", config.bind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addr_parses_and_reports_errors() {
        let id = Identity::generate().author();
        let p: PeerAddr = format!("{id}@127.0.0.1:4000").parse().unwrap();
        assert_eq!(p.id, id);
        assert_eq!(p.addrs, vec!["127.0.0.1:4000".parse().unwrap()]);
        assert_eq!(p.to_string(), format!("{id}@127.0.0.1:4000"));
        let p: PeerAddr = id.to_hex().parse().unwrap();
        assert!(p.addrs.is_empty());
        assert!(matches!("zz".parse::<PeerAddr>(), Err(NetError::BadAddress { .. })));
        assert!(matches!(format!("{id}@nohost").parse::<PeerAddr>(), Err(NetError::BadAddress { .. })));
        assert_eq!("n0".parse::<Discovery>(), Ok(Discovery::N0));
        assert!("dht".parse::<Discovery>().is_err());
    }
}
