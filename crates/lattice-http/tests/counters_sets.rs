//! Counters and sets over HTTP (issue 17): written through the batch route, read with GET as
//! JSON `{"key", "kind", "value"|"members"}` (registers stay raw bytes), a write of the wrong
//! kind refused with 409 and nothing applied, and the batch route's ops in `/openapi.json`.

mod common;

use common::{Fixture, request};
use lattice_http::HttpConfig;
use lattice_node::Permissions;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_sets_through_batch_and_get() {
    let f = Fixture::start(HttpConfig::default()).await;
    let (addr, rw) = (f.addr(), f.token("app", Permissions::ReadWrite).await);
    let batch = |ops: serde_json::Value| json!({ "ops": ops }).to_string();
    let ops = json!([
        {"op": "incr", "key": "hits"},
        {"op": "incr", "key": "hits", "by": 41},
        {"op": "decr", "key": "hits", "by": 2},
        {"op": "sadd", "key": "team", "member": "bob"},
        {"op": "sadd", "key": "team", "member": "alice"},
        {"op": "sadd", "key": "team", "member": "carol"},
        {"op": "srem", "key": "team", "member": "carol"},
        {"op": "put", "key": "plain", "value": "text"},
    ]);
    let written = request(addr, "POST", "/stores/app/batch", Some(&rw), batch(ops).as_bytes()).await;
    assert_eq!(written.status, 200, "{}", String::from_utf8_lossy(&written.body));

    let hits = request(addr, "GET", "/stores/app/keys/hits", Some(&rw), b"").await;
    assert_eq!((hits.status, hits.header("content-type")), (200, Some("application/json")));
    assert_eq!(hits.json(), json!({"key": "hits", "kind": "counter", "value": 40}));
    assert!(hits.header("etag").is_some());
    let team = request(addr, "GET", "/stores/app/keys/team", Some(&rw), b"").await;
    assert_eq!(team.json(), json!({"key": "team", "kind": "set", "members": ["alice", "bob"]}));
    let plain = request(addr, "GET", "/stores/app/keys/plain", Some(&rw), b"").await;
    assert_eq!(
        (plain.header("content-type"), plain.body.as_slice()),
        (Some("application/octet-stream"), b"text".as_slice())
    );

    // The wrong kind for a key: 409, and the batch's other ops are not applied either.
    let wrong = json!([{"op": "incr", "key": "hits"}, {"op": "sadd", "key": "plain", "member": "x"}]);
    let refused = request(addr, "POST", "/stores/app/batch", Some(&rw), batch(wrong).as_bytes()).await;
    assert_eq!(refused.status, 409, "{}", String::from_utf8_lossy(&refused.body));
    assert!(refused.error().contains("plain"), "{}", refused.error());
    let hits = request(addr, "GET", "/stores/app/keys/hits", Some(&rw), b"").await;
    assert_eq!(hits.json()["value"], 40, "nothing of the refused batch applied");
    // A put over a counter is refused the same way.
    let put = request(addr, "PUT", "/stores/app/keys/hits", Some(&rw), b"over").await;
    assert_eq!(put.status, 409);

    // A delete clears the counter; it may then take another kind.
    assert_eq!(request(addr, "DELETE", "/stores/app/keys/hits", Some(&rw), b"").await.status, 200);
    assert_eq!(request(addr, "GET", "/stores/app/keys/hits", Some(&rw), b"").await.status, 404);
    assert_eq!(request(addr, "PUT", "/stores/app/keys/hits", Some(&rw), b"now text").await.status, 200);

    let doc = request(addr, "GET", "/openapi.json", None, b"").await.json();
    let ops = &doc["components"]["schemas"]["BatchOp"]["properties"]["op"]["enum"];
    assert_eq!(ops, &json!(["put", "delete", "incr", "decr", "sadd", "srem"]));
    assert!(doc["components"]["schemas"]["KindedValue"].is_object());
    f.stop().await;
}
