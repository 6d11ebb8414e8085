//! The demo's three nodes: real nodes in one process, each with its own data dir and its own
//! QUIC endpoint on 127.0.0.1, joined into one mesh the way `invite` and `join` do it.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use lattice_core::AuthorId;
use lattice_net::NetConfig;
use lattice_node::{DataDir, DirLock, Network, Node, Role, StoreRef};
use tokio::task::JoinSet;

use crate::engine::NETWORK_EXIT_GRACE;

/// How long the demo waits for anything to happen on the mesh before it calls the step failed.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// One node of the demo: its node, and its network while it is online.
pub struct DemoNode {
    pub name: &'static str,
    pub node: Arc<Node>,
    net: Option<Arc<Network>>,
    /// Where it listens (a new port each time it comes back online).
    addr: SocketAddr,
}

impl DemoNode {
    pub fn id(&self) -> AuthorId {
        self.node.node_id()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Leaves the network (the node keeps working locally: writes are local-first). The close
    /// finishes in `closing`: iroh waits for peers to acknowledge it (3 s while a connection is
    /// still in its handshake), and the node comes back on a new port, so nothing waits for it.
    fn go_offline(&mut self, closing: &mut JoinSet<()>) {
        if let Some(net) = self.net.take() {
            closing.spawn(async move {
                // If the process exits first, this task is dropped mid-close: the network must
                // then not be dropped (iroh aborts an endpoint dropped while closing, with an error).
                let net = std::mem::ManuallyDrop::new(net);
                net.shutdown().await;
                drop(std::mem::ManuallyDrop::into_inner(net));
            });
        }
    }

    /// Back on the network; it syncs with its peers as it starts, and tells them its new address.
    async fn go_online(&mut self) -> anyhow::Result<()> {
        let back = online(self.name, self.node.clone(), NetConfig::loopback()).await?;
        (self.net, self.addr) = (back.net, back.addr);
        Ok(())
    }

    async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(net) = self.net.take() {
            // The process exits next: see `NETWORK_EXIT_GRACE`.
            net.shutdown_within(NETWORK_EXIT_GRACE).await;
        }
        self.node.shutdown().await.with_context(|| format!("closing {}", self.name))
    }
}

/// Three nodes of one mesh, and the store the demo writes to.
pub struct Cluster {
    pub nodes: Vec<DemoNode>,
    pub store: StoreRef,
    /// The networks of nodes that went offline, finishing their close.
    closing: JoinSet<()>,
}

impl Cluster {
    /// `a` creates a mesh; `b` and `c` are invited by it and join it. Returns once every node
    /// knows every other's address (so gossip reaches everyone).
    pub async fn start(root: &Path) -> anyhow::Result<Cluster> {
        let (dir, lock) = fresh_dir(root, "a")?;
        let a = Arc::new(Node::init(dir, lock, Some("a".into())).await?);
        let a = online("a", a, NetConfig::loopback()).await?;
        let mut nodes = vec![a];
        for name in ["b", "c"] {
            let (dir, lock) = fresh_dir(root, name)?;
            let node = Node::init(dir, lock, Some(name.into())).await?;
            nodes[0].node.invite(node.node_id(), Role::Member).await?;
            let peer = nodes[0].net.as_ref().map(|n| n.server().peer_addr()).ok_or_else(|| anyhow!("a is offline"))?;
            let joined = lattice_node::join(Arc::new(node), peer, Some(name.into()), NetConfig::loopback(), None)
                .await
                .with_context(|| format!("{name} joining a's mesh"))?;
            nodes.push(online(name, joined, NetConfig::loopback()).await?);
        }
        let store = nodes[0].node.current_store().await?.ok_or_else(|| anyhow!("a has no current store"))?;
        let cluster = Cluster { nodes, store, closing: JoinSet::new() };
        until("every node to know every other's address", || cluster.addresses_known()).await?;
        Ok(cluster)
    }

    /// The node at `index` (0 is `a`, 1 `b`, 2 `c`).
    pub fn node(&self, index: usize) -> &DemoNode {
        &self.nodes[index]
    }

    /// Takes the node at `index` off the network.
    pub fn go_offline(&mut self, index: usize) {
        self.nodes[index].go_offline(&mut self.closing);
    }

    /// Puts the node at `index` back on the network.
    pub async fn go_online(&mut self, index: usize) -> anyhow::Result<()> {
        self.nodes[index].go_online().await
    }

    /// A node's name from its id (an author of entries).
    pub fn name_of(&self, author: AuthorId) -> String {
        self.nodes.iter().find(|n| n.id() == author).map_or_else(|| author.to_string(), |n| n.name.to_string())
    }

    /// Every key and value of the demo store on `node`, in key order.
    pub async fn contents(&self, node: &DemoNode) -> anyhow::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        const PAGE: usize = 1000;
        let mut all = BTreeMap::new();
        let mut after = None;
        loop {
            let page = node.node.list(&self.store, b"", after, PAGE).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(k, _)| k.clone());
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    async fn addresses_known(&self) -> bool {
        for node in &self.nodes {
            let Ok(records) = node.node.node_records().await else { return false };
            for other in &self.nodes {
                let addr = other.addr().to_string();
                let known =
                    records.get(&other.id()).and_then(|r| r.info.as_ref()).is_some_and(|i| i.addrs.contains(&addr));
                if other.id() != node.id() && !known {
                    return false;
                }
            }
        }
        true
    }

    /// Stops every node (network first); the first error is returned, every node is stopped.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        // Closes still under way get the same grace as the last networks; the process exits next.
        let deadline = tokio::time::Instant::now() + NETWORK_EXIT_GRACE;
        while !self.closing.is_empty() {
            if tokio::time::timeout_at(deadline, self.closing.join_next()).await.is_err() {
                tracing::info!("a network of the demo is still closing; exiting without waiting for it");
                self.closing.detach_all();
            }
        }
        let mut result = Ok(());
        for node in &mut self.nodes {
            let stopped = node.shutdown().await;
            if result.is_ok() {
                result = stopped;
            }
        }
        result
    }
}

/// A fresh data dir for the node `name` under `root`, and its lock.
fn fresh_dir(root: &Path, name: &str) -> anyhow::Result<(DataDir, Arc<DirLock>)> {
    let dir = DataDir::new(root.join(name))?;
    dir.create()?;
    let lock = Arc::new(DirLock::try_acquire(&dir)?);
    Ok((dir, lock))
}

async fn online(name: &'static str, node: Arc<Node>, config: NetConfig) -> anyhow::Result<DemoNode> {
    let net = Network::start(node.clone(), config).await.with_context(|| format!("{name} on the network"))?;
    let addr = *net.listen_addrs().first().ok_or_else(|| anyhow!("{name} listens nowhere"))?;
    Ok(DemoNode { name, node, net: Some(Arc::new(net)), addr })
}

/// Polls `done` every few milliseconds until it holds; how long that took, or an error naming
/// `what` after [`PATIENCE`].
pub async fn until<F, Fut>(what: &str, mut done: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if done().await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > PATIENCE {
            bail!("gave up waiting for {what} after {} s", PATIENCE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
