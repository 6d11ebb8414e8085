//! # lattice (the `lattice` binary)
//!
//! One-shot commands, the interactive shell and `lattice serve`, over one data dir.
//!
//! - [`cli`]: the clap model; one parser for argv and shell lines.
//! - [`words`]: splitting a shell line into words (quotes, backslashes).
//! - [`exec`]: [`exec::Engine`], which runs a parsed command against the node this process
//!   owns, writing output frames; the exit-code mapping of DESIGN.md section 8.
//! - [`render`]: text and JSON forms of keys and values (base64 for binary).
//! - [`protocol`]: the control socket's frames and the [`protocol::Out`] sink.
//! - [`daemon`]: claiming the data dir (lock or forward), the control server, the client.
//! - [`shell`]: rustyline shell, or line-by-line from a pipe.
//!
//! Flow of a one-shot command: parse argv (usage errors exit 2 here) → resolve the data dir →
//! take its lock and run here, or forward the argv to the owner over `lattice.sock` → print the
//! output frames → exit with the command's code. Errors are one line on stderr, never a panic.
//!
//! Architecture invariant: this crate talks to stores only through `lattice_node::Node`.

mod cli;
mod daemon;
mod exec;
mod protocol;
mod render;
mod shell;
mod words;

use std::ffi::OsString;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::Parser;
use lattice_http::{HttpConfig, HttpServer};
use lattice_net::NetConfig;
use lattice_node::{DataDir, NodeError};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Cli, Command};
use crate::daemon::{Claim, ControlServer};
use crate::exec::{Engine, Role, RunOptions, exit_code};

fn main() -> ExitCode {
    init_tracing();
    std::panic::set_hook(Box::new(|info| {
        // A panic is a bug; still, the user gets one line, not a backtrace.
        eprintln!("error: internal error: {info}");
    }));
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version exit 0, usage errors 2 (clap's own mapping).
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match &cli.command {
        None => shell::run(&rt, cli),
        Some(Command::Serve { bind, http, discovery }) => {
            let mut net = NetConfig::default();
            if let Some(bind) = bind {
                net.bind = *bind;
            }
            net.discovery = match discovery {
                cli::Discovery::None => lattice_net::Discovery::None,
                cli::Discovery::Mdns => lattice_net::Discovery::Mdns,
                cli::Discovery::N0 => lattice_net::Discovery::N0,
            };
            rt.block_on(serve(&cli, net, *http))
        }
        Some(_) => {
            let args = argv.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
            rt.block_on(oneshot(cli, args))
        }
    };
    // Store actors are closed by now; do not wait for stray blocking tasks (stdin readers).
    rt.shutdown_background();
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // iroh-gossip warns on every failed dial to a member that is offline or not listening: the
    // mesh handles that itself (backoff, anti-entropy), so its warnings stay out of the default.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,iroh_gossip=error"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

fn fail(e: &NodeError) -> i32 {
    eprintln!("error: {e}");
    exit_code(e.kind())
}

/// One command: run here if the data dir is free, else forward it to its owner.
async fn oneshot(cli: Cli, argv: Vec<String>) -> i32 {
    let Some(command) = cli.command.clone() else { return 2 };
    let dir = match DataDir::resolve(cli.data_dir.as_deref()) {
        Ok(dir) => dir,
        Err(e) => return fail(&e),
    };
    if matches!(command, Command::Init { .. } | Command::Join { .. }) {
        if let Err(e) = dir.create() {
            return fail(&e);
        }
    } else if !dir.exists() {
        return fail(&NodeError::NotInitialised(dir.path().to_path_buf()));
    }
    let stdin = match &command {
        Command::Put { value, .. } if value == "-" => {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().lock().read_to_end(&mut buf) {
                eprintln!("error: cannot read the value from stdin: {e}");
                return 1;
            }
            Some(buf)
        }
        _ => None,
    };
    // A person reading a terminal gets a final newline after a raw value; pipes get exact bytes.
    let terminal = std::io::stdout().is_terminal();
    match daemon::claim(&dir).await {
        Ok(Claim::Own(lock)) => {
            let watch = matches!(command, Command::Watch { .. });
            // A watch runs until interrupted: it serves the socket meanwhile, like a shell.
            let engine = Engine::new(dir, lock, if watch { Role::Watch } else { Role::OneShot });
            let server = if watch {
                match ControlServer::start(engine.clone()) {
                    Ok(server) => Some(server),
                    Err(e) => return fail(&e),
                }
            } else {
                None
            };
            let opts = RunOptions { terminal, local: true, stop: None };
            let code = daemon::run_here(&engine, &cli, stdin, opts).await;
            if let Some(server) = server {
                server.stop().await;
            }
            match engine.shutdown().await {
                Ok(()) => code,
                Err(e) => fail(&e).max(code),
            }
        }
        Ok(Claim::Forward(stream)) => daemon::forward(stream, argv, stdin, terminal).await,
        Err(e) => fail(&e),
    }
}

/// `lattice serve`: own the data dir in the foreground until SIGINT/SIGTERM.
async fn serve(cli: &Cli, net: NetConfig, http: Option<std::net::SocketAddr>) -> i32 {
    let dir = match DataDir::resolve(cli.data_dir.as_deref()) {
        Ok(dir) => dir,
        Err(e) => return fail(&e),
    };
    if let Err(e) = dir.require_initialised() {
        return fail(&e);
    }
    // Not `claim`: serve never forwards; a dir that is owned already is an error.
    let lock = match lattice_node::DirLock::try_acquire(&dir) {
        Ok(lock) => lock,
        Err(e) => return fail(&e),
    };
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return 1;
        }
    };
    let engine = Engine::with_network(dir.clone(), lock, Role::Serve, net);
    let node = match engine.node().await {
        Ok(node) => node,
        Err(e) => return fail(&e),
    };
    // The network first: once the socket answers, `status` shows the listen addresses.
    let network = match engine.network().await {
        Ok(network) => network,
        Err(e) => {
            let _ = engine.shutdown().await;
            return fail(&e);
        }
    };
    let server = match ControlServer::start(engine.clone()) {
        Ok(server) => server,
        Err(e) => {
            let _ = engine.shutdown().await;
            return fail(&e);
        }
    };
    let addrs: Vec<String> = network.listen_addrs().iter().map(|a| a.to_string()).collect();
    eprintln!(
        "lattice: serving {} as node {} on {} and {} (Ctrl-C to stop)",
        dir.path().display(),
        node.node_id(),
        dir.socket().display(),
        addrs.join(", ")
    );
    drop(network);
    let api = match http {
        None => None,
        Some(addr) => match HttpServer::start(node.clone(), addr, HttpConfig::default()).await {
            Ok(api) => {
                eprintln!("lattice: HTTP API on http://{}", api.local_addr());
                engine.set_http_addr(Some(api.local_addr()));
                Some(api)
            }
            Err(e) => {
                eprintln!("error: {e}");
                server.stop().await;
                let _ = engine.shutdown().await;
                return 1;
            }
        },
    };
    drop(node);
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping");
    if let Some(api) = api {
        engine.set_http_addr(None);
        api.shutdown().await;
    }
    server.stop().await;
    match engine.shutdown().await {
        Ok(()) => {
            eprintln!("lattice: stopped");
            0
        }
        Err(e) => fail(&e),
    }
}
