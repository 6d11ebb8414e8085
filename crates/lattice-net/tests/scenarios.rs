//! Failure and partition scenarios (issue 7), in-process on 127.0.0.1: nodes going offline and
//! coming back, partitions healing, gossip loss, split brain, concurrent writers, long catch-up,
//! deletes during a partition, skewed clocks, and peers in backoff.
//!
//! Every wait is a bounded poll (`eventually`); nothing sleeps to synchronise. Each node has its
//! own `Faults`, so a partition is a set of per-node rules (each side refuses the other's ids).

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestNode, faulty_mesh_config, join_mesh, write_many};
use lattice_core::{AuthorId, Head, StoreId};
use lattice_net::test_utils::{TestNodeConfig, link};
use lattice_net::{Faults, LatticeServer, NetConfig};
use lattice_store::{KvStore, StoreConfig, StoreHandle, SyncStore};
use lattice_testkit::{DEADLINE, eventually};

/// N nodes, each with its own `Faults`, fully linked. A node may be offline (server shut down,
/// store still open) and come back on a new port.
struct Cluster {
    root: StoreId,
    nodes: Vec<Arc<TestNode>>,
    servers: Vec<Option<LatticeServer<TestNode>>>,
    configs: Vec<NetConfig>,
    faults: Vec<Arc<Faults>>,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        Self::start_with(vec![StoreConfig::default(); n]).await
    }

    async fn start_with(store_configs: Vec<StoreConfig>) -> Cluster {
        let root = StoreId::new_random();
        let mut cluster =
            Cluster { root, nodes: Vec::new(), servers: Vec::new(), configs: Vec::new(), faults: Vec::new() };
        for sc in store_configs {
            let node =
                TestNode::with_config(TestNodeConfig { root: Some(root), store: sc, ..Default::default() }).unwrap();
            let (config, faults) = faulty_mesh_config();
            cluster.servers.push(Some(join_mesh(&node, config.clone()).await));
            cluster.nodes.push(node);
            cluster.configs.push(config);
            cluster.faults.push(faults);
        }
        cluster.link_online();
        cluster
    }

    /// Tells every online node about every other online node (as the root store's `/nodes/`
    /// records would, with their current addresses).
    fn link_online(&self) {
        let pairs: Vec<_> =
            self.nodes.iter().zip(&self.servers).filter_map(|(n, s)| s.as_ref().map(|s| (n, s))).collect();
        link(&pairs, |_, _| true);
    }

    fn store(&self, i: usize) -> StoreHandle {
        self.nodes[i].store(self.root).unwrap()
    }

    fn stores(&self) -> Vec<StoreHandle> {
        (0..self.nodes.len()).map(|i| self.store(i)).collect()
    }

    fn id(&self, i: usize) -> AuthorId {
        self.nodes[i].author()
    }

    fn server(&self, i: usize) -> &LatticeServer<TestNode> {
        self.servers[i].as_ref().expect("node is online")
    }

    /// Takes node `i` off the network; its store stays open and writable. The others keep it
    /// in their peer lists (they do not know it left).
    async fn stop(&mut self, i: usize) {
        if let Some(s) = self.servers[i].take() {
            s.shutdown().await;
        }
    }

    /// Brings node `i` back on a new port and updates every node's peers, as the node would.
    async fn restart(&mut self, i: usize) {
        assert!(self.servers[i].is_none());
        self.servers[i] = Some(join_mesh(&self.nodes[i], self.configs[i].clone()).await);
        self.link_online();
    }

    /// Every node on one side refuses all traffic with every node on the other.
    fn partition(&self, left: &[usize], right: &[usize]) {
        for &l in left {
            self.faults[l].partition(right.iter().map(|&r| self.id(r)));
        }
        for &r in right {
            self.faults[r].partition(left.iter().map(|&l| self.id(l)));
        }
    }

    fn heal(&self) {
        self.faults.iter().for_each(|f| f.heal());
    }

    /// Shuts every online server down, concurrently (closing an endpoint that still has a
    /// connection to a vanished peer waits for it to drain).
    async fn shutdown(self) {
        futures::future::join_all(self.servers.iter().flatten().map(|s| s.shutdown())).await;
    }
}

