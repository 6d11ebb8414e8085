//! Conditional requests and batches over HTTP on 127.0.0.1: ETag and 304 on GET, If-Match /
//! If-None-Match: * on PUT and DELETE (200, 412 with the current ETag, 400), and
//! `POST /stores/{store}/batch` (200 as one entry; 400 and 412 with nothing applied; 401, 403).

mod common;

use std::net::SocketAddr;

use common::{Fixture, Reply, request, send_raw};
use lattice_http::HttpConfig;
use lattice_node::Permissions;
use serde_json::{Value, json};

/// One request with extra headers, over a fresh connection.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: lattice\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    send_raw(addr, &raw).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn etag_of(reply: &Reply) -> String {
    let tag = reply.header("etag").unwrap_or_else(|| panic!("no ETag (status {})", reply.status)).to_string();
    assert!(tag.len() == 66 && tag.starts_with('"') && tag.ends_with('"'), "{tag}");
    tag
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

async fn entries(f: &Fixture, store: &str) -> u64 {
    let status = f.node.status().await.unwrap();
    status.stores.iter().find(|(s, _)| s.name == store).map(|(_, st)| st.entries).unwrap()
}

#[tokio::test]
async fn get_has_the_winners_etag_and_if_none_match_gives_304() {
    let f = Fixture::start(HttpConfig::default()).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let put = send(f.addr(), "PUT", "/stores/app/keys/a/b", Some(&rw), &[], b"v1").await;
    assert_eq!(put.status, 200, "{}", text(&put));
    let tag = etag_of(&put);
    assert_eq!(tag, format!("\"{}\"", put.json()["hash"].as_str().unwrap()), "the ETag is the entry hash");

    let got = send(f.addr(), "GET", "/stores/app/keys/a/b", Some(&rw), &[], b"").await;
    assert_eq!((got.status, got.body.as_slice(), etag_of(&got)), (200, b"v1".as_slice(), tag.clone()));
    let other = format!("\"{}\"", "0".repeat(64));
    for matching in [tag.clone(), "*".to_string(), format!("{other}, {tag}"), format!("W/{tag}")] {
        let cached =
            send(f.addr(), "GET", "/stores/app/keys/a/b", Some(&rw), &[("If-None-Match", &matching)], b"").await;
        assert_eq!(cached.status, 304, "If-None-Match: {matching}");
        assert_eq!(etag_of(&cached), tag);
        assert!(cached.body.is_empty());
    }
    let stale = send(f.addr(), "GET", "/stores/app/keys/a/b", Some(&rw), &[("If-None-Match", &other)], b"").await;
    assert_eq!((stale.status, stale.body.as_slice()), (200, b"v1".as_slice()));

    // A new write moves the ETag; the old one no longer gives 304.
    let newer = etag_of(&send(f.addr(), "PUT", "/stores/app/keys/a/b", Some(&rw), &[], b"v2").await);
    assert_ne!(newer, tag);
    let moved = send(f.addr(), "GET", "/stores/app/keys/a/b", Some(&rw), &[("If-None-Match", &tag)], b"").await;
    assert_eq!((moved.status, etag_of(&moved)), (200, newer));
    let missing = send(f.addr(), "GET", "/stores/app/keys/nope", Some(&rw), &[("If-None-Match", "*")], b"").await;
    assert_eq!(missing.status, 404);
    f.stop().await;
}

