//! The data dir as this process owns it: the lock, the node (opened on first use), the node on
//! the network, and one shutdown that ends them all.
//!
//! Commands (`crate::commands`) run against an [`Engine`]; the one-shot path, the shell and the
//! control server each hold one.

use std::net::SocketAddr;
use std::sync::Arc;

use lattice_net::{NetConfig, PeerAddr, SyncProgress};
use lattice_node::{DataDir, DirLock, Network, Node, NodeError};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// How long a process that is exiting waits for its network to close: long enough for the close
/// frames of its connections to go out, not for the acknowledgements iroh's `Endpoint::close`
/// waits for. A connection still in its handshake drains for its probe timeout (3 s, even with
/// peers that answer), and peers that stopped answering never acknowledge (10 to 24 s for 8 to
/// 14 suspended ones); peers learn of the close from the frame, or else from their idle timeout.
pub const NETWORK_EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// What kind of process owns the data dir (shown by `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A one-shot command: owns the dir for one command, no socket.
    OneShot,
    /// `lattice serve`.
    Serve,
    /// The interactive shell, with a control socket.
    Shell,
    /// A one-shot `watch` run here: long-running, so it serves the control socket too.
    Watch,
}

impl Role {
    /// How `status` and error lines name the owner.
    pub fn name(self) -> &'static str {
        match self {
            Role::OneShot => "a lattice command",
            Role::Serve => "`lattice serve`",
            Role::Shell => "a lattice shell",
            Role::Watch => "`lattice watch`",
        }
    }
}

/// The lock, the node, the network and a token cancelled at shutdown (running watches end).
pub struct Engine {
    dir: DataDir,
    lock: Arc<DirLock>,
    role: Role,
    node: Mutex<Option<Arc<Node>>>,
    /// The node on the network, started by `serve` and the shell, or for one command (join, sync).
    net: Mutex<Option<Arc<Network>>>,
    net_config: NetConfig,
    /// Where `serve --http` serves the HTTP API (shown by `status`).
    http_addr: std::sync::Mutex<Option<SocketAddr>>,
    cancel: CancellationToken,
}

impl Engine {
    /// An engine whose network, once started, uses the default configuration.
    pub fn new(dir: DataDir, lock: DirLock, role: Role) -> Arc<Engine> {
        Engine::with_network(dir, lock, role, NetConfig::default())
    }

    /// An engine whose network, once started, uses `net_config` (`serve --bind`, `--discovery`).
    pub fn with_network(dir: DataDir, lock: DirLock, role: Role, net_config: NetConfig) -> Arc<Engine> {
        Arc::new(Engine {
            dir,
            lock: Arc::new(lock),
            role,
            node: Mutex::new(None),
            net: Mutex::new(None),
            net_config,
            http_addr: std::sync::Mutex::new(None),
            cancel: CancellationToken::new(),
        })
    }

    /// The data dir this engine owns.
    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// What kind of process this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Resolves once [`shutdown`](Self::shutdown) begins: long-running commands end on it.
    pub async fn shutting_down(&self) {
        self.cancel.cancelled().await
    }

    /// The node, opened on first use. [`NodeError::NotInitialised`] before `init`.
    pub async fn node(&self) -> Result<Arc<Node>, NodeError> {
        let mut slot = self.node.lock().await;
        if self.cancel.is_cancelled() {
            return Err(NodeError::ShuttingDown);
        }
        if let Some(node) = slot.as_ref() {
            return Ok(node.clone());
        }
        let node = Arc::new(Node::open(self.dir.clone(), self.lock.clone()).await?);
        *slot = Some(node.clone());
        Ok(node)
    }

    /// Creates the node of a data dir that has none yet (`init`).
    pub async fn init(&self, name: Option<String>) -> Result<Arc<Node>, NodeError> {
        let mut slot = self.node.lock().await;
        if slot.is_some() || self.dir.is_initialised() {
            return Err(NodeError::AlreadyInitialised(self.dir.path().to_path_buf()));
        }
        let node = Arc::new(Node::init(self.dir.clone(), self.lock.clone(), name).await?);
        *slot = Some(node.clone());
        Ok(node)
    }

    /// Joins the mesh of `peer` (initialising the node first in a fresh data dir). The network
    /// stops for the join and, in a long-running owner, starts again once joined.
    pub async fn join(
        &self,
        peer: PeerAddr,
        name: Option<String>,
        progress: Option<tokio::sync::watch::Sender<SyncProgress>>,
    ) -> Result<Arc<Node>, NodeError> {
        let mut slot = self.node.lock().await;
        let node = match slot.take() {
            Some(node) => node,
            None if self.dir.is_initialised() => Arc::new(Node::open(self.dir.clone(), self.lock.clone()).await?),
            None => Arc::new(Node::init(self.dir.clone(), self.lock.clone(), name.clone()).await?),
        };
        self.stop_network_to_restart().await;
        let joined = lattice_node::join(node, peer, name, self.net_config.clone(), progress).await;
        if let Ok(node) = &joined {
            *slot = Some(node.clone());
        }
        drop(slot);
        if self.role != Role::OneShot {
            // Back on the network even after a failed join (the node reopens from disk).
            match self.network().await {
                Ok(_) => {}
                Err(e) if joined.is_ok() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "cannot restart the network after a failed join"),
            }
        }
        joined
    }

    /// The node's network, started on first use (a long-running owner starts it eagerly).
    pub async fn network(&self) -> Result<Arc<Network>, NodeError> {
        let node = self.node().await?;
        let mut slot = self.net.lock().await;
        if let Some(net) = slot.as_ref() {
            return Ok(net.clone());
        }
        let net = Arc::new(Network::start(node, self.net_config.clone()).await?);
        *slot = Some(net.clone());
        Ok(net)
    }

    /// The network if it is running; never starts it.
    pub async fn running_network(&self) -> Option<Arc<Network>> {
        self.net.lock().await.clone()
    }

    /// The addresses the network listens on (empty when it is not running).
    pub async fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.net.lock().await.as_ref().map(|n| n.listen_addrs()).unwrap_or_default()
    }

    /// Records where the HTTP API listens (`None` once it has stopped).
    pub fn set_http_addr(&self, addr: Option<SocketAddr>) {
        *self.http_addr.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// Where the HTTP API listens, while it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        *self.http_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current store's name for a shell prompt (`None` before `init`).
    pub async fn prompt_store(&self) -> Option<String> {
        if !self.dir.is_initialised() {
            return None;
        }
        let node = self.node().await.ok()?;
        Some(match node.current_store().await {
            Ok(Some(store)) => store.name,
            _ => "(none)".into(),
        })
    }

    /// Stops the network before it starts again: a fixed `--bind` port is free again when this
    /// returns.
    async fn stop_network_to_restart(&self) {
        let net = self.net.lock().await.take();
        if let Some(net) = net {
            net.stop().await;
        }
    }

    /// Ends running watches, leaves the network and closes every open store. The process exits
    /// next: the network gets [`NETWORK_EXIT_GRACE`] to close its connections, then is left
    /// behind (see there); the stores are closed either way.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.cancel.cancel();
        let net = self.net.lock().await.take();
        if let Some(net) = net
            && !net.shutdown_within(NETWORK_EXIT_GRACE).await
        {
            tracing::info!(
                "not all peers acknowledged closing within {} ms; exiting without waiting for them",
                NETWORK_EXIT_GRACE.as_millis()
            );
        }
        let node = self.node.lock().await.take();
        match node {
            Some(node) => node.shutdown().await,
            None => Ok(()),
        }
    }
}
