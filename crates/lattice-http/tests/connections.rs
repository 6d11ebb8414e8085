//! What a client can do to the server's connections, and what it cannot: hold them open past
//! the header timeout, upload past the body timeout or before its token is accepted, crowd out
//! a token holder, or hold up shutdown. Raw sockets on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Fixture, closed_within, head, open, read_one, request, try_request};
use lattice_http::HttpConfig;
use lattice_node::Permissions;
use lattice_testkit::{DEADLINE, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Short enough for a test, long enough that "closed at once" and "closed by the timeout" differ.
const SHORT: Duration = Duration::from_millis(300);

/// What "promptly" means where the fix answers at once and the bug waits forever (or for a
/// default timeout of 10 s or more).
const PROMPTLY: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_head_not_sent_in_time_and_an_idle_keep_alive_connection_are_closed() {
    let f = Fixture::start(HttpConfig { header_read_timeout: SHORT, ..HttpConfig::default() }).await;
    let started = Instant::now();
    let mut half_sent = open(f.addr(), b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    let mut silent = open(f.addr(), b"").await;
    let mut kept_alive = open(f.addr(), head("GET", "/healthz", None, 0, true).as_bytes()).await;
    let answer = read_one(&mut kept_alive).await.unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer.header("connection").is_none_or(|c| !c.eq_ignore_ascii_case("close")), "kept alive");
    for (what, stream) in [("half-sent head", &mut half_sent), ("silent", &mut silent), ("idle", &mut kept_alive)] {
        assert!(closed_within(stream, PROMPTLY).await, "{what} connection still open");
    }
    assert!(started.elapsed() >= SHORT, "closed by the timeout, not at once");
    f.stop().await;
}

#[tokio::test]
async fn a_body_not_sent_in_time_gets_408_and_writes_nothing() {
    let f = Fixture::start(HttpConfig { body_read_timeout: SHORT, ..HttpConfig::default() }).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let mut stalled = open(f.addr(), head("PUT", "/stores/app/keys/k", Some(&rw), 100, false).as_bytes()).await;
    stalled.write_all(b"only ten b").await.unwrap();
    let answer = tokio::time::timeout(PROMPTLY, read_one(&mut stalled)).await.expect("an answer").unwrap();
    assert_eq!(answer.status, 408);
    assert!(answer.error().contains("in time"), "{}", answer.error());
    assert_eq!(request(f.addr(), "GET", "/stores/app/keys/k", Some(&rw), b"").await.status, 404, "nothing written");
    f.stop().await;
}

#[tokio::test]
async fn a_refused_token_is_answered_from_the_head_without_waiting_for_the_body() {
    // The default body timeout (30 s) is far away: only an answer from the head is prompt.
    let f = Fixture::start(HttpConfig::default()).await;
    let read = f.token("app", Permissions::Read).await;
    let mib = 1024 * 1024;
    for (token, status) in [(Some("0123456789abcdef:nope"), 401), (None, 401), (Some(read.as_str()), 403)] {
        let mut stalled = open(f.addr(), head("PUT", "/stores/app/keys/k", token, mib, false).as_bytes()).await;
        let answer = tokio::time::timeout(PROMPTLY, read_one(&mut stalled)).await.expect("a prompt answer").unwrap();
        assert_eq!(answer.status, status, "{token:?}");
        assert!(!answer.error().is_empty());
    }
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_holding_500_idle_connections_does_not_lock_out_a_token_holder() {
    // The default cap (256), and a header timeout no test run reaches: what lets the token
    // holder in is the cap making room, not the stranger's connections timing out.
    let never = Duration::from_secs(3600);
    let f = Fixture::start(HttpConfig { header_read_timeout: never, ..HttpConfig::default() }).await;
    let cap = HttpConfig::default().max_connections;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let stop = CancellationToken::new();
    let closed = Arc::new(AtomicUsize::new(0));
    let mut stranger = JoinSet::new();
    let mut hold = |stream| {
        let (stop, closed) = (stop.clone(), closed.clone());
        stranger.spawn(async move {
            let mut stream = stream;
            tokio::select! {
                () = stop.cancelled() => {}
                true = closed_within(&mut stream, DEADLINE * 2) => { closed.fetch_add(1, Ordering::Relaxed); }
            }
        });
    };
    let accepting = "the server to keep accepting connections";
    for _ in 0..500 {
        hold(tokio::time::timeout(PROMPTLY, open(f.addr(), b"")).await.expect(accepting));
    }
    let half_sent = open(f.addr(), b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    hold(tokio::time::timeout(PROMPTLY, half_sent).await.expect(accepting));
    let held = 501;
    // Every connection past the cap closed the one idle longest: the server holds at most `cap`.
    eventually("the server to hold no more than its cap", DEADLINE, || {
        let closed = closed.load(Ordering::Relaxed);
        async move { closed >= held - cap }
    })
    .await;

    for (method, body) in [("PUT", &b"mine"[..]), ("GET", b"")] {
        eventually(&format!("the token holder's {method}"), PROMPTLY, || {
            let (addr, rw) = (f.addr(), rw.clone());
            async move {
                let reply = try_request(addr, method, "/stores/app/keys/k", Some(&rw), body).await;
                reply.is_ok_and(|r| r.status == 200 && (method == "PUT" || r.body == b"mine"))
            }
        })
        .await;
    }
    stop.cancel();
    while stranger.join_next().await.is_some() {}
    f.stop().await;
}

#[tokio::test]
async fn shutdown_returns_within_5_s_whatever_clients_do() {
    let f = Fixture::start(HttpConfig::default()).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let addr = f.addr();
    let mut half_sent = open(addr, b"PUT /stores/app/keys/k HTTP/1.1\r\nHost: x\r\nContent-Le").await;
    let mut stalled_body = open(addr, head("PUT", "/stores/app/keys/k", Some(&rw), 100, false).as_bytes()).await;
    stalled_body.write_all(b"a few bytes").await.unwrap();
    let mut idle = open(addr, head("GET", "/healthz", None, 0, true).as_bytes()).await;
    assert_eq!(read_one(&mut idle).await.unwrap().status, 200);
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(open(addr, b"").await);
    }
    // The server accepts in order: once a later request is answered, all of these were accepted
    // (and not merely queued, to be refused when the listener closes).
    eventually("a request after them to be answered", DEADLINE, || async move {
        try_request(addr, "GET", "/healthz", None, b"").await.is_ok_and(|r| r.status == 200)
    })
    .await;

    tokio::time::timeout(Duration::from_secs(5), f.server.shutdown()).await.expect("shutdown within 5 s");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
    for stream in [&mut half_sent, &mut stalled_body, &mut idle].into_iter().chain(silent.iter_mut()) {
        assert!(closed_within(stream, PROMPTLY).await, "every connection closed");
    }
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let f = Fixture::start(HttpConfig::default()).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let addr = f.addr();
    // hyper sends `100 Continue` when the handler starts reading the body: from then on the
    // request is in flight.
    let mut request = head("PUT", "/stores/app/keys/k", Some(&rw), 8, false);
    request.insert_str(request.len() - 2, "Expect: 100-continue\r\n");
    let mut slow = open(addr, request.as_bytes()).await;
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        interim.push(slow.read_u8().await.unwrap());
    }
    assert!(interim.starts_with(b"HTTP/1.1 100 "), "{:?}", String::from_utf8_lossy(&interim));
    let Fixture { node, server, .. } = f;
    let stopping = tokio::spawn(server.shutdown());
    // The listener goes first; the request in flight is still being served.
    eventually(
        "the listener to close",
        DEADLINE,
        || async move { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    slow.write_all(b"halfdone").await.unwrap();
    let answer = read_one(&mut slow).await.unwrap();
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    tokio::time::timeout(Duration::from_secs(5), stopping).await.expect("shutdown within 5 s").unwrap();
    let app = node.resolve(Some("app")).await.unwrap();
    assert_eq!(node.get(&app, b"k").await.unwrap(), Some(b"halfdone".to_vec()));
    node.shutdown().await.unwrap();
}
