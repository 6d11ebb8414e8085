//! Ownership of the data dir and the control socket.
//!
//! [`claim`] either takes the data dir's lock (this process runs commands itself) or finds the
//! owner's socket (commands are forwarded with [`forward`]). A long-running owner (serve, the
//! shell, a local `watch`) runs a [`ControlServer`] on `lattice.sock`, mode 0600. Any socket file
//! found while holding the lock is stale (its owner died) and is replaced.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lattice_node::{DataDir, DirLock, NodeError};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::{Cli, parse_words};
use crate::commands::{self, RunOptions};
use crate::engine::Engine;
use crate::protocol::{self, Conn, Out, PROTOCOL_VERSION, Reply, Request};
use crate::render::style;

/// How long a command waits for a busy data dir (locked, no socket yet) before giving up.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
/// The keepalive periods an owner accepts: a client can neither make it spin nor overflow
/// its timer.
const KEEPALIVE_MS: std::ops::RangeInclusive<u64> = 20..=3_600_000;
/// Pause between two attempts to claim a busy data dir.
const CLAIM_RETRY: Duration = Duration::from_millis(20);

/// Who runs commands for a data dir.
pub enum Claim {
    /// This process holds the lock.
    Own(DirLock),
    /// Another process holds it and answers on its socket; its pid, as its lock file says.
    Forward(UnixStream, Option<u32>),
}

/// The process a client forwards to, as the client waits for it.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    /// Its pid (from `lattice.lock`), for messages.
    pub pid: Option<u32>,
    /// How long it may send nothing before the client gives up (`--timeout`).
    pub timeout: Duration,
}

impl Owner {
    /// How often the owner is asked to say it is alive: well within the client's timeout.
    fn keepalive(&self) -> Duration {
        (self.timeout / 4).max(Duration::from_millis(50))
    }

    /// The line a client prints when the owner has been silent for its whole timeout.
    fn silent(&self) -> String {
        let who = match self.pid {
            Some(pid) => format!("the daemon (pid {pid})"),
            None => "the daemon".to_string(),
        };
        format!("error: {who} sent nothing for {} s; is it stopped?", self.timeout.as_secs())
    }
}

