//! What a client can do to the server's connections, and what it cannot: upload past the body
//! timeout or before its token is accepted. Raw sockets on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{Fixture, head, open, read_one, request};
use lattice_http::HttpConfig;
use lattice_node::tokens::Permissions;
use tokio::io::AsyncWriteExt;

/// Short enough for a test, long enough that "closed at once" and "closed by the timeout" differ.
const SHORT: Duration = Duration::from_millis(300);

/// What "promptly" means where the fix answers at once and the bug waits forever (or for a
/// default timeout of 10 s or more).
const PROMPTLY: Duration = Duration::from_secs(5);

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
