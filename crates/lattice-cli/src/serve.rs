//! `lattice serve`: own the data dir in the foreground, on the network, with the control socket
//! and (with `--http`) the HTTP API, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use lattice_http::{HttpConfig, HttpServer, RateLimit};
use lattice_net::NetConfig;
use lattice_node::{DataDir, DirLock, NodeError};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::{Cli, Discovery};
use crate::daemon::ControlServer;
use crate::engine::{Engine, Role};
use crate::failure::report;

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
    let (dir, lock) = match claim(cli) {
        Ok(claimed) => claimed,
        Err(e) => return report(&e),
    };
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return 1;
        }
    };
    let engine = Engine::with_network(dir, lock, Role::Serve, net);
    let running = match Running::start(engine, http).await {
        Ok(running) => running,
        Err(code) => return code,
    };
    wait_for_signal(&mut term, &mut int).await;
    tracing::info!("stopping");
    running.stop().await
}

/// The initialised data dir and its lock. Not `daemon::claim`: serve never forwards, so a dir
/// owned already is an error.
fn claim(cli: &Cli) -> Result<(DataDir, DirLock), NodeError> {
    let dir = DataDir::resolve(cli.data_dir.as_deref())?;
    dir.require_initialised()?;
    let lock = DirLock::try_acquire(&dir)?;
    Ok((dir, lock))
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
        let addrs: Vec<String> = network.listen_addrs().iter().map(|a| a.to_string()).collect();
        eprintln!(
            "lattice: serving {} as node {} on {} and {} (Ctrl-C to stop)",
            engine.dir().path().display(),
            node.node_id(),
            engine.dir().socket().display(),
            addrs.join(", ")
        );
        let Some((addr, config)) = http else { return Ok(Running { engine, server, api: None }) };
        match HttpServer::start(node, addr, config).await {
            Ok(api) => {
                eprintln!("lattice: HTTP API on http://{}", api.local_addr());
                engine.set_http_addr(Some(api.local_addr()));
                Ok(Running { engine, server, api: Some(api) })
            }
            Err(e) => {
                eprintln!("error: {e}");
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
