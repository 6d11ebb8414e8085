//! The server's lifecycle: binding, the router, and a graceful shutdown that owns its task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use lattice_node::Node;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::keys::{delete_key, get_key, list_keys, put_key};
use crate::rate::{Limiter, RateLimit};
use crate::reply::{ApiError, Json, json_errors};

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

/// How long a PUT's body may take once its token is accepted: a full value
/// (`MAX_VALUE_BYTES`, 1 MiB) at 64 KiB/s needs 16 s.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Tunables of the HTTP API.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Requests each token may make: a sustained rate and a burst.
    pub rate_limit: RateLimit,
    /// Time allowed for a PUT's body after its token is accepted (default 30 s); then 408.
    pub body_read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { rate_limit: RateLimit { per_second: 100, burst: 200 }, body_read_timeout: BODY_READ_TIMEOUT }
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
}

/// The handlers' view of [`Api`].
pub(crate) type Shared = State<Arc<Api>>;

impl HttpServer {
    /// Binds `addr` and serves the API for `node` until [`HttpServer::shutdown`].
    pub async fn start(node: Arc<Node>, addr: SocketAddr, config: HttpConfig) -> Result<HttpServer, HttpError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| HttpError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| HttpError::Bind { addr, source })?;
        let api = Arc::new(Api {
            node,
            limiter: Limiter::new(config.rate_limit),
            body_read_timeout: config.body_read_timeout,
        });
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let app = router(api);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        tracing::info!(addr = %local, "HTTP API listening");
        Ok(HttpServer { addr: local, cancel, task })
    }

    /// The address it listens on (the port chosen when `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server task.
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
        .route("/stores/{store}/keys", get(list_keys))
        .route("/stores/{store}/keys/{*key}", get(get_key).put(put_key).delete(delete_key))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(api)
}
