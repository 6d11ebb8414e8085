//! Two and three nodes syncing over iroh on 127.0.0.1, in-process.

mod common;

use common::{TestNode, befriend, dump, serve, write_many};
use lattice_core::{MemberStatus, StoreId, SyncState};
use lattice_net::{NetConfig, NetError};
use lattice_store::{KvStore, SyncStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writes_b_syncs_same_state() {
    let root = StoreId::new_random();
    let (a, b) = (TestNode::new(root).unwrap(), TestNode::new(root).unwrap());
    befriend(&a, &b);
    write_many(&a.store(root).unwrap(), "k", 300).await;
    let (sa, sb) = (serve(&a).await, serve(&b).await);
    let results = sb.sync_stores(&sa.peer_addr(), vec![b.store(root).unwrap()], None).await.unwrap();
    let outcome = results[0].1.as_ref().unwrap();
    assert_eq!((outcome.received, outcome.applied, outcome.rejected), (300, 300, 0));
    assert_eq!(dump(&a.store(root).unwrap()).await, dump(&b.store(root).unwrap()).await);
    assert_eq!(b.store(root).unwrap().sync_state().await.unwrap(), a.store(root).unwrap().sync_state().await.unwrap());

    // Concurrent writes to one key, then one sync session carries both directions.
    a.store(root).unwrap().put(b"x".to_vec(), b"from-a".to_vec()).await.unwrap();
    b.store(root).unwrap().put(b"x".to_vec(), b"from-b".to_vec()).await.unwrap();
    let results = sb.sync_stores(&sa.peer_addr(), vec![b.store(root).unwrap()], None).await.unwrap();
    let outcome = results[0].1.as_ref().unwrap();
    assert_eq!((outcome.sent, outcome.received), (1, 1));
    let (ha, hb) =
        (a.store(root).unwrap().get_heads(b"x").await.unwrap(), b.store(root).unwrap().get_heads(b"x").await.unwrap());
    assert_eq!(ha.len(), 2);
    assert_eq!(ha, hb);
    assert_eq!(a.store(root).unwrap().get(b"x").await.unwrap(), b.store(root).unwrap().get(b"x").await.unwrap());
    sa.shutdown().await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_node_gets_a_entries_from_b_only() {
    let root = StoreId::new_random();
    let (a, b, c) = (TestNode::new(root).unwrap(), TestNode::new(root).unwrap(), TestNode::new(root).unwrap());
    befriend(&a, &b);
    befriend(&b, &c);
    write_many(&a.store(root).unwrap(), "a", 50).await;
    write_many(&b.store(root).unwrap(), "b", 20).await;
    let (sa, sb, sc) = (serve(&a).await, serve(&b).await, serve(&c).await);
    sb.sync_stores(&sa.peer_addr(), vec![b.store(root).unwrap()], None).await.unwrap();
    let results = sc.sync_stores(&sb.peer_addr(), vec![c.store(root).unwrap()], None).await.unwrap();
    assert_eq!(results[0].1.as_ref().unwrap().applied, 70);
    assert_eq!(dump(&c.store(root).unwrap()).await, dump(&a.store(root).unwrap()).await);
    assert_eq!(c.store(root).unwrap().status().await.unwrap().authors, 2);
    for s in [sa, sb, sc] {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninvited_and_removed_nodes_are_refused() {
    let root = StoreId::new_random();
    let (a, stranger) = (TestNode::new(root).unwrap(), TestNode::new(root).unwrap());
    write_many(&a.store(root).unwrap(), "secret", 5).await;
    let (sa, ss) = (serve(&a).await, serve(&stranger).await);
    // Refused at the handshake: the connection closes with the refusal, which its calls report.
    let conn = ss.connect(&sa.peer_addr()).await.unwrap();
    let err = conn.join("stranger", "host").await.unwrap_err();
    assert!(matches!(&err, NetError::Refused { message, .. } if message.contains("not invited")), "{err}");
    let err = conn.sync(&stranger.store(root).unwrap(), None).await.unwrap_err();
    assert!(matches!(err, NetError::Refused { .. }), "{err}");
    assert!(dump(&stranger.store(root).unwrap()).await.is_empty());

    // Invited: may join, and fetch the root store, nothing else, even on the connection it
    // joined with.
    a.set_peer(stranger.author(), MemberStatus::Invited);
    let other = StoreId::new_random();
    a.open_store(other).unwrap();
    let s_other = stranger.open_store(other).unwrap();
    let conn = ss.connect(&sa.peer_addr()).await.unwrap();
    assert_eq!(conn.join("friend", "host").await.unwrap().root, root);
    assert!(matches!(conn.sync(&s_other, None).await, Err(NetError::Refused { .. })));
    conn.sync(&stranger.store(root).unwrap(), None).await.unwrap();
    assert_eq!(dump(&stranger.store(root).unwrap()).await.len(), 5);
    let conn = ss.connect(&sa.peer_addr()).await.unwrap();
    conn.sync(&stranger.store(root).unwrap(), None).await.unwrap();
    assert!(matches!(conn.sync(&s_other, None).await, Err(NetError::Refused { .. })));

    // Removed: refused from then on, even on an open connection.
    a.set_peer(stranger.author(), MemberStatus::Active);
    let conn = ss.connect(&sa.peer_addr()).await.unwrap();
    conn.sync(&stranger.store(root).unwrap(), None).await.unwrap();
    a.set_peer(stranger.author(), MemberStatus::Removed);
    assert!(matches!(conn.sync(&stranger.store(root).unwrap(), None).await, Err(NetError::Refused { .. })));
    assert!(matches!(conn.join("again", "host").await, Err(NetError::Refused { .. })));
    sa.shutdown().await;
    ss.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_store_and_missing_address_are_clear_errors() {
    let root = StoreId::new_random();
    let (a, b) = (TestNode::new(root).unwrap(), TestNode::new(root).unwrap());
    befriend(&a, &b);
    let other = StoreId::new_random();
    let b_other = b.open_store(other).unwrap();
    let (sa, sb) = (serve(&a).await, serve(&b).await);
    let results = sb.sync_stores(&sa.peer_addr(), vec![b_other], None).await.unwrap();
    let err = results[0].1.as_ref().unwrap_err();
    assert!(err.to_string().contains("not active"), "{err}");
    let no_addr = lattice_net::PeerAddr::new(lattice_core::Identity::generate().author());
    assert!(matches!(sb.connect(&no_addr).await, Err(NetError::NoAddress(_))));
    sa.shutdown().await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_cut_midway_keeps_progress_and_next_sync_completes() {
    let root = StoreId::new_random();
    let (a, b) = (TestNode::new(root).unwrap(), TestNode::new(root).unwrap());
    befriend(&a, &b);
    // Values of ~2 KiB so a few thousand entries span several 1 MiB batches.
    let sa_store = a.store(root).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        let s = sa_store.clone();
        tasks.spawn(async move {
            for i in (t..2000).step_by(16) {
                s.put(format!("big{i:05}").into_bytes(), vec![b'x'; 2048]).await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut cut = NetConfig::loopback();
    cut.sync.cut_after_batches = Some(2);
    let sa = a.serve(cut).await.unwrap();
    let sb = serve(&b).await;
    let results = sb.sync_stores(&sa.peer_addr(), vec![b.store(root).unwrap()], None).await.unwrap();
    assert!(results[0].1.is_err(), "the cut session reports an error");
    let partial = b.store(root).unwrap().status().await.unwrap().entries;
    assert!(partial > 0 && partial < 2000, "kept {partial} entries of the cut session");
    sa.shutdown().await;

    let sa = serve(&a).await;
    let results = sb.sync_stores(&sa.peer_addr(), vec![b.store(root).unwrap()], None).await.unwrap();
    let outcome = results[0].1.as_ref().unwrap();
    assert_eq!(outcome.received, 2000 - partial, "the next sync resumes where the cut one stopped");
    assert_eq!(dump(&b.store(root).unwrap()).await, dump(&a.store(root).unwrap()).await);
    assert_eq!(b.store(root).unwrap().sync_state().await.unwrap(), a.store(root).unwrap().sync_state().await.unwrap());
    assert_ne!(b.store(root).unwrap().sync_state().await.unwrap(), SyncState::default());
    sa.shutdown().await;
    sb.shutdown().await;
}

/// An equivocation proof one node holds reaches the other in one sync session
/// (docs/design.md, Entries: equivocation), so both refuse the forked author alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocation_proof_travels_with_sync() {
    use lattice_core::Identity;
    let root = StoreId::new_random();
    let (a, b) = (TestNode::new(root).unwrap(), TestNode::new(root).unwrap());
    befriend(&a, &b);
    let forker = Identity::generate();
    let fork = |value: &str| common::fork_at_seq_1(root, &forker, value);
    let store_a = a.store(root).unwrap();
    store_a.ingest_batch(vec![fork("one")]).await.unwrap();
    store_a.ingest_batch(vec![fork("two")]).await.unwrap();
    assert_eq!(store_a.proofs().await.unwrap().len(), 1, "a holds the proof");
    assert!(b.store(root).unwrap().proofs().await.unwrap().is_empty());

    let (sa, sb) = (serve(&a).await, serve(&b).await);
    sb.sync_stores(&sa.peer_addr(), vec![b.store(root).unwrap()], None).await.unwrap();
    let store_b = b.store(root).unwrap();
    assert_eq!(store_b.proofs().await.unwrap(), store_a.proofs().await.unwrap(), "b learned the proof");
    assert_eq!(store_b.status().await.unwrap().equivocated, store_a.status().await.unwrap().equivocated);
    assert_eq!(store_b.get(b"k").await.unwrap(), None, "the forked author's entries apply nowhere");
    sa.shutdown().await;
    sb.shutdown().await;
}

/// One entry each by `n` fresh authors, ingested into `store`: a sync state of `n` authors.
async fn add_authors(store: &lattice_store::StoreHandle, n: usize, key: &str) {
    use lattice_core::{EntryBuilder, Hash, Hlc, Identity, Op};
    let entries = (0..n)
        .map(|i| {
            EntryBuilder::new(store.store_id(), 1)
                .prev_hash(Hash::ZERO)
                .timestamp(Hlc::new(1_000 + i as u64, 0))
                .op(Op::put(format!("{key}{i:05}"), "v"))
                .sign(&Identity::generate())
                .unwrap()
                .bytes()
                .to_vec()
        })
        .collect();
    for r in store.ingest_batch(entries).await.unwrap() {
        r.unwrap();
    }
}

/// The 64 KiB first-frame cap holds only until a peer is known to be an active member
/// (DESIGN.md §7.3): two members sync a store of 1,200+ authors (a `SyncRequest` of ~85 KiB
/// each way), whichever side starts. Invited peers are still held to it (see
/// `enforcement::a_4_mib_first_frame_is_cut_off_within_128_kib`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_sync_a_store_of_more_authors_than_a_first_frame_holds() {
    const AUTHORS: usize = 1_200;
    let root = StoreId::new_random();
    let (a, b) = (TestNode::new(root).unwrap(), TestNode::new(root).unwrap());
    befriend(&a, &b);
    let (store_a, store_b) = (a.store(root).unwrap(), b.store(root).unwrap());
    add_authors(&store_a, AUTHORS, "a").await;
    add_authors(&store_b, AUTHORS, "b").await;
    let state_bytes = prost::Message::encoded_len(&store_a.sync_state().await.unwrap().to_proto());
    assert!(state_bytes > 64 * 1024, "the state ({state_bytes} B) must not fit a capped first frame");
    let (sa, sb) = (serve(&a).await, serve(&b).await);

    let results = sb.sync_stores(&sa.peer_addr(), vec![store_b.clone()], None).await.unwrap();
    let outcome = results[0].1.as_ref().unwrap();
    assert_eq!((outcome.sent, outcome.received, outcome.rejected), (AUTHORS as u64, AUTHORS as u64, 0));

    // The other way round, with both states now twice as large.
    add_authors(&store_b, 10, "c").await;
    let results = sa.sync_stores(&sb.peer_addr(), vec![store_a.clone()], None).await.unwrap();
    let outcome = results[0].1.as_ref().unwrap();
    assert_eq!((outcome.sent, outcome.received), (0, 10));
    assert_eq!(store_a.sync_state().await.unwrap(), store_b.sync_state().await.unwrap());
    assert_eq!(dump(&store_a).await, dump(&store_b).await);
    sa.shutdown().await;
    sb.shutdown().await;
}

/// Two nodes holding the same entries end a session after one round trip: one small frame each
/// way, no entries, no SyncDone ("in sync"). After one write on A the roots differ and the
/// session streams it; then they match again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sync_nodes_exchange_one_round_trip_by_their_signed_roots() {
    use lattice_core::proto::{self, peer_message::Message as Msg};
    use lattice_net::test_utils::raw_stream;
    use prost::Message;

    let root = StoreId::new_random();
    let (a, b) = (TestNode::new(root).unwrap(), TestNode::new(root).unwrap());
    befriend(&a, &b);
    let (sa, sb) = (a.store(root).unwrap(), b.store(root).unwrap());
    write_many(&sa, "k", 2_000).await;
    let (na, nb) = (serve(&a).await, serve(&b).await);
    let first = nb.sync_stores(&na.peer_addr(), vec![sb.clone()], None).await.unwrap();
    assert!(!first[0].1.as_ref().unwrap().in_sync);
    assert_eq!(sa.status().await.unwrap().root, sb.status().await.unwrap().root);

    // In sync: count what goes over the wire, frame by frame (as B, the initiator).
    let conn = nb.connect(&na.peer_addr()).await.unwrap();
    let (mut tx, mut rx) = raw_stream(&conn).await.unwrap();
    let (attestation, state) = sb.attestation().await.unwrap();
    let request = proto::SyncRequest {
        store_id: root.as_bytes().to_vec(),
        state: Some(state.to_proto()),
        sending: 0,
        attestation: Some(attestation.to_proto()),
        in_sync: false,
    };
    let sent_bytes = proto::PeerMessage { message: Some(Msg::SyncRequest(request.clone())) }.encoded_len();
    tx.send(Msg::SyncRequest(request)).await.unwrap();
    let Msg::SyncRequest(reply) = rx.expect().await.unwrap() else { panic!("expected the in-sync answer") };
    assert!(reply.in_sync, "A did not see B's root as its own");
    assert!(reply.state.is_none(), "an in-sync answer carries no frontier");
    let reply_attestation = lattice_core::Attestation::from_proto(reply.attestation.as_ref().unwrap()).unwrap();
    reply_attestation.verify().unwrap();
    assert_eq!(reply_attestation.signer, a.author());
    assert!(reply_attestation.same_state(&attestation));
    let received_bytes = proto::PeerMessage { message: Some(Msg::SyncRequest(reply)) }.encoded_len();
    tx.finish().await;
    // Nothing follows the answer: the responder ends its side.
    assert!(rx.recv().await.unwrap().is_none(), "A sent more than its in-sync answer");
    assert!(received_bytes < 256, "in-sync answer of {received_bytes} bytes");
    assert!(sent_bytes < 512, "request of {sent_bytes} bytes");

    // Through the real session, both ways.
    let again = nb.sync_stores(&na.peer_addr(), vec![sb.clone()], None).await.unwrap();
    let outcome = again[0].1.as_ref().unwrap();
    assert!(outcome.in_sync);
    assert_eq!((outcome.sent, outcome.received), (0, 0));

    // One write on A: the roots differ until the entry arrives, then match.
    sa.put(b"k-new".to_vec(), b"v".to_vec()).await.unwrap();
    assert_ne!(sa.status().await.unwrap().root, sb.status().await.unwrap().root);
    let after = nb.sync_stores(&na.peer_addr(), vec![sb.clone()], None).await.unwrap();
    let outcome = after[0].1.as_ref().unwrap();
    assert!(!outcome.in_sync);
    assert_eq!(outcome.received, 1);
    assert_eq!(sa.status().await.unwrap().root, sb.status().await.unwrap().root);
    let again = na.sync_stores(&nb.peer_addr(), vec![sa.clone()], None).await.unwrap();
    assert!(again[0].1.as_ref().unwrap().in_sync);
    na.shutdown().await;
    nb.shutdown().await;
}
