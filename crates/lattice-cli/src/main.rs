//! # lattice (the `lattice` binary)
//!
//! One-shot commands, the interactive shell and `lattice serve`, over one data dir.
//!
//! - [`cli`]: the clap model; one parser for argv and shell lines.
//! - [`words`]: splitting a shell line into words (quotes, backslashes).
//! - [`oneshot`]: one command from argv: run here, or forward it to the dir's owner.
//! - [`demo`]: `lattice demo`: three nodes in this process, narrated.
//! - [`serve`]: `lattice serve`: node, network, control socket and HTTP API until a signal.
//! - [`shell`]: rustyline shell, or line-by-line from a pipe.
//! - [`engine`]: [`engine::Engine`], the data dir as this process owns it: lock, node, network,
//!   role, shutdown.
//! - [`commands`]: [`commands::run`], one parsed command against an engine; a file per group of
//!   commands, each command one function.
//! - [`render`]: how results look: text tables, JSON documents, value text forms, watch lines,
//!   the sync progress bar.
//! - [`failure`]: an error as the user sees it, and the exit codes of docs/design.md, CLI.
//! - [`protocol`]: the control socket's frames and the [`protocol::Out`] sink.
//! - [`generate`]: `lattice completions` and `lattice man`, from the clap model, no data dir.
//! - [`daemon`]: claiming the data dir (lock or forward), the control server, the client.
//!
//! Flow of a one-shot command: parse argv (usage errors exit 2 here) → resolve the data dir →
//! take its lock and run here, or forward the argv to the owner over `lattice.sock` → print the
//! output frames → exit with the command's code. Errors are one line on stderr, never a panic.
//!
//! Architecture invariant: this crate talks to stores only through `lattice_node::Node`;
//! `render` never talks to a node, and `commands` never formats output itself.

mod cli;
mod commands;
mod daemon;
mod demo;
mod engine;
mod failure;
mod generate;
mod oneshot;
mod protocol;
mod render;
mod serve;
mod shell;
mod words;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
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
    // The demo's nodes go offline on purpose: their peers' complaints about it are not news.
    init_tracing(if matches!(cli.command, Some(Command::Demo { .. })) { "error" } else { DEFAULT_LOG });
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match &cli.command {
        None => shell::run(&rt, cli),
        Some(Command::Demo { keep }) => rt.block_on(demo::run(keep.clone(), cli.json)),
        Some(Command::Serve { bind, http, http_rate, http_burst, discovery }) => {
            let http = serve::Http { addr: *http, rate: http_rate, burst: *http_burst };
            rt.block_on(serve::serve(&cli, serve::net_config(*bind, *discovery), http))
        }
        // Before anything resolves a data dir: these need none and must not create one.
        Some(Command::Completions { shell }) => generate::completions(*shell),
        Some(Command::Man { dir }) => generate::man(dir.as_deref()),
        // Checked against the key given, offline: no data dir either.
        Some(command @ Command::VerifyProof { node: Some(node), .. }) => match commands::read_input(command, true) {
            Ok(bytes) => commands::verify_offline(&bytes.unwrap_or_default(), node, cli.json),
            Err(f) => {
                render::style::eprint_line(&f.line());
                f.code()
            }
        },
        Some(_) => {
            let args = argv.into_iter().skip(1).collect();
            rt.block_on(oneshot::run(cli, args))
        }
    };
    // Store actors are closed by now; do not wait for stray blocking tasks (stdin readers).
    rt.shutdown_background();
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// What is logged unless RUST_LOG says otherwise. iroh-gossip warns on every failed dial to a
/// member that is offline or not listening: the mesh handles that itself (backoff,
/// anti-entropy), so its warnings stay out of the default.
const DEFAULT_LOG: &str = "warn,iroh_gossip=error";

fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(render::style::stderr_color())
        .with_target(false)
        .init();
}
