//! `GET /stores/{store}/watch`: Server-Sent Events read by a tiny SSE client on a raw socket, so
//! the tests see exactly the frames the server writes: the fields of put and delete events, the
//! prefix filter, resuming with Last-Event-ID (no gap, no repeat), keep-alive comments, a reader
//! that stops reading being cut off, tokens, and shutdown with watchers connected.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Fixture, request};
use lattice_core::Op;
use lattice_http::HttpConfig;
use lattice_node::Permissions;
use lattice_store::{Transaction, WATCH_CAPACITY};
use lattice_testkit::DEADLINE;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// One SSE frame: its fields (a comment-only frame has `comments` alone).
#[derive(Debug, Default, Clone)]
struct Frame {
    event: Option<String>,
    id: Option<String>,
    data: String,
    retry: Option<String>,
    comments: Vec<String>,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {self:?}"))
    }
    fn is_change(&self) -> bool {
        matches!(self.event.as_deref(), Some("put" | "delete" | "counter" | "set"))
    }
    /// (event, key, hash): what a sequence of changes is compared by.
    fn change(&self) -> (String, String, String) {
        let data = self.json();
        (
            self.event.clone().unwrap_or_default(),
            data["key"].as_str().unwrap().into(),
            data["hash"].as_str().unwrap().into(),
        )
    }
}

/// An SSE client on one connection: the response head, then frames as they come.
struct Watcher {
    stream: TcpStream,
    status: u16,
    head: String,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// The de-chunked body not yet parsed into frames.
    body: Vec<u8>,
    ended: bool,
}

impl Watcher {
    async fn open(addr: SocketAddr, path: &str, token: &str, last_id: Option<&str>) -> Watcher {
        let stream = TcpStream::connect(addr).await.unwrap();
        Watcher::on(stream, path, token, last_id).await
    }

    /// Over a connection with a small receive buffer, so a client that does not read stalls
    /// the server soon.
    async fn open_small(addr: SocketAddr, path: &str, token: &str) -> Watcher {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(32 * 1024).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        Watcher::on(stream, path, token, None).await
    }

    async fn on(mut stream: TcpStream, path: &str, token: &str, last_id: Option<&str>) -> Watcher {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: lattice\r\nAuthorization: Bearer {token}\r\n");
        if let Some(id) = last_id {
            head.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut w = Watcher { stream, status: 0, head: String::new(), raw: Vec::new(), body: Vec::new(), ended: false };
        let split = loop {
            if let Some(split) = w.raw.windows(4).position(|x| x == b"\r\n\r\n") {
                break split;
            }
            assert!(w.fill().await, "the connection closed before a response head");
        };
        w.head = String::from_utf8_lossy(&w.raw[..split]).into_owned();
        w.raw.drain(..split + 4);
        w.status = w.head.split(' ').nth(1).unwrap().parse().unwrap();
        w
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().into())
    }

    /// Reads more bytes; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let n = tokio::time::timeout(DEADLINE, self.stream.read(&mut buf))
            .await
            .expect("the watch fell silent")
            .unwrap_or(0);
        self.raw.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// Moves whole chunks from `raw` to `body`; notes the last chunk.
    fn dechunk(&mut self) {
        while let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..line_end]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                self.ended = true;
                return;
            }
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }

    /// The next frame; `None` once the stream has ended.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            self.dechunk();
            if let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8(self.body[..end].to_vec()).unwrap();
                self.body.drain(..end + 2);
                return Some(parse_frame(&text));
            }
            if self.ended || !self.fill().await {
                return None;
            }
        }
    }

    /// The next `n` put/delete events, skipping comments.
    async fn changes(&mut self, n: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        while out.len() < n {
            let frame =
                self.next().await.unwrap_or_else(|| panic!("the stream ended after {} changes: {out:?}", out.len()));
            if frame.is_change() {
                out.push(frame);
            } else {
                assert!(frame.event.is_none(), "unexpected {frame:?}");
            }
        }
        out
    }
}

fn parse_frame(text: &str) -> Frame {
    let mut frame = Frame::default();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            // `: text`, one space, as the spec's examples and most servers write it.
            frame.comments.push(comment.strip_prefix(' ').unwrap_or(comment).into());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_string();
        match field {
            "event" => frame.event = Some(value),
            "id" => frame.id = Some(value),
            "retry" => frame.retry = Some(value),
            "data" => {
                if !frame.data.is_empty() {
                    frame.data.push('\n');
                }
                frame.data.push_str(&value);
            }
            other => panic!("unknown SSE field {other:?} in {text:?}"),
        }
    }
    frame
}