/// True when every store holds the same entries (identical sync states), `entries` of them,
/// and no orphans.
async fn same_state(stores: &[StoreHandle], entries: u64) -> bool {
    let first = stores[0].sync_state().await.unwrap();
    if first.total_entries() != entries {
        return false;
    }
    for s in stores {
        let status = s.status().await.unwrap();
        if status.entries != entries || status.orphans != 0 || s.sync_state().await.unwrap() != first {
            return false;
        }
    }
    true
}

/// Waits until `stores` converge on `entries` entries, then checks their contents are identical.
async fn converge(what: &str, stores: &[StoreHandle], entries: u64) {
    eventually(what, DEADLINE, || async move { same_state(stores, entries).await }).await;
    let reference = dump_paged(&stores[0], &stores[0]).await;
    for s in &stores[1..] {
        assert_eq!(dump_paged(&stores[0], s).await, reference, "{what}: contents differ");
    }
}

/// Compares two stores' visible contents page by page (never the whole store in memory) and
/// returns the number of visible keys.
async fn dump_paged(a: &StoreHandle, b: &StoreHandle) -> usize {
    let mut after: Option<Vec<u8>> = None;
    let mut count = 0;
    loop {
        let pa = a.list(b"", after.clone(), 500).await.unwrap();
        let pb = b.list(b"", after.clone(), 500).await.unwrap();
        assert_eq!(pa, pb, "contents differ after key {:?}", after.as_deref().map(String::from_utf8_lossy));
        let Some((last, _)) = pa.last() else { return count };
        count += pa.len();
        after = Some(last.clone());
    }
}

async fn keys_with(store: &StoreHandle, prefix: &str) -> usize {
    store.list(prefix.as_bytes(), None, usize::MAX).await.unwrap().len()
}

async fn heads(store: &StoreHandle, key: &str) -> Vec<Head> {
    store.get_heads(key.as_bytes()).await.unwrap()
}

/// True when every store holds exactly `expected` as the heads of `key`.
async fn heads_are(stores: &[StoreHandle], key: &str, expected: &[Head]) -> bool {
    for s in stores {
        if heads(s, key).await != expected {
            return false;
        }
    }
    true
}

/// True when every store shows the same heads of `key` as the first, `n` of them.
async fn same_heads(stores: &[StoreHandle], key: &str, n: usize) -> bool {
    let first = heads(&stores[0], key).await;
    first.len() == n && heads_are(stores, key, &first).await
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

// ---------- 1. writes while a node is offline ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_node_comes_back_and_converges_without_manual_sync() {
    let mut c = Cluster::start(2).await;
    write_many(&c.store(0), "before", 20).await;
    converge("B gets A's first writes", &c.stores(), 20).await;

    c.stop(1).await;
    write_many(&c.store(0), "while-away", 200).await;
    write_many(&c.store(1), "b-offline", 30).await;
    // B is unreachable: A's attempts fail and are recorded, and nothing crossed.
    let sa = c.server(0);
    let b = c.id(1);
    eventually("A records failed attempts to reach B", DEADLINE, || async move {
        sa.peer_health().get(&b).is_some_and(|h| h.failures > 0)
    })
    .await;
    assert_eq!(keys_with(&c.store(1), "while-away").await, 0);
    assert_eq!(keys_with(&c.store(0), "b-offline").await, 0);

    c.restart(1).await;
    converge("A and B converge after B returns", &c.stores(), 250).await;
    c.shutdown().await;
}