#[tokio::test]
async fn put_and_delete_with_if_match_are_compare_and_set() {
    let f = Fixture::start(HttpConfig::default()).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let path = "/stores/app/keys/counter";
    let first = etag_of(&send(f.addr(), "PUT", path, Some(&rw), &[], b"1").await);

    let swapped = send(f.addr(), "PUT", path, Some(&rw), &[("If-Match", &first)], b"2").await;
    assert_eq!(swapped.status, 200, "{}", text(&swapped));
    let second = etag_of(&swapped);
    // The winner moved: the old ETag is refused with the current one, and nothing is written.
    let lost = send(f.addr(), "PUT", path, Some(&rw), &[("If-Match", &first)], b"3").await;
    assert_eq!(lost.status, 412, "{}", text(&lost));
    let body = lost.json();
    assert_eq!(body["etag"], json!(second), "{body}");
    assert_eq!(body["key"], "counter");
    assert!(body["error"].as_str().unwrap().contains("precondition failed"), "{body}");
    assert_eq!(request(f.addr(), "GET", path, Some(&rw), b"").await.body, b"2");
    // A bare hex hash is an ETag too.
    let bare = second.trim_matches('"').to_string();
    let third = send(f.addr(), "PUT", path, Some(&rw), &[("If-Match", &bare)], b"3").await;
    assert_eq!(third.status, 200, "{}", text(&third));
    let third = etag_of(&third);

    for bad in ["nope", "\"abc\"", "*", &format!("{third}, {second}")] {
        let refused = send(f.addr(), "PUT", path, Some(&rw), &[("If-Match", bad)], b"x").await;
        assert_eq!(refused.status, 400, "If-Match: {bad}: {}", text(&refused));
        assert!(refused.error().contains("if-match"), "{}", refused.error());
    }
    let both = send(f.addr(), "PUT", path, Some(&rw), &[("If-Match", &third), ("If-None-Match", "*")], b"x").await;
    assert_eq!(both.status, 400);
    assert_eq!(request(f.addr(), "GET", path, Some(&rw), b"").await.body, b"3", "refusals wrote nothing");

    // DELETE with If-Match: a stale ETag is 412, the current one deletes and returns the
    // tombstone's ETag; then the key is absent, and If-Match on it is 412 with etag null.
    let stale = send(f.addr(), "DELETE", path, Some(&rw), &[("If-Match", &first)], b"").await;
    assert_eq!((stale.status, stale.json()["etag"].clone()), (412, json!(third)));
    let deleted = send(f.addr(), "DELETE", path, Some(&rw), &[("If-Match", &third)], b"").await;
    assert_eq!(deleted.status, 200, "{}", text(&deleted));
    assert_eq!(etag_of(&deleted), format!("\"{}\"", deleted.json()["hash"].as_str().unwrap()));
    assert_eq!(request(f.addr(), "GET", path, Some(&rw), b"").await.status, 404);
    let gone = send(f.addr(), "DELETE", path, Some(&rw), &[("If-Match", &third)], b"").await;
    assert_eq!((gone.status, gone.json()["etag"].clone()), (412, Value::Null));
    let put_gone = send(f.addr(), "PUT", path, Some(&rw), &[("If-Match", &third)], b"x").await;
    assert_eq!((put_gone.status, put_gone.json()["etag"].clone()), (412, Value::Null));
    let bad_delete = send(f.addr(), "DELETE", path, Some(&rw), &[("If-Match", "zz")], b"").await;
    assert_eq!(bad_delete.status, 400);
    f.stop().await;
}

#[tokio::test]
async fn if_none_match_star_creates_only() {
    let f = Fixture::start(HttpConfig::default()).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let path = "/stores/app/keys/lock";
    let created = send(f.addr(), "PUT", path, Some(&rw), &[("If-None-Match", "*")], b"me").await;
    assert_eq!(created.status, 200, "{}", text(&created));
    let tag = etag_of(&created);
    let taken = send(f.addr(), "PUT", path, Some(&rw), &[("If-None-Match", "*")], b"you").await;
    assert_eq!(taken.status, 412);
    assert_eq!(taken.json()["etag"], json!(tag));
    assert_eq!(request(f.addr(), "GET", path, Some(&rw), b"").await.body, b"me");
    let not_star = send(f.addr(), "PUT", path, Some(&rw), &[("If-None-Match", &tag)], b"you").await;
    assert_eq!(not_star.status, 400, "{}", text(&not_star));
    // Once deleted, the key may be created again.
    assert_eq!(request(f.addr(), "DELETE", path, Some(&rw), b"").await.status, 200);
    let again = send(f.addr(), "PUT", path, Some(&rw), &[("If-None-Match", "*")], b"you").await;
    assert_eq!(again.status, 200, "{}", text(&again));
    f.stop().await;
}

