//! The HTTP API against a real node on 127.0.0.1: every route, and every refusal (400, 401,
//! 403, 404, 414, 429, 431) with its JSON error.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{Fixture, query_escape, request, send_raw};
use lattice_http::{HttpConfig, RateLimit};
use lattice_node::Permissions;
use lattice_testkit::{DEADLINE, eventually};

#[tokio::test]
async fn a_token_holder_puts_gets_lists_and_deletes_keys() {
    let f = Fixture::start(HttpConfig::default()).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let health = request(f.addr(), "GET", "/healthz", None, b"").await;
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")));

    let put = request(f.addr(), "PUT", "/stores/app/keys/users/alice", Some(&rw), b"hello").await;
    assert_eq!(put.status, 200, "{:?}", String::from_utf8_lossy(&put.body));
    let receipt = put.json();
    assert_eq!(receipt["hash"].as_str().unwrap().len(), 64);
    assert!(receipt["hlc"].is_string());
    let got = request(f.addr(), "GET", "/stores/app/keys/users/alice", Some(&rw), b"").await;
    assert_eq!((got.status, got.body.as_slice()), (200, b"hello".as_slice()));
    // The store is addressed by uuid as well, and the write went through the node.
    let app = f.node.resolve(Some("app")).await.unwrap();
    assert_eq!(f.node.get(&app, b"users/alice").await.unwrap(), Some(b"hello".to_vec()));
    let by_uuid = request(f.addr(), "GET", &format!("/stores/{}/keys/users/alice", app.id), Some(&rw), b"").await;
    assert_eq!(by_uuid.body, b"hello");

    let binary = [0u8, 159, 146, 150, 255];
    assert_eq!(request(f.addr(), "PUT", "/stores/app/keys/users/bin", Some(&rw), &binary).await.status, 200);
    assert_eq!(request(f.addr(), "GET", "/stores/app/keys/users/bin", Some(&rw), b"").await.body, binary);
    for i in 0..3 {
        request(f.addr(), "PUT", &format!("/stores/app/keys/users/z{i}"), Some(&rw), b"v").await;
    }
    request(f.addr(), "PUT", "/stores/app/keys/elsewhere", Some(&rw), b"x").await;

    let page = request(f.addr(), "GET", "/stores/app/keys?prefix=users/&limit=2", Some(&rw), b"").await.json();
    let keys: Vec<&str> = page["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["users/alice", "users/bin"]);
    assert_eq!(page["items"][0]["encoding"], "utf8");
    assert_eq!(page["items"][0]["value"], "hello");
    assert_eq!(page["items"][1]["encoding"], "base64");
    assert_eq!(page["items"][1]["value"], "AJ+Slv8=");
    // `next` is an opaque cursor now (it was the key "users/bin"); `after` takes it, and still
    // takes the plain key.
    let next = page["next"].as_str().expect("a full page has a next");
    for after in [next, "users/bin"] {
        let path = format!("/stores/app/keys?prefix=users/&limit=10&after={}", query_escape(after));
        let rest = request(f.addr(), "GET", &path, Some(&rw), b"").await.json();
        let keys: Vec<&str> = rest["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["users/z0", "users/z1", "users/z2"], "after={after}");
        assert!(rest["next"].is_null(), "the last page has no next");
    }
    let all = request(f.addr(), "GET", "/stores/app/keys", Some(&rw), b"").await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 6);
    let bad_limit = request(f.addr(), "GET", "/stores/app/keys?limit=0", Some(&rw), b"").await;
    assert_eq!(bad_limit.status, 400);
    assert!(bad_limit.error().contains("limit"));

    let deleted = request(f.addr(), "DELETE", "/stores/app/keys/users/alice", Some(&rw), b"").await;
    assert_eq!(deleted.status, 200);
    assert!(deleted.json()["hash"].is_string());
    let gone = request(f.addr(), "GET", "/stores/app/keys/users/alice", Some(&rw), b"").await;
    assert_eq!(gone.status, 404);
    assert!(gone.error().contains("not found"));
    assert_eq!(request(f.addr(), "DELETE", "/stores/app/keys/users/alice", Some(&rw), b"").await.status, 404);
    assert_eq!(request(f.addr(), "GET", "/nowhere", None, b"").await.status, 404);
    // Errors from the HTTP layer itself are JSON as well.
    let wrong_method = request(f.addr(), "POST", "/stores/app/keys/k", Some(&rw), b"v").await;
    assert_eq!(wrong_method.status, 405);
    assert!(!wrong_method.error().is_empty());
    assert!(wrong_method.header("allow").is_some_and(|a| a.contains("PUT")));
    // One byte over the body limit (value limit + 1 KiB): refused, and all of it was read, so
    // the connection closes cleanly.
    let huge = vec![b'x'; lattice_core::entry::MAX_VALUE_BYTES + 1024 + 1];
    let too_big = request(f.addr(), "PUT", "/stores/app/keys/big", Some(&rw), &huge).await;
    assert_eq!(too_big.status, 413);
    assert!(!too_big.error().is_empty());
    let over = vec![b'x'; lattice_core::entry::MAX_VALUE_BYTES + 1];
    let over_limit = request(f.addr(), "PUT", "/stores/app/keys/big", Some(&rw), &over).await;
    assert_eq!(over_limit.status, 400);
    assert!(over_limit.error().contains("limit"), "{}", over_limit.error());
    assert_eq!(request(f.addr(), "GET", "/stores/app/keys/big", Some(&rw), b"").await.status, 404, "nothing written");
    f.stop().await;
}

#[tokio::test]
async fn bad_missing_revoked_and_expired_tokens_get_401() {
    let f = Fixture::start(HttpConfig::default()).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let (id, _) = rw.split_once(':').unwrap();
    let wrong_secret = format!("{id}:{}", "0".repeat(64));
    let path = "/stores/app/keys/k";
    for (token, why) in [
        (None, "Bearer"),
        (Some("garbage"), "Bearer"),
        // One message for both, so a 401 does not say whether the id exists.
        (Some("0123456789abcdef:secret"), "missing or invalid token"),
        (Some(wrong_secret.as_str()), "missing or invalid token"),
    ] {
        let reply = request(f.addr(), "GET", path, token, b"").await;
        assert_eq!(reply.status, 401, "{token:?}");
        assert!(reply.error().contains(why), "{token:?}: {}", reply.error());
    }
    assert_eq!(request(f.addr(), "PUT", path, Some(&rw), b"v").await.status, 200);
    f.node.revoke_token(id).await.unwrap();
    let revoked = request(f.addr(), "GET", path, Some(&rw), b"").await;
    assert_eq!((revoked.status, revoked.error().as_str()), (401, "token revoked"));

    let (record, secret) =
        f.node.create_token("app", None, Permissions::Read, Some(Duration::from_millis(300))).await.unwrap();
    let short = format!("{}:{secret}", record.id);
    let (addr, short) = (f.addr(), &short);
    eventually("the token to expire", DEADLINE, || async move {
        let status = request(addr, "GET", path, Some(short), b"").await.status;
        assert!(status == 200 || status == 401, "valid until it expires, then 401 (got {status})");
        status == 401
    })
    .await;
    assert_eq!(request(addr, "GET", path, Some(short), b"").await.error(), "token expired");
    f.stop().await;
}

#[tokio::test]
async fn tokens_grant_only_their_store_and_their_permissions() {
    let f = Fixture::start(HttpConfig::default()).await;
    let read = f.token("app", Permissions::Read).await;
    let write = f.token("app", Permissions::Write).await;
    let other = f.token("other", Permissions::ReadWrite).await;
    assert_eq!(request(f.addr(), "PUT", "/stores/app/keys/k", Some(&write), b"v").await.status, 200);
    assert_eq!(request(f.addr(), "GET", "/stores/app/keys/k", Some(&read), b"").await.status, 200);

    let refused = [
        ("PUT", "/stores/app/keys/k", &read, "may not write"),
        ("DELETE", "/stores/app/keys/k", &read, "may not write"),
        ("GET", "/stores/app/keys/k", &write, "may not read"),
        ("GET", "/stores/app/keys", &write, "may not read"),
        ("GET", "/stores/app/keys/k", &other, "does not grant access"),
        ("PUT", "/stores/app/keys/k", &other, "does not grant access"),
        ("GET", "/stores/root/keys/k", &other, "does not grant access"),
        ("GET", "/stores/no-such-store/keys/k", &other, "does not grant access"),
    ];
    for (method, path, token, why) in refused {
        let reply = request(f.addr(), method, path, Some(token), b"x").await;
        assert_eq!(reply.status, 403, "{method} {path}");
        assert!(reply.error().contains(why), "{method} {path}: {}", reply.error());
    }
    let app = f.node.resolve(Some("app")).await.unwrap();
    assert_eq!(f.node.get(&app, b"k").await.unwrap(), Some(b"v".to_vec()), "refused writes changed nothing");
    assert!(f.node.create_token("root", None, Permissions::Read, None).await.is_err(), "no tokens for the root store");
    f.stop().await;
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    let f =
        Fixture::start(HttpConfig { rate_limit: RateLimit { per_second: 1, burst: 2 }, ..HttpConfig::default() }).await;
    let busy = f.token("app", Permissions::ReadWrite).await;
    let calm = f.token("app", Permissions::ReadWrite).await;
    for _ in 0..2 {
        assert_eq!(request(f.addr(), "PUT", "/stores/app/keys/k", Some(&busy), b"v").await.status, 200);
    }
    let limited = request(f.addr(), "PUT", "/stores/app/keys/k", Some(&busy), b"v").await;
    assert_eq!(limited.status, 429);
    assert!(limited.error().contains("rate limit"));
    let retry: u64 = limited.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        request(f.addr(), "GET", "/stores/app/keys/k", Some(&calm), b"").await.status,
        200,
        "limits are per token"
    );
    assert_eq!(request(f.addr(), "GET", "/healthz", None, b"").await.status, 200);
    f.stop().await;
}

