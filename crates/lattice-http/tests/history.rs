//! Time travel over HTTP (issue 19): `GET /stores/{store}/keys/{*key}?at=T` answers the value as
//! of an RFC 3339 time or an HLC; none then is 404, a bad time or a counter 400, and it needs a
//! token that reads the store like the value does.

mod common;

use common::{Fixture, query_escape, request};
use lattice_http::HttpConfig;
use lattice_node::Permissions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_at_answers_as_of_then() {
    let f = Fixture::start(HttpConfig::default()).await;
    let (addr, rw) = (f.addr(), f.token("app", Permissions::ReadWrite).await);
    for value in ["one", "two"] {
        assert_eq!(request(addr, "PUT", "/stores/app/keys/doc", Some(&rw), value.as_bytes()).await.status, 200);
    }
    let store = f.node.resolve(Some("app")).await.unwrap();
    let versions = f.node.versions(&store, b"doc").await.unwrap();
    assert_eq!(versions.len(), 2);
    let at = |hlc: lattice_core::Hlc| format!("/stores/app/keys/doc?at={}", query_escape(&hlc.to_string()));

    let first = request(addr, "GET", &at(versions[0].hlc), Some(&rw), b"").await;
    assert_eq!((first.status, first.body.as_slice()), (200, b"one".as_slice()));
    let second = request(addr, "GET", &at(versions[1].hlc), Some(&rw), b"").await;
    assert_eq!((second.status, second.body.as_slice()), (200, b"two".as_slice()));
    let before = lattice_core::Hlc::new(versions[0].hlc.wall_ms - 1, 0);
    assert_eq!(request(addr, "GET", &at(before), Some(&rw), b"").await.status, 404);
    let rfc = request(addr, "GET", "/stores/app/keys/doc?at=2999-01-01T00%3A00%3A00Z", Some(&rw), b"").await;
    assert_eq!((rfc.status, rfc.body.as_slice()), (200, b"two".as_slice()));
    let bad = request(addr, "GET", "/stores/app/keys/doc?at=yesterday", Some(&rw), b"").await;
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("not a time"));

    let incr = br#"{"ops": [{"op": "incr", "key": "hits", "by": 3}]}"#;
    assert_eq!(request(addr, "POST", "/stores/app/batch", Some(&rw), incr).await.status, 200);
    let counter = request(addr, "GET", "/stores/app/keys/hits?at=2999-01-01T00%3A00%3A00Z", Some(&rw), b"").await;
    assert_eq!(counter.status, 400, "{}", String::from_utf8_lossy(&counter.body));
    assert_eq!(request(addr, "GET", &at(versions[1].hlc), None, b"").await.status, 401);
}
