//! The demo's steps. Each does something real on the three nodes, measures it, and reports what
//! happened as a [`Report`]: a one-line summary, detail lines, and the figures for `--json`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use lattice_core::{Head, winner};
use lattice_http::{HttpConfig, HttpServer};
use lattice_node::Permissions;
use lattice_store::WatchEvent;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::cluster::{Cluster, PATIENCE, until};
use super::http::request;
use crate::render;

/// What a step did, for people (summary, details) and for scripts (figures).
pub struct Report {
    pub summary: String,
    pub details: Vec<String>,
    pub figures: Value,
}

/// The mesh as it started: each node's address and id.
pub fn mesh(cluster: &Cluster) -> Report {
    let details = cluster.nodes.iter().map(|n| format!("{}  {}  node {}", n.name, n.addr(), n.id())).collect();
    let nodes: Vec<Value> = cluster
        .nodes
        .iter()
        .map(|n| json!({"name": n.name, "node_id": n.id().to_string(), "addr": n.addr().to_string()}))
        .collect();
    Report {
        summary: "a created a mesh; b and c were invited and joined it, each on its own port".into(),
        details,
        figures: json!({ "nodes": nodes }),
    }
}

/// Writes on `a`, one at a time; how long each took to be committed on `b` and on `c`.
pub async fn gossip(cluster: &Cluster) -> anyhow::Result<Report> {
    const WRITES: usize = 20;
    let store = &cluster.store;
    let mut b = cluster.node(1).node.subscribe(store, b"gossip/").await?;
    let mut c = cluster.node(2).node.subscribe(store, b"gossip/").await?;
    let (mut on_b, mut on_c) = (Vec::new(), Vec::new());
    for i in 0..WRITES {
        let key = format!("gossip/{i:02}");
        let started = Instant::now();
        cluster.node(0).node.put(store, key.clone().into_bytes(), format!("hello {i}").into_bytes()).await?;
        let (to_b, to_c) = tokio::try_join!(arrival(&mut b, &key, started), arrival(&mut c, &key, started))?;
        on_b.push(to_b);
        on_c.push(to_c);
    }
    let all: Vec<Duration> = on_b.iter().chain(&on_c).copied().collect();
    let (median, max) = (ms(percentile(&all, 50)), ms(percentile(&all, 100)));
    let per_node =
        |times: &[Duration]| json!({"median_ms": ms(percentile(times, 50)), "max_ms": ms(percentile(times, 100))});
    Ok(Report {
        summary: format!(
            "{WRITES} writes on a reached b and c by gossip in {median:.1} ms (median), {max:.1} ms at most"
        ),
        details: vec![
            "timed from the start of each write on a to its entry committed (fsync'd) on the other node".into(),
            format!("b: {:.1} ms median; c: {:.1} ms median", ms(percentile(&on_b, 50)), ms(percentile(&on_c, 50))),
        ],
        figures: json!({"writes": WRITES, "median_ms": median, "max_ms": max,
                        "b": per_node(&on_b), "c": per_node(&on_c)}),
    })
}

/// When `key`'s change reached the watcher `events`, counted from `started`.
async fn arrival(events: &mut mpsc::Receiver<WatchEvent>, key: &str, started: Instant) -> anyhow::Result<Duration> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(WatchEvent::Put { key: k, .. })) if k == key.as_bytes() => return Ok(started.elapsed()),
            Ok(Some(_)) => continue,
            Ok(None) => bail!("the watch on {key} ended"),
            Err(_) => bail!("{key} did not arrive within {} s", PATIENCE.as_secs()),
        }
    }
}