#[tokio::test]
async fn every_bad_token_gets_the_same_401_with_a_bearer_challenge() {
    let f = Fixture::start(HttpConfig::default()).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let (id, secret) = rw.split_once(':').unwrap();
    let path = "/stores/app/keys/k";
    assert_eq!(request(f.addr(), "PUT", path, Some(&rw), b"v").await.status, 200);
    let wrong_secret = format!("{id}:{}", "0".repeat(64));
    let mut bodies = Vec::new();
    for token in [None, Some("garbage"), Some("0123456789abcdef:secret"), Some(wrong_secret.as_str())] {
        let reply = request(f.addr(), "GET", path, token, b"").await;
        assert_eq!(reply.status, 401, "{token:?}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{token:?}");
        bodies.push(reply.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{:?}", bodies.iter().map(|b| String::from_utf8_lossy(b)));

    // The scheme is case-insensitive (RFC 9110): a raw request, since `request` writes "Bearer".
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let raw = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {scheme} {id}:{secret}\r\n\r\n"
        );
        let reply = send_raw(f.addr(), raw.as_bytes()).await.unwrap();
        assert_eq!((reply.status, reply.body.as_slice()), (200, b"v".as_slice()), "{scheme}");
    }
    f.stop().await;
}

#[tokio::test]
async fn keys_that_are_not_utf8_page_completely_one_at_a_time() {
    let f = Fixture::start(HttpConfig::default()).await;
    let read = f.token("app", Permissions::Read).await;
    let app = f.node.resolve(Some("app")).await.unwrap();
    for key in [&b"\xff\x00"[..], b"\xff", b"a"] {
        f.node.put(&app, key.to_vec(), b"v".to_vec()).await.unwrap();
    }
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut after: Option<String> = None;
    // Three keys take four pages at most (the last may be empty); a lossy cursor loops forever.
    for _ in 0..6 {
        let path = match &after {
            Some(cursor) => format!("/stores/app/keys?limit=1&after={}", query_escape(cursor)),
            None => "/stores/app/keys?limit=1".to_string(),
        };
        let page = request(f.addr(), "GET", &path, Some(&read), b"").await;
        assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
        let page = page.json();
        for item in page["items"].as_array().unwrap() {
            let key = item["key"].as_str().unwrap();
            seen.push(match item["key_encoding"].as_str() {
                Some("base64") => base64::engine::general_purpose::STANDARD.decode(key).unwrap(),
                _ => key.as_bytes().to_vec(),
            });
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, [&b"a"[..], b"\xff", b"\xff\x00"], "every key exactly once, in order");
    f.stop().await;
}

#[tokio::test]
async fn errors_hyper_answers_itself_are_json_too() {
    let f = Fixture::start(HttpConfig::default()).await;
    let long_uri = format!("GET /stores/app/keys/{} HTTP/1.1\r\nHost: x\r\n\r\n", "k".repeat(70_000));
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150).map(|i| format!("X-Filler-{i}: v\r\n")).collect::<String>()
    );
    for (raw, status) in [
        ("NOT HTTP AT ALL\r\n\r\n".to_string(), 400),
        ("GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_string(), 400),
        (long_uri, 414),
        (many_headers, 431),
    ] {
        let reply = send_raw(f.addr(), raw.as_bytes()).await.unwrap();
        assert_eq!(reply.status, status, "{:?}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.header("content-type"), Some("application/json"), "{status}");
        assert!(!reply.error().is_empty(), "{status}");
    }
    assert_eq!(request(f.addr(), "GET", "/healthz", None, b"").await.status, 200, "the server carries on");
    f.stop().await;
}