// ---------- 3. partition A-B | C-D, then heal ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_ab_cd_heals_and_merges() {
    let c = Cluster::start(4).await;
    write_many(&c.store(0), "base", 10).await;
    converge("baseline reaches all four", &c.stores(), 10).await;

    c.partition(&[0, 1], &[2, 3]);
    let (left, right) = (vec![c.store(0), c.store(1)], vec![c.store(2), c.store(3)]);
    tokio::join!(
        write_many(&left[0], "left-a", 60),
        write_many(&left[1], "left-b", 40),
        write_many(&right[0], "right-c", 50),
        write_many(&right[1], "right-d", 30),
    );
    converge("A-B converge during the partition", &left, 110).await;
    converge("C-D converge during the partition", &right, 90).await;
    // Every node has tried (and failed) to reach the other side at least once, so the absence
    // below is the partition holding, not traffic that has not happened yet.
    for i in 0..4 {
        let others: Vec<AuthorId> = if i < 2 { vec![c.id(2), c.id(3)] } else { vec![c.id(0), c.id(1)] };
        let server = c.server(i);
        eventually("a sync across the partition is refused", DEADLINE, || {
            let others = others.clone();
            async move {
                let health = server.peer_health();
                others.iter().any(|p| health.get(p).is_some_and(|h| h.failures > 0))
            }
        })
        .await;
    }
    for s in &left {
        assert_eq!(keys_with(s, "right-").await, 0, "right side's data leaked left");
        assert_eq!(s.status().await.unwrap().entries, 110);
    }
    for s in &right {
        assert_eq!(keys_with(s, "left-").await, 0, "left side's data leaked right");
        assert_eq!(s.status().await.unwrap().entries, 90);
    }

    c.heal();
    converge("all four converge after healing", &c.stores(), 190).await;
    assert_eq!(dump_paged(&c.store(0), &c.store(3)).await, 190);
    c.shutdown().await;
}

// ---------- 5. gossip loss ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_recovers_from_30_percent_gossip_loss() {
    let c = Cluster::start(4).await;
    for f in &c.faults {
        f.set_gossip_loss(0.3);
    }
    let stores = c.stores();
    tokio::join!(write_many(&stores[0], "a", 120), write_many(&stores[1], "b", 100), write_many(&stores[2], "c", 80));
    converge("every node reaches the same state despite gossip loss", &stores, 300).await;
    c.shutdown().await;
}

// ---------- 6. split brain ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_resolves_by_hlc_then_merges_into_one_head() {
    let c = Cluster::start(4).await;
    let stores = c.stores();
    c.partition(&[0, 1], &[2, 3]);
    let ra = c.store(0).put(b"x".to_vec(), b"1".to_vec()).await.unwrap();
    let rc = c.store(2).put(b"x".to_vec(), b"2".to_vec()).await.unwrap();
    converge("A-B see x=1", &stores[..2], 1).await;
    converge("C-D see x=2", &stores[2..], 1).await;
    assert_eq!(c.store(1).get(b"x").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(c.store(3).get(b"x").await.unwrap().as_deref(), Some(&b"2"[..]));

    c.heal();
    converge("all four hold both writes", &stores, 2).await;
    eventually("every node shows both heads, identically", DEADLINE, || async { same_heads(&stores, "x", 2).await })
        .await;
    // The winner: highest HLC, then highest author.
    let winner: &[u8] = if (ra.hlc, c.id(0)) > (rc.hlc, c.id(2)) { b"1" } else { b"2" };
    let both = heads(&stores[0], "x").await;
    assert_eq!(both[0].value, winner, "winner first in the head list");
    for s in &stores {
        assert_eq!(s.get(b"x").await.unwrap().as_deref(), Some(winner));
    }

    // A write on B cites both heads: once it propagates, one head everywhere.
    let merge = c.store(1).put(b"x".to_vec(), b"merged".to_vec()).await.unwrap();
    let one = heads(&stores[1], "x").await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].hash, merge.hash);
    eventually("the merge reaches every node", DEADLINE, || async { heads_are(&stores, "x", &one).await }).await;
    for s in &stores {
        assert_eq!(s.get(b"x").await.unwrap().as_deref(), Some(&b"merged"[..]));
    }
    converge("all four converge on the merge", &stores, 3).await;
    c.shutdown().await;
}