/// `c` goes offline; `a` and `c` write the same key, neither seeing the other's write; `c`
/// comes back: every node holds both heads and picks the same winner; `b` then writes on top
/// of both, which merges them into one head everywhere.
pub async fn conflict(cluster: &mut Cluster) -> anyhow::Result<Report> {
    const KEY: &[u8] = b"color";
    let store = cluster.store.clone();
    cluster.go_offline(2);
    cluster.node(0).node.put(&store, KEY.to_vec(), b"blue".to_vec()).await?;
    cluster.node(2).node.put(&store, KEY.to_vec(), b"green".to_vec()).await?;
    cluster.go_online(2).await?;
    let cluster = &*cluster;
    let forked = until("every node to hold both writes to color", || async move {
        heads_everywhere(cluster, KEY).await.is_ok_and(|all| all.iter().all(|heads| heads.len() == 2))
    })
    .await?;
    let everywhere = heads_everywhere(cluster, KEY).await?;
    let winners: Vec<_> = everywhere.iter().map(|heads| winner(heads).map(|h| h.hash)).collect();
    ensure!(winners.windows(2).all(|w| w[0] == w[1]), "the nodes picked different winners: {winners:?}");
    let mut heads = everywhere.into_iter().next().unwrap_or_default();
    // The winner first: the order `winner` picks by (HLC, author, hash).
    heads.sort_by_key(|h| std::cmp::Reverse((h.hlc, h.author, h.hash)));
    let best = heads.first().ok_or_else(|| anyhow!("no heads for color"))?;
    let (best_value, best_name) = (render::text(&best.value), cluster.name_of(best.author));

    let started = Instant::now();
    cluster.node(1).node.put(&store, KEY.to_vec(), b"teal".to_vec()).await?;
    let merged = until("every node to hold the merge", || async move {
        heads_everywhere(cluster, KEY)
            .await
            .is_ok_and(|all| all.iter().all(|heads| heads.len() == 1 && heads[0].value == b"teal"))
    })
    .await;
    merged?;
    let merge_ms = ms(started.elapsed());

    let mut details = vec![
        "c went offline; a wrote color=blue, and c color=green: neither saw the other's write".into(),
        format!(
            "c came back online; {:.0} ms later every node held both heads and picked the same winner:",
            ms(forked)
        ),
    ];
    details.extend(heads.iter().enumerate().map(|(i, h)| head_line(cluster, h, i == 0)));
    let tie = heads.windows(2).any(|w| w[0].hlc == w[1].hlc);
    details.push(if tie {
        "(the same HLC: the author's key decides, the same way on every node, whatever the order)".into()
    } else {
        "(the highest HLC wins, then the author's key: the same on every node, whatever the order)".into()
    });
    details.push(format!("b wrote color=teal on top of both: one head again on every node after {merge_ms:.1} ms"));
    let figures_heads: Vec<Value> = heads
        .iter()
        .map(|h| {
            json!({"value": render::text(&h.value), "author": cluster.name_of(h.author),
                         "hlc": h.hlc.to_string(), "hash": h.hash.to_string()})
        })
        .collect();
    Ok(Report {
        summary: format!(
            "a partitioned write to one key on two nodes: {best_value} (by {best_name}) wins everywhere, then a merge"
        ),
        details,
        figures: json!({"heads": figures_heads, "winner": best_value, "nodes_agree": true,
                        "conflict_seen_ms": ms(forked), "merged_value": "teal", "merge_ms": merge_ms}),
    })
}

fn head_line(cluster: &Cluster, head: &Head, best: bool) -> String {
    let mark = if best { "*" } else { " " };
    let value = render::text(&head.value);
    format!("  {mark} {value:<6} by {}  at {}", cluster.name_of(head.author), render::time::hlc(head.hlc))
}

/// `key`'s heads on each node.
async fn heads_everywhere(cluster: &Cluster, key: &[u8]) -> anyhow::Result<Vec<Vec<Head>>> {
    let mut all = Vec::new();
    for node in &cluster.nodes {
        all.push(node.node.get_heads(&cluster.store, key).await?);
    }
    Ok(all)
}

