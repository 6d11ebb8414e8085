//! The watch route: `GET /stores/{store}/watch?prefix=P` as Server-Sent Events.
//!
//! Each change of a visible value under the prefix is an event named `put` or `delete`; its
//! data is one JSON line ([`watch_event`]: key, value, their encodings, and the `hash`, `hlc`
//! and `author` of the entry behind the change), its `id` an HLC (`wall_ms.counter`): the
//! highest HLC this stream has sent so far, so an `id` never goes back and a client that
//! resumes from it is never sent again what it saw.
//!
//! Resume (`Last-Event-ID: HLC`, or `?last_event_id=HLC`): the stream subscribes to live
//! changes first, then replays, in (HLC, author) order, every op of each applied entry the node
//! holds with an HLC above the id, under the prefix (a put or a delete per op), read from the
//! logs a page at a time; then goes live, leaving out live changes of entries the replay
//! covered (an HLC above the id and at most that of their author's last entry when the replay
//! began: an author's HLCs increase along its chain).
//! Applying the events in order, last writer wins, brings a client that saw every change up to
//! the id to the node's state; `Last-Event-ID: 0.0` replays everything the node holds.
//!
//! Bounds: a page of the replay holds at most [`PAGE_ENTRIES`] entries or [`PAGE_BYTES`] of
//! them; live changes wait in the store's per-watcher channel, at most
//! [`WATCH_CAPACITY`](lattice_store::WATCH_CAPACITY); a reader that falls that far behind is
//! dropped by the store, and the stream then ends with an `error` event (the client resumes
//! from its last id). Nothing else is buffered: the next event is made only when the
//! connection has taken the last one. The stream ends at server shutdown.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use lattice_core::{Hlc, Op, VerifiedEntry};
use lattice_node::{Node, StoreRef};
use lattice_store::{Change, Coverage, History, StoreError, WATCH_CAPACITY, WatchEvent};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::Access;
use crate::json::watch_event;
use crate::reply::ApiError;
use crate::server::Shared;

/// Entries read from the logs per page of a replay, at most.
pub(crate) const PAGE_ENTRIES: usize = 256;
/// Bytes of entries per page of a replay, at most (a page holds at least one entry).
pub(crate) const PAGE_BYTES: usize = 1 << 20;

/// The `retry:` hint sent first: how long a client waits before it reconnects.
const RETRY: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Deserialize)]
pub(crate) struct WatchQuery {
    /// A UTF-8 key prefix.
    prefix: Option<String>,
    /// A prefix of any bytes, base64 (standard or URL-safe, padded or not).
    prefix_base64: Option<String>,
    /// The id to resume after, for clients that cannot set `Last-Event-ID`.
    last_event_id: Option<String>,
}

pub(crate) async fn watch(
    State(api): Shared,
    Path(store): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = api.authorise(&headers, &store, Access::Read).await?;
    // Parsed after the token, so a stranger learns nothing from how a query is refused.
    let Query(query) = Query::<WatchQuery>::try_from_uri(&uri).map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let prefix = prefix_of(&query)?;
    let header = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let since = resume_point(header.or(query.last_event_id.as_deref()))?;
    // Live first, then the replay: an entry committed in between is in both, never in neither.
    let live = api.node.subscribe(&store, &prefix).await?;
    let replay = match since {
        Some(since) => Some(api.node.history(&store, since).await?),
        None => None,
    };
    let covered = replay.as_ref().map(|r| r.coverage().clone()).unwrap_or_default();
    let feed = Feed {
        node: api.node.clone(),
        store,
        prefix,
        live,
        replay,
        ready: VecDeque::new(),
        since,
        covered,
        id: since,
        stop: api.stop.clone(),
        started: false,
        done: false,
    };
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok::<_, Infallible>(event), feed))
    });
    let keep_alive = KeepAlive::new().interval(api.watch_keep_alive).text("keep-alive");
    Ok(Sse::new(events).keep_alive(keep_alive).into_response())
}

/// The key prefix asked for: `prefix` (UTF-8) or `prefix_base64` (any bytes), not both.
fn prefix_of(query: &WatchQuery) -> Result<Vec<u8>, ApiError> {
    match (&query.prefix, &query.prefix_base64) {
        (Some(_), Some(_)) => Err(ApiError::new(StatusCode::BAD_REQUEST, "give prefix or prefix_base64, not both")),
        (Some(text), None) => Ok(text.clone().into_bytes()),
        (None, Some(encoded)) => {
            let trimmed = encoded.trim_end_matches('=');
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(trimmed)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "prefix_base64 is not base64"))
        }
        (None, None) => Ok(Vec::new()),
    }
}

/// The HLC a resuming client saw last (`None`: no resume, live changes only); 400 if it is not one.
fn resume_point(text: Option<&str>) -> Result<Option<Hlc>, ApiError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|e: lattice_core::ParseHlcError| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("Last-Event-ID: {e}"))
        }),
    }
}

