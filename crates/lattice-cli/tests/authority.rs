//! Authority over the control plane, with three `lattice serve` processes on 127.0.0.1: a plain
//! member is refused every control-plane change (one line, exit 1, nothing written), an admin can
//! make it an admin, and a removed node's later writes count nowhere (docs/design.md, Control
//! plane).

mod common;

use common::{Lattice, signal, wait_exit, wait_until};

fn status(l: &Lattice) -> serde_json::Value {
    l.run(&["--json", "status"]).ok().json()
}

fn node_id(l: &Lattice) -> String {
    status(l)["node_id"].as_str().unwrap().to_string()
}

fn peer_status(l: &Lattice, id: &str) -> Option<String> {
    let peers = l.run(&["--json", "peers"]).ok().json();
    peers["peers"]
        .as_array()?
        .iter()
        .find(|p| p["node_id"] == id)
        .map(|p| p["status"].as_str().unwrap_or("").to_string())
}

#[test]
fn members_cannot_change_the_control_plane_and_removal_is_causal() {
    let (a, b, c) = (Lattice::init(), Lattice::init(), Lattice::init());
    let (b_id, c_id) = (node_id(&b), node_id(&c));
    let mut daemons = vec![a.serve()];
    let a_status = status(&a);
    let a_id = a_status["node_id"].as_str().unwrap().to_string();
    let addr = a_status["listen_addrs"][0].as_str().expect("serve listens").to_string();
    a.run(&["invite", &b_id]).ok();
    a.run(&["invite", &c_id]).ok();
    b.run(&["join", &format!("{a_id}@{addr}")]).ok();
    c.run(&["join", &format!("{a_id}@{addr}")]).ok();
    daemons.push(b.serve());
    daemons.push(c.serve());
    wait_until("a sees b and c active", || {
        peer_status(&a, &b_id).as_deref() == Some("active") && peer_status(&a, &c_id).as_deref() == Some("active")
    });

    // A plain member: each control-plane command is refused in one line, exit 1.
    let stores_before = a.run(&["--json", "list-stores"]).ok().json();
    let junk_key = "a".repeat(64);
    for args in [
        vec!["invite", junk_key.as_str()],
        vec!["invite", c_id.as_str()],
        vec!["remove", a_id.as_str()],
        vec!["delete-store", "default"],
        vec!["create-store", "evil"],
        vec!["create-token", "default"],
        vec!["grant-admin", c_id.as_str()],
    ] {
        let run = b.run(&args).fails(1, "only an admin may");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
    }
    let token = a.run(&["--json", "create-token", "default"]).ok().json();
    b.run(&["revoke-token", token["id"].as_str().unwrap()]).fails(1, "only an admin may");
    assert_eq!(b.run(&["--json", "list-stores"]).ok().json(), stores_before, "b wrote nothing");
    assert_eq!(a.run(&["--json", "list-stores"]).ok().json(), stores_before);
    assert_eq!(peer_status(&a, &a_id).as_deref(), Some("active"));

    // Made an admin, the same member may.
    a.run(&["grant-admin", &b_id]).ok();
    wait_until("b learns it is an admin", || b.run(&["create-store", "granted"]).code == 0);
    wait_until("a sees b's store", || a.run(&["list-stores"]).out().contains("granted"));

    // Removal: what c wrote before stays everywhere; what it writes after counts nowhere.
    c.run(&["put", "before", "c"]).ok();
    wait_until("c's write reaches a and b", || {
        a.run(&["get", "before"]).stdout == b"c" && b.run(&["get", "before"]).stdout == b"c"
    });
    a.run(&["remove", &c_id]).ok();
    wait_until("b learns of the removal", || peer_status(&b, &c_id).as_deref() == Some("removed"));
    // If c's own node has learned of its removal, its store refuses to sign beyond the cut-off;
    // if not, it signs, and every other node refuses the entry (lattice-store's tests/cutoff.rs
    // shows the refusal entry by entry).
    let after = c.run(&["put", "after", "c"]);
    assert!(after.code == 0 || after.stderr.contains("removed from the mesh"), "{after:?}");
    a.run(&["put", "news", "a"]).ok();
    wait_until("b gets a's news", || b.run(&["get", "news"]).code == 0);
    // Cut off: c's sync is refused, and for a while (gossip and sync both trying) nothing new
    // reaches it.
    let _ = c.run(&["sync"]);
    let watch_until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < watch_until {
        c.run(&["get", "news"]).fails(1, "not found");
        let _ = c.run(&["sync"]);
    }
    for l in [&a, &b] {
        l.run(&["get", "after"]).fails(1, "not found");
        assert_eq!(l.run(&["get", "before"]).ok().stdout, b"c", "c's earlier write stays");
    }

    for (l, mut child) in [&a, &b, &c].into_iter().zip(daemons) {
        signal(&child, libc::SIGTERM);
        assert!(wait_exit(&mut child).success());
        assert!(!l.socket().exists());
    }
}
