//! The self-healing mesh in-process on 127.0.0.1: gossip, partitions, chains.

mod common;

use common::{TestNode, dump, full_mesh, join_mesh, mesh_config, write_many};
use lattice_core::StoreId;
use lattice_net::PeerEvent;
use lattice_net::test_utils::link;
use lattice_testkit::eventually;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_delivers_writes_without_manual_sync() {
    let root = StoreId::new_random();
    let mut config = mesh_config();
    config.mesh.anti_entropy_interval = Duration::from_secs(3600);
    let (nodes, servers) = full_mesh(3, root, config).await;
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

/// Equivocation proofs travel by gossip (DESIGN.md §7.4), with no sync involved. A and B are
/// active members of each other's mesh; A and C only invited ones, so neither may sync the
/// (non-root) store with the other, nor schedule a sync with it (`admission`), but they gossip;
/// B and C do not know each other. A is given both branches of a fork: the proof it makes
/// reaches B and C by gossip alone, and C refuses the forked author from the fork seq on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocation_proof_reaches_a_gossip_only_peer() {
    use lattice_core::{Identity, MemberStatus};
    use lattice_store::{IngestOutcome, KvStore, SyncStore};
    let (root, store) = (StoreId::new_random(), StoreId::new_random());
    let nodes: Vec<_> = (0..3).map(|_| TestNode::new(root).unwrap()).collect();
    for n in &nodes {
        n.open_store(store).unwrap();
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    a.set_peer(b.author(), MemberStatus::Active);
    b.set_peer(a.author(), MemberStatus::Active);
    a.set_peer(c.author(), MemberStatus::Invited);
    c.set_peer(a.author(), MemberStatus::Invited);
    let mut config = mesh_config();
    config.mesh.anti_entropy_interval = Duration::from_secs(3600);
    let mut servers = Vec::new();
    for n in &nodes {
        servers.push(join_mesh(n, config.clone()).await);
    }
    let (sa, sb, sc) = (&servers[0], &servers[1], &servers[2]);
    sa.set_peers(vec![sb.peer_addr(), sc.peer_addr()]);
    sb.set_peers(vec![sa.peer_addr()]);
    sc.set_peers(vec![sa.peer_addr()]);
    eventually("A has B and C as gossip neighbours", Duration::from_secs(20), || async {
        let n = sa.gossip_neighbours(store);
        n.contains(&b.author()) && n.contains(&c.author())
    })
    .await;
    // The topic is live end to end: a write of A's reaches C by gossip.
    a.store(store).unwrap().put(b"live".to_vec(), b"1".to_vec()).await.unwrap();
    let store_c = c.store(store).unwrap();
    eventually("A's write reaches C by gossip", Duration::from_secs(20), || async {
        store_c.get(b"live").await.unwrap().is_some()
    })
    .await;

    let forker = Identity::generate();
    let fork = |value: &str| common::fork_at_seq_1(store, &forker, value);
    let store_a = a.store(store).unwrap();
    store_a.ingest_batch(vec![fork("one")]).await.unwrap();
    store_a.ingest_batch(vec![fork("two")]).await.unwrap();
    let proofs = store_a.proofs().await.unwrap();
    assert_eq!(proofs.len(), 1, "A found the fork");
    for (name, n) in [("B", b), ("C", c)] {
        let s = n.store(store).unwrap();
        eventually(&format!("{name} holds the proof"), Duration::from_secs(20), || async {
            s.proofs().await.unwrap() == proofs
        })
        .await;
    }
    let equivocated = store_a.status().await.unwrap().equivocated;
    assert_eq!(equivocated, vec![(forker.author(), 1)]);
    assert_eq!(store_c.status().await.unwrap().equivocated, equivocated);
    let refused = store_c.ingest_batch(vec![fork("one")]).await.unwrap();
    assert!(matches!(refused.as_slice(), [Ok(IngestOutcome::Refused)]), "{refused:?}");
    assert_eq!(store_c.get(b"k").await.unwrap(), None, "the forked author's entries apply nowhere");
    // C never synced the store with anyone: the proof came by gossip.
    let synced_store = |e: &PeerEvent| matches!(e, PeerEvent::Synced { store: s, .. } if *s == store);
    assert!(!c.events().iter().any(synced_store), "{:?}", c.events());
    for s in servers {
        s.shutdown().await;
    }
}

/// Gossip carries attestations (issue 18): an entry that gossip never carries (A received it
/// from a third party: only local entries are broadcast) reaches B without anti-entropy, because
/// A's attestation counts it and B, still without it a moment later, syncs with A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_of_entries_gossip_lost_makes_the_peer_sync() {
    use lattice_core::{EntryBuilder, Hlc, Identity, Op};
    use lattice_store::{KvStore, SyncStore};

    let root = StoreId::new_random();
    let mut config = mesh_config();
    config.mesh.anti_entropy_interval = Duration::from_secs(3600);
    let (nodes, servers) = full_mesh(2, root, config).await;
    let (a, b) = (nodes[0].store(root).unwrap(), nodes[1].store(root).unwrap());
    // Gossip is up both ways: a live write arrives.
    write_many(&a, "live", 1).await;
    eventually("gossip reaches b", Duration::from_secs(20), || {
        let b = b.clone();
        async move { b.status().await.unwrap().entries == 1 }
    })
    .await;
    // An entry of a third author, handed to A directly: A's commit broadcasts nothing, but its
    // attestation (1 s later) counts 2 entries.
    let outsider = Identity::generate();
    let entry =
        EntryBuilder::new(root, 1).timestamp(Hlc::new(1_000, 0)).op(Op::put("aside", "v")).sign(&outsider).unwrap();
    for r in a.ingest_batch(vec![entry.bytes().to_vec()]).await.unwrap() {
        r.unwrap();
    }
    eventually("the attestation makes b sync with a", Duration::from_secs(20), || {
        let b = b.clone();
        async move { b.get(b"aside").await.unwrap().is_some() }
    })
    .await;
    assert_eq!(a.status().await.unwrap().root, b.status().await.unwrap().root);
    for s in servers {
        s.shutdown().await;
    }
}