// ---------- 7. N writers on one key ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_writing_one_key_converge_on_one_winner() {
    let c = Cluster::start(5).await;
    let stores = c.stores();
    let mut total = 0;
    for round in 0..4 {
        let writes = stores.iter().enumerate().map(|(i, s)| {
            let s = s.clone();
            async move { s.put(b"k".to_vec(), format!("r{round}-n{i}").into_bytes()).await.unwrap() }
        });
        let receipts = futures::future::join_all(writes).await;
        total += 5;
        converge("all five hold every write of the round", &stores, total).await;
        let first = heads(&stores[0], "k").await;
        assert!((1..=5).contains(&first.len()), "{} heads", first.len());
        assert!(heads_are(&stores, "k", &first).await, "round {round}: head lists differ");
        // The round's highest (HLC, author) cannot have been cited by another write of the
        // round (a citing write has a larger HLC), and every earlier head was cited: it wins.
        let (best, _) =
            receipts.iter().enumerate().map(|(i, r)| (i, (r.hlc, c.id(i)))).max_by_key(|(_, k)| *k).unwrap();
        let expected = format!("r{round}-n{best}").into_bytes();
        assert_eq!(first[0].value, expected);
        for s in &stores {
            assert_eq!(s.get(b"k").await.unwrap(), Some(expected.clone()));
        }
    }
    let merge = c.store(4).put(b"k".to_vec(), b"final".to_vec()).await.unwrap();
    let one = heads(&stores[4], "k").await;
    assert_eq!((one.len(), one[0].hash), (1, merge.hash));
    converge("the merge reaches all five", &stores, total + 1).await;
    assert!(heads_are(&stores, "k", &one).await);
    c.shutdown().await;
}

// ---------- 8. long offline period ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_offline_during_10k_writes_catches_up() {
    let mut c = Cluster::start(3).await;
    write_many(&c.store(0), "early", 10).await;
    converge("baseline", &c.stores(), 10).await;

    c.stop(2).await;
    write_many(&c.store(0), "bulk", 10_000).await;
    assert_eq!(c.store(2).status().await.unwrap().entries, 10);

    c.restart(2).await;
    let late = c.store(2);
    eventually("the returning node catches up on 10,000 entries", Duration::from_secs(60), || {
        let late = late.clone();
        async move { late.status().await.unwrap().entries == 10_010 }
    })
    .await;
    converge("all three converge", &c.stores(), 10_010).await;
    assert_eq!(dump_paged(&c.store(0), &c.store(2)).await, 10_010, "every key arrived, once");
    c.shutdown().await;
}

// ---------- 9. delete during a partition ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_during_partition_propagates_after_healing() {
    let c = Cluster::start(4).await;
    let stores = c.stores();
    c.store(2).put(b"doomed".to_vec(), b"v".to_vec()).await.unwrap();
    c.store(3).put(b"kept".to_vec(), b"v".to_vec()).await.unwrap();
    converge("both keys everywhere", &stores, 2).await;

    c.partition(&[0, 1], &[2, 3]);
    let receipt = c.store(0).delete(b"doomed".to_vec()).await.unwrap().expect("the key had a value");
    converge("A-B hold the tombstone", &stores[..2], 3).await;
    assert_eq!(c.store(1).get(b"doomed").await.unwrap(), None);
    for s in &stores[2..] {
        assert_eq!(s.get(b"doomed").await.unwrap().as_deref(), Some(&b"v"[..]), "still visible across the cut");
    }

    c.heal();
    converge("all four hold the tombstone", &stores, 3).await;
    for s in &stores {
        assert_eq!(s.get(b"doomed").await.unwrap(), None);
        let h = heads(s, "doomed").await;
        assert_eq!(h.len(), 1);
        assert!(h[0].tombstone && h[0].hash == receipt.hash);
        assert_eq!(s.list(b"", None, usize::MAX).await.unwrap(), vec![(b"kept".to_vec(), b"v".to_vec())]);
    }
    c.shutdown().await;
}

