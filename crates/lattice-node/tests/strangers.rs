//! A refused connection leaves no trace on disk (DESIGN.md §7.3): a node on the network, with a
//! real `Network` on 127.0.0.1, takes 1,000 connections from identities that are not members of
//! its mesh, and its `meta.db` is byte for byte what it was, with no peer-book row for any of
//! them. A member's connection, by contrast, is recorded: the measure does see a write.
//!
//! Why the file's bytes: every redb write transaction that commits rewrites the file's header
//! (a new transaction id) even when it changes no row, so equal bytes mean no write at all, not
//! merely no logical change; the node keeps `meta.db` open throughout, so nothing rewrites it
//! on open. The peer-book check says which rows a write would have left.
//!
//! The strangers are 50 endpoints of 20 connections each (binding 1,000 endpoints would
//! dominate the test's time; the gate judges each connection at its own handshake, whoever
//! dials): 1,000 refused handshakes from 50 distinct non-member node ids.

use std::sync::Arc;

use lattice_net::test_utils::{TestNode, TestNodeConfig};
use lattice_net::{NetConfig, NetError, PeerAddr};
use lattice_node::{DataDir, DirLock, Network, Node, PeerRecord, Role};
use lattice_testkit::{DEADLINE, eventually};

const STRANGERS: usize = 50;
const EACH: usize = 20;

/// A node that knows no mesh: it dials whoever it is told to.
fn outsider() -> Arc<TestNode> {
    TestNode::with_config(TestNodeConfig::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stranger_connections_leave_meta_db_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data")).unwrap();
    dir.create().unwrap();
    let lock = Arc::new(DirLock::try_acquire(&dir).unwrap());
    let node = Arc::new(Node::init(dir.clone(), lock, Some("target".into())).await.unwrap());
    // Invited before the network starts, so nothing about it is still being written when the
    // bytes are first read.
    let member = outsider();
    node.invite(member.author(), Role::Member).await.unwrap();
    let network = Network::start(node.clone(), NetConfig::loopback()).await.unwrap();
    let target = PeerAddr { id: node.node_id(), addrs: network.listen_addrs() };
    let before = std::fs::read(dir.meta_db()).unwrap();

    let mut strangers = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..STRANGERS {
        let stranger = outsider();
        let server = Arc::new(stranger.serve(NetConfig::loopback()).await.unwrap());
        strangers.push((stranger, server.clone()));
        let target = target.clone();
        tasks.spawn(async move {
            for _ in 0..EACH {
                // The dial completes on the stranger's side; the node closes the connection at
                // its handshake, which the join that follows reports.
                let conn = server.connect(&target).await.unwrap();
                match conn.join("stranger", "host").await {
                    Err(NetError::Refused { message, .. }) => assert!(message.contains("not invited"), "{message}"),
                    other => panic!("expected a refusal, got {other:?}"),
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert!(std::fs::read(dir.meta_db()).unwrap() == before, "a refused connection wrote to meta.db");
    for (stranger, server) in &strangers {
        assert_eq!(node.meta().peer(stranger.author()).unwrap(), PeerRecord::default(), "a peer-book row");
        assert_eq!(network.server().connections(stranger.author()), 0);
        server.shutdown().await;
    }

    // An invited node's connection is recorded (last seen): the comparison above sees writes.
    let member_server = member.serve(NetConfig::loopback()).await.unwrap();
    let conn = member_server.connect(&target).await.unwrap();
    conn.join("member", "host").await.unwrap();
    eventually("the member's connection to be recorded", DEADLINE, || async {
        node.meta().peer(member.author()).unwrap().last_seen.is_some()
    })
    .await;
    assert!(std::fs::read(dir.meta_db()).unwrap() != before, "a recorded connection changed meta.db");
    conn.close();
    member_server.shutdown().await;
    network.shutdown().await;
    node.shutdown().await.unwrap();
}
