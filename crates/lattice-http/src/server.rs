//! The server's lifecycle: binding, the router, and a bounded shutdown that owns its task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use lattice_node::Node;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::keys::{delete_key, get_key, list_keys, put_key};
use crate::openapi::openapi_json;
use crate::rate::{Limiter, RateLimit};
use crate::reply::{ApiError, Json, json_errors};
use crate::txn::{MAX_BATCH_BODY_BYTES, post_batch};
use crate::{conn, watch};

/// Why the HTTP API could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Connections served at once. A process's soft file-descriptor limit is often 1024, and the
/// node's stores, its mesh connections and the control socket need theirs whatever HTTP
/// clients do; 256 leaves them that room.
const MAX_CONNECTIONS: usize = 256;

/// How long a client has to send a request head. hyper starts the clock whenever a connection
/// waits for a head (at accept, and after each response on a keep-alive connection), so this
/// is also the idle keep-alive timeout. A real client sends its head at once.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a PUT's body may take once its token is accepted: a full value
/// (`MAX_VALUE_BYTES`, 1 MiB) at 64 KiB/s needs 16 s.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown lets requests in flight finish before it drops their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How often an idle watch stream sends a `: keep-alive` comment (proxies close silent
/// connections; a client notices a dead one).
const WATCH_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Tunables of the HTTP API.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Requests each token may make: a sustained rate and a burst.
    pub rate_limit: RateLimit,
    /// Connections served at once (at least 1; default 256). At the cap, a new connection
    /// closes the one idle longest (no request being handled, possibly a head half-sent); when
    /// none is idle, it waits for a connection to end or go idle, and later ones wait in the
    /// listen backlog.
    pub max_connections: usize,
    /// Time allowed for a request head, and for an idle keep-alive connection's next one
    /// (default 10 s); then the connection is closed.
    pub header_read_timeout: Duration,
    /// Time allowed for a PUT's body after its token is accepted (default 30 s); then 408.
    pub body_read_timeout: Duration,
    /// How long [`HttpServer::shutdown`] lets requests in flight finish (default 3 s); then
    /// their connections are dropped.
    pub shutdown_grace: Duration,
    /// How often an idle watch stream (`GET /stores/{store}/watch`) sends a `: keep-alive`
    /// comment (default 15 s).
    pub watch_keep_alive: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            rate_limit: RateLimit { per_second: 100, burst: 200 },
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            shutdown_grace: SHUTDOWN_GRACE,
            watch_keep_alive: WATCH_KEEP_ALIVE,
        }
    }
}

/// The running HTTP API.
pub struct HttpServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// What every handler shares: the node, the per-token rate limiter and the body timeout.
pub(crate) struct Api {
    pub(crate) node: Arc<Node>,
    pub(crate) limiter: Limiter,
    pub(crate) body_read_timeout: Duration,
    /// Cancelled at shutdown: watch streams end on it.
    pub(crate) stop: CancellationToken,
    pub(crate) watch_keep_alive: Duration,
}

/// The handlers' view of [`Api`].
pub(crate) type Shared = State<Arc<Api>>;

impl HttpServer {
    /// Binds `addr` and serves the API for `node` until [`HttpServer::shutdown`].
    pub async fn start(node: Arc<Node>, addr: SocketAddr, config: HttpConfig) -> Result<HttpServer, HttpError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| HttpError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| HttpError::Bind { addr, source })?;
        let cancel = CancellationToken::new();
        let api = Arc::new(Api {
            node,
            limiter: Limiter::new(config.rate_limit),
            body_read_timeout: config.body_read_timeout,
            stop: cancel.clone(),
            watch_keep_alive: config.watch_keep_alive,
        });
        let task = tokio::spawn(conn::serve(listener, router(api), conn::Limits::from(&config), cancel.clone()));
        tracing::info!(addr = %local, "HTTP API listening");
        Ok(HttpServer { addr: local, cancel, task })
    }

    /// The address it listens on (the port chosen when `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish for up to
    /// [`HttpConfig::shutdown_grace`], drops the connections still open, and waits for the
    /// server task: it returns within the grace period whatever clients do.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "HTTP server task failed");
        }
    }
}

fn router(api: Arc<Api>) -> Router {
    // A value may be up to the entry limit; a little more leaves room to say so precisely.
    let body_limit = lattice_core::entry::MAX_VALUE_BYTES + 1024;
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/openapi.json", get(openapi_json))
        .route("/stores/{store}/keys", get(list_keys))
        .route("/stores/{store}/keys/{*key}", get(get_key).put(put_key).delete(delete_key))
        .route("/stores/{store}/proof/{*key}", get(crate::keys::get_proof))
        .route("/stores/{store}/batch", post(post_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES)))
        .route("/stores/{store}/watch", get(watch::watch))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(api)
}
