//! A peer that speaks the protocol but sends forged and foreign entries: they are rejected,
//! honest data is untouched, and the valid entries of the same batch still land.

mod common;

use common::{TestNode, befriend, dump, serve, write_many};
use lattice_core::proto::{self, peer_message::Message as Msg};
use lattice_core::{EntryBuilder, Hash, Hlc, Op, StoreId};
use lattice_net::test_utils::raw_stream;
use lattice_store::KvStore;
use lattice_testkit::eventually;
use prost::Message;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_wrong_store_entries_are_rejected() {
    let root = StoreId::new_random();
    let (a, m) = (TestNode::new(root).unwrap(), TestNode::new(root).unwrap());
    befriend(&a, &m);
    write_many(&a.store(root).unwrap(), "honest", 10).await;
    let before = dump(&a.store(root).unwrap()).await;
    let (sa, sm) = (serve(&a).await, serve(&m).await);

    let valid =
        EntryBuilder::new(root, 1).timestamp(Hlc::new(1, 0)).op(Op::put("from-m", "ok")).sign(m.identity()).unwrap();
    let wrong_store = EntryBuilder::new(StoreId::new_random(), 2)
        .prev_hash(valid.hash())
        .timestamp(Hlc::new(2, 0))
        .op(Op::put("honest000001", "overwritten"))
        .sign(m.identity())
        .unwrap();
    let mut forged = proto::SignedEntry::decode(
        EntryBuilder::new(root, 1)
            .timestamp(Hlc::new(5, 0))
            .op(Op::put("honest000002", "forged"))
            .sign(m.identity())
            .unwrap()
            .bytes(),
    )
    .unwrap();
    forged.author_id = a.author().0.to_vec(); // claims to be A
    let forged_prev = EntryBuilder::new(root, 2)
        .prev_hash(Hash::of(b"not the previous entry"))
        .timestamp(Hlc::new(3, 0))
        .op(Op::put("honest000003", "chain-forged"))
        .sign(m.identity())
        .unwrap();

    let conn = sm.connect(&sa.peer_addr()).await.unwrap();
    let (mut tx, mut rx) = raw_stream(&conn).await.unwrap();
    tx.send(Msg::SyncRequest(proto::SyncRequest {
        store_id: root.as_bytes().to_vec(),
        state: Some(proto::SyncState { authors: vec![] }),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert!(matches!(rx.expect().await.unwrap(), Msg::SyncRequest(_)));
    let batch = vec![
        forged.encode_to_vec(),
        valid.bytes().to_vec(),
        wrong_store.bytes().to_vec(),
        forged_prev.bytes().to_vec(),
        vec![0xde, 0xad],
    ];
    tx.send(Msg::SyncEntries(proto::SyncEntries { entries: batch })).await.unwrap();
    tx.send(Msg::SyncDone(proto::SyncDone { sent: 5, ..Default::default() })).await.unwrap();
    // Drain what A sends us until its SyncDone, so the session completes.
    while let Some(msg) = rx.recv().await.unwrap() {
        if matches!(msg, Msg::SyncDone(_)) {
            break;
        }
    }
    tx.finish().await;

    // The session is served asynchronously: poll until the valid entry lands.
    let store = a.store(root).unwrap();
    eventually("the valid entry to be applied", Duration::from_secs(10), || {
        let store = store.clone();
        async move { store.get(b"from-m").await.unwrap().is_some() }
    })
    .await;
    let mut after = dump(&a.store(root).unwrap()).await;
    after.retain(|(k, _)| k != b"from-m");
    assert_eq!(after, before, "honest data is unaffected");
    let status = a.store(root).unwrap().status().await.unwrap();
    assert_eq!((status.entries, status.authors, status.orphans), (11, 2, 0));
    sa.shutdown().await;
    sm.shutdown().await;
}

/// A member that gossips equivocation proofs that prove nothing: each is refused (both entries
/// must verify, be by one author, for this store, at one seq, and differ), and a real proof in
/// the same message is still taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossiped_proofs_that_prove_nothing_are_refused() {
    use common::{full_mesh, mesh_config};
    use lattice_core::Identity;
    use lattice_net::test_utils::gossip_raw;
    use lattice_store::SyncStore;
    let root = StoreId::new_random();
    let mut config = mesh_config();
    config.mesh.anti_entropy_interval = Duration::from_secs(3600);
    let (nodes, servers) = full_mesh(2, root, config).await;
    let (a, m) = (&nodes[0], &servers[1]);
    // Both ways: M's broadcast reaches only the neighbours M itself has.
    eventually("A and M are gossip neighbours", Duration::from_secs(20), || async {
        servers[0].gossip_neighbours(root).contains(&nodes[1].author())
            && servers[1].gossip_neighbours(root).contains(&nodes[0].author())
    })
    .await;
    let (x, y) = (Identity::generate(), Identity::generate());
    let entry = |store: StoreId, who: &Identity, seq: u64, prev: Hash, value: &str| {
        EntryBuilder::new(store, seq)
            .prev_hash(prev)
            .timestamp(Hlc::new(1_000 + seq, 0))
            .op(Op::put("k", value))
            .sign(who)
            .unwrap()
    };
    let x1 = entry(root, &x, 1, Hash::ZERO, "one");
    let x1_twin = entry(root, &x, 1, Hash::ZERO, "two");
    let x2 = entry(root, &x, 2, x1.hash(), "next");
    let x1_elsewhere = entry(StoreId::new_random(), &x, 1, Hash::ZERO, "two");
    let y1 = entry(root, &y, 1, Hash::ZERO, "one");
    let mut forged = proto::SignedEntry::decode(x1_twin.bytes()).unwrap();
    forged.signature[0] ^= 1;
    let proof =
        |first: &[u8], second: &[u8]| proto::EquivocationProof { first: first.to_vec(), second: second.to_vec() };
    let (x1, y1_twin) = (x1.bytes(), entry(root, &y, 1, Hash::ZERO, "two"));
    let message = proto::GossipMessage {
        proofs: vec![
            proof(x1, x1),
            proof(x1, x2.bytes()),
            proof(x1, y1.bytes()),
            proof(x1, x1_elsewhere.bytes()),
            proof(x1, &forged.encode_to_vec()),
            proof(x1, &[0xde, 0xad]),
            // The one real proof, last: once it is taken, every other was judged.
            proof(y1.bytes(), y1_twin.bytes()),
        ],
        ..Default::default()
    };
    gossip_raw(m, root, &message).await.unwrap();
    let store = a.store(root).unwrap();
    eventually("A takes the real proof", Duration::from_secs(20), || async {
        !store.proofs().await.unwrap().is_empty()
    })
    .await;
    assert_eq!(store.status().await.unwrap().equivocated, vec![(y.author(), 1)], "only Y is proven forked");
    assert_eq!(store.proofs().await.unwrap().len(), 1);
    for s in servers {
        s.shutdown().await;
    }
}
