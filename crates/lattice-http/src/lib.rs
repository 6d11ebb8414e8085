//! # lattice-http
//!
//! The HTTP API of `lattice serve --http ADDR` (docs/design.md, HTTP API): the keys of a store
//! over HTTP, each request authorised by an access token from the root store (`/tokens/`, see
//! `lattice_node::TokenRecord`).
//!
//! ```text
//! GET    /stores/{store}/keys/{*key}                     200 raw value, ETag | 304 (If-None-Match) | 404
//! PUT    /stores/{store}/keys/{*key}   body = raw value  200 {"hash","hlc"}, ETag | 412 (If-Match, If-None-Match: *)
//! DELETE /stores/{store}/keys/{*key}                     200 {"hash","hlc"}, ETag | 404 | 412 (If-Match)
//! GET    /stores/{store}/keys?prefix=P&limit=N&after=K   200 {"items":[{"key","value","encoding"}],"next"}
//! POST   /stores/{store}/batch         {"ops":[...]}     200 {"hash","hlc","ops"}: one entry | 400 | 412
//! GET    /stores/{store}/watch?prefix=P                  200 text/event-stream (Last-Event-ID resumes)
//! GET    /stores/{store}/proof/{*key}                    200 the key's Merkle proof (JSON, see `proof`)
//! GET    /healthz                                        no auth
//! GET    /openapi.json                                   no auth: OpenAPI 3.1 of every route
//! ```
//!
//! A key's ETag is the quoted hex hash of the entry that wrote its winning head. A failed
//! condition (If-Match, If-None-Match: *, a batch's `if_match`/`if_absent`) is 412
//! `{"error","key","etag"}` with the key's current ETag (`null`: no value), and writes nothing.
//!
//! Order of checks: the token (401: missing, malformed, unknown, wrong secret, revoked,
//! expired; the first four share one message, so an answer never says whether a token id
//! exists; every 401 carries `WWW-Authenticate: Bearer`), its rate (429 with `Retry-After`),
//! then the store and permission (403: a token for another store, or without the right). All of
//! it comes from the request head: a body is read only once the token is accepted. Errors are
//! JSON `{"error": "..."}`, those hyper answers by itself (400, 414, 431) included; a 500 says
//! only `internal error` (the details are logged).
//!
//! A listing's `next` is an opaque cursor (any key bytes), the next request's `after`; `after`
//! also takes a plain UTF-8 key, as it did before cursors.
//!
//! Connections: at most [`HttpConfig::max_connections`] at once (the idle longest makes room
//! for a new one), a header-read timeout that is also the idle keep-alive timeout, a body-read
//! timeout (408). HTTP/1.1 only.
//!
//! Entry types: [`HttpServer`] owns its task; [`HttpServer::shutdown`] stops accepting, lets
//! requests in flight finish for up to [`HttpConfig::shutdown_grace`], drops what is left, and
//! returns when the task has ended. [`list_item`] and [`write_receipt`] are the JSON shapes the
//! `lattice` CLI's `--json` output shares, and [`watch_event`] the data of a watch event and a
//! `watch --json` line.
//!
//! - `server`: [`HttpServer`], [`HttpConfig`], [`HttpError`]; the router.
//! - `conn`: the accept loop, the connection cap, and each connection's task and timeouts.
//! - `wire`: JSON in place of the bare error heads hyper writes itself.
//! - `auth`: the bearer token, its rate and its permission for a store.
//! - `keys`: the key routes (get, put, delete, list).
//! - `conditional`: ETags, `If-None-Match` (304) and the write conditions of `If-Match` /
//!   `If-None-Match: *`.
//! - `txn`: `POST /stores/{store}/batch` (its own body limit, 6 MiB).
//! - `body`: reading a body after the token, under the body-read timeout.
//! - `openapi`: `GET /openapi.json`, hand-written; a test checks it covers the router.
//! - `watch`: the watch route, Server-Sent Events: `put`/`delete` events whose `id` is an HLC,
//!   a replay from the logs on `Last-Event-ID`, keep-alive comments
//!   ([`HttpConfig::watch_keep_alive`]), the end of the stream at shutdown or when the client
//!   falls too far behind.
//! - `cursor`: the listing's opaque `next`.
//! - `reply`: JSON bodies and `{"error"}` responses, and the mapping of node errors to statuses.
//! - `proof`: a key's Merkle proof as JSON, and its offline check (`lattice verify-proof`).
//! - `json`: the JSON shapes shared with the CLI (key/value items, write receipts).
//! - `batch`: the operations of a batch (JSON lines for the CLI, `{"ops"}` over HTTP), parsed
//!   into one transaction.
//! - `rate`: per-token token buckets ([`RateLimit`]): the server's default, or the token's own
//!   rate (`TokenRecord::rate`).
//!
//! Architecture invariant: the crate talks to stores only through [`lattice_node::Node`]'s
//! guarded key-value path, so the root store's reserved prefixes stay refused here too; its normal
//! dependencies include neither lattice-net nor the CLI.

mod auth;
mod batch;
mod body;
mod conditional;
mod conn;
mod cursor;
mod json;
mod keys;
mod openapi;
mod proof;
mod rate;
mod reply;
mod server;
mod txn;
mod watch;
mod wire;

pub use batch::{batch_from_items, batch_from_lines, condition, parse_hash};
pub use json::{insert_bytes, insert_members, key_value, list_item, typed_value, watch_event, write_receipt};
pub use proof::{CheckedProof, ProofRejected, proof_json, verify as verify_proof};
pub use rate::RateLimit;
pub use server::{HttpConfig, HttpError, HttpServer};