/// `b` goes offline while `a` writes a thousand entries; back online, how long `b` takes to
/// hold them all.
pub async fn catch_up(cluster: &mut Cluster) -> anyhow::Result<Report> {
    const ENTRIES: usize = 1000;
    /// Writers at once: `a` commits what they send in groups, one fsync each.
    const WRITERS: usize = 50;
    let store = cluster.store.clone();
    cluster.go_offline(1);
    let a = cluster.node(0).node.clone();
    let started = Instant::now();
    futures::stream::iter(0..ENTRIES)
        .map(|i| {
            let (a, store) = (a.clone(), store.clone());
            async move { a.put(&store, format!("catchup/{i:04}").into_bytes(), format!("entry {i}").into_bytes()).await }
        })
        .buffer_unordered(WRITERS)
        .try_collect::<Vec<_>>()
        .await?;
    let wrote = started.elapsed();
    let back = Instant::now();
    cluster.go_online(1).await?;
    let b = cluster.node(1).node.clone();
    let store = &store;
    until("b to catch up", || {
        let b = b.clone();
        async move { b.list(store, b"catchup/", None, ENTRIES + 1).await.is_ok_and(|page| page.len() == ENTRIES) }
    })
    .await?;
    let took = back.elapsed();
    let rate = ENTRIES as f64 / took.as_secs_f64();
    Ok(Report {
        summary: format!(
            "b was offline while a wrote {ENTRIES} entries; back online, it caught up in {:.0} ms ({rate:.0} entries/s)",
            ms(took)
        ),
        details: vec![format!(
            "a wrote them in {:.0} ms with {WRITERS} writers at once ({:.0} writes/s, each durable before it returned)",
            ms(wrote),
            ENTRIES as f64 / wrote.as_secs_f64()
        )],
        figures: json!({"entries": ENTRIES, "write_ms": ms(wrote), "catch_up_ms": ms(took), "entries_per_second": rate}),
    })
}

/// Counters and sets across a partition: `c` offline, increments and set adds on both sides;
/// once `c` is back every node holds every increment and every member (nothing is lost to
/// last-writer-wins).
pub async fn kinds(cluster: &mut Cluster) -> anyhow::Result<Report> {
    let store = cluster.store.clone();
    cluster.go_offline(2);
    let (a, b, c) = (cluster.node(0).node.clone(), cluster.node(1).node.clone(), cluster.node(2).node.clone());
    a.incr(&store, b"visits".to_vec(), 3).await?;
    c.incr(&store, b"visits".to_vec(), 4).await?;
    b.sadd(&store, b"tags".to_vec(), vec![b"from-b".to_vec()]).await?;
    c.sadd(&store, b"tags".to_vec(), vec![b"from-c".to_vec()]).await?;
    cluster.go_online(2).await?;
    let cluster = &*cluster;
    let want_members = vec![b"from-b".to_vec(), b"from-c".to_vec()];
    let want = &want_members;
    let took = until("every node to hold every increment and member", || async move {
        for node in &cluster.nodes {
            let counter = node.node.value(&cluster.store, b"visits").await;
            let members = node.node.smembers(&cluster.store, b"tags").await;
            if !matches!(counter, Ok(Some(lattice_store::Value::Counter(7))))
                || !matches!(members, Ok(Some(m)) if &m == want)
            {
                return false;
            }
        }
        true
    })
    .await?;
    Ok(Report {
        summary: format!(
            "counters and sets across a partition: visits = 7 and tags = {{from-b, from-c}} on every node, {:.0} ms after c came back",
            ms(took)
        ),
        details: vec![
            "c offline; a added 3 and c added 4 to the counter visits; b and c each added a member to the set tags"
                .into(),
            "(a counter sums every increment and a set keeps every add no remove saw: no write is lost to the other)"
                .into(),
        ],
        figures: json!({"counter": 7, "members": ["from-b", "from-c"], "converged_ms": ms(took)}),
    })
}

