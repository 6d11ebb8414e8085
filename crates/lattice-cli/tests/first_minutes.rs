//! The first five minutes (issue 16): `lattice demo` runs three nodes and every step it reports
//! succeeded; `lattice serve` on a data dir never used initialises it and answers one-shot
//! commands.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use common::{Lattice, Lines, bin, isolate, signal, wait_exit};
use serde_json::Value;

fn demo(args: &[&str], home: &std::path::Path) -> common::Run {
    let mut cmd = Command::new(bin());
    cmd.arg("demo").args(args).stdin(Stdio::null());
    isolate(&mut cmd, home);
    let out = cmd.output().unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn figure<'a>(step: &'a Value, name: &str) -> &'a Value {
    step.get(name).unwrap_or_else(|| panic!("step {} has no {name}: {step}", step["step"]))
}

#[test]
fn demo_json_reports_every_step_succeeded() {
    let home = tempfile::tempdir().unwrap();
    let run = demo(&["--json"], home.path()).ok();
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let summary = run.json();
    assert_eq!(summary["ok"], true, "{summary}");
    let steps = summary["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["mesh", "gossip", "conflict", "catch-up", "kinds", "http", "converged"], "{summary}");
    for step in steps {
        assert_eq!(step["ok"], true, "{step}");
        assert!(step["ms"].as_f64().unwrap() >= 0.0 && !step["summary"].as_str().unwrap().is_empty(), "{step}");
    }
    let step = |name: &str| steps.iter().find(|s| s["step"] == name).unwrap();

    let nodes = figure(step("mesh"), "nodes").as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let ids: BTreeSet<&str> = nodes.iter().map(|n| n["node_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "three identities: {nodes:?}");
    assert!(nodes.iter().all(|n| n["addr"].as_str().unwrap().starts_with("127.0.0.1:")), "{nodes:?}");

    let gossip = step("gossip");
    assert_eq!(gossip["writes"], 20);
    let (median, max) = (figure(gossip, "median_ms").as_f64().unwrap(), gossip["max_ms"].as_f64().unwrap());
    assert!(median > 0.0 && median <= max, "{gossip}");

    let conflict = step("conflict");
    let heads = figure(conflict, "heads").as_array().unwrap();
    let values: BTreeSet<&str> = heads.iter().map(|h| h["value"].as_str().unwrap()).collect();
    assert_eq!(values, BTreeSet::from(["blue", "green"]), "both partitioned writes are heads: {conflict}");
    let authors: BTreeSet<&str> = heads.iter().map(|h| h["author"].as_str().unwrap()).collect();
    assert_eq!(authors, BTreeSet::from(["a", "c"]), "{conflict}");
    assert_eq!(conflict["winner"], heads[0]["value"], "the winner is listed first: {conflict}");
    let hlc = |h: &Value| {
        let (wall, counter) = h["hlc"].as_str().unwrap().split_once('.').unwrap();
        (wall.parse::<u64>().unwrap(), counter.parse::<u32>().unwrap())
    };
    assert!(hlc(&heads[0]) >= hlc(&heads[1]), "the winner has the highest HLC: {conflict}");
    assert_eq!(conflict["nodes_agree"], true);
    assert_eq!(conflict["merged_value"], "teal");

    let catch_up = step("catch-up");
    assert_eq!(catch_up["entries"], 1000);
    assert!(figure(catch_up, "entries_per_second").as_f64().unwrap() > 0.0, "{catch_up}");

    let kinds = step("kinds");
    assert_eq!(
        (&kinds["counter"], &kinds["members"]),
        (&7.into(), &serde_json::json!(["from-b", "from-c"])),
        "{kinds}"
    );

    let http = step("http");
    assert_eq!(
        (&http["get_status"], &http["put_status"], &http["wrong_token_status"]),
        (&200.into(), &200.into(), &401.into())
    );

    // 20 gossip keys, color, 1,000 catch-up keys, visits and tags, the HTTP write.
    assert_eq!(step("converged")["keys"], 1024, "{summary}");
    assert_eq!(step("converged")["root"].as_str().map(str::len), Some(64), "{summary}");
    let dir = std::path::Path::new(summary["data_dir"].as_str().unwrap());
    assert_eq!(summary["kept"], false);
    assert!(!dir.exists(), "the demo's temporary data dirs are removed: {}", dir.display());
}

#[test]
fn demo_keeps_its_data_dirs_when_asked_and_narrates_in_text() {
    let home = tempfile::tempdir().unwrap();
    let kept = home.path().join("kept");
    let run = demo(&["--keep", kept.to_str().unwrap()], home.path()).ok();
    let out = run.out();
    for needle in
        ["1. mesh:", "2. gossip:", "3. conflict:", "by gossip", "caught up", "visits = 7", "401", "All steps passed"]
    {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
    // Each node's data dir is an ordinary one: one-shot commands open it.
    let b = Lattice { tmp: tempfile::tempdir().unwrap(), dir: kept.join("b") };
    assert_eq!(b.run(&["get", "color"]).ok().stdout, b"teal");
    assert_eq!(b.run(&["get", "from-http"]).ok().stdout, b"hello over HTTP");

    // A directory that holds something already is refused, and left as it was.
    let refused = demo(&["--keep", kept.to_str().unwrap()], home.path()).fails(2, "not empty");
    assert!(refused.stdout.is_empty());
    assert!(kept.join("a").join("meta.db").is_file());
}

#[test]
fn serve_initialises_a_fresh_data_dir_and_answers_one_shot_commands() {
    let l = Lattice::new();
    assert!(!l.dir.exists());
    let mut cmd = l.command(&["serve", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = Lines::new(child.stderr.take().unwrap());
    lines.wait_for("initialised a new node in");
    let serving = lines.wait_for("lattice: serving");
    let peer = lines.wait_for("peer address:");
    let http = lines.wait_for("HTTP API on http://127.0.0.1:");
    lines.wait_for("create-token default");

    // The node it announced is the one one-shot commands now reach through its socket.
    let status = l.run(&["--json", "status"]).ok().json();
    let id = status["node_id"].as_str().unwrap();
    assert!(serving.contains(id) && peer.contains(&format!("{id}@127.0.0.1:")), "{serving} / {peer}");
    assert_eq!(status["daemon"], true, "forwarded to serve: {status}");
    let http_addr = status["http_addr"].as_str().unwrap();
    assert!(http.ends_with(&format!("http://{http_addr}")), "{http} / {status}");
    l.run(&["put", "hello", "world"]).ok();
    assert_eq!(l.run(&["get", "hello"]).ok().stdout, b"world", "a pipe gets the exact bytes");
    // An invitation says where to join: the address serve listens on.
    let other = Lattice::init();
    let other_id = other.run(&["--json", "status"]).ok().json()["node_id"].as_str().unwrap().to_string();
    let invited = l.run(&["invite", &other_id]).ok().out();
    let peer_addr = peer.trim().trim_start_matches("peer address:").trim();
    assert!(invited.contains(&format!("`lattice join {peer_addr}`")), "{invited} / {peer}");

    signal(&child, libc::SIGTERM);
    assert!(wait_exit(&mut child).success());
    // The second time it is an ordinary data dir: nothing is initialised again.
    let mut again = l.command(&["serve", "--bind", "127.0.0.1:0"]);
    again.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = again.spawn().unwrap();
    let mut lines = Lines::new(child.stderr.take().unwrap());
    lines.wait_for("lattice: serving");
    lines.wait_for("HTTP API off");
    assert!(!lines.seen.iter().any(|l| l.contains("initialised")), "{:?}", lines.seen);
    assert_eq!(l.run(&["get", "hello"]).ok().stdout, b"world");
    signal(&child, libc::SIGTERM);
    assert!(wait_exit(&mut child).success());
}