// ---------- 10. clock skew ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_causal_write_wins_and_drift_is_bounded() {
    const HOUR: i64 = 3_600_000;
    let skewed = |offset| StoreConfig { clock_offset_ms: offset, ..StoreConfig::default() };
    let c = Cluster::start_with(vec![skewed(HOUR), skewed(-HOUR), skewed(0)]).await;
    let (ahead, behind, normal) = (c.store(0), c.store(1), c.store(2));
    let stores = c.stores();
    let drift = StoreConfig::default().max_drift_ms;
    let slack = 5_000;

    let ra = ahead.put(b"k".to_vec(), b"from-ahead".to_vec()).await.unwrap();
    assert!(ra.hlc.wall_ms > now_ms() + HOUR as u64 - slack, "the ahead node's clock runs an hour ahead");
    converge("everyone holds the ahead node's write", &stores, 1).await;
    assert_eq!(behind.get(b"k").await.unwrap().as_deref(), Some(&b"from-ahead"[..]));

    // The behind node saw the value; its write cites it, so it wins despite a smaller HLC.
    let rb = behind.put(b"k".to_vec(), b"from-behind".to_vec()).await.unwrap();
    assert!(rb.hlc < ra.hlc, "the later write carries the smaller HLC");
    let behind_now = now_ms() - HOUR as u64;
    assert!(rb.hlc.wall_ms <= behind_now + drift + slack, "behind node's clock dragged past the drift bound");
    converge("everyone holds the causal write", &stores, 2).await;
    for s in &stores {
        let h = heads(s, "k").await;
        assert_eq!(h.len(), 1, "the causal write replaced what it saw");
        assert_eq!(h[0].hash, rb.hash);
        assert_eq!(s.get(b"k").await.unwrap().as_deref(), Some(&b"from-behind"[..]));
    }

    // The normal node merged the ahead node's HLC but only up to the drift bound.
    let rn = normal.put(b"fresh".to_vec(), b"v".to_vec()).await.unwrap();
    let now = now_ms();
    assert!(rn.hlc.wall_ms <= now + drift + slack, "{} is beyond now + max drift ({now})", rn.hlc.wall_ms);
    assert!(rn.hlc.wall_ms + slack >= now);
    converge("everyone holds the fresh write", &stores, 3).await;
    c.shutdown().await;
}

// ---------- backoff: an offline peer does not block the others ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_peer_is_backed_off_and_others_still_serve() {
    let mut c = Cluster::start(3).await;
    // B ignores all gossip: what it gets, it gets by sync.
    c.faults[1].set_gossip_loss(1.0);
    c.stop(2).await;
    write_many(&c.store(0), "first", 50).await;
    converge("B syncs with A while C is down", &c.stores()[..2], 50).await;

    let sb = c.server(1);
    let offline = c.id(2);
    eventually("B records a failure for the offline peer", DEADLINE, || async move {
        sb.peer_health().get(&offline).is_some_and(|h| h.failures >= 1 && h.retry_at.is_some())
    })
    .await;
    let failed_at = sb.peer_health()[&offline].last_failure.as_ref().unwrap().0;

    // With C still failing (and in backoff between attempts), B keeps syncing with A.
    write_many(&c.store(0), "second", 50).await;
    converge("B still syncs with A", &c.stores()[..2], 100).await;
    let a = c.id(0);
    eventually("B's own scheduler syncs with A after C failed", DEADLINE, || async move {
        sb.peer_health().get(&a).is_some_and(|h| h.last_success.is_some_and(|t| t > failed_at))
    })
    .await;
    let health = sb.peer_health();
    assert!(health[&offline].failures >= 1 && health[&offline].last_success.is_none_or(|t| t < failed_at));
    assert_eq!(c.store(2).status().await.unwrap().entries, 0);
    c.shutdown().await;
}
