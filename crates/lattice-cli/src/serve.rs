//! `lattice serve`: own the data dir in the foreground, on the network, with the control socket
//! and (with `--http`) the HTTP API, until SIGINT or SIGTERM. A data dir that was never
//! initialised is initialised first, as `lattice init` would.

use std::net::SocketAddr;
use std::sync::Arc;

use lattice_http::{HttpConfig, HttpServer, RateLimit};
use lattice_net::NetConfig;
use lattice_node::{DataDir, DirLock, Node, NodeError};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::{Cli, DEFAULT_HTTP_ADDR, Discovery};
use crate::daemon::ControlServer;
use crate::engine::{Engine, Role};
use crate::failure::report;
use crate::render::style;

/// The network configuration `--bind` and `--discovery` ask for.
pub fn net_config(bind: Option<SocketAddr>, discovery: Discovery) -> NetConfig {
    let mut net = NetConfig::default();
    if let Some(bind) = bind {
        net.bind = bind;
    }
    net.discovery = match discovery {
        Discovery::None => lattice_net::Discovery::None,
        Discovery::Mdns => lattice_net::Discovery::Mdns,
        Discovery::N0 => lattice_net::Discovery::N0,
    };
    net
}

/// The HTTP flags of `serve`: `--http ADDR`, `--http-rate N/s`, `--http-burst N`.
pub struct Http<'a> {
    pub addr: Option<SocketAddr>,
    pub rate: &'a str,
    pub burst: u32,
}

impl Http<'_> {
    /// The HTTP API's config from the flags; a bad rate or a zero burst is a usage error.
    fn config(&self) -> Result<HttpConfig, NodeError> {
        let per_second =
            lattice_node::parse_rate(self.rate).map_err(|e| NodeError::Invalid(format!("--http-rate: {e}")))?;
        if self.burst == 0 {
            return Err(NodeError::Invalid("--http-burst must be at least 1".into()));
        }
        Ok(HttpConfig { rate_limit: RateLimit { per_second, burst: self.burst }, ..HttpConfig::default() })
    }
}

/// Serves until a signal; returns the exit code.
pub async fn serve(cli: &Cli, net: NetConfig, http: Http<'_>) -> i32 {
    let config = match http.config() {
        Ok(config) => config,
        Err(e) => return report(&e),
    };
    let http = http.addr.map(|addr| (addr, config));
    let (dir, lock, fresh) = match claim(cli) {
        Ok(claimed) => claimed,
        Err(e) => return report(&e),
    };
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            style::eprint_line(&format!("error: cannot install signal handlers: {e}"));
            return 1;
        }
    };
    let engine = Engine::with_network(dir, lock, Role::Serve, net);
    if fresh {
        match engine.init(None).await {
            Ok(node) => eprintln!(
                "lattice: initialised a new node in {} (its identity is in identity.key)",
                node.data_dir().path().display()
            ),
            Err(e) => return report(&e),
        }
    }
    let running = match Running::start(engine, http).await {
        Ok(running) => running,
        Err(code) => return code,
    };
    wait_for_signal(&mut term, &mut int).await;
    tracing::info!("stopping");
    running.stop().await
}

/// The data dir (created if need be), its lock, and whether it still needs initialising. Not
/// `daemon::claim`: serve never forwards, so a dir owned already is an error.
fn claim(cli: &Cli) -> Result<(DataDir, DirLock, bool), NodeError> {
    let dir = DataDir::resolve(cli.data_dir.as_deref())?;
    dir.create()?;
    let lock = DirLock::try_acquire(&dir)?;
    // Asked under the lock: nobody else can be initialising it meanwhile.
    let fresh = !dir.is_initialised();
    Ok((dir, lock, fresh))
}

async fn wait_for_signal(term: &mut Signal, int: &mut Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// What `serve` runs: the engine (node and network), the control socket, the HTTP API.
struct Running {
    engine: Arc<Engine>,
    server: ControlServer,
    api: Option<HttpServer>,
}

impl Running {
    /// Starts everything; on failure, stops what had started, prints the error and gives the
    /// exit code.
    async fn start(engine: Arc<Engine>, http: Option<(SocketAddr, HttpConfig)>) -> Result<Running, i32> {
        let node = match engine.node().await {
            Ok(node) => node,
            Err(e) => return Err(report(&e)),
        };
        // The network first: once the socket answers, `status` shows the listen addresses.
        let started = match engine.network().await {
            Ok(network) => ControlServer::start(engine.clone()).map(|server| (network, server)),
            Err(e) => Err(e),
        };
        let (network, server) = match started {
            Ok(started) => started,
            Err(e) => {
                let _ = engine.shutdown().await;
                return Err(report(&e));
            }
        };
        let listen = network.listen_addrs();
        let Some((addr, config)) = http else {
            eprint!("{}", welcome(&engine, &node, &listen, None).await);
            return Ok(Running { engine, server, api: None });
        };
        match HttpServer::start(node.clone(), addr, config).await {
            Ok(api) => {
                engine.set_http_addr(Some(api.local_addr()));
                eprint!("{}", welcome(&engine, &node, &listen, Some(api.local_addr())).await);
                Ok(Running { engine, server, api: Some(api) })
            }
            Err(e) => {
                style::eprint_line(&format!("error: {e}"));
                server.stop().await;
                let _ = engine.shutdown().await;
                Err(1)
            }
        }
    }

    /// Stops the HTTP API, then the control socket, then the node; returns the exit code.
    async fn stop(self) -> i32 {
        if let Some(api) = self.api {
            self.engine.set_http_addr(None);
            api.shutdown().await;
        }
        self.server.stop().await;
        match self.engine.shutdown().await {
            Ok(()) => {
                eprintln!("lattice: stopped");
                0
            }
            Err(e) => report(&e),
        }
    }
}

/// What `serve` prints once it is up: where it is, how others reach it, what to type next.
async fn welcome(engine: &Engine, node: &Node, listen: &[SocketAddr], http: Option<SocketAddr>) -> String {
    let id = node.node_id();
    let dir = engine.dir().path().display();
    let store = match node.current_store().await {
        Ok(Some(store)) => store.name,
        _ => lattice_node::DEFAULT_STORE_NAME.to_string(),
    };
    let peer = listen.first().map_or_else(|| id.to_string(), |addr| format!("{id}@{}", reachable(*addr)));
    let mut lines = vec![
        format!("lattice: serving {dir} as node {id} (Ctrl-C to stop)"),
        format!("  peer address: {peer}"),
        format!("                (a node you `lattice invite` joins with `lattice join {peer}`)"),
        format!("  commands:     `lattice --data-dir {dir} put hello world` and the rest go through"),
        format!("                {}", engine.dir().socket().display()),
    ];
    match http {
        Some(addr) => {
            // Scripts read the address from the end of this line.
            lines.push(format!("  HTTP API on http://{addr}"));
            lines.push(format!("                (a token for it: `lattice --data-dir {dir} create-token {store}`)"));
        }
        None => lines.push(format!("  HTTP API off (`serve --http` serves it on {DEFAULT_HTTP_ADDR})")),
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// An address another node can dial: a wildcard bind (0.0.0.0, ::) is shown as loopback, the
/// one address sure to reach it from this machine.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}
