//! Accepting and serving connections: hyper's HTTP/1 connections driven directly (`axum::serve`
//! has no header-read timeout and no cap), at most `max_connections` at once, each in a task
//! that shutdown ends within its grace period.
//!
//! At the cap, the connection idle longest makes room for a new one: a stranger holding idle
//! connections (or half-sent heads) cannot keep a token holder out, since each connection of
//! theirs is the next to go; connections with a request in progress are never closed for it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::server::HttpConfig;
use crate::wire::JsonErrors;

/// The largest request head (request line and headers). hyper answers a URI over its own
/// 64 KiB limit with 414; this leaves room for that and 32 KiB of headers, and anything
/// larger is 431. It bounds what each connection may buffer before a handler runs.
const MAX_HEAD_BYTES: usize = 96 * 1024;

/// After `accept` fails (out of file descriptors, most likely), wait this long before the next
/// try rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What [`serve`] needs of [`HttpConfig`].
pub(crate) struct Limits {
    max_connections: usize,
    header_read_timeout: Duration,
    shutdown_grace: Duration,
}

impl From<&HttpConfig> for Limits {
    fn from(config: &HttpConfig) -> Limits {
        Limits {
            max_connections: config.max_connections.max(1),
            header_read_timeout: config.header_read_timeout,
            shutdown_grace: config.shutdown_grace,
        }
    }
}

/// Accepts connections and serves `app` on each until `stop`; then waits for every connection
/// task (each ends within `shutdown_grace`).
pub(crate) async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_header_size(MAX_HEAD_BYTES);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(Connections::default());
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Some(slot) = open.slot(&slots, &stop).await else { break };
        let conn = open.register(stop.child_token());
        let served = Connection { http: http.clone(), app: app.clone(), conn, stop: stop.clone(), slot };
        tasks.spawn(served.run(stream, peer, limits.shutdown_grace));
    }
    // Stop accepting at once: new clients are refused rather than queued behind the shutdown.
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// One accepted connection and what it holds until it ends.
struct Connection {
    http: Arc<http1::Builder>,
    app: Router,
    conn: Arc<ConnHandle>,
    stop: CancellationToken,
    /// Its place under the cap, given back when the task ends.
    slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr, grace: Duration) {
        let Connection { http, app, conn, stop, slot: _slot } = self;
        let closed = conn.close.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = conn.busy();
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await;
                drop(busy);
                response
            }
        });
        let served = http.serve_connection(TokioIo::new(JsonErrors::new(stream)), service);
        tokio::pin!(served);
        let ended = tokio::select! {
            ended = served.as_mut() => ended,
            () = closed.cancelled() => {
                if !stop.is_cancelled() {
                    tracing::debug!(%peer, "HTTP connection closed to make room under the cap");
                    return;
                }
                // Shutdown: finish the request in progress, if any, then close; a client that
                // stalls is dropped at the end of the grace period.
                served.as_mut().graceful_shutdown();
                match tokio::time::timeout(grace, served.as_mut()).await {
                    Ok(ended) => ended,
                    Err(_) => {
                        tracing::debug!(%peer, "HTTP connection dropped at shutdown");
                        return;
                    }
                }
            }
        };
        if let Err(e) = ended {
            // Timeouts, malformed requests and clients that leave: theirs to fix, not ours.
            tracing::debug!(%peer, error = %e, "HTTP connection ended");
        }
    }
}

/// The open connections and which of them are idle, so the cap can close the idle longest.
#[derive(Default)]
struct Connections {
    next_id: AtomicU64,
    table: Mutex<HashMap<u64, Open>>,
    /// Woken when a connection finishes a request, for an accept waiting on a full cap.
    went_idle: Notify,
}

struct Open {
    close: CancellationToken,
    /// Since when no request has been in progress; `None` while one is.
    idle_since: Option<Instant>,
}

impl Connections {
    fn table(&self) -> MutexGuard<'_, HashMap<u64, Open>> {
        // A poisoned lock only means a task panicked mid-update; the table stays usable.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place under the cap for a connection just accepted, closing idle ones to make room;
    /// `None` once `stop` is cancelled.
    async fn slot(&self, slots: &Arc<Semaphore>, stop: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        // One connection is closed per connection accepted, however often others go idle
        // while its task ends.
        let mut closed_one = false;
        loop {
            // Armed before looking, so a connection going idle meanwhile is not missed.
            let went_idle = self.went_idle.notified();
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                return Some(slot);
            }
            if !closed_one {
                closed_one = self.close_longest_idle();
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                // Its slot comes back when the closed connection's task ends, or that of one
                // that ends by itself; the semaphore is never closed.
                slot = slots.clone().acquire_owned() => return slot.ok(),
                () = went_idle => {}
            }
        }
    }

    /// Closes the connection idle longest, if any is idle; says whether one was.
    fn close_longest_idle(&self) -> bool {
        let mut table = self.table();
        let longest = table.iter().filter_map(|(id, open)| Some((open.idle_since?, *id))).min();
        match longest.and_then(|(_, id)| table.remove(&id)) {
            Some(open) => {
                open.close.cancel();
                true
            }
            None => false,
        }
    }

    fn register(self: &Arc<Self>, close: CancellationToken) -> Arc<ConnHandle> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.table().insert(id, Open { close: close.clone(), idle_since: Some(Instant::now()) });
        Arc::new(ConnHandle { id, open: self.clone(), close })
    }

    fn set_idle(&self, id: u64, idle: bool) {
        if let Some(open) = self.table().get_mut(&id) {
            open.idle_since = idle.then(Instant::now);
        }
        if idle {
            self.went_idle.notify_one();
        }
    }
}

/// A connection's entry in [`Connections`], removed when the connection ends.
struct ConnHandle {
    id: u64,
    open: Arc<Connections>,
    /// Cancelled to close the connection: by the cap, or (as a child of the server's token) by
    /// shutdown.
    close: CancellationToken,
}

impl ConnHandle {
    /// Marks a request in progress until the guard is dropped.
    fn busy(self: &Arc<Self>) -> Busy {
        self.open.set_idle(self.id, false);
        Busy(self.clone())
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.open.table().remove(&self.id);
    }
}

/// A request in progress on a connection (see [`ConnHandle::busy`]).
struct Busy(Arc<ConnHandle>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.open.set_idle(self.0.id, true);
    }
}
