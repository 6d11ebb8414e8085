//! The HTTP API (`serve --http`) end to end, on a node in the data dir and keep-alive HTTP/1.1
//! connections over loopback, each request carrying a bearer token (so the token check, the
//! rate limiter and the store are all on the path):
//!
//! - `http.put`: [`CONNECTIONS`] connections doing `PUT /stores/bench/keys/...` of 100-byte values
//!   back to back; every answered put is durable (group commit folds concurrent ones). Ratio to
//!   `limit.fsync`.
//! - `http.get`: the same connections reading those keys back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lattice_http::{HttpConfig, HttpServer, RateLimit};
use lattice_node::{DataDir, DirLock, Node, Permissions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::Ctx;
use super::fixtures::{VALUE_BYTES, runtime, scratch_dir, value};
use crate::measure::Rate;
use crate::report::Row;

/// Concurrent client connections.
pub const CONNECTIONS: u64 = 16;

/// One keep-alive HTTP/1.1 connection (also `http_batch`'s).
pub(super) struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
    auth: String,
}

impl Conn {
    pub(super) async fn open(addr: SocketAddr, token: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await.context("connecting to the HTTP API")?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream: BufReader::new(stream), host: addr.to_string(), auth: format!("Bearer {token}") })
    }

    /// Sends one request and reads the whole response; returns its status.
    pub(super) async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<u16> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            self.auth,
            body.len()
        );
        let socket = self.stream.get_mut();
        socket.write_all(head.as_bytes()).await?;
        socket.write_all(body).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("malformed status line")?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("connection closed in the response head");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().context("content-length")?;
            }
        }
        let mut rest = vec![0u8; length];
        self.stream.read_exact(&mut rest).await?;
        Ok(status)
    }
}

/// A node with a store `bench`, a token for it and the HTTP API on loopback, without a rate
/// limit: what every HTTP scenario measures against (the API, not the limiter's default of 100
/// requests/s per token).
pub(super) struct BenchApi {
    pub node: Arc<Node>,
    pub server: HttpServer,
    /// `ID:SECRET` of a token for `bench`.
    pub token: String,
}

impl BenchApi {
    pub(super) async fn start(dir: &Path, permissions: Permissions) -> Result<BenchApi> {
        let data = DataDir::new(dir)?;
        let lock = Arc::new(DirLock::try_acquire(&data)?);
        let node = Arc::new(Node::init(data, lock, Some("bench".into())).await?);
        node.create_store("bench").await?;
        let (record, secret) = node.create_token("bench", None, permissions, None).await?;
        let config =
            HttpConfig { rate_limit: RateLimit { per_second: u32::MAX, burst: u32::MAX }, ..HttpConfig::default() };
        let server = HttpServer::start(node.clone(), "127.0.0.1:0".parse()?, config).await?;
        Ok(BenchApi { node, server, token: format!("{}:{secret}", record.id) })
    }

    pub(super) async fn stop(self) -> Result<()> {
        self.server.shutdown().await;
        self.node.shutdown().await?;
        Ok(())
    }
}

pub fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = scratch_dir(ctx, "http")?;
    let rt = runtime(2)?;
    rt.block_on(async {
        let api = BenchApi::start(dir.path(), Permissions::ReadWrite).await?;
        let (addr, token) = (api.server.local_addr(), api.token.clone());

        let (puts, written) =
            timed(addr, &token, ctx.budget.time, |c, i| (format!("/stores/bench/keys/k/{c}/{i}"), true)).await?;
        // Every connection wrote keys 0..written at least.
        let (gets, _) = timed(addr, &token, ctx.budget.time, move |c, i| {
            (format!("/stores/bench/keys/k/{c}/{}", i % written.max(1)), false)
        })
        .await?;
        api.stop().await?;
        let row = |name: &str, unit: &str, rate: Rate| {
            Row::from_rate(name, unit, rate).param("connections", CONNECTIONS).param("value_bytes", VALUE_BYTES)
        };
        Ok(vec![
            row("http.put", "put/s", puts)
                .param("durable", "each answer follows its log fsync")
                .ratio_to(&ctx.limits.fsync),
            row("http.get", "get/s", gets),
        ])
    })
}

/// Runs [`CONNECTIONS`] connections for `time`, each sending the request `target(conn, i)` gives
/// (`(path, is_put)`) for its `i`-th request; every answer must be 200. Returns the rate of the
/// timed window and the fewest requests any connection made in all.
async fn timed(
    addr: SocketAddr,
    token: &str,
    time: Duration,
    target: impl Fn(u64, u64) -> (String, bool) + Send + Sync + Clone + 'static,
) -> Result<(Rate, u64)> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for c in 0..CONNECTIONS {
        let mut conn = Conn::open(addr, token).await?;
        let (done, stop, target) = (done.clone(), stop.clone(), target.clone());
        clients.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (path, is_put) = target(c, i);
                let status = if is_put {
                    conn.request("PUT", &path, &value(i)).await?
                } else {
                    conn.request("GET", &path, b"").await?
                };
                ensure!(status == 200, "{path} answered {status}");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(i)
        });
    }
    let (d0, t0) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(time).await;
    let (d1, elapsed) = (done.load(Ordering::Relaxed), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    let mut fewest = u64::MAX;
    while let Some(client) = clients.join_next().await {
        fewest = fewest.min(client.context("a client task panicked")??);
    }
    Ok((Rate { ops: d1 - d0, elapsed }, fewest))
}
