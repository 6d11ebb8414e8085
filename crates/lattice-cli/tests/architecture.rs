//! The architecture invariants of ARCHITECTURE.md, checked against the real dependency graph
//! (`cargo metadata`): a crate that pulls in what its layer must not know fails this test.
//!
//! Only normal dependencies count (dev- and build-dependencies do not ship in the crate), followed
//! transitively, with the features the workspace resolves.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Package name -> its normal dependencies' package names.
fn normal_dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    // Only this machine's platform: the graph for other targets would need crates never downloaded.
    let host = host_triple();
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host,
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let meta: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id"), p["name"].as_str().expect("name")))
        .collect();
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve.nodes") {
        let name = names[node["id"].as_str().expect("id")].to_string();
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|d| d["dep_kinds"].as_array().is_some_and(|k| k.iter().any(|k| k["kind"].is_null())))
            .map(|d| names[d["pkg"].as_str().expect("pkg")].to_string())
            .collect();
        graph.insert(name, deps);
    }
    graph
}

/// The host target triple, as `rustc -vV` reports it.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc).arg("-vV").output().expect("rustc -vV runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc -vV names the host").trim().to_string()
}

/// Every package `root` depends on, directly or not.
fn closure(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_string()];
    while let Some(name) = todo.pop() {
        for dep in graph.get(&name).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

fn assert_free_of(graph: &BTreeMap<String, BTreeSet<String>>, krate: &str, forbidden: &[&str], why: &str) {
    let deps = closure(graph, krate);
    let found: Vec<&str> = forbidden.iter().copied().filter(|f| deps.contains(*f)).collect();
    assert!(found.is_empty(), "{krate} must not depend on {found:?}: {why}");
}

const RUNTIMES: &[&str] = &["tokio", "async-std", "smol", "mio"];
const DATABASES: &[&str] = &["redb", "rusqlite", "sled"];
const NETWORK: &[&str] = &["iroh", "iroh-gossip", "quinn", "hyper", "axum", "reqwest"];

#[test]
fn lattice_core_depends_on_no_runtime_database_or_network_crate() {
    let graph = normal_dependency_graph();
    let forbidden: Vec<&str> = [RUNTIMES, DATABASES, NETWORK].concat();
    assert_free_of(&graph, "lattice-core", &forbidden, "lattice-core holds types and rules, no I/O");
}

#[test]
fn lattice_store_knows_nothing_of_the_network() {
    let graph = normal_dependency_graph();
    assert_free_of(&graph, "lattice-store", NETWORK, "lattice-store is one store on disk");
}

#[test]
fn lattice_net_has_no_database_and_no_http() {
    let graph = normal_dependency_graph();
    assert_free_of(&graph, "lattice-net", &["axum"], "lattice-net speaks iroh, not HTTP");
    // redb reaches lattice-net through lattice-store, whose index it is; lattice-net itself must
    // not open a database of its own.
    let direct = &graph["lattice-net"];
    assert!(!direct.contains("redb"), "lattice-net uses redb directly: it sees stores only through SyncStore");
}

#[test]
fn workspace_crates_depend_only_downwards() {
    let graph = normal_dependency_graph();
    let layers = [
        ("lattice-core", &[][..]),
        ("lattice-store", &["lattice-core"][..]),
        ("lattice-net", &["lattice-core", "lattice-store"][..]),
        ("lattice-node", &["lattice-core", "lattice-store", "lattice-net"][..]),
    ];
    for (krate, allowed) in layers {
        let inner: Vec<String> = closure(&graph, krate).into_iter().filter(|d| d.starts_with("lattice-")).collect();
        let upward: Vec<&String> = inner.iter().filter(|d| !allowed.contains(&d.as_str())).collect();
        assert!(upward.is_empty(), "{krate} depends on {upward:?}; it may use only {allowed:?}");
    }
}

#[test]
fn the_checks_see_the_real_graph() {
    // Guards the guards: if the graph were read wrong (empty), every check above would pass.
    let graph = normal_dependency_graph();
    assert!(closure(&graph, "lattice-net").contains("iroh"), "lattice-net is expected to use iroh");
    assert!(closure(&graph, "lattice-store").contains("redb"), "lattice-store is expected to use redb");
    assert!(closure(&graph, "lattice-node").contains("lattice-store"));
}
