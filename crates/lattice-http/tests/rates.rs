//! Rate limits over HTTP: the server's default bucket (`HttpConfig::rate_limit`) and a token's
//! own rate from the root store, each answered past its limit with 429 and `Retry-After`.

mod common;

use common::{Fixture, request};
use lattice_http::{HttpConfig, RateLimit};
use lattice_node::Permissions;

#[tokio::test]
async fn a_tokens_own_rate_replaces_the_default() {
    let f =
        Fixture::start(HttpConfig { rate_limit: RateLimit { per_second: 1000, burst: 1000 }, ..HttpConfig::default() })
            .await;
    let (record, secret) = f.node.create_rated_token("app", None, Permissions::ReadWrite, None, Some(2)).await.unwrap();
    assert_eq!(record.rate, Some(2));
    assert_eq!(f.node.token(&record.id).await.unwrap().and_then(|r| r.rate), Some(2), "kept in the root store");
    let slow = format!("{}:{secret}", record.id);
    let fast = f.token("app", Permissions::ReadWrite).await;
    for _ in 0..2 {
        assert_eq!(request(f.addr(), "GET", "/stores/app/keys/k", Some(&slow), b"").await.status, 404);
    }
    let limited = request(f.addr(), "GET", "/stores/app/keys/k", Some(&slow), b"").await;
    assert_eq!(limited.status, 429);
    assert!(limited.error().contains("rate limit"));
    assert_eq!(limited.header("retry-after"), Some("1"));
    for _ in 0..10 {
        assert_eq!(request(f.addr(), "GET", "/stores/app/keys/k", Some(&fast), b"").await.status, 404);
    }
    assert!(f.node.create_rated_token("app", None, Permissions::Read, None, Some(0)).await.is_err());
    f.stop().await;
}