async fn app_token(f: &Fixture) -> String {
    f.token("app", Permissions::Read).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_and_deletes_under_the_prefix_arrive_with_their_entry() {
    let f = Fixture::start(HttpConfig::default()).await;
    let token = app_token(&f).await;
    let store = f.node.resolve(Some("app")).await.unwrap();
    let mut w = Watcher::open(f.addr(), "/stores/app/watch?prefix=w%2F", &token, None).await;
    assert_eq!(w.status, 200);
    assert_eq!(w.header("content-type").as_deref(), Some("text/event-stream"));
    let first = w.next().await.unwrap();
    assert_eq!(first.retry.as_deref(), Some("2000"), "a retry hint first: {first:?}");
    assert_eq!(first.comments, ["watching"]);

    let put = f.node.put(&store, b"w/1".to_vec(), b"one".to_vec()).await.unwrap();
    f.node.put(&store, b"elsewhere".to_vec(), b"x".to_vec()).await.unwrap();
    let binary = f.node.put(&store, b"w/bin".to_vec(), vec![0xff, 0]).await.unwrap();
    let binary_key = f.node.put(&store, vec![b'w', b'/', 0xfe], b"v".to_vec()).await.unwrap();
    let deleted = f.node.delete(&store, b"w/1".to_vec()).await.unwrap().unwrap();
    let other = f.node.resolve(Some("other")).await.unwrap();
    f.node.put(&other, b"w/1".to_vec(), b"other store".to_vec()).await.unwrap();

    let got = w.changes(4).await;
    let author = f.node.node_id().to_hex();
    let heads = f.node.get_heads(&store, b"w/1").await.unwrap();
    assert_eq!(heads[0].author.to_hex(), author, "the node writes as its node id");
    let expect = [
        ("put", put, serde_json::json!({"key": "w/1", "value": "one"})),
        ("put", binary, serde_json::json!({"key": "w/bin", "value": "/wA=", "encoding": "base64"})),
        ("put", binary_key, serde_json::json!({"key": "dy/+", "key_encoding": "base64", "value": "v"})),
        ("delete", deleted, serde_json::json!({"key": "w/1"})),
    ];
    for (frame, (event, receipt, fields)) in got.iter().zip(expect) {
        assert_eq!(frame.event.as_deref(), Some(event));
        assert_eq!(frame.id.as_deref(), Some(receipt.hlc.to_string().as_str()), "id = the HLC: {frame:?}");
        let mut want = fields.as_object().unwrap().clone();
        want.insert("event".into(), event.into());
        want.insert("hash".into(), receipt.hash.to_hex().into());
        want.insert("hlc".into(), receipt.hlc.to_string().into());
        want.insert("author".into(), author.clone().into());
        assert_eq!(frame.json(), Value::Object(want));
    }
    // Nothing else: the next frame is the next change under the prefix.
    let last = f.node.put(&store, b"w/2".to_vec(), b"2".to_vec()).await.unwrap();
    assert_eq!(w.changes(1).await[0].json()["hash"], last.hash.to_hex());

    // A prefix of any bytes, as base64.
    let mut b = Watcher::open(f.addr(), "/stores/app/watch?prefix_base64=dy_-", &token, Some("0.0")).await;
    let got = b.changes(1).await;
    assert_eq!(got[0].json()["hash"], binary_key.hash.to_hex(), "only the key under w/\\xfe");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_resume_points_are_checked() {
    let f = Fixture::start(HttpConfig::default()).await;
    let path = "/stores/app/watch?prefix=a";
    assert_eq!(request(f.addr(), "GET", path, None, b"").await.status, 401);
    let reply = request(f.addr(), "GET", path, Some("nope:nope"), b"").await;
    assert_eq!((reply.status, reply.header("www-authenticate")), (401, Some("Bearer")));
    let other = f.token("other", Permissions::Read).await;
    assert_eq!(request(f.addr(), "GET", path, Some(&other), b"").await.status, 403, "a token for another store");
    let write_only = f.token("app", Permissions::Write).await;
    assert_eq!(request(f.addr(), "GET", path, Some(&write_only), b"").await.status, 403, "no read permission");
    let token = app_token(&f).await;
    let missing = request(f.addr(), "GET", "/stores/nowhere/watch", Some(&token), b"").await;
    assert_eq!(missing.status, 403, "a store the token is not for, existing or not, as the other routes");
    let w = Watcher::open(f.addr(), path, &token, Some("yesterday")).await;
    assert_eq!(w.status, 400, "a Last-Event-ID that is not an HLC");
    let bad = request(f.addr(), "GET", "/stores/app/watch?prefix=a&prefix_base64=YQ", Some(&token), b"").await;
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("not both"), "{}", bad.error());
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_last_event_id_sends_exactly_what_was_missed() {
    let f = Fixture::start(HttpConfig::default()).await;
    let token = app_token(&f).await;
    let store = f.node.resolve(Some("app")).await.unwrap();
    let path = "/stores/app/watch?prefix=r%2F";
    let mut w = Watcher::open(f.addr(), path, &token, None).await;
    w.next().await.unwrap();
    for i in 0..5 {
        f.node.put(&store, format!("r/{i}").into_bytes(), b"a".to_vec()).await.unwrap();
    }
    let mut seen = w.changes(5).await;
    let last_id = seen.last().unwrap().id.clone().unwrap();
    drop(w);

    // Missed while away: puts, an overwrite, a delete, a key outside the prefix.
    for i in 3..8 {
        f.node.put(&store, format!("r/{i}").into_bytes(), b"b".to_vec()).await.unwrap();
    }
    f.node.delete(&store, b"r/0".to_vec()).await.unwrap();
    f.node.put(&store, b"s/0".to_vec(), b"outside".to_vec()).await.unwrap();

    // Writes race the reconnection: each lands in the replay or the live stream, never both.
    let writer = {
        let (node, store) = (f.node.clone(), store.clone());
        tokio::spawn(async move {
            for i in 0..200 {
                node.put(&store, format!("r/live/{i}").into_bytes(), b"c".to_vec()).await.unwrap();
            }
        })
    };
    let mut resumed = Watcher::open(f.addr(), path, &token, Some(&last_id)).await;
    let missed = resumed.changes(6 + 200).await;
    writer.await.unwrap();
    seen.extend(missed);

    // The whole sequence is what a replay of everything gives, in the same order.
    let mut everything = Watcher::open(f.addr(), path, &token, Some("0.0")).await;
    let all = everything.changes(seen.len()).await;
    let seq = |frames: &[Frame]| frames.iter().map(Frame::change).collect::<Vec<_>>();
    assert_eq!(seq(&seen), seq(&all), "no gap, no repeat");
    let mut hashes: Vec<_> = seen.iter().map(|f| f.change().2).collect();
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), seen.len(), "every entry once");
    let ids: Vec<lattice_core::Hlc> = seen.iter().map(|f| f.id.as_deref().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let (event, key, _) = all[10].change();
    assert_eq!((event.as_str(), key.as_str()), ("delete", "r/0"), "the delete, in its place");

    // Nothing more is pending on the resumed stream: the next event is the next write.
    let next = f.node.put(&store, b"r/next".to_vec(), b"d".to_vec()).await.unwrap();
    assert_eq!(resumed.changes(1).await[0].change().2, next.hash.to_hex());
    // `?last_event_id=` works as the header does.
    let by_query = format!("{path}&last_event_id={last_id}");
    let mut q = Watcher::open(f.addr(), &by_query, &token, None).await;
    assert_eq!(seq(&q.changes(6).await), seq(&all[5..11]));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watch_gets_keep_alive_comments_past_the_header_timeout() {
    let config = HttpConfig {
        watch_keep_alive: Duration::from_millis(100),
        header_read_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let f = Fixture::start(config).await;
    let token = app_token(&f).await;
    let mut w = Watcher::open(f.addr(), "/stores/app/watch", &token, None).await;
    let started = Instant::now();
    let mut keep_alives = 0;
    while started.elapsed() < Duration::from_millis(700) {
        let frame = w.next().await.expect("the idle stream stays open");
        keep_alives += frame.comments.iter().filter(|c| *c == "keep-alive").count();
    }
    assert!(keep_alives >= 3, "{keep_alives} keep-alive comments in 700 ms at 100 ms");
    let store = f.node.resolve(Some("app")).await.unwrap();
    let put = f.node.put(&store, b"k".to_vec(), b"v".to_vec()).await.unwrap();
    assert_eq!(w.changes(1).await[0].change().2, put.hash.to_hex(), "still live after the header timeout");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_off() {
    let f = Fixture::start(HttpConfig::default()).await;
    let token = app_token(&f).await;
    let store = f.node.resolve(Some("app")).await.unwrap();
    let mut w = Watcher::open_small(f.addr(), "/stores/app/watch", &token).await;
    w.next().await.unwrap();
    // Far more than the socket buffers hold, and more changes than the store buffers per
    // watcher: 10,000 keys of 4 KiB in 25 entries, while the client reads nothing.
    const KEYS_PER_ENTRY: usize = 400;
    let entries = 25;
    for e in 0..entries {
        let ops = (0..KEYS_PER_ENTRY).map(|k| Op::put(format!("big/{e:02}/{k:03}"), vec![b'x'; 4096])).collect();
        f.node.transact(&store, Transaction::new(ops)).await.unwrap();
    }
    let written = entries * KEYS_PER_ENTRY;
    assert!(written > 2 * WATCH_CAPACITY);
    let mut changes = 0;
    let last = loop {
        let frame = w.next().await.expect("an error event before the end");
        if frame.is_change() {
            changes += 1;
        } else if frame.event.is_some() {
            break frame;
        }
    };
    assert_eq!(last.event.as_deref(), Some("error"), "{last:?}");
    assert!(last.json()["error"].as_str().unwrap().contains("Last-Event-ID"));
    assert!(w.next().await.is_none(), "the stream ends after the error");
    eprintln!("cut off after {changes} of {written} changes");
    assert!(changes < written, "the reader was cut off ({changes} of {written} changes)");
    assert!(changes >= WATCH_CAPACITY, "what the store buffered arrived first ({changes})");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_watch_streams_within_the_grace_period() {
    let grace = Duration::from_secs(10);
    let f = Fixture::start(HttpConfig { shutdown_grace: grace, ..HttpConfig::default() }).await;
    let token = app_token(&f).await;
    let mut a = Watcher::open(f.addr(), "/stores/app/watch", &token, None).await;
    let mut b = Watcher::open(f.addr(), "/stores/app/watch?prefix=x", &token, Some("0.0")).await;
    a.next().await.unwrap();
    b.next().await.unwrap();
    let started = Instant::now();
    let Fixture { server, node, .. } = f;
    let shutdown = tokio::spawn(server.shutdown());
    assert!(a.next().await.is_none() && b.next().await.is_none(), "the streams end");
    shutdown.await.unwrap();
    let took = started.elapsed();
    assert!(took < grace / 2, "shutdown took {took:?} with two watchers (grace {grace:?})");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_a_stalled_watch_at_the_end_of_the_grace_period() {
    let grace = Duration::from_millis(500);
    let f = Fixture::start(HttpConfig { shutdown_grace: grace, ..HttpConfig::default() }).await;
    let token = app_token(&f).await;
    let store = f.node.resolve(Some("app")).await.unwrap();
    let w = Watcher::open_small(f.addr(), "/stores/app/watch", &token).await;
    // Enough to fill the socket buffers: the server's writes stall on a client that reads nothing.
    for e in 0..4 {
        let ops = (0..400).map(|k| Op::put(format!("big/{e}/{k:03}"), vec![b'x'; 4096])).collect();
        f.node.transact(&store, Transaction::new(ops)).await.unwrap();
    }
    let started = Instant::now();
    let Fixture { server, node, .. } = f;
    server.shutdown().await;
    let took = started.elapsed();
    assert!(took < grace + Duration::from_secs(2), "shutdown took {took:?} (grace {grace:?})");
    drop(w);
    node.shutdown().await.unwrap();
}

/// A write made on node B reaches a client watching node A's HTTP API, through gossip, with
/// B's entry (hash, HLC, author) in its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_node_arrives_through_gossip() {
    use lattice_http::HttpServer;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, net_a) = common::networked(&dir_a, "a").await;
    let (record, secret) = a.create_token("default", None, Permissions::Read, None).await.unwrap();
    let token = format!("{}:{secret}", record.id);
    let (b, net_b) = common::joined(&a, &net_a, &dir_b, "b").await;
    let api_a = HttpServer::start(a.clone(), "127.0.0.1:0".parse().unwrap(), HttpConfig::default()).await.unwrap();

    let mut w = Watcher::open(api_a.local_addr(), "/stores/default/watch?prefix=from-b%2F", &token, None).await;
    assert_eq!(w.status, 200);
    w.next().await.unwrap();
    let store_b = b.resolve(Some("default")).await.unwrap();
    let put = b.put(&store_b, b"from-b/1".to_vec(), b"hello".to_vec()).await.unwrap();
    let got = w.changes(1).await.remove(0);
    let data = got.json();
    assert_eq!((data["key"].as_str(), data["value"].as_str()), (Some("from-b/1"), Some("hello")));
    assert_eq!(data["hash"], put.hash.to_hex());
    assert_eq!(data["hlc"], put.hlc.to_string());
    assert_eq!(data["author"], b.node_id().to_hex(), "B's entry");
    assert_eq!(got.id, Some(put.hlc.to_string()));

    // Away while B writes more: the resumed stream on A replays exactly those, B's entries.
    drop(w);
    let mut missed = Vec::new();
    for i in 2..5 {
        missed.push(b.put(&store_b, format!("from-b/{i}").into_bytes(), b"later".to_vec()).await.unwrap());
    }
    let store_a = a.resolve(Some("default")).await.unwrap();
    let (node_a, store_a) = (&a, &store_a);
    lattice_testkit::eventually("A to hold B's later writes", DEADLINE, || async move {
        node_a.get(store_a, b"from-b/4").await.unwrap().is_some()
    })
    .await;
    let path = "/stores/default/watch?prefix=from-b%2F";
    let mut resumed = Watcher::open(api_a.local_addr(), path, &token, got.id.as_deref()).await;
    let replayed: Vec<String> = resumed.changes(3).await.iter().map(|f| f.change().2).collect();
    assert_eq!(replayed, missed.iter().map(|r| r.hash.to_hex()).collect::<Vec<_>>());
    let live = b.put(&store_b, b"from-b/5".to_vec(), b"live".to_vec()).await.unwrap();
    assert_eq!(resumed.changes(1).await[0].change().2, live.hash.to_hex(), "then live, nothing repeated");
    drop(resumed);
    api_a.shutdown().await;
    for net in [net_b, net_a] {
        net.shutdown().await;
    }
    for node in [b, a] {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_sets_arrive_live_and_on_resume_with_their_values() {
    let f = Fixture::start(HttpConfig::default()).await;
    let token = app_token(&f).await;
    let store = f.node.resolve(Some("app")).await.unwrap();
    let path = "/stores/app/watch?prefix=k%2F";
    let mut w = Watcher::open(f.addr(), path, &token, None).await;
    w.next().await.unwrap();
    f.node.incr(&store, b"k/hits".to_vec(), 2).await.unwrap();
    f.node.sadd(&store, b"k/team".to_vec(), vec![b"bob".to_vec()]).await.unwrap();
    let live = w.changes(2).await;
    assert_eq!((live[0].event.as_deref(), &live[0].json()["value"]), (Some("counter"), &serde_json::json!(2)));
    assert_eq!((live[1].event.as_deref(), &live[1].json()["members"]), (Some("set"), &serde_json::json!(["bob"])));
    let last_id = live[1].id.clone().unwrap();
    drop(w);

    // Missed while away: the replay reads each counter's and set's value as it reaches them.
    f.node.incr(&store, b"k/hits".to_vec(), 5).await.unwrap();
    f.node.sadd(&store, b"k/team".to_vec(), vec![b"alice".to_vec(), b"carol".to_vec()]).await.unwrap();
    let mut resumed = Watcher::open(f.addr(), path, &token, Some(&last_id)).await;
    let missed = resumed.changes(2).await;
    assert_eq!((missed[0].event.as_deref(), &missed[0].json()["value"]), (Some("counter"), &serde_json::json!(7)));
    let members = &missed[1].json()["members"];
    assert_eq!((missed[1].event.as_deref(), members), (Some("set"), &serde_json::json!(["alice", "bob", "carol"])));
    f.stop().await;
}