/// Takes the lock, or connects to the owner's socket. A dir locked by a process without a socket
/// (another one-shot command) is retried until [`CLAIM_TIMEOUT`].
pub async fn claim(dir: &DataDir) -> Result<Claim, NodeError> {
    let deadline = Instant::now() + CLAIM_TIMEOUT;
    loop {
        match DirLock::try_acquire(dir) {
            Ok(lock) => {
                remove_stale_socket(dir);
                return Ok(Claim::Own(lock));
            }
            Err(NodeError::Locked { path, pid }) => {
                if let Ok(stream) = UnixStream::connect(dir.socket()).await {
                    return Ok(Claim::Forward(stream, pid));
                }
                if Instant::now() >= deadline {
                    return Err(NodeError::Locked { path, pid });
                }
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(CLAIM_RETRY).await;
    }
}

/// Removes `lattice.sock` left by a dead owner. Call only while holding the lock.
fn remove_stale_socket(dir: &DataDir) {
    let path = dir.socket();
    if std::fs::symlink_metadata(&path).is_ok() {
        tracing::info!(path = %path.display(), "removing a stale control socket");
        let _ = std::fs::remove_file(&path);
    }
}

/// Runs a command in this process, writing to this process's stdout/stderr as output arrives.
pub async fn run_here(engine: &Engine, cli: &Cli, stdin: Option<Vec<u8>>, opts: RunOptions) -> i32 {
    let (out, rx) = Out::channel();
    let run = async {
        let code = commands::run(engine, cli, stdin, opts, &out).await;
        drop(out);
        code
    };
    let (code, ()) = tokio::join!(run, to_terminal(rx));
    code
}

/// Writes replies to the terminal until the sink closes.
async fn to_terminal(mut rx: mpsc::UnboundedReceiver<Reply>) {
    while let Some(reply) = rx.recv().await {
        print_reply(&reply);
    }
}

fn print_reply(reply: &Reply) {
    match reply {
        Reply::Stdout { data } => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(data).and_then(|_| stdout.flush());
        }
        // Painted here, on the side the user reads: lines over the socket stay plain.
        Reply::Stderr { line } => style::eprint_line(line),
        Reply::Exit { .. } | Reply::Prompt { .. } | Reply::Alive => {}
    }
}

/// Sends one command to the owner and relays its output; returns its exit code. Ctrl-C ends the
/// wait (the owner notices the closed connection and stops the command, e.g. a `watch`). An
/// owner that sends nothing for `owner.timeout` (it sends [`Reply::Alive`] while it works) is
/// given up on: exit 1, naming its pid. Colour is decided here, by this process's stdout.
pub async fn forward(
    stream: UnixStream,
    owner: Owner,
    argv: Vec<std::ffi::OsString>,
    stdin: Option<Vec<u8>>,
    terminal: bool,
) -> i32 {
    let mut conn = protocol::framed(stream);
    let keepalive_ms = u64::try_from(owner.keepalive().as_millis()).unwrap_or(u64::MAX).min(*KEEPALIVE_MS.end());
    let color = style::stdout_color();
    let request =
        Request::Run { version: PROTOCOL_VERSION, argv, stdin, terminal, keepalive_ms: Some(keepalive_ms), color };
    match tokio::time::timeout(owner.timeout, protocol::send(&mut conn, &request)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            style::eprint_line(&format!("error: cannot reach the lattice process that owns this data dir: {e}"));
            return 1;
        }
        Err(_) => {
            style::eprint_line(&owner.silent());
            return 1;
        }
    }
    let relay = async {
        loop {
            match tokio::time::timeout(owner.timeout, protocol::recv::<Reply>(&mut conn)).await {
                Err(_) => {
                    style::eprint_line(&owner.silent());
                    return 1;
                }
                Ok(Ok(Some(Reply::Exit { code }))) => return code,
                Ok(Ok(Some(reply))) => print_reply(&reply),
                Ok(Ok(None)) => {
                    style::eprint_line("error: the lattice process that owns this data dir closed the connection");
                    return 1;
                }
                Ok(Err(e)) => {
                    style::eprint_line(&format!(
                        "error: lost the connection to the lattice process that owns this data dir: {e}"
                    ));
                    return 1;
                }
            }
        }
    };
    tokio::select! {
        code = relay => code,
        _ = tokio::signal::ctrl_c() => 130,
    }
}

/// Asks the owner which store a shell prompt should show (`None` if it does not answer within
/// `timeout`).
pub async fn remote_prompt(dir: &DataDir, timeout: Duration) -> Option<String> {
    let ask = async {
        let stream = UnixStream::connect(dir.socket()).await.ok()?;
        let mut conn = protocol::framed(stream);
        protocol::send(&mut conn, &Request::Prompt { version: PROTOCOL_VERSION }).await.ok()?;
        match protocol::recv::<Reply>(&mut conn).await {
            Ok(Some(Reply::Prompt { store })) => store,
            _ => None,
        }
    };
    tokio::time::timeout(timeout, ask).await.ok().flatten()
}

/// The control socket of a long-running owner. Every connection task is tracked; [`stop`]
/// ends them (a `watch` ends when cancelled) and waits for all before removing the socket.
///
/// [`stop`]: ControlServer::stop
pub struct ControlServer {
    path: PathBuf,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl ControlServer {
    /// Binds `lattice.sock` (replacing a stale one) with mode 0600 and starts accepting.
    /// The caller must hold the data dir's lock (the engine does).
    pub fn start(engine: Arc<Engine>) -> Result<ControlServer, NodeError> {
        let path = engine.dir().socket();
        let io_err = |what: &str, e| NodeError::io(format!("cannot {what} control socket {}", path.display()), e);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| io_err("bind", e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| io_err("chmod", e))?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(listener, engine, cancel.clone(), tracker.clone()));
        Ok(ControlServer { path, cancel, tracker })
    }

