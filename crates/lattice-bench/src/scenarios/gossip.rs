//! `gossip.convergence`: how fast a put reaches every node of a mesh by gossip alone.
//!
//! [`NODES`] in-process nodes on loopback form a full mesh (each knows every other's address
//! and holds it active) and all serve one store. Anti-entropy is set to an hour, so only gossip
//! (and the syncs the mesh starts when a gossip neighbour comes up, before the measured puts)
//! moves entries. After a warm-up (one put per node, waited for everywhere), puts go to random
//! nodes, one every [`PACE`]; each node's `watch` records when each key arrives. An entry's
//! convergence time runs from the `put` call on its writer to the arrival on the last node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lattice_core::StoreId;
use lattice_net::NetConfig;
use lattice_net::test_utils::{TestNode, TestNodeConfig, link};
use lattice_store::{KvStore, StoreHandle, WatchEvent};
use tokio::task::JoinSet;

use super::Ctx;
use super::fixtures::{VALUE_BYTES, close, runtime, scratch_dir, value};
use crate::report::Row;

/// Nodes of the mesh.
pub const NODES: usize = 10;
/// Measured puts (quick, full).
pub const PUTS: (u64, u64) = (50, 500);
/// Time between two measured puts.
pub const PACE: Duration = Duration::from_millis(10);
/// Anti-entropy interval of every node: long enough that it never runs during the scenario.
const ANTI_ENTROPY: Duration = Duration::from_secs(3600);
/// How long to wait for entries to reach every node before giving up on them.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// iroh-gossip's default `graft_timeout_1` (ms): a node that only got a lazy `IHave` for a
/// message asks for it after this long, so arrivals this late went through the lazy path (or
/// queued behind something slow).
const GRAFT_TIMEOUT_MS: f64 = 80.0;
/// Convergence time aimed for, at the 99th percentile (ms).
pub const TARGET_P99_MS: f64 = 100.0;

/// Per key, when each node's watch saw it.
type Arrivals = Arc<Mutex<HashMap<Vec<u8>, [Option<Instant>; NODES]>>>;

pub fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let puts = ctx.size(PUTS.0, PUTS.1);
    let dir = scratch_dir(ctx, "gossip")?;
    let rt = runtime(2)?;
    let store_id = StoreId::new_random();
    let nodes = (0..NODES).map(|_| TestNode::with_config(TestNodeConfig::default())).collect::<Result<Vec<_>, _>>()?;
    let stores = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| n.open_store_at(&dir.path().join(format!("node-{i}")), store_id))
        .collect::<Result<Vec<_>, _>>()?;
    let result = rt.block_on(converge(&nodes, &stores, puts));
    for store in stores {
        close(&rt, store)?;
    }
    let Convergence { last, arrivals, missing: not_converged } = result?;

    let to_ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let ms: Vec<f64> = last.iter().map(to_ms).collect();
    let arrival_ms: Vec<f64> = arrivals.iter().map(to_ms).collect();
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let p99 = percentile(&ms, 0.99);
    let total: Duration = last.iter().sum();
    let late = arrival_ms.iter().filter(|&&m| m >= GRAFT_TIMEOUT_MS).count() as f64 / arrival_ms.len().max(1) as f64;
    Ok(vec![
        Row::new("gossip.convergence", round(p99), "ms (p99)")
            .param("ops", puts)
            .param("seconds", round(total.as_secs_f64()))
            .param("nodes", NODES)
            .param("puts", puts)
            .param("pace_ms", PACE.as_millis() as u64)
            .param("value_bytes", VALUE_BYTES)
            .param("p50_ms", round(percentile(&ms, 0.5)))
            .param("p99_ms", round(p99))
            .param("max_ms", round(ms.iter().copied().fold(0.0, f64::max)))
            .param("arrival_p50_ms", round(percentile(&arrival_ms, 0.5)))
            .param("arrivals_over_80ms_share", round(late))
            .param("not_converged", not_converged)
            .param("measured_from", "put() call on the writer")
            .param("anti_entropy_s", ANTI_ENTROPY.as_secs())
            .param("target_p99_ms", TARGET_P99_MS)
            .param("meets_target", not_converged == 0 && p99 < TARGET_P99_MS),
    ])
}

