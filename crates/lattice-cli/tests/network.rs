//! Two `lattice serve` processes on 127.0.0.1 driven by one-shot commands, as DESIGN.md
//! section 8 spells them: invite, join, put, sync, get, peers, remove.

mod common;

use common::{Lattice, signal, wait_exit, wait_until};

fn node_id(l: &Lattice) -> String {
    l.run(&["--json", "status"]).ok().json()["node_id"].as_str().unwrap().to_string()
}

#[test]
fn invite_join_put_sync_get_across_two_daemons() {
    let a = Lattice::init();
    let b = Lattice::init();
    let b_id = node_id(&b);
    let mut serve_a = a.serve();
    let status = a.run(&["--json", "status"]).ok().json();
    let a_id = status["node_id"].as_str().unwrap().to_string();
    let addr = status["listen_addrs"][0].as_str().expect("serve listens").to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    // Not invited yet: refused, and nothing changes on b.
    b.run(&["join", &format!("{a_id}@{addr}")]).fails(1, "not invited");
    a.run(&["invite", &b_id]).ok();
    let peers = a.run(&["--json", "peers"]).ok().json();
    let invited = peers["peers"].as_array().unwrap().iter().find(|p| p["node_id"] == b_id.as_str()).unwrap();
    assert_eq!(invited["status"], "invited");

    let joined = b.run(&["--json", "join", &format!("{a_id}@{addr}"), "--name", "bee"]).ok().json();
    assert_eq!(joined["current_store"], "default");
    a.run(&["put", "greeting", "hello"]).ok();
    let synced = b.run(&["--json", "sync"]).ok().json();
    assert_eq!(synced["peers"][0]["ok"], true, "{synced}");
    assert_eq!(b.run(&["get", "greeting"]).ok().stdout, b"hello");
    let listed = b.run(&["--json", "list-stores"]).ok().json();
    assert_eq!(listed["stores"].as_array().unwrap().len(), 1, "b sees the mesh's stores, not its own: {listed}");

    // a sees b as an active member once b's records reach it.
    a.run(&["sync", &b_id]).fails(1, "");
    let mut serve_b = b.serve();
    wait_until("a learns that b is active", || {
        let peers = a.run(&["--json", "peers"]).ok().json();
        peers["peers"].as_array().unwrap().iter().any(|p| p["node_id"] == b_id.as_str() && p["status"] == "active")
    });
    // Real time: a write on b reaches a without anyone typing sync.
    b.run(&["put", "reply", "hi"]).ok();
    wait_until("b's write reaches a", || a.run(&["get", "reply"]).code == 0);
    assert_eq!(a.run(&["get", "reply"]).ok().stdout, b"hi");
    a.run(&["create-store", "photos"]).ok();
    a.run(&["--store", "photos", "put", "p1", "cat"]).ok();
    wait_until("a new store and its data reach b", || b.run(&["--store", "photos", "get", "p1"]).code == 0);
    let sync = a.run(&["--json", "sync", &b_id]).ok().json();
    assert_eq!(sync["peers"][0]["ok"], true);

    // Removed: b's connections are refused from then on.
    a.run(&["remove", &b_id]).ok();
    b.run(&["sync", &a_id]).fails(1, "");
    a.run(&["remove", &a_id]).fails(2, "itself");
    a.run(&["invite", "not-a-key"]).fails(2, "invalid node id");
    for (l, child) in [(&a, &mut serve_a), (&b, &mut serve_b)] {
        signal(child, libc::SIGTERM);
        assert!(wait_exit(child).success());
        assert!(!l.socket().exists());
    }
}