#[tokio::test]
async fn a_batch_is_one_entry_or_nothing() {
    let f = Fixture::start(HttpConfig::default()).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    let post = |body: Value| {
        let rw = rw.clone();
        let addr = f.addr();
        async move { send(addr, "POST", "/stores/app/batch", Some(&rw), &[], body.to_string().as_bytes()).await }
    };
    let a = etag_of(&send(f.addr(), "PUT", "/stores/app/keys/a", Some(&rw), &[], b"0").await);
    let before = entries(&f, "app").await;
    let done = post(json!({"ops": [
        {"op": "put", "key": "a", "value": "1", "if_match": a},
        {"op": "put", "key": "b", "value": "AAE=", "encoding": "base64", "if_absent": true},
        {"op": "delete", "key": "gone"},
    ]}))
    .await;
    assert_eq!(done.status, 200, "{}", text(&done));
    let receipt = done.json();
    assert_eq!(receipt["ops"], 3);
    assert_eq!(receipt["hash"].as_str().map(str::len), Some(64));
    assert!(receipt["hlc"].is_string());
    assert_eq!(entries(&f, "app").await, before + 1, "three ops, one entry");
    assert_eq!(request(f.addr(), "GET", "/stores/app/keys/b", Some(&rw), b"").await.body, [0, 1]);
    let a_now = send(f.addr(), "GET", "/stores/app/keys/a", Some(&rw), &[], b"").await;
    assert_eq!(etag_of(&a_now), format!("\"{}\"", receipt["hash"].as_str().unwrap()));

    // A failed condition: 412 naming the key and its current ETag; nothing of the batch applied.
    let stale = post(json!({"ops": [
        {"op": "put", "key": "c", "value": "new"},
        {"op": "put", "key": "a", "value": "2", "if_match": a},
    ]}))
    .await;
    assert_eq!(stale.status, 412, "{}", text(&stale));
    assert_eq!((stale.json()["key"].clone(), stale.json()["etag"].clone()), (json!("a"), json!(etag_of(&a_now))));
    let taken = post(json!({"ops": [{"op": "put", "key": "b", "value": "x", "if_absent": true}]})).await;
    assert_eq!((taken.status, taken.json()["key"].clone()), (412, json!("b")));

    // Malformed: 400 naming the item; nothing applied.
    for (body, says) in [
        (json!({"ops": [{"op": "put", "key": "c", "value": "1"}, {"op": "put", "key": "d"}]}), "ops[1]: a put needs"),
        (json!({"ops": [{"op": "put", "key": "c", "value": "1", "if_mach": "x"}]}), "ops[0]: unknown field"),
        (json!({"ops": [{"op": "frob", "key": "c"}]}), "ops[0]: unknown op"),
        (json!({"ops": [{"op": "put", "key": "c", "value": "1", "if_match": "zz"}]}), "ops[0]: "),
        (json!({"ops": []}), "no operations"),
        (json!({"op": "put"}), "not {\"ops\""),
        (json!([1, 2]), "not {\"ops\""),
    ] {
        let refused = post(body.clone()).await;
        assert_eq!(refused.status, 400, "{body}: {}", text(&refused));
        assert!(refused.error().contains(says), "{body}: {}", refused.error());
    }
    let not_json = send(f.addr(), "POST", "/stores/app/batch", Some(&rw), &[], b"{\"ops\": [").await;
    assert_eq!(not_json.status, 400);
    // A key the node refuses (too long) is a 400 too, after parsing.
    let long = "k".repeat(lattice_core::entry::MAX_KEY_BYTES + 1);
    let too_long =
        post(json!({"ops": [{"op": "put", "key": "c", "value": "1"}, {"op": "put", "key": long, "value": "1"}]})).await;
    assert_eq!(too_long.status, 400, "{}", text(&too_long));
    assert_eq!(request(f.addr(), "GET", "/stores/app/keys/c", Some(&rw), b"").await.status, 404, "nothing applied");
    assert_eq!(entries(&f, "app").await, before + 1, "no refused batch wrote an entry");
    f.stop().await;
}