/// The HTTP API on `a`, with a token: a read, a write that `c` then receives, a wrong token.
pub async fn http(cluster: &Cluster) -> anyhow::Result<Report> {
    let a = cluster.node(0).node.clone();
    let api = HttpServer::start(a.clone(), ([127, 0, 0, 1], 0).into(), HttpConfig::default()).await?;
    let result = http_requests(cluster, api.local_addr()).await;
    api.shutdown().await;
    result
}

async fn http_requests(cluster: &Cluster, addr: std::net::SocketAddr) -> anyhow::Result<Report> {
    let store = &cluster.store;
    let a = &cluster.node(0).node;
    let (record, secret) = a.create_token(&store.name, Some("demo".into()), Permissions::ReadWrite, None).await?;
    let token = format!("{}:{secret}", record.id);
    let path = format!("/stores/{}/keys/color", store.name);
    let read = request(addr, "GET", &path, &token, b"").await?;
    ensure!(read.status == 200 && read.body == b"teal", "GET {path}: {} {}", read.status, render::text(&read.body));
    let written = format!("/stores/{}/keys/from-http", store.name);
    let started = Instant::now();
    let write = request(addr, "PUT", &written, &token, b"hello over HTTP").await?;
    ensure!(write.status == 200, "PUT {written}: {} {}", write.status, render::text(&write.body));
    let c = &cluster.node(2).node;
    until("c to receive the HTTP write", || async move {
        c.get(store, b"from-http").await.is_ok_and(|v| v.as_deref() == Some(b"hello over HTTP".as_slice()))
    })
    .await?;
    let seen = started.elapsed();
    let forged = format!("{}:{}", record.id, "0".repeat(secret.len()));
    let refused = request(addr, "GET", &path, &forged, b"").await?;
    ensure!(refused.status == 401, "a wrong token got {}, not 401", refused.status);
    Ok(Report {
        summary: format!(
            "HTTP on a with a token: GET color → 200 \"teal\" in {:.1} ms; a wrong token → 401",
            ms(read.took)
        ),
        details: vec![
            format!("API on http://{addr}; token {} (create-token {} --permissions rw)", record.id, store.name),
            format!("PUT from-http → 200 in {:.1} ms; on c {:.1} ms after the request began", ms(write.took), ms(seen)),
        ],
        figures: json!({"addr": addr.to_string(), "get_status": read.status, "get_ms": ms(read.took),
                        "put_status": write.status, "put_ms": ms(write.took), "seen_on_c_ms": ms(seen),
                        "wrong_token_status": refused.status}),
    })
}

/// Every node holds the same keys and values.
pub async fn converged(cluster: &Cluster) -> anyhow::Result<Report> {
    let took = until("every node to hold the same keys and values", || async move {
        let mut contents = Vec::new();
        for node in &cluster.nodes {
            match cluster.contents(node).await {
                Ok(c) => contents.push(c),
                Err(_) => return false,
            }
        }
        contents.windows(2).all(|w| w[0] == w[1])
    })
    .await?;
    let keys = cluster.contents(cluster.node(0)).await?.len();
    let roots = || async move {
        let mut roots = Vec::new();
        for node in &cluster.nodes {
            let status = node.node.status().await.ok()?;
            roots.push(status.stores.iter().find(|(s, _)| s.id == cluster.store.id).map(|(_, f)| f.root)?);
        }
        Some(roots)
    };
    until("every node to hold the same Merkle root", || async move {
        roots().await.is_some_and(|r| r.windows(2).all(|w| w[0] == w[1]))
    })
    .await?;
    let roots = roots().await.ok_or_else(|| anyhow!("the demo store is not in a node's status"))?;
    let root = hex::encode(roots[0]);
    Ok(Report {
        summary: format!("all three nodes hold the same {keys} keys and values, under one Merkle root {}", &root[..12]),
        details: Vec::new(),
        figures: json!({"keys": keys, "waited_ms": ms(took), "root": root}),
    })
}

/// The `p`th percentile (0 to 100) of `times`, nearest rank.
fn percentile(times: &[Duration], p: usize) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[((n - 1) * p / 100).min(n - 1)],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
