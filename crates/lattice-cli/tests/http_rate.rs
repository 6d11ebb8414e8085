//! Rate limits of the HTTP API from the CLI: `serve --http-rate N/s --http-burst N` sets the
//! default bucket, `create-token --rate N/s` a token's own (kept in the root store, shown by
//! `list-tokens`), and bad rates are refused with one line.

mod common;
#[path = "common/web.rs"]
mod web;

use std::net::SocketAddr;
use std::process::{Child, Stdio};

use common::{Lattice, Lines, signal, wait_exit};
use web::http;

/// `lattice serve --http 127.0.0.1:0` with `extra` flags; its HTTP address.
fn serve_http(l: &Lattice, extra: &[&str]) -> (Child, Lines, SocketAddr) {
    let mut args = vec!["serve", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut cmd = l.command(&args);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut serve = cmd.spawn().unwrap();
    let mut stderr = Lines::new(serve.stderr.take().unwrap());
    let line = stderr.wait_for("HTTP API on http://");
    let addr = line.rsplit("http://").next().unwrap().trim().parse().unwrap();
    (serve, stderr, addr)
}

fn stop(mut serve: Child, mut stderr: Lines) {
    signal(&serve, libc::SIGTERM);
    assert!(wait_exit(&mut serve).success());
    stderr.wait_for("stopped");
}

/// Statuses of `n` GETs in a row with `token`.
fn statuses(addr: SocketAddr, token: &str, n: usize) -> Vec<u16> {
    (0..n).map(|_| http(addr, "GET", "/stores/app/keys/k", token, b"").0).collect()
}

#[test]
fn serve_http_rate_and_burst_set_the_default_bucket() {
    let l = Lattice::init();
    l.run(&["create-store", "app"]).ok();
    let token = l.run(&["create-token", "app"]).ok().out().trim().to_string();
    // 1/s with a burst of 3: three requests pass at once, the fourth is refused (the bucket
    // refills one request a second, far slower than these requests come).
    let (serve, stderr, addr) = serve_http(&l, &["--http-rate", "1/s", "--http-burst", "3"]);
    let got = statuses(addr, &token, 4);
    assert_eq!(&got[..3], [404, 404, 404], "{got:?}");
    assert_eq!(got[3], 429, "{got:?}");
    let (status, body) = http(addr, "GET", "/stores/app/keys/k", &token, b"");
    assert_eq!(status, 429);
    assert!(String::from_utf8_lossy(&body).contains("rate limit"));
    stop(serve, stderr);
}

#[test]
fn a_token_with_its_own_rate_is_limited_by_it() {
    let l = Lattice::init();
    l.run(&["create-store", "app"]).ok();
    let created = l.run(&["--json", "create-token", "app", "--rate", "1/s", "--name", "slow"]).ok().json();
    assert_eq!(created["rate"], "1/s");
    let slow = created["token"].as_str().unwrap().to_string();
    let default = l.run(&["--json", "create-token", "app"]).ok().json();
    assert!(default["rate"].is_null());
    let fast = default["token"].as_str().unwrap().to_string();
    let listed = l.run(&["--json", "list-tokens"]).ok().json();
    let rates: Vec<_> = listed["tokens"].as_array().unwrap().iter().map(|t| t["rate"].clone()).collect();
    assert!(rates.contains(&serde_json::json!("1/s")) && rates.contains(&serde_json::Value::Null), "{rates:?}");
    let text = l.run(&["list-tokens"]).ok().out();
    assert!(text.contains("RATE") && text.contains("1/s") && text.contains("default"), "{text}");

    // Refusals: one line, exit 2, no token written.
    for bad in ["2", "0/s", "2/m", "fast", "1.5/s", "2000000/s"] {
        l.run(&["create-token", "app", "--rate", bad]).fails(2, "expected a rate like 100/s");
    }
    assert_eq!(l.run(&["--json", "list-tokens"]).ok().json()["tokens"].as_array().unwrap().len(), 2);

    // The token's own rate (1/s, a burst of 1) applies, not the server's default (100/s).
    let (serve, stderr, addr) = serve_http(&l, &[]);
    assert_eq!(statuses(addr, &slow, 2), [404, 429]);
    assert!(statuses(addr, &fast, 5).iter().all(|s| *s == 404), "the default bucket is larger");
    // Through the daemon too: create-token is forwarded to `serve` and the rate is kept.
    let forwarded = l.run(&["--json", "create-token", "app", "--rate", "2/s"]).ok().json();
    let one = forwarded["token"].as_str().unwrap().to_string();
    assert_eq!(forwarded["rate"], "2/s");
    assert_eq!(statuses(addr, &one, 3), [404, 404, 429]);
    stop(serve, stderr);
}

#[test]
fn bad_serve_rate_flags_fail_with_one_line() {
    let l = Lattice::init();
    for (args, needle) in [
        (&["--http-rate", "100"][..], "--http-rate: expected a rate like 100/s"),
        (&["--http-rate", "0/s"][..], "--http-rate: expected a rate like 100/s"),
        (&["--http-burst", "0"][..], "--http-burst must be at least 1"),
    ] {
        let mut all = vec!["serve", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let out = l.command(&all).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