/// The state of one watch stream; [`Feed::next`] makes its events one at a time.
struct Feed {
    node: Arc<Node>,
    store: StoreRef,
    prefix: Vec<u8>,
    live: mpsc::Receiver<WatchEvent>,
    /// What is left of the replay; `None` once it is done (or none was asked for).
    replay: Option<History>,
    /// Events made and not yet sent: at most one page of the replay, or one live change.
    ready: VecDeque<Event>,
    /// The resume point asked for.
    since: Option<Hlc>,
    /// What the replay covers (see [`History::covers`]).
    covered: Coverage,
    /// The `id` of the events: the highest HLC sent (from the resume point on).
    id: Option<Hlc>,
    stop: CancellationToken,
    started: bool,
    done: bool,
}

impl Feed {
    async fn next(&mut self) -> Option<Event> {
        if !std::mem::replace(&mut self.started, true) {
            return Some(Event::default().retry(RETRY).comment("watching"));
        }
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.done || self.stop.is_cancelled() {
                return None;
            }
            if let Some(history) = self.replay.take() {
                match read_page(history).await {
                    Ok((rest, page)) => {
                        self.replay = rest;
                        for entry in page {
                            self.replayed(&entry).await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(store = %self.store.name, error = %e, "watch replay failed");
                        self.fail("the replay failed (internal error); resume with Last-Event-ID");
                    }
                }
                continue;
            }
            tokio::select! {
                () = self.stop.cancelled() => return None,
                event = self.live.recv() => match event {
                    Some(event) => self.changed(event),
                    None => self.fail(&format!(
                        "this watch fell {WATCH_CAPACITY} changes behind, or its store closed; resume with Last-Event-ID"
                    )),
                },
            }
        }
    }

    /// The events of one replayed entry: each of its ops under the prefix. A counter's or a
    /// set's value is not in the entry: its event carries the key's value as the replay reads it
    /// (one event per such key of the entry; a key that holds another kind by now, or nothing,
    /// gives none).
    async fn replayed(&mut self, entry: &VerifiedEntry) {
        let source = Change { hash: entry.hash(), hlc: entry.hlc(), author: entry.author() };
        let mut kinded: Vec<&[u8]> = Vec::new();
        for op in entry.ops() {
            let event = match op {
                Op::Put { key, value } => WatchEvent::Put { key: key.clone(), value: value.clone(), source },
                Op::Delete { key } => WatchEvent::Delete { key: key.clone(), source },
                Op::CounterAdd { key, .. } | Op::SetAdd { key, .. } | Op::SetRemove { key, .. } => {
                    if !kinded.contains(&key.as_slice()) {
                        kinded.push(key);
                    }
                    continue;
                }
            };
            self.push(event);
        }
        for key in kinded {
            if !key.starts_with(&self.prefix) {
                continue;
            }
            match self.node.value(&self.store, key).await {
                Ok(Some(value)) if value.kind() != lattice_core::Kind::Register => {
                    self.push(WatchEvent::of_value(key.to_vec(), value, source));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(store = %self.store.name, error = %e, "watch replay cannot read a counter or set")
                }
            }
        }
    }

    /// A live change, unless the replay covered its entry.
    fn changed(&mut self, event: WatchEvent) {
        let Change { hlc, author, .. } = *event.source();
        let replayed = self.since.is_some_and(|since| hlc > since) && self.covered.covers(&author, hlc);
        if !replayed {
            self.push(event);
        }
    }

    fn push(&mut self, event: WatchEvent) {
        let key = event.key();
        // Live changes are filtered by the store; replayed ops are not.
        if !key.starts_with(&self.prefix) || self.node.is_reserved(&self.store, key) {
            return;
        }
        let hlc = event.source().hlc;
        let id = self.id.map_or(hlc, |id| id.max(hlc));
        self.id = Some(id);
        let name = match event {
            WatchEvent::Put { .. } => "put",
            WatchEvent::Counter { .. } => "counter",
            WatchEvent::Set { .. } => "set",
            WatchEvent::Delete { .. } => "delete",
        };
        let data = Value::Object(watch_event(&event)).to_string();
        self.ready.push_back(Event::default().event(name).id(id.to_string()).data(data));
    }

    /// Ends the stream with an `error` event saying `message`.
    fn fail(&mut self, message: &str) {
        let data = json!({ "error": message }).to_string();
        self.ready.push_back(Event::default().event("error").data(data));
        self.done = true;
    }
}

/// The next page of a replay, read on a blocking thread, and what is left of it (`None`: done).
async fn read_page(mut history: History) -> Result<(Option<History>, Vec<VerifiedEntry>), StoreError> {
    let read = tokio::task::spawn_blocking(move || {
        let mut page = Vec::new();
        let mut bytes = 0;
        while page.len() < PAGE_ENTRIES && bytes < PAGE_BYTES {
            match history.next() {
                Some(Ok(entry)) => {
                    bytes += entry.bytes().len();
                    page.push(entry);
                }
                Some(Err(e)) => return Err(e),
                None => return Ok((None, page)),
            }
        }
        Ok((Some(history), page))
    });
    read.await.map_err(|e| StoreError::Aborted(format!("the replay's reader failed: {e}")))?
}
