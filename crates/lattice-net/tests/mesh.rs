//! The self-healing mesh in-process on 127.0.0.1: gossip, partitions, chains.

mod common;

use common::{TestNode, dump, join_mesh, mesh_config, write_many};
use lattice_core::StoreId;
use lattice_net::test_utils::link;
use lattice_testkit::eventually;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_delivers_writes_without_manual_sync() {
    let root = StoreId::new_random();
    let nodes: Vec<_> = (0..3).map(|_| TestNode::new(root).unwrap()).collect();
    let mut config = mesh_config();
    config.mesh.anti_entropy_interval = Duration::from_secs(3600);
    let mut servers = Vec::new();
    for n in &nodes {
        servers.push(join_mesh(n, config.clone()).await);
    }
    let pairs: Vec<_> = nodes.iter().zip(servers.iter()).collect();
    link(&pairs, |_, _| true);
    write_many(&nodes[0].store(root).unwrap(), "live", 20).await;
    for n in &nodes[1..] {
        let s = n.store(root).unwrap();
        eventually("gossip reaches every node", Duration::from_secs(20), || {
            let s = s.clone();
            async move { s.status().await.unwrap().entries == 20 }
        })
        .await;
    }
    assert_eq!(dump(&nodes[1].store(root).unwrap()).await, dump(&nodes[0].store(root).unwrap()).await);
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_a_b_c_converges_without_a_and_c_meeting() {
    let root = StoreId::new_random();
    let nodes: Vec<_> = (0..3).map(|_| TestNode::new(root).unwrap()).collect();
    let mut servers = Vec::new();
    for n in &nodes {
        servers.push(join_mesh(n, mesh_config()).await);
    }
    let pairs: Vec<_> = nodes.iter().zip(servers.iter()).collect();
    link(&pairs, |i, j| i.abs_diff(j) == 1);
    write_many(&nodes[0].store(root).unwrap(), "a", 30).await;
    write_many(&nodes[2].store(root).unwrap(), "c", 30).await;
    for n in &nodes {
        let s = n.store(root).unwrap();
        eventually("all three converge", Duration::from_secs(30), || {
            let s = s.clone();
            async move { s.status().await.unwrap().entries == 60 }
        })
        .await;
    }
    let reference = dump(&nodes[0].store(root).unwrap()).await;
    for n in &nodes[1..] {
        assert_eq!(dump(&n.store(root).unwrap()).await, reference);
    }
    for s in servers {
        s.shutdown().await;
    }
}