/// Nearest-rank percentile of `values` (`q` in (0, 1]); 0 for no values.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What the measured puts did.
#[derive(Debug, Default)]
struct Convergence {
    /// Per put: from the `put` call to the last node's arrival (the timeout for a put that never
    /// reached every node).
    last: Vec<Duration>,
    /// Per put and node other than its writer: from the `put` call to the arrival there.
    arrivals: Vec<Duration>,
    /// Puts that did not reach every node before the timeout.
    missing: u64,
}

/// Starts the mesh, warms it up, makes `puts` paced puts and records their arrivals.
async fn converge(nodes: &[Arc<TestNode>], stores: &[StoreHandle], puts: u64) -> Result<Convergence> {
    let mut config = NetConfig::loopback();
    config.mesh.anti_entropy_interval = ANTI_ENTROPY;
    config.mesh.stale_after = ANTI_ENTROPY;
    let mut servers = Vec::new();
    for node in nodes {
        servers.push(node.serve(config.clone()).await?);
    }
    link(&nodes.iter().zip(&servers).collect::<Vec<_>>(), |_, _| true);

    let arrivals: Arrivals = Arc::default();
    let mut watchers = JoinSet::new();
    for (i, store) in stores.iter().enumerate() {
        let (_, mut events) = store.watch("^(warm|conv)/").await.context("watch")?;
        let arrivals = arrivals.clone();
        watchers.spawn(async move {
            while let Some(event) = events.recv().await {
                if let WatchEvent::Put { key, .. } = event {
                    let now = Instant::now();
                    if let Ok(mut a) = arrivals.lock() {
                        a.entry(key).or_insert([None; NODES])[i].get_or_insert(now);
                    }
                }
            }
        });
    }
    for (server, store) in servers.iter().zip(stores) {
        server.open_store(store.clone());
    }

    let result = async {
        // Warm-up: one put per node, waited for on every node, proves every node is on the mesh.
        let mut warm = Vec::new();
        for (i, store) in stores.iter().enumerate() {
            let key = format!("warm/{i}").into_bytes();
            store.put(key.clone(), value(i as u64)).await.context("warm-up put")?;
            warm.push(key);
        }
        let missing = wait_everywhere(&arrivals, &warm, Instant::now() + CONVERGE_TIMEOUT).await;
        ensure!(missing == 0, "{missing} of {NODES} warm-up puts did not reach every node in {CONVERGE_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut started = Vec::new();
        let mut ticker = tokio::time::interval(PACE);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for k in 0..puts {
            ticker.tick().await;
            let key = format!("conv/{k:06}").into_bytes();
            let writer = rand::random_range(0..stores.len());
            let t0 = Instant::now();
            stores[writer].put(key.clone(), value(k)).await.context("put")?;
            started.push((key, t0, writer));
        }
        let keys: Vec<Vec<u8>> = started.iter().map(|(k, _, _)| k.clone()).collect();
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        let missing = wait_everywhere(&arrivals, &keys, deadline).await;
        let arrived = arrivals.lock().map_err(|_| anyhow::anyhow!("a watcher panicked"))?;
        let mut outcome = Convergence { missing, ..Convergence::default() };
        for (key, t0, writer) in &started {
            // A node the entry never reached counts as reached at the deadline.
            let at =
                |node: usize| arrived.get(key).and_then(|a| a[node]).unwrap_or(deadline).saturating_duration_since(*t0);
            outcome.last.push((0..NODES).map(at).max().unwrap_or_default());
            outcome.arrivals.extend((0..NODES).filter(|n| n != writer).map(at));
        }
        anyhow::Ok(outcome)
    }
    .await;

    watchers.abort_all();
    let mut stopping = JoinSet::new();
    for server in servers {
        stopping.spawn(async move { server.shutdown().await });
    }
    while stopping.join_next().await.is_some() {}
    result
}

/// Waits until every key of `keys` has reached every node, or `deadline`; returns how many
/// keys have not.
async fn wait_everywhere(arrivals: &Arrivals, keys: &[Vec<u8>], deadline: Instant) -> u64 {
    loop {
        let missing = match arrivals.lock() {
            Ok(a) => keys.iter().filter(|k| !a.get(*k).is_some_and(|n| n.iter().all(Option::is_some))).count() as u64,
            Err(_) => keys.len() as u64,
        };
        if missing == 0 || Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