    /// Stops accepting, ends running commands' waits, waits for every connection task, and
    /// removes the socket file.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept_loop(listener: UnixListener, engine: Arc<Engine>, cancel: CancellationToken, tracker: TaskTracker) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tracker.spawn(serve_connection(stream, engine.clone(), cancel.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn serve_connection(stream: UnixStream, engine: Arc<Engine>, cancel: CancellationToken) {
    let mut conn = protocol::framed(stream);
    let request = tokio::select! {
        _ = cancel.cancelled() => return,
        r = protocol::recv::<Request>(&mut conn) => r,
    };
    let request = match request {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "bad control request");
            let _ = reply_error(&mut conn, format!("error: bad control request: {e}"), 2).await;
            return;
        }
    };
    match request {
        Request::Prompt { .. } => {
            let store = engine.prompt_store().await;
            let _ = protocol::send(&mut conn, &Reply::Prompt { store }).await;
        }
        Request::Run { version, .. } if version != PROTOCOL_VERSION => {
            let line = format!(
                "error: control protocol version {version} is not {PROTOCOL_VERSION}; use the same lattice binary"
            );
            let _ = reply_error(&mut conn, line, 1).await;
        }
        Request::Run { argv, stdin, terminal, keepalive_ms, color, .. } => {
            let cli = match parse_words(&argv) {
                Ok(cli) => cli,
                Err(e) => {
                    let _ = reply_error(&mut conn, e.render().to_string().trim_end().to_string(), 2).await;
                    return;
                }
            };
            let opts = RunOptions { terminal, local: false, stop: Some(cancel), color };
            let keepalive =
                keepalive_ms.map(|ms| Duration::from_millis(ms.clamp(*KEEPALIVE_MS.start(), *KEEPALIVE_MS.end())));
            run_for_client(conn, &engine, &cli, stdin, opts, keepalive).await;
        }
    }
}

/// Runs a forwarded command, relaying its output as it is produced, then its exit code.
async fn run_for_client(
    conn: Conn,
    engine: &Engine,
    cli: &Cli,
    stdin: Option<Vec<u8>>,
    opts: RunOptions,
    keepalive: Option<Duration>,
) {
    let (out, rx) = Out::channel();
    let run = async {
        let code = commands::run(engine, cli, stdin, opts, &out).await;
        drop(out);
        code
    };
    let (code, conn) = tokio::join!(run, relay(conn, rx, keepalive));
    if let Some(mut conn) = conn {
        let _ = protocol::send(&mut conn, &Reply::Exit { code }).await;
    }
}

/// Sends replies to the client until the command's output ends (then gives the connection
/// back for the exit code), or until the client goes away. `rx` is dropped as the relay ends,
/// which closes the command's `Out`, so a `watch` for a departed client ends. With `keepalive`,
/// [`Reply::Alive`] goes out whenever that long has passed since the last frame.
async fn relay(mut conn: Conn, mut rx: mpsc::UnboundedReceiver<Reply>, keepalive: Option<Duration>) -> Option<Conn> {
    let period = keepalive.unwrap_or(Duration::MAX);
    let alive = tokio::time::sleep(period);
    tokio::pin!(alive);
    loop {
        tokio::select! {
            () = &mut alive, if keepalive.is_some() => {
                if protocol::send(&mut conn, &Reply::Alive).await.is_err() {
                    return None;
                }
                alive.as_mut().reset(Instant::now() + period);
            }
            reply = rx.recv() => match reply {
                Some(reply) => {
                    if protocol::send(&mut conn, &reply).await.is_err() {
                        return None;
                    }
                    if keepalive.is_some() {
                        alive.as_mut().reset(Instant::now() + period);
                    }
                }
                None => return Some(conn),
            },
            // A client sends nothing after its request: end of stream means it left.
            incoming = conn.next() => if !matches!(incoming, Some(Ok(_))) {
                return None;
            },
        }
    }
}

async fn reply_error(conn: &mut Conn, line: String, code: i32) -> std::io::Result<()> {
    protocol::send(conn, &Reply::Stderr { line }).await?;
    protocol::send(conn, &Reply::Exit { code }).await
}
