//! Forged control-plane entries change nothing (docs/design.md, Control plane: Authority), with
//! three `lattice serve` processes on 127.0.0.1: A the genesis admin (serving HTTP too), B and C
//! members. The CLI refuses B every control-plane command (tests/authority.rs); here B's key
//! signs the entries anyway, straight into its root store, and they reach A and C by gossip
//! (written while B is on the network) and by sync (written offline, fetched afterwards). They
//! are valid signed entries, so every node stores them, but no node's peers, stores, tokens or
//! reads of the reserved keys change, the forged token opens nothing and A's token still works.

mod common;
#[path = "common/forge.rs"]
mod forge;
#[path = "common/web.rs"]
mod web;

use std::net::SocketAddr;
use std::process::{Child, Stdio};

use common::{Lattice, Lines, signal, wait_exit, wait_until};
use forge::Forger;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use web::http;

fn json(l: &Lattice, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    l.run(&all).ok().json()
}

fn node_id(l: &Lattice) -> String {
    json(l, &["status"])["node_id"].as_str().unwrap().to_string()
}

/// The control plane as a user sees it: members with status and role, the stores, the tokens.
fn plane(l: &Lattice) -> Value {
    let peers = json(l, &["peers"]);
    let peers: Vec<Value> =
        peers["peers"].as_array().unwrap().iter().map(|p| json!([p["node_id"], p["status"], p["role"]])).collect();
    let tokens = json(l, &["list-tokens"]);
    let tokens: Vec<Value> =
        tokens["tokens"].as_array().unwrap().iter().map(|t| json!([t["id"], t["state"], t["revoked_at"]])).collect();
    json!({ "peers": peers, "stores": json(l, &["list-stores"]), "tokens": tokens })
}

/// Authors of the raw heads of a root-store key (`get -v` shows them whether or not they took
/// effect): how a test sees that an entry has arrived.
fn raw_authors(l: &Lattice, key: &str) -> Vec<String> {
    let run = l.run(&["--json", "--store", "root", "get", "-v", key]);
    if run.code != 0 {
        return vec![];
    }
    run.json()["heads"].as_array().unwrap().iter().map(|h| h["author"].as_str().unwrap().to_string()).collect()
}

