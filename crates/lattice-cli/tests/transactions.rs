//! Compare-and-set and atomic batches from the command line (docs/design.md, CLI): `put
//! --if-match/--if-absent` and `batch [FILE|-]`, run directly and forwarded to `lattice serve`,
//! and all-or-nothing across a SIGKILL of the daemon.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{Lattice, signal, wait_exit, wait_until};

fn entries(l: &Lattice) -> u64 {
    let status = l.run(&["--json", "status"]).ok().json();
    let stores = status["stores"].as_array().unwrap();
    stores.iter().find(|s| s["name"] == "default").unwrap()["entries"].as_u64().unwrap()
}

fn hash_of(l: &Lattice, key: &str) -> String {
    l.run(&["--json", "get", key]).ok().json()["heads"][0]["hash"].as_str().unwrap().to_string()
}

/// Every compare-and-set and batch outcome, on `l` as it is (direct, or with a daemon up).
fn compare_and_set_and_batches(l: &Lattice, tag: &str) {
    let key = format!("{tag}-k");
    l.run(&["put", &key, "1", "--if-absent"]).ok();
    let at = hash_of(l, &key);
    let before = entries(l);
    l.run(&["put", &key, "2", "--if-absent"]).fails(1, &format!("precondition failed: {key} is at {at}"));
    l.run(&["put", &key, "2", "--if-match", &"0".repeat(64)])
        .fails(1, &format!("precondition failed: {key} is at {at}"));
    l.run(&["put", &key, "2", "--if-match", "nonsense"]).fails(2, "not an entry hash");
    assert_eq!(entries(l), before, "a failed precondition writes nothing");
    assert_eq!(l.run(&["get", &key]).ok().stdout, b"1");
    let moved = l.run(&["--json", "put", &key, "2", "--if-match", &at]).ok().json();
    assert_eq!(moved["hash"].as_str().unwrap(), hash_of(l, &key), "the receipt's hash is the next --if-match");
    l.run(&["put", &key, "3", "--if-match", &format!("\"{}\"", moved["hash"].as_str().unwrap())]).ok();

    // A batch from a file, relative to the client's working directory.
    let hash = hash_of(l, &key);
    let file = format!("{tag}.jsonl");
    let lines = format!(
        "{{\"op\":\"put\",\"key\":\"{tag}-a\",\"value\":\"1\"}}\n\
         {{\"op\":\"put\",\"key\":\"{tag}-b\",\"value\":\"AAE=\",\"encoding\":\"base64\",\"if_absent\":true}}\n\
         {{\"op\":\"delete\",\"key\":\"{key}\",\"if_match\":\"{hash}\"}}\n"
    );
    std::fs::write(l.tmp.path().join(&file), &lines).unwrap();
    let before = entries(l);
    let mut cmd = l.command(&["--json", "batch", &file]);
    cmd.current_dir(l.tmp.path()).stdin(Stdio::null());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["ops"], 3);
    assert_eq!(entries(l), before + 1, "one entry for the whole batch");
    assert_eq!(l.run(&["get", &format!("{tag}-b")]).ok().stdout, [0, 1]);
    l.run(&["get", &key]).fails(1, "not found");

    // Refused whole: a malformed line (named), a failed condition, a missing file.
    let before = entries(l);
    let bad = format!("{{\"op\":\"put\",\"key\":\"{tag}-c\",\"value\":\"1\"}}\n\n{{\"op\":\"put\",\"key\":\"x\"}}\n");
    l.run_with_stdin(&["batch", "-"], bad.as_bytes()).fails(2, "line 3: a put needs");
    let stale = format!(
        "{{\"op\":\"put\",\"key\":\"{tag}-c\",\"value\":\"1\"}}\n{{\"op\":\"delete\",\"key\":\"{tag}-a\",\"if_absent\":true}}\n"
    );
    l.run_with_stdin(&["batch"], stale.as_bytes()).fails(1, &format!("precondition failed: {tag}-a is at"));
    l.run(&["batch", "/no/such/file.jsonl"]).fails(1, "cannot read /no/such/file.jsonl");
    l.run_with_stdin(&["batch"], b"").fails(2, "no operations");
    assert_eq!(entries(l), before, "nothing of a refused batch is written");
    l.run(&["get", &format!("{tag}-c")]).fails(1, "not found");
    // The root store's reserved keys stay refused in a batch too.
    l.run_with_stdin(&["--store", "root", "batch"], b"{\"op\":\"put\",\"key\":\"/nodes/x\",\"value\":\"1\"}\n")
        .fails(1, "reserved prefix");
}

#[test]
fn compare_and_set_and_batches_direct_and_through_the_daemon() {
    let l = Lattice::init();
    compare_and_set_and_batches(&l, "direct");
    let mut serve = l.serve();
    compare_and_set_and_batches(&l, "forwarded");
    signal(&serve, libc::SIGTERM);
    assert!(wait_exit(&mut serve).success());
}

/// Batches of three keys stream into `serve` until it is SIGKILLed: afterwards every group is
/// all there or not at all, and every acknowledged one is there.
#[test]
fn a_batch_is_all_or_nothing_across_a_sigkill() {
    let l = Arc::new(Lattice::init());
    let mut serve = l.serve();
    let (acked, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let writer = {
        let (l, acked, stop) = (l.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let value = "v".repeat(4096);
                let lines: String = ["a", "b", "c"]
                    .iter()
                    .map(|k| format!("{{\"op\":\"put\",\"key\":\"g{i}/{k}\",\"value\":\"{value}\"}}\n"))
                    .collect();
                if l.run_with_stdin(&["batch"], lines.as_bytes()).code != 0 {
                    break;
                }
                i += 1;
                acked.store(i, Ordering::Relaxed);
            }
            i
        })
    };
    wait_until("ten acknowledged batches", || acked.load(Ordering::Relaxed) >= 10);
    signal(&serve, libc::SIGKILL);
    wait_exit(&mut serve);
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written >= 10);

    let list = l.run(&["--json", "list", "g"]).ok().json();
    let keys: std::collections::BTreeSet<String> =
        list["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap().to_string()).collect();
    for i in 0..written + 2 {
        let present = ["a", "b", "c"].map(|k| keys.contains(&format!("g{i}/{k}")));
        assert!(present.iter().all(|&p| p) || present.iter().all(|&p| !p), "group {i} is half there: {present:?}");
        if i < written {
            assert!(present[0], "acknowledged group {i} lost");
        }
    }
    assert_eq!(keys.len() % 3, 0);
}

/// Two `put --if-match` of the same hash, racing through one daemon: exactly one is written,
/// the other exits 1 naming the winner's hash.
#[test]
fn racing_if_match_puts_through_a_daemon_have_exactly_one_winner() {
    let l = Arc::new(Lattice::init());
    let mut serve = l.serve();
    for round in 0..5 {
        l.run(&["put", "race", &format!("start-{round}")]).ok();
        let at = hash_of(&l, "race");
        let racers: Vec<_> = (0..2)
            .map(|i| {
                let (l, at) = (l.clone(), at.clone());
                std::thread::spawn(move || l.run(&["put", "race", &format!("{round}-{i}"), "--if-match", &at]))
            })
            .collect();
        let runs: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<_> = runs.iter().filter(|r| r.code == 0).collect();
        assert_eq!(winners.len(), 1, "round {round}: {runs:?}");
        let loser = runs.iter().find(|r| r.code != 0).unwrap().clone();
        let now = hash_of(&l, "race");
        loser.fails(1, &format!("precondition failed: race is at {now}"));
    }
    signal(&serve, libc::SIGTERM);
    assert!(wait_exit(&mut serve).success());
}
