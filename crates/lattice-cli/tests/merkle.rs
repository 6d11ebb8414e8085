//! Merkle state through the `lattice` binary (issue 18): two `serve` processes show the same
//! root in `status` once synced, a `sync` between them reports "in sync", a proof made on one
//! verifies on the other (and offline with `--node`), and a tampered proof, a proof against
//! another root and a proof signed by a node outside the mesh are refused with the reason.

mod common;

use common::{Lattice, Serving, wait_until};

fn status(l: &Lattice) -> serde_json::Value {
    l.run(&["--json", "status"]).ok().json()
}

fn root(l: &Lattice) -> String {
    let s = status(l);
    let store = s["stores"].as_array().unwrap().iter().find(|s| s["name"] == "default").unwrap().clone();
    store["root"].as_str().unwrap().to_string()
}

#[test]
fn roots_match_proofs_verify_and_forgeries_fail() {
    let (a, b, stranger) = (Lattice::init(), Lattice::init(), Lattice::init());
    let mut serving = Serving(vec![a.serve()]);
    let a_status = status(&a);
    let a_id = a_status["node_id"].as_str().unwrap().to_string();
    let a_addr = a_status["listen_addrs"][0].as_str().unwrap().to_string();
    let b_id = status(&b)["node_id"].as_str().unwrap().to_string();
    a.run(&["invite", &b_id]).ok();
    b.run(&["join", &format!("{a_id}@{a_addr}")]).ok();
    serving.0.push(b.serve());
    for i in 0..50 {
        a.run(&["put", &format!("m/{i}"), &i.to_string()]).ok();
    }
    wait_until("equal roots", || root(&a) == root(&b) && status(&b)["stores"][0]["entries"].as_u64() > Some(0));
    assert_eq!(root(&a).len(), 64, "status --json shows the full root");
    let text = a.run(&["status"]).ok().out();
    assert!(text.contains("ROOT") && text.contains(&root(&a)[..12]), "{text}");
    let synced = b.run(&["sync", &a_id]).ok().out();
    assert!(synced.contains("in sync"), "{synced}");

    // A proof from B verifies on A (B is a member), and offline against B's key.
    let proof = b.run(&["proof", "m/7"]).ok().out();
    let doc: serde_json::Value = serde_json::from_str(&proof).unwrap();
    assert_eq!((doc["value"].as_str(), doc["present"].as_bool()), (Some("7"), Some(true)));
    let file = a.tmp.path().join("m7.proof");
    std::fs::write(&file, &proof).unwrap();
    let ok = a.run(&["verify-proof", file.to_str().unwrap()]).ok().out();
    assert!(ok.contains("valid: m/7 is present"), "{ok}");
    let nowhere = Lattice::new();
    let offline = nowhere.run(&["verify-proof", file.to_str().unwrap(), "--node", &b_id]).ok();
    assert!(offline.out().contains("valid"), "{}", offline.out());
    assert!(!nowhere.dir.exists(), "verify-proof --node created a data dir");
    a.run(&["verify-proof", file.to_str().unwrap(), "--node", &a_id]).fails(1, "not by");
    let absent = b.run(&["proof", "nosuchkey"]).ok().out();
    std::fs::write(&file, &absent).unwrap();
    assert!(a.run(&["verify-proof", file.to_str().unwrap()]).ok().out().contains("absent"));

    // Tampered: the value, then the root.
    let tampered = proof.replacen("\"value\": \"7\"", "\"value\": \"8\"", 1);
    assert_ne!(tampered, proof);
    std::fs::write(&file, &tampered).unwrap();
    a.run(&["verify-proof", file.to_str().unwrap()]).fails(1, "invalid proof");
    // Against another root: B's proof of m/7, its root replaced by today's after a new write.
    a.run(&["put", "m/7", "changed"]).ok();
    wait_until("the write reaches b", || root(&a) == root(&b) && b.run(&["get", "m/7"]).out().trim() == "changed");
    let mut old: serde_json::Value = serde_json::from_str(&proof).unwrap();
    let newer: serde_json::Value = serde_json::from_str(&b.run(&["proof", "m/7"]).ok().out()).unwrap();
    old["root"] = newer["root"].clone();
    old["attestation"] = newer["attestation"].clone();
    std::fs::write(&file, old.to_string()).unwrap();
    a.run(&["verify-proof", file.to_str().unwrap()]).fails(1, "root");
    // Signed by a node of another mesh: refused here, though it checks against its own key.
    stranger.run(&["put", "m/7", "7"]).ok();
    std::fs::write(&file, stranger.run(&["proof", "m/7"]).ok().out()).unwrap();
    a.run(&["verify-proof", file.to_str().unwrap()]).fails(1, "not a member");
    let s_id = status(&stranger)["node_id"].as_str().unwrap().to_string();
    a.run(&["verify-proof", file.to_str().unwrap(), "--node", &s_id]).ok();
    std::fs::write(&file, b"{not json").unwrap();
    a.run(&["verify-proof", file.to_str().unwrap()]).fails(1, "not a proof");
}
