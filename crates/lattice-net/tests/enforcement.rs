//! Enforcement on the wire (DESIGN.md 7.3), with real endpoints on 127.0.0.1: strangers are
//! refused at the handshake and leave no trace, first frames are capped, gossip from
//! non-members is dropped, and an expelled node is cut off from sync and gossip both ways.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestNode, dump, faulty_mesh_config, full_mesh, join_mesh, mesh_config, serve, write_many};
use iroh::endpoint::{Connection, ConnectionError};
use lattice_core::proto::{self, peer_message::Message as Msg};
use lattice_core::{AuthorId, MemberStatus, StoreId};
use lattice_net::test_utils::{TestNodeConfig, quic_connection, raw_stream};
use lattice_net::{LatticeServer, NetError, PeerAddr, PeerEvent};
use lattice_store::{KvStore, StoreHandle};
use lattice_testkit::{DEADLINE, eventually};

/// Close codes of `lattice_net::admission`, as a peer sees them.
const REFUSED: u32 = 1;
const EXPELLED: u32 = 3;
const PROTOCOL_VIOLATION: u32 = 4;

/// What a refused or expelled peer may have cost the node.
const COST_LIMIT: u64 = 128 * 1024;

/// Waits (bounded) until `conn` is closed, and returns the application close code it got.
async fn close_code(conn: &Connection, within: Duration) -> u32 {
    let closed = tokio::time::timeout(within, conn.closed()).await.expect("the connection is closed in time");
    match closed {
        ConnectionError::ApplicationClosed(close) => u32::try_from(close.error_code.into_inner()).unwrap(),
        other => panic!("closed otherwise than by the peer's application: {other}"),
    }
}

fn connected_events(node: &TestNode) -> usize {
    node.events().iter().filter(|e| matches!(e, PeerEvent::Connected { .. })).count()
}

fn refusals(node: &TestNode, peer: AuthorId, starting: &str) -> usize {
    node.events()
        .iter()
        .filter(|e| matches!(e, PeerEvent::Refused { peer: p, reason } if *p == peer && reason.starts_with(starting)))
        .count()
}

async fn has_key(store: &StoreHandle, key: &str) -> bool {
    store.get(key.as_bytes()).await.unwrap().is_some()
}

async fn keys_with_prefix(store: &StoreHandle, prefix: &str) -> usize {
    dump(store).await.iter().filter(|(k, _)| k.starts_with(prefix.as_bytes())).count()
}

