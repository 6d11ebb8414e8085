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

/// Keys that are not UTF-8, given on the command line, are their exact bytes: written, read,
/// listed and deleted the same direct and forwarded (the control socket carries them as base64).
#[test]
fn keys_that_are_not_utf8_are_their_bytes_direct_and_forwarded() {
    let l = Lattice::init();
    let listing = |l: &Lattice| {
        let list = l.run(&["--json", "list"]).ok().json();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["key"].clone(), i["key_encoding"].clone()))
            .collect::<Vec<_>>()
    };
    l.run_bytes(&[b"put", b"\xff\x01", b"x"]).ok();
    assert_eq!(l.run_bytes(&[b"get", b"\xff\x01"]).ok().stdout, b"x");
    l.run_bytes(&[b"get", b"\xff"]).fails(1, "not found");
    let put = l.run_bytes(&[b"--json", b"put", b"\xff", b"\xfe"]).ok().json();
    assert_eq!((put["key"].as_str(), put["key_encoding"].as_str()), (Some("/w=="), Some("base64")));
    let direct = listing(&l);
    assert_eq!(direct.len(), 2, "{direct:?}");

    let mut serve = l.serve();
    assert_eq!(listing(&l), direct, "the same listing forwarded");
    assert_eq!(l.run_bytes(&[b"get", b"\xff\x01"]).ok().stdout, b"x");
    assert_eq!(l.run_bytes(&[b"get", b"\xff"]).ok().stdout, b"\xfe", "a non-UTF-8 value too");
    l.run_bytes(&[b"put", b"\xff\x02", b"y"]).ok();
    assert_eq!(l.run_bytes(&[b"--json", b"list", b"\xff\x02"]).ok().json()["items"].as_array().unwrap().len(), 1);
    l.run_bytes(&[b"delete", b"\xff\x01"]).ok();
    l.run_bytes(&[b"get", b"\xff\x01"]).fails(1, "not found");
    l.run_bytes(&[b"get", b"\xff"]).ok();
    signal(&serve, libc::SIGTERM);
    assert!(wait_exit(&mut serve).success());

    // What the daemon wrote is those bytes when the dir is opened directly.
    assert_eq!(l.run_bytes(&[b"get", b"\xff\x02"]).ok().stdout, b"y");
    l.run_bytes(&[b"get", b"\xff\x01"]).fails(1, "not found");
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
    let receipt = l.run(&["--json", "put", "k", "v"]).ok().json();
    let mut event: serde_json::Value = serde_json::from_str(&out.wait_for("\"k\"")).unwrap();
    let author = event.as_object_mut().unwrap().remove("author").unwrap();
    assert!(author.as_str().is_some_and(|a| a.len() == 64), "the entry's author, hex: {author}");
    let (hash, hlc) = (&receipt["hash"], &receipt["hlc"]);
    assert_eq!(event, serde_json::json!({"event": "put", "key": "k", "value": "v", "hash": hash, "hlc": hlc}));
    assert_eq!(l.run(&["--json", "status"]).ok().json()["daemon"], true);
    signal(&watch, libc::SIGINT);
    assert!(wait_exit(&mut watch).success(), "Ctrl-C ends a watch normally");
    assert!(!l.socket().exists());
    assert_eq!(l.run(&["get", "k"]).ok().stdout, b"v");
}

fn node_id(l: &Lattice) -> String {
    l.run(&["--json", "status"]).ok().json()["node_id"].as_str().unwrap().to_string()
}

/// A loopback UDP port that was free a moment ago (as the acceptance scripts pick one).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `join` forwarded to a daemon bound to a fixed port restarts that daemon's network on the same
/// port, twice inside the join and once after: each time the port must really be free. A fresh
/// joiner each try, killed once it has joined (a growing mesh of live daemons would make every
/// try slower than the last on a small machine).
#[test]
fn join_through_a_running_daemon_on_a_fixed_port_never_fails() {
    const TRIES: usize = 20;
    let a = Lattice::init();
    let mut serve_a = a.serve();
    let a_status = a.run(&["--json", "status"]).ok().json();
    let a_id = a_status["node_id"].as_str().unwrap().to_string();
    let a_addr = a_status["listen_addrs"][0].as_str().unwrap().to_string();
    for i in 0..TRIES {
        let j = Lattice::init();
        let bind = format!("127.0.0.1:{}", free_port());
        let mut serve_j = j.serve_at(&bind);
        a.run(&["invite", &node_id(&j)]).ok();
        let joined = j.run(&["--json", "join", &format!("{a_id}@{a_addr}")]);
        assert_eq!(joined.code, 0, "join {i} of {TRIES} failed: {}", joined.stderr);
        assert_eq!(joined.json()["current_store"], "default");
        // The daemon is back on the network, on its own port.
        let status = j.run(&["--json", "status"]).ok().json();
        assert_eq!(status["listen_addrs"][0], bind.as_str(), "{status}");
        signal(&serve_j, libc::SIGKILL);
        wait_exit(&mut serve_j);
    }
    signal(&serve_a, libc::SIGKILL);
    wait_exit(&mut serve_a);
}

/// A daemon that sends nothing (stopped with SIGSTOP) is given up on after `--timeout`: exit 1,
/// one line naming its pid. Once it runs again it answers as before.
#[test]
fn a_stopped_daemon_is_given_up_on_after_the_timeout() {
    let l = Lattice::init();
    let mut serve = l.serve();
    let pid = serve.id();
    signal(&serve, libc::SIGSTOP);
    let stuck = l.run(&["--timeout", "2", "put", "k", "v"]);
    stuck.fails(1, &format!("error: the daemon (pid {pid}) sent nothing for 2 s; is it stopped?"));
    l.run(&["--timeout", "1", "get", "k"]).fails(1, &format!("(pid {pid})"));
    let zero = l.run(&["--timeout", "0", "get", "k"]);
    assert_eq!(zero.code, 2, "a zero timeout is a usage error: {}", zero.stderr);
    signal(&serve, libc::SIGCONT);
    // (The put above may still land once the daemon runs: another key shows it answers.)
    l.run(&["put", "k2", "w"]).ok();
    assert_eq!(l.run(&["--timeout", "2", "get", "k2"]).ok().stdout, b"w");
    signal(&serve, libc::SIGTERM);
    assert!(wait_exit(&mut serve).success());
}

/// A forwarded `watch` with nothing to report is not cut by `--timeout`: the daemon says it is
/// alive while the command runs.
#[test]
fn a_quiet_forwarded_watch_outlives_the_timeout() {
    let l = Lattice::init();
    let mut serve = l.serve();
    let mut watch = l
        .command(&["--timeout", "1", "watch", "^w/"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Lines::new(watch.stdout.take().unwrap());
    Lines::new(watch.stderr.take().unwrap()).wait_for("watching");
    // Several timeouts' worth of silence: the watch must still be running throughout.
    let quiet = std::time::Instant::now();
    common::wait_until("three quiet seconds", || {
        assert!(watch.try_wait().unwrap().is_none(), "the watch was cut while quiet");
        quiet.elapsed() > std::time::Duration::from_secs(3)
    });
    l.run(&["put", "w/1", "one"]).ok();
    assert_eq!(out.wait_for("w/1"), "put w/1 one");
    signal(&watch, libc::SIGINT);
    wait_exit(&mut watch);
    signal(&serve, libc::SIGTERM);
    assert!(wait_exit(&mut serve).success());
}
