//! Tokens are mesh-wide: made on one node, honoured by another node's HTTP API once the root
//! store has synced, and refused there once revoked on the first (the revocation travels by
//! gossip). Two in-process nodes on 127.0.0.1.

mod common;

use common::{joined, networked, request};
use lattice_http::{HttpConfig, HttpServer};
use lattice_node::Permissions;
use lattice_testkit::{DEADLINE, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_on_one_node_opens_another_until_revoked() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, net_a) = networked(&dir_a, "a").await;
    let store = a.resolve(Some("default")).await.unwrap();
    a.put(&store, b"greeting".to_vec(), b"from a".to_vec()).await.unwrap();
    let (record, secret) = a.create_token("default", Some("mesh".into()), Permissions::Read, None).await.unwrap();
    let token = format!("{}:{secret}", record.id);

    let (b, net_b) = joined(&a, &net_a, &dir_b, "b").await;
    let api_b = HttpServer::start(b.clone(), "127.0.0.1:0".parse().unwrap(), HttpConfig::default()).await.unwrap();

    let path = format!("/stores/{}/keys/greeting", store.id);
    let got = request(api_b.local_addr(), "GET", &path, Some(&token), b"").await;
    assert_eq!((got.status, got.body), (200, b"from a".to_vec()), "B honours A's token");
    let by_name = request(api_b.local_addr(), "GET", "/stores/default/keys/greeting", Some(&token), b"").await;
    assert_eq!(by_name.status, 200, "by name too");

    a.revoke_token(&record.id).await.unwrap();
    let (addr, path, token) = (api_b.local_addr(), &path, &token);
    eventually("B to learn of the revocation", DEADLINE, || async move {
        let status = request(addr, "GET", path, Some(token), b"").await.status;
        assert!(status == 200 || status == 401, "honoured until revoked, then 401 (got {status})");
        status == 401
    })
    .await;

    api_b.shutdown().await;
    for net in [net_b, net_a] {
        net.shutdown().await;
    }
    for node in [b, a] {
        node.shutdown().await.unwrap();
    }
}