/// A node that knows `root` and nothing about any peer.
fn stranger(root: StoreId) -> Arc<TestNode> {
    TestNode::with_config(TestNodeConfig { root: Some(root), ..Default::default() }).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_refused_at_the_handshake_on_both_alpns() {
    let root = StoreId::new_random();
    let (a, s) = (TestNode::new(root).unwrap(), stranger(root));
    write_many(&a.store(root).unwrap(), "secret", 5).await;
    let sa = join_mesh(&a, mesh_config()).await;
    // The stranger believes A is a member of its mesh: it dials A for sync and for gossip.
    s.set_peer(a.author(), MemberStatus::Active);
    let ss = join_mesh(&s, mesh_config()).await;
    ss.set_peers(vec![sa.peer_addr()]);

    let conn = ss.connect(&sa.peer_addr()).await.unwrap();
    assert_eq!(close_code(&quic_connection(&conn), DEADLINE).await, REFUSED);
    match conn.join("stranger", "host").await {
        Err(NetError::Refused { message, .. }) => assert!(message.contains("not invited"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    eventually("the stranger's gossip dial to be refused too", DEADLINE, || async {
        refusals(&a, s.author(), "node ") >= 2
    })
    .await;
    assert!(dump(&s.store(root).unwrap()).await.is_empty(), "the stranger got nothing");
    assert_eq!(sa.connections(s.author()), 0);
    assert!(sa.gossip_neighbours(root).is_empty());
    assert_eq!(connected_events(&a), 0, "no trace of the stranger: {:?}", a.events());
    sa.shutdown().await;
    ss.shutdown().await;
}

/// A first frame of about `bytes` bytes (one `SyncEntries` of one entry).
fn frame_of(bytes: usize) -> Msg {
    Msg::SyncEntries(proto::SyncEntries { entries: vec![vec![0xab; bytes]] })
}

/// Dials `node` from `from`, opens a stream and sends one 4 MiB first frame. Returns how the
/// connection was closed and how many bytes the dialler put on the wire in all.
async fn send_4_mib_first_frame(from: &LatticeServer<TestNode>, node: PeerAddr) -> (u32, u64) {
    let conn = from.connect(&node).await.unwrap();
    let quic = quic_connection(&conn);
    if let Ok((mut tx, _rx)) = raw_stream(&conn).await {
        let sent = tokio::time::timeout(DEADLINE, tx.send(frame_of(4 << 20))).await.expect("the send ends");
        assert!(sent.is_err(), "4 MiB went through");
    }
    let code = close_code(&quic, DEADLINE).await;
    (code, quic.stats().udp_tx.bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_mib_first_frame_is_cut_off_within_128_kib() {
    let root = StoreId::new_random();
    let (a, x) = (TestNode::new(root).unwrap(), stranger(root));
    let (sa, sx) = (serve(&a).await, serve(&x).await);

    // A stranger: refused at the handshake, before it can send a frame.
    let (code, sent) = send_4_mib_first_frame(&sx, sa.peer_addr()).await;
    assert_eq!(code, REFUSED);
    assert!(sent < COST_LIMIT, "a refused stranger put {sent} bytes on the wire");

    // Invited: admitted, but its first frame is read under the 64 KiB cap, and a frame that
    // announces more loses it the connection.
    a.set_peer(x.author(), MemberStatus::Invited);
    let (code, sent) = send_4_mib_first_frame(&sx, sa.peer_addr()).await;
    assert_eq!(code, PROTOCOL_VIOLATION);
    assert!(sent < COST_LIMIT, "an invited peer put {sent} bytes on the wire before being cut off");
    assert_eq!(dump(&a.store(root).unwrap()).await.len(), 0);

    // The cap is 64 KiB: a 60 KiB first frame is read (and refused as the wrong first message,
    // on a connection that stays up); a 65 KiB one costs the connection.
    let conn = sx.connect(&sa.peer_addr()).await.unwrap();
    let (mut tx, mut rx) = raw_stream(&conn).await.unwrap();
    tx.send(frame_of(60 * 1024)).await.unwrap();
    match rx.expect().await {
        Err(NetError::Refused { message, .. }) => assert!(message.contains("expected a join or sync request")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(quic_connection(&conn).close_reason().is_none());
    let (mut tx, _rx) = raw_stream(&conn).await.unwrap();
    let _ = tx.send(frame_of(65 * 1024)).await;
    assert_eq!(close_code(&quic_connection(&conn), DEADLINE).await, PROTOCOL_VIOLATION);
    sa.shutdown().await;
    sx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stranger_connections_leave_no_peer_event_but_refusals() {
    const STRANGERS: usize = 10;
    const EACH: usize = 100;
    let root = StoreId::new_random();
    let a = TestNode::new(root).unwrap();
    let sa = Arc::new(serve(&a).await);
    let mut tasks = tokio::task::JoinSet::new();
    let mut strangers = Vec::new();
    for _ in 0..STRANGERS {
        let s = stranger(root);
        let ss = Arc::new(serve(&s).await);
        strangers.push((s, ss.clone()));
        let target = sa.peer_addr();
        tasks.spawn(async move {
            for _ in 0..EACH {
                // The dial completes on our side, then the acceptor closes it at its handshake.
                let conn = ss.connect(&target).await.unwrap();
                assert_eq!(close_code(&quic_connection(&conn), DEADLINE).await, REFUSED);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let total = STRANGERS * EACH;
    let refused = |a: &TestNode| a.events().iter().filter(|e| matches!(e, PeerEvent::Refused { .. })).count();
    eventually("every connection refused", DEADLINE, || async { refused(&a) == total }).await;
    assert_eq!(
        a.events().len(),
        total,
        "refusals only: {:?}",
        a.events().iter().find(|e| !matches!(e, PeerEvent::Refused { .. }))
    );
    assert_eq!(connected_events(&a), 0);
    for (s, ss) in &strangers {
        assert_eq!(sa.connections(s.author()), 0);
        ss.shutdown().await;
    }
    sa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_delivered_from_a_non_member_is_dropped() {
    let root = StoreId::new_random();
    let (a, x) = (TestNode::new(root).unwrap(), stranger(root));
    // A's gate lets X in at the handshake, as a non-member: what is left is the per-message
    // check. (Without it, X's gossip lands on A.)
    let (config, faults) = faulty_mesh_config();
    faults.open_gate();
    let sa = join_mesh(&a, config).await;
    x.set_peer(a.author(), MemberStatus::Active);
    let sx = join_mesh(&x, mesh_config()).await;
    sx.set_peers(vec![sa.peer_addr()]);

    let x_store = x.store(root).unwrap();
    let mut written = 0;
    eventually("A to drop gossip messages delivered from X", DEADLINE, || {
        written += 1;
        let (x_store, key) = (x_store.clone(), format!("x{written:04}"));
        let a = a.clone();
        let x_id = x.author();
        async move {
            x_store.put(key.into_bytes(), b"v".to_vec()).await.unwrap();
            refusals(&a, x_id, "gossip message dropped") > 0
        }
    })
    .await;
    assert_eq!(keys_with_prefix(&a.store(root).unwrap(), "x").await, 0, "X's gossip was applied on A");

    // The same messages are taken once X is a member (the member list makes A check again).
    a.set_peer(x.author(), MemberStatus::Active);
    sa.set_peers(vec![sx.peer_addr()]);
    x_store.put(b"x-member".to_vec(), b"v".to_vec()).await.unwrap();
    let a_store = a.store(root).unwrap();
    eventually("X's writes to reach A once it is a member", DEADLINE, || has_key(&a_store, "x-member")).await;
    sa.shutdown().await;
    sx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expel_closes_every_connection_and_cuts_gossip_both_ways() {
    let root = StoreId::new_random();
    let (nodes, servers) = full_mesh(3, root, mesh_config()).await;
    let (a, b, x) = (&nodes[0], &nodes[1], &nodes[2]);
    let (sa, sb, sx) = (&servers[0], &servers[1], &servers[2]);
    let store = |n: &TestNode| n.store(root).unwrap();

    // Gossip is up between A and X (both ways), and X holds a sync connection to A.
    x.store(root).unwrap().put(b"x-before".to_vec(), b"v".to_vec()).await.unwrap();
    a.store(root).unwrap().put(b"a-before".to_vec(), b"v".to_vec()).await.unwrap();
    eventually("gossip between A and X", DEADLINE, || async {
        has_key(&store(a), "x-before").await
            && has_key(&store(x), "a-before").await
            && sa.gossip_neighbours(root).contains(&x.author())
    })
    .await;
    let held = sx.connect(&sa.peer_addr()).await.unwrap();
    held.sync(&store(x), None).await.unwrap(); // A has admitted it (our side of a handshake ends first)
    assert!(sa.connections(x.author()) >= 2, "sync and gossip");

    // X is removed: A and B learn it and expel it.
    for (n, s) in [(a, sa), (b, sb)] {
        n.set_peer(x.author(), MemberStatus::Removed);
        s.expel(x.author());
    }
    let second = Duration::from_secs(1);
    assert_eq!(close_code(&quic_connection(&held), second).await, EXPELLED);
    assert_eq!(sa.connections(x.author()), 0);
    eventually("X to leave A's and B's gossip neighbours", second, || async {
        !sa.gossip_neighbours(root).contains(&x.author()) && !sb.gossip_neighbours(root).contains(&x.author())
    })
    .await;

    // For 5 s X keeps writing (gossip) and syncing, A keeps writing: nothing crosses.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut i = 0;
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        store(x).put(format!("x-after{i:03}").into_bytes(), b"v".to_vec()).await.unwrap();
        store(a).put(format!("a-after{i:03}").into_bytes(), b"v".to_vec()).await.unwrap();
        if i % 10 == 0 {
            let synced = sx.sync_stores(&sa.peer_addr(), vec![store(x)], None).await;
            assert!(synced.is_err() || synced.unwrap().iter().all(|(_, r)| r.is_err()), "X synced with A");
        }
        assert_eq!(sa.connections(x.author()), 0, "X got a connection to A back");
        i += 1;
    }
    for n in [a, b] {
        assert_eq!(keys_with_prefix(&store(n), "x-after").await, 0, "X's writes reached a node that expelled it");
    }
    assert_eq!(keys_with_prefix(&store(x), "a-after").await, 0, "A's writes reached X");
    eventually("A's writes still reach B", DEADLINE, || async { keys_with_prefix(&store(b), "a-after").await == i })
        .await;

    // Invited again: readmitted, X's writes flow again.
    a.set_peer(x.author(), MemberStatus::Active);
    sa.readmit(x.author());
    store(x).put(b"x-readmitted".to_vec(), b"v".to_vec()).await.unwrap();
    eventually("X's writes to reach A after readmission", DEADLINE, || async {
        has_key(&store(a), "x-readmitted").await
    })
    .await;
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_peers_never_bootstraps_an_expelled_peer_and_closes_removed_ones() {
    let root = StoreId::new_random();
    let (nodes, servers) = full_mesh(2, root, mesh_config()).await;
    let (a, x) = (&nodes[0], &nodes[1]);
    let (sa, sx) = (&servers[0], &servers[1]);
    eventually("gossip between A and X", DEADLINE, || async { sa.connections(x.author()) >= 1 }).await;

    // Removed without `expel`: the next member list closes X's connections all the same.
    a.set_peer(x.author(), MemberStatus::Removed);
    sa.set_peers(vec![]);
    eventually("X's connections closed", Duration::from_secs(1), || async { sa.connections(x.author()) == 0 }).await;

    // Expelled, then listed again as a member by mistake: still never dialled nor let in.
    a.set_peer(x.author(), MemberStatus::Active);
    sa.expel(x.author());
    sa.set_peers(vec![sx.peer_addr()]);
    let synced = sa.sync_stores(&sx.peer_addr(), vec![a.store(root).unwrap()], None).await;
    assert!(synced.is_err(), "A dialled an expelled peer");
    assert_eq!(sa.connections(x.author()), 0);
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiners_connection_survives_the_re_checks_of_both_sides() {
    let root = StoreId::new_random();
    let (a, j) = (TestNode::new(root).unwrap(), stranger(root));
    write_many(&a.store(root).unwrap(), "mesh", 5).await;
    a.set_peer(j.author(), MemberStatus::Invited);
    let (sa, sj) = (serve(&a).await, serve(&j).await);
    // The joiner does not know A yet (its root store is empty): its dial is allowed, and a
    // re-check of its connections keeps it; A keeps the invited joiner's connection too.
    let conn = sj.connect(&sa.peer_addr()).await.unwrap();
    assert_eq!(conn.join("joiner", "host").await.unwrap().root, root);
    sj.set_peers(vec![]);
    sa.set_peers(vec![]);
    conn.sync(&j.store(root).unwrap(), None).await.unwrap();
    conn.sync(&j.store(root).unwrap(), None).await.unwrap();
    assert!(quic_connection(&conn).close_reason().is_none());
    assert_eq!(dump(&j.store(root).unwrap()).await.len(), 5);
    sa.shutdown().await;
    sj.shutdown().await;
}
