//! `lattice serve` and forwarding over `lattice.sock`: forwarded commands behave exactly like
//! direct ones, `watch` streams over the socket, SIGTERM stops cleanly, SIGKILL loses no
//! acknowledged write and leaves nothing that blocks the next owner.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::{Lattice, Lines, Run, signal, wait_exit};

/// Read-only commands whose whole outcome (stdout, stderr, exit code) must not depend on who
/// runs them.
const READS: &[&[&str]] = &[
    &["get", "a"],
    &["get", "-v", "a"],
    &["--json", "get", "a"],
    &["get", "blob"],
    &["--json", "get", "blob"],
    &["get", "missing"],
    &["list"],
    &["--json", "list", "k"],
    &["list-stores"],
    &["--json", "list-stores"],
    &["--store", "photos", "list"],
    &["--store", "nope", "list"],
    &["--store", "root", "put", "/nodes/x", "1"],
    &["get", ""],
    &["use", "no-such-store"],
];

fn reads(l: &Lattice) -> Vec<Run> {
    READS.iter().map(|args| l.run(args)).collect()
}

#[test]
fn forwarded_commands_match_direct_ones_and_sigterm_stops_cleanly() {
    let l = Lattice::init();
    let blob: Vec<u8> = (0..=255u8).collect();
    l.run(&["put", "a", "1"]).ok();
    l.run(&["put", "k1", "x"]).ok();
    l.run_with_stdin(&["put", "blob", "-"], &blob).ok();
    l.run(&["create-store", "photos"]).ok();
    l.run(&["--store", "photos", "put", "p", "q"]).ok();
    let direct = reads(&l);

    let mut serve = l.serve();
    let mode = std::fs::metadata(l.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket is private");
    let forwarded = reads(&l);
    for ((args, d), f) in READS.iter().zip(&direct).zip(&forwarded) {
        assert_eq!(d, f, "`{}` differs when forwarded", args.join(" "));
    }

    // Writes through the daemon, including stdin values and control-plane changes.
    l.run(&["put", "a", "2"]).ok();
    l.run_with_stdin(&["put", "blob2", "-"], &blob).ok();
    assert_eq!(l.run(&["get", "blob2"]).ok().stdout, blob);
    l.run(&["create-store", "music"]).ok();
    l.run(&["use", "music"]).ok();
    l.run(&["put", "song", "la"]).ok();
    l.run(&["use", "default"]).ok();
    l.run(&["delete", "k1"]).ok();
    l.run(&["delete", "k1"]).fails(1, "not found");
    l.run(&["init"]).fails(1, "already initialised");
    l.run(&["serve"]).fails(1, "in use by another lattice process");
    let status = l.run(&["--json", "status"]).ok().json();
    assert_eq!(status["daemon"], true);
    assert_eq!(status["daemon_pid"], serve.id());
    assert!(l.run(&["status"]).ok().out().contains(&format!("`lattice serve` (pid {})", serve.id())));

    signal(&serve, libc::SIGTERM);
    let exit = wait_exit(&mut serve);
    assert!(exit.success(), "serve exits 0 on SIGTERM: {exit}");
    assert!(!l.socket().exists(), "socket removed");

    // Everything written through the daemon is there when the dir is opened directly.
    assert_eq!(l.run(&["get", "a"]).ok().stdout, b"2");
    assert_eq!(l.run(&["--store", "music", "get", "song"]).ok().stdout, b"la");
    l.run(&["get", "k1"]).fails(1, "not found");
    assert_eq!(l.run(&["--json", "status"]).ok().json()["daemon"], false);
}

#[test]
fn sigkill_loses_no_acknowledged_write_and_stale_socket_is_recovered() {
    let l = Lattice::init();
    let mut serve = l.serve();
    for i in 0..20 {
        l.run(&["put", &format!("key{i:02}"), &format!("value{i}")]).ok();
    }
    signal(&serve, libc::SIGKILL);
    wait_exit(&mut serve);
    assert!(l.socket().exists(), "a killed daemon leaves its socket behind");

    // The next command finds the lock free, removes the stale socket and runs directly.
    let list = l.run(&["list"]).ok().out();
    assert_eq!(list.lines().count(), 20, "{list}");
    for i in 0..20 {
        assert_eq!(l.run(&["get", &format!("key{i:02}")]).ok().stdout, format!("value{i}").as_bytes());
    }
    assert!(!l.socket().exists(), "stale socket removed");

    // A new daemon starts over a stale socket too.
    let mut serve = l.serve();
    signal(&serve, libc::SIGKILL);
    wait_exit(&mut serve);
    let mut serve = l.serve();
    assert_eq!(l.run(&["get", "key07"]).ok().stdout, b"value7");
    signal(&serve, libc::SIGINT);
    assert!(wait_exit(&mut serve).success(), "SIGINT stops cleanly too");
    assert!(!l.socket().exists());
}

#[test]
fn watch_streams_over_the_socket() {
    let l = Lattice::init();
    let mut serve = l.serve();
    let mut watch = l
        .command(&["watch", "^w/"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Lines::new(watch.stdout.take().unwrap());
    let mut err = Lines::new(watch.stderr.take().unwrap());
    err.wait_for("watching");

    l.run(&["put", "w/1", "one"]).ok();
    l.run(&["put", "other", "ignored"]).ok();
    l.run(&["delete", "w/1"]).ok();
    l.run(&["put", "w/2", "two"]).ok();
    assert_eq!(out.wait_for("w/1"), "put w/1 one");
    assert_eq!(out.wait_for("w/1"), "delete w/1");
    assert_eq!(out.wait_for("w/2"), "put w/2 two");
    assert!(out.seen.iter().all(|l| !l.contains("other")));

    // The client goes away; the daemon drops the watch.
    signal(&watch, libc::SIGKILL);
    wait_exit(&mut watch);

    // A daemon stopping ends the watches it serves: the client exits 0, the daemon stops.
    let mut watch =
        l.command(&["watch", "x"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    Lines::new(watch.stderr.take().unwrap()).wait_for("watching");
    signal(&serve, libc::SIGTERM);
    assert!(wait_exit(&mut serve).success());
    assert!(wait_exit(&mut watch).success());
}

#[test]
fn a_local_watch_owns_the_dir_and_serves_other_commands() {
    let l = Lattice::init();
    let mut watch = l
        .command(&["--json", "watch", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Lines::new(watch.stdout.take().unwrap());
    let mut err = Lines::new(watch.stderr.take().unwrap());
    err.wait_for("watching");
    l.run(&["put", "k", "v"]).ok();
    let event: serde_json::Value = serde_json::from_str(&out.wait_for("\"k\"")).unwrap();
    assert_eq!(event, serde_json::json!({"event": "put", "key": "k", "value": "v"}));
    assert_eq!(l.run(&["--json", "status"]).ok().json()["daemon"], true);
    signal(&watch, libc::SIGINT);
    assert!(wait_exit(&mut watch).success(), "Ctrl-C ends a watch normally");
    assert!(!l.socket().exists());
    assert_eq!(l.run(&["get", "k"]).ok().stdout, b"v");
}