#[tokio::test]
async fn a_batch_needs_a_token_that_may_write_its_store() {
    let f = Fixture::start(HttpConfig::default()).await;
    let read = f.token("app", Permissions::Read).await;
    let other = f.token("other", Permissions::ReadWrite).await;
    let body = json!({"ops": [{"op": "put", "key": "k", "value": "v"}]}).to_string();
    let none = send(f.addr(), "POST", "/stores/app/batch", None, &[], body.as_bytes()).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let bad = send(f.addr(), "POST", "/stores/app/batch", Some("0123456789abcdef:nope"), &[], body.as_bytes()).await;
    assert_eq!(bad.status, 401);
    let read_only = send(f.addr(), "POST", "/stores/app/batch", Some(&read), &[], body.as_bytes()).await;
    assert_eq!(read_only.status, 403);
    assert!(read_only.error().contains("may not write"), "{}", read_only.error());
    let elsewhere = send(f.addr(), "POST", "/stores/app/batch", Some(&other), &[], body.as_bytes()).await;
    assert_eq!(elsewhere.status, 403);
    // A refused token is answered from the head: even a body that is not JSON is not read.
    let junk = send(f.addr(), "POST", "/stores/app/batch", Some(&read), &[], b"not json").await;
    assert_eq!(junk.status, 403);
    let app = f.node.resolve(Some("app")).await.unwrap();
    assert_eq!(f.node.get(&app, b"k").await.unwrap(), None);
    f.stop().await;
}

#[tokio::test]
async fn a_batch_body_may_exceed_the_value_limit_up_to_its_own() {
    let f = Fixture::start(HttpConfig::default()).await;
    let rw = f.token("app", Permissions::ReadWrite).await;
    // Three values of 0.9 MiB, base64: 3.6 MiB of body, over a PUT's 1 MiB limit, one entry.
    let value = base64_of(&vec![7u8; 900 * 1024]);
    let ops: Vec<Value> =
        (0..3).map(|i| json!({"op": "put", "key": format!("big{i}"), "value": value, "encoding": "base64"})).collect();
    let body = json!({ "ops": ops }).to_string();
    assert!(body.len() > lattice_core::entry::MAX_VALUE_BYTES * 3);
    let done = send(f.addr(), "POST", "/stores/app/batch", Some(&rw), &[], body.as_bytes()).await;
    assert_eq!(done.status, 200, "{}", text(&done));
    let over = vec![b' '; 6 * 1024 * 1024 + 1];
    let refused = send(f.addr(), "POST", "/stores/app/batch", Some(&rw), &[], &over).await;
    assert_eq!(refused.status, 413, "{}", text(&refused));
    f.stop().await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn openapi_json_is_served_without_auth_and_lists_every_route() {
    let f = Fixture::start(HttpConfig::default()).await;
    let reply = request(f.addr(), "GET", "/openapi.json", None, b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/healthz", &["get"][..]),
        ("/openapi.json", &["get"]),
        ("/stores/{store}/keys", &["get"]),
        ("/stores/{store}/keys/{key}", &["get", "put", "delete"]),
        ("/stores/{store}/batch", &["post"]),
        ("/stores/{store}/watch", &["get"]),
    ] {
        for method in methods {
            assert!(paths[path].get(*method).is_some(), "{method} {path}");
        }
    }
    let watch = &paths["/stores/{store}/watch"]["get"];
    assert!(watch["responses"]["200"]["content"].get("text/event-stream").is_some());
    let params: Vec<&str> = watch["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(params.contains(&"prefix") && params.contains(&"Last-Event-ID"), "{params:?}");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["type"], "http");
    f.stop().await;
}
