//! One command from the command line: run it here if the data dir is free, else forward it to
//! the process that owns the dir.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::time::Duration;

use lattice_node::{DataDir, NodeError};

use crate::cli::{Cli, Command};
use crate::commands::RunOptions;
use crate::daemon::{self, Claim, ControlServer, Owner};
use crate::engine::{Engine, Role};
use crate::failure::report;

/// Runs `cli`'s command (`argv` is its words, forwarded as they are); returns its exit code.
pub async fn run(cli: Cli, argv: Vec<OsString>) -> i32 {
    let Some(command) = cli.command.clone() else { return 2 };
    let dir = match ready_dir(&cli, &command) {
        Ok(dir) => dir,
        Err(e) => return report(&e),
    };
    let stdin = match crate::commands::read_input(&command, true) {
        Ok(input) => input,
        Err(failure) => {
            eprintln!("{}", failure.line());
            return failure.code();
        }
    };
    // A person reading a terminal gets a final newline after a raw value; pipes get exact bytes.
    let terminal = std::io::stdout().is_terminal();
    match daemon::claim(&dir).await {
        Ok(Claim::Own(lock)) => run_owned(&cli, &command, dir, lock, stdin, terminal).await,
        Ok(Claim::Forward(stream, pid)) => {
            let owner = Owner { pid, timeout: Duration::from_secs(cli.timeout) };
            daemon::forward(stream, owner, argv, stdin, terminal).await
        }
        Err(e) => report(&e),
    }
}

/// The data dir, created for `init` and `join`, which every other command needs initialised.
fn ready_dir(cli: &Cli, command: &Command) -> Result<DataDir, NodeError> {
    let dir = DataDir::resolve(cli.data_dir.as_deref())?;
    if matches!(command, Command::Init { .. } | Command::Join { .. }) {
        dir.create()?;
    } else if !dir.exists() {
        return Err(NodeError::NotInitialised(dir.path().to_path_buf()));
    }
    Ok(dir)
}

/// Runs the command in this process, which holds the data dir's lock.
async fn run_owned(
    cli: &Cli,
    command: &Command,
    dir: DataDir,
    lock: lattice_node::DirLock,
    stdin: Option<Vec<u8>>,
    terminal: bool,
) -> i32 {
    let watch = matches!(command, Command::Watch { .. });
    // A watch runs until interrupted: it serves the socket meanwhile, like a shell.
    let engine = Engine::new(dir, lock, if watch { Role::Watch } else { Role::OneShot });
    let server = if watch {
        match ControlServer::start(engine.clone()) {
            Ok(server) => Some(server),
            Err(e) => return report(&e),
        }
    } else {
        None
    };
    let opts = RunOptions { terminal, local: true, stop: None, color: crate::render::style::stdout_color() };
    let code = daemon::run_here(&engine, cli, stdin, opts).await;
    if let Some(server) = server {
        server.stop().await;
    }
    match engine.shutdown().await {
        Ok(()) => code,
        Err(e) => report(&e).max(code),
    }
}