/// `serve --http`, and the HTTP address it listens on.
fn serve_http(l: &Lattice) -> (Child, Lines, SocketAddr) {
    let mut cmd = l.command(&["serve", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stderr = Lines::new(child.stderr.take().unwrap());
    let line = stderr.wait_for("HTTP API on http://");
    let addr = line.rsplit("http://").next().unwrap().trim().parse().unwrap();
    wait_until("the control socket", || std::os::unix::net::UnixStream::connect(l.socket()).is_ok());
    (child, stderr, addr)
}

fn stop(child: &mut Child) {
    signal(child, libc::SIGTERM);
    assert!(wait_exit(child).success());
}

#[test]
fn entries_a_member_forges_change_nothing_on_any_node() {
    let (a, b, c) = (Lattice::init(), Lattice::init(), Lattice::init());
    let (b_id, c_id) = (node_id(&b), node_id(&c));
    let (mut a_daemon, _a_err, web) = serve_http(&a);
    let a_status = json(&a, &["status"]);
    let a_id = a_status["node_id"].as_str().unwrap().to_string();
    let addr = a_status["listen_addrs"][0].as_str().expect("serve listens").to_string();
    for (l, id) in [(&b, &b_id), (&c, &c_id)] {
        a.run(&["invite", id]).ok();
        l.run(&["join", &format!("{a_id}@{addr}")]).ok();
    }
    let mut b_daemon = b.serve();
    let mut c_daemon = c.serve();
    let default = json(&a, &["list-stores"])["stores"][0]["uuid"].as_str().unwrap().to_string();
    let token = json(&a, &["create-token", "default"]);
    let (token_id, token) = (token["id"].as_str().unwrap().to_string(), token["token"].as_str().unwrap().to_string());
    assert_eq!(http(web, "PUT", "/stores/default/keys/probe", &token, b"x").0, 200);
    let before = plane(&a);
    assert_eq!(before["peers"].as_array().unwrap().len(), 3, "{before}");
    wait_until("b and c see the plane a sees", || plane(&b) == before && plane(&c) == before);

    // By gossip: B's daemon stopped, its key signs entries while its node is on the network.
    stop(&mut b_daemon);
    let mut forger = Forger::online(&b.dir);
    wait_until("b's root store to reach a gossip neighbour", || !forger.gossip_neighbours().is_empty());
    let at = "2026-01-01T00:00:00.000Z".to_string();
    let live = [
        (format!("/nodes/{a_id}/status"), "removed".to_string()),
        (format!("/nodes/{b_id}/role"), "admin".to_string()),
        (format!("/stores/{default}/deleted_at"), at.clone()),
    ];
    for put in &live {
        forger.write(std::slice::from_ref(put));
    }
    wait_until("the live forgeries reach a and c", || {
        [&a, &c].iter().all(|l| live.iter().all(|(key, _)| raw_authors(l, key).contains(&b_id)))
    });

    // By sync: written while B is off the network, fetched once its daemon is back.
    forger.offline();
    let (forged_id, secret) = ("0011223344556677", "forged-secret");
    let forged_token = [
        ("store_id", default.clone()),
        ("secret_hash", hex::encode(Sha256::digest(secret.as_bytes()))),
        ("permissions", "rw".to_string()),
        ("name", "forged".to_string()),
        ("created_at", at.clone()),
    ]
    .map(|(field, value)| (format!("/tokens/{forged_id}/{field}"), value));
    forger.write(&forged_token);
    forger.write(&[(format!("/tokens/{token_id}/revoked_at"), at.clone())]);
    forger.close();
    let mut b_daemon = b.serve();
    let synced = [format!("/tokens/{forged_id}/permissions"), format!("/tokens/{token_id}/revoked_at")];
    wait_until("the offline forgeries reach a and c by sync", || {
        let _ = a.run(&["sync", &b_id]);
        let _ = c.run(&["sync", &b_id]);
        [&a, &c].iter().all(|l| synced.iter().all(|key| raw_authors(l, key).contains(&b_id)))
    });

    // Nothing changed, on any node: members, roles, stores, tokens, and every read of the keys.
    for (name, l) in [("a", &a), ("b", &b), ("c", &c)] {
        assert_eq!(plane(l), before, "node {name}'s control plane changed");
        let root_get = |key: &str| l.run(&["--store", "root", "get", key]);
        assert_eq!(root_get(&format!("/nodes/{a_id}/status")).ok().stdout, b"active", "node {name}");
        let verbose = l.run(&["--store", "root", "get", "-v", &format!("/nodes/{a_id}/status")]).ok().out();
        assert!(verbose.starts_with("effective: active"), "node {name}: {verbose}");
        for key in [
            format!("/nodes/{b_id}/role"),
            format!("/stores/{default}/deleted_at"),
            format!("/tokens/{forged_id}/permissions"),
            format!("/tokens/{token_id}/revoked_at"),
        ] {
            root_get(&key).fails(1, "not found");
        }
        let listed = l.run(&["--store", "root", "list", "/"]).ok().out();
        assert!(listed.contains(&format!("/nodes/{a_id}/status\tactive")), "node {name}: {listed}");
        for absent in [forged_id, "/revoked_at", "/deleted_at", "/role\tadmin"] {
            assert!(!listed.contains(absent), "node {name} lists {absent:?}: {listed}");
        }
    }
    let (status, body) = http(web, "GET", "/stores/default/keys/probe", &format!("{forged_id}:{secret}"), b"");
    assert_eq!(status, 401, "the forged token: {}", String::from_utf8_lossy(&body));
    assert_eq!(http(web, "GET", "/stores/default/keys/probe", &token, b""), (200, b"x".to_vec()), "a's token");
    // A still acts as the admin and the default store lives on; B is still a plain member.
    a.run(&["put", "after", "forgery"]).ok();
    wait_until("c gets a's write in default", || c.run(&["get", "after"]).stdout == b"forgery");
    b.run(&["invite", &"a".repeat(64)]).fails(1, "only an admin may");

    for (l, child) in [(&a, &mut a_daemon), (&b, &mut b_daemon), (&c, &mut c_daemon)] {
        stop(child);
        assert!(!l.socket().exists());
    }
}
