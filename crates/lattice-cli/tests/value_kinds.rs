//! Value kinds across three `lattice serve` processes (issue 17): counters and OR-sets written on
//! both sides of a partition (a node stopped) converge once it heals, to what the semantics say:
//! every increment counted exactly once, every member added on either side present, and an add
//! concurrent with a remove of the same member kept.

mod common;

use common::{Lattice, Serving, signal, wait_exit, wait_until};

fn status(l: &Lattice) -> serde_json::Value {
    l.run(&["--json", "status"]).ok().json()
}

fn node_id(l: &Lattice) -> String {
    status(l)["node_id"].as_str().unwrap().to_string()
}

/// The sorted members of set `key` on `l` (`smembers --json`).
fn members(l: &Lattice, key: &str) -> Vec<String> {
    let doc = l.run(&["--json", "smembers", key]).ok().json();
    assert_eq!((&doc["key"], &doc["kind"]), (&key.into(), &"set".into()), "{doc}");
    doc["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect()
}

fn counter(l: &Lattice, key: &str) -> Option<i64> {
    let run = l.run(&["get", key]);
    (run.code == 0).then(|| run.out().trim().parse().expect("a counter reads as its sum"))
}

/// `batch` of `n` increments of `key` by 1, from a file: one atomic entry.
fn incr_batch(l: &Lattice, key: &str, n: usize, name: &str) {
    let file = l.tmp.path().join(name);
    let line = format!("{{\"op\":\"incr\",\"key\":\"{key}\",\"by\":1}}\n");
    std::fs::write(&file, line.repeat(n)).unwrap();
    l.run(&["batch", file.to_str().unwrap()]).ok();
}

#[test]
fn counters_and_sets_converge_across_a_partition_of_three_serve_processes() {
    let nodes = [Lattice::init(), Lattice::init(), Lattice::init()];
    let [a, b, c] = &nodes;
    let mut serving = Serving(vec![a.serve()]);
    let a_status = status(a);
    let a_id = a_status["node_id"].as_str().unwrap().to_string();
    let a_addr = a_status["listen_addrs"][0].as_str().unwrap().to_string();
    let mut addrs = vec![a_addr.clone()];
    for l in [b, c] {
        a.run(&["invite", &node_id(l)]).ok();
        l.run(&["join", &format!("{a_id}@{a_addr}")]).ok();
        serving.0.push(l.serve());
        addrs.push(status(l)["listen_addrs"][0].as_str().unwrap().to_string());
    }
    // Before the partition: every node holds member x of `tags`.
    a.run(&["sadd", "tags", "x"]).ok();
    for l in &nodes {
        wait_until("x in tags everywhere", || {
            l.run(&["--json", "smembers", "tags"]).code == 0 && members(l, "tags") == ["x"]
        });
    }

    // The partition: c stops; it keeps writing on its own (one-shot commands open its data dir).
    signal(&serving.0[2], libc::SIGTERM);
    assert!(wait_exit(&mut serving.0[2]).success());
    for i in 0..4 {
        incr_batch(a, "hits", 100, &format!("a{i}.jsonl"));
    }
    for i in 0..3 {
        incr_batch(b, "hits", 100, &format!("b{i}.jsonl"));
    }
    incr_batch(c, "hits", 200, "c.jsonl");
    c.run(&["incr", "hits", "60"]).ok();
    c.run(&["decr", "hits", "10"]).ok();
    c.run(&["incr", "hits", "50"]).ok();
    // 400 + 300 on one side, 300 on the other.
    assert_eq!(counter(c, "hits"), Some(300));
    a.run(&["sadd", "team", "alice"]).ok();
    b.run(&["sadd", "team", "bob"]).ok();
    c.run(&["sadd", "team", "carol", "dave"]).ok();
    // A removes x while c, which cannot see that, adds it again: the add was not observed.
    a.run(&["srem", "tags", "x"]).ok();
    c.run(&["sadd", "tags", "x"]).ok();

    // Healed: c serves again on its address, and catches up both ways.
    serving.0[2] = c.serve_at(&addrs[2]);
    for (l, name) in nodes.iter().zip(["a", "b", "c"]) {
        wait_until(&format!("1000 hits on {name}"), || counter(l, "hits") == Some(1000));
        wait_until(&format!("the whole team on {name}"), || members(l, "team") == ["alice", "bob", "carol", "dave"]);
        wait_until(&format!("x kept on {name}"), || members(l, "tags") == ["x"]);
    }
    for child in &serving.0 {
        signal(child, libc::SIGTERM);
    }
    for child in &mut serving.0 {
        assert!(wait_exit(child).success());
    }
}
