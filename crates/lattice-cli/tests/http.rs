//! `lattice serve --http` with tokens made by the CLI: create-token / list-tokens / revoke-token
//! as docs/design.md, CLI spells them, and the HTTP API (docs/design.md, HTTP API) answering a
//! real client.

mod common;
#[path = "common/web.rs"]
mod web;

use std::net::SocketAddr;
use std::process::Stdio;

use common::{Lattice, Lines, signal, wait_exit};
use web::http;

#[test]
fn tokens_made_by_the_cli_open_the_http_api_until_revoked() {
    let l = Lattice::init();
    l.run(&["create-store", "app"]).ok();
    let created = l.run(&["--json", "create-token", "app", "--name", "ci", "--expires", "30d"]).ok().json();
    let rw = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(rw, format!("{id}:{}", created["secret"].as_str().unwrap()));
    assert_eq!(created["permissions"], "rw");
    assert!(created["expires_at"].as_str().unwrap().ends_with('Z'));
    let read_only = l.run(&["create-token", "app", "--permissions", "r"]).ok().out().trim().to_string();
    assert!(read_only.contains(':') && !read_only.contains(' '), "text output is just ID:SECRET: {read_only}");

    let listed = l.run(&["--json", "list-tokens"]).ok().json();
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(
        tokens.iter().all(|t| t["state"] == "active" && t.get("secret").is_none() && t.get("secret_hash").is_none())
    );
    assert!(l.run(&["list-tokens"]).ok().out().contains("ci"));

    // Refusals: one line, the right exit code, nothing written.
    l.run(&["create-token", "app", "--permissions", "x"]).fails(2, "permissions must be r, w or rw");
    l.run(&["create-token", "app", "--expires", "soon"]).fails(2, "expected a duration");
    l.run(&["create-token", "nope"]).fails(1, "no store named");
    l.run(&["revoke-token", "0123456789abcdef"]).fails(1, "no token");
    l.run(&["--store", "root", "put", &format!("/tokens/{id}/permissions"), "r"]).fails(1, "reserved prefix");
    assert_eq!(l.run(&["--json", "list-tokens"]).ok().json()["tokens"].as_array().unwrap().len(), 2);

    let mut cmd = l.command(&["serve", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut serve = cmd.spawn().unwrap();
    let mut stderr = Lines::new(serve.stderr.take().unwrap());
    let line = stderr.wait_for("HTTP API on http://");
    let addr: SocketAddr = line.rsplit("http://").next().unwrap().trim().parse().unwrap();
    assert_eq!(l.run(&["--json", "status"]).ok().json()["http_addr"], addr.to_string(), "status shows it");
    assert!(l.run(&["status"]).ok().out().contains(&format!("http api:      http://{addr}")));

    let (status, body) = http(addr, "PUT", "/stores/app/keys/greeting", &rw, b"hello over http");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(l.run(&["--store", "app", "get", "greeting"]).ok().stdout, b"hello over http", "seen by the CLI");
    l.run(&["--store", "app", "put", "from-cli", "x"]).ok();
    assert_eq!(http(addr, "GET", "/stores/app/keys/from-cli", &read_only, b""), (200, b"x".to_vec()));
    assert_eq!(http(addr, "PUT", "/stores/app/keys/k", &read_only, b"v").0, 403);

    // Revoked through the daemon: refused from the next request on.
    l.run(&["revoke-token", &id]).ok();
    let (status, body) = http(addr, "GET", "/stores/app/keys/greeting", &rw, b"");
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains("token revoked"));
    let states = l.run(&["--json", "list-tokens"]).ok().json();
    assert!(states["tokens"].as_array().unwrap().iter().any(|t| t["id"] == id.as_str() && t["state"] == "revoked"));

    signal(&serve, libc::SIGTERM);
    assert!(wait_exit(&mut serve).success());
    stderr.wait_for("stopped");
}

#[test]
fn an_http_address_in_use_fails_serve_with_one_line() {
    let l = Lattice::init();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = l.command(&["serve", "--bind", "127.0.0.1:0", "--http", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen for HTTP on {addr}")), "{err}");
    // The data dir is free again.
    l.run(&["get", "nothing"]).fails(1, "not found");
}
