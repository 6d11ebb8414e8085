//! One-shot commands, each a separate `lattice` process on a temp data dir: results, `--json`
//! shapes, exit codes and error lines (docs/design.md, CLI).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::Lattice;

#[test]
fn init_then_put_get_delete_list_across_processes() {
    let l = Lattice::init();
    assert!(l.dir.join("identity.key").exists() && l.dir.join("meta.db").exists());
    l.run(&["init"]).fails(1, "already initialised");

    assert_eq!(l.run(&["put", "fruit/apple", "red"]).ok().out(), "ok\n");
    l.run(&["put", "fruit/banana", "yellow"]).ok();
    l.run(&["put", "veg/kale", "green"]).ok();
    assert_eq!(l.run(&["get", "fruit/apple"]).ok().stdout, b"red");
    l.run(&["put", "fruit/apple", "green"]).ok();
    assert_eq!(l.run(&["get", "fruit/apple"]).ok().stdout, b"green", "a later write wins");

    assert_eq!(l.run(&["list"]).ok().out(), "fruit/apple\tgreen\nfruit/banana\tyellow\nveg/kale\tgreen\n");
    assert_eq!(l.run(&["list", "fruit/"]).ok().out(), "fruit/apple\tgreen\nfruit/banana\tyellow\n");

    assert_eq!(l.run(&["delete", "fruit/apple"]).ok().out(), "deleted\n");
    l.run(&["get", "fruit/apple"]).fails(1, "not found");
    l.run(&["delete", "fruit/apple"]).fails(1, "not found");
    assert_eq!(l.run(&["list", "fruit/"]).ok().out(), "fruit/banana\tyellow\n");
    // Values that look like flags are values.
    l.run(&["put", "n", "-5"]).ok();
    assert_eq!(l.run(&["get", "n"]).ok().stdout, b"-5");
}

#[test]
fn missing_key_prints_not_found_and_exits_1() {
    let l = Lattice::init();
    let run = l.run(&["get", "nope"]).fails(1, "not found");
    assert_eq!(run.stderr, "not found\n");
    assert!(run.stdout.is_empty());
    l.run(&["--json", "get", "nope"]).fails(1, "not found");
}

#[test]
fn json_shapes() {
    let l = Lattice::init();
    let put = l.run(&["--json", "put", "k", "v"]).ok().json();
    assert_eq!(put["key"], "k");
    assert_eq!(put["hash"].as_str().unwrap().len(), 64);
    assert!(put["hlc"].as_str().unwrap().contains('.'));

    let get = l.run(&["get", "k", "--json"]).ok().json();
    assert_eq!(get["key"], "k");
    assert_eq!(get["value"], "v");
    let heads = get["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 1);
    for field in ["value", "hlc", "author", "hash", "tombstone"] {
        assert!(heads[0].get(field).is_some(), "head field {field}");
    }
    assert_eq!(heads[0]["hash"], put["hash"]);
    assert_eq!(heads[0]["tombstone"], false);

    let list = l.run(&["--json", "list"]).ok().json();
    // The HTTP API's listing item: `encoding` is present for UTF-8 values too.
    assert_eq!(list, serde_json::json!({"items": [{"key": "k", "value": "v", "encoding": "utf8"}]}));

    let status = l.run(&["--json", "status"]).ok().json();
    for field in ["node_id", "data_dir", "current_store", "daemon", "stores", "peers"] {
        assert!(status.get(field).is_some(), "status field {field}");
    }
    assert_eq!(status["current_store"], "default");
    assert_eq!(status["daemon"], false);
    assert_eq!(status["node_id"].as_str().unwrap().len(), 64);
    let stores = status["stores"].as_array().unwrap();
    let names: Vec<&str> = stores.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["root", "default"]);
    for field in ["name", "uuid", "entries", "authors", "keys", "orphans", "conflicts"] {
        assert!(stores[1].get(field).is_some(), "store field {field}");
    }
    assert_eq!(stores[1]["entries"], 1);
    assert_eq!(stores[1]["keys"], 1);

    let created = l.run(&["--json", "create-store", "photos"]).ok().json();
    assert_eq!(created["name"], "photos");
    let listed = l.run(&["list-stores", "--json"]).ok().json();
    let listed = listed["stores"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "root is never listed: {listed:?}");
    for field in ["name", "uuid", "created_by", "created_at", "state"] {
        assert!(listed[0].get(field).is_some(), "list-stores field {field}");
    }
    assert_eq!(listed[1]["uuid"], created["uuid"]);
    assert_eq!(listed[1]["state"], "active");
    assert_eq!(listed[1]["created_by"], status["node_id"]);
}

#[test]
fn stdin_values_round_trip_every_byte() {
    let l = Lattice::init();
    let value: Vec<u8> = (0..=255u8).cycle().take(256 * 7 + 13).collect();
    l.run_with_stdin(&["put", "blob", "-"], &value).ok();
    assert_eq!(l.run(&["get", "blob"]).ok().stdout, value, "plain get prints the raw bytes");

    let get = l.run(&["--json", "get", "blob"]).ok().json();
    assert_eq!(get["encoding"], "base64");
    assert_eq!(B64.decode(get["value"].as_str().unwrap()).unwrap(), value);
    let list = l.run(&["--json", "list"]).ok().json();
    assert_eq!(list["items"][0]["encoding"], "base64");

    // Empty stdin is an empty value, not an error.
    l.run_with_stdin(&["put", "empty", "-"], b"").ok();
    assert_eq!(l.run(&["get", "empty"]).ok().stdout, b"");
}

#[test]
fn stores_create_use_delete_and_root() {
    let l = Lattice::init();
    l.run(&["create-store", "photos"]).ok();
    l.run(&["create-store", "photos"]).fails(1, "already exists");
    l.run(&["create-store", "bad name"]).fails(2, "invalid store name");
    l.run(&["create-store", "root"]).fails(2, "invalid store name");

    l.run(&["--store", "photos", "put", "cat", "meow"]).ok();
    l.run(&["get", "cat"]).fails(1, "not found");
    assert_eq!(l.run(&["use", "photos"]).ok().out().lines().count(), 1);
    assert_eq!(l.run(&["get", "cat"]).ok().stdout, b"meow");
    let status = l.run(&["--json", "status"]).ok().json();
    assert_eq!(status["current_store"], "photos");
    let uuid = status["stores"].as_array().unwrap().iter().find(|s| s["name"] == "photos").unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(l.run(&["--store", &uuid, "get", "cat"]).ok().stdout, b"meow", "select by uuid");

    // The root store reads like any store; its reserved prefixes refuse writes.
    let me = status["node_id"].as_str().unwrap();
    assert_eq!(l.run(&["--store", "root", "get", &format!("/nodes/{me}/status")]).ok().stdout, b"active");
    let info = l.run(&["--store", "root", "--json", "get", &format!("/nodes/{me}/info")]).ok().json();
    let info: serde_json::Value = serde_json::from_str(info["value"].as_str().unwrap()).unwrap();
    assert_eq!(info["name"], "test");
    assert_eq!(info["added_by"], me);
    let decl = l.run(&["--store", "root", "get", &format!("/stores/{uuid}/name")]).ok();
    assert_eq!(decl.stdout, b"photos");

    l.run(&["delete-store", "photos"]).ok();
    assert!(l.dir.join("archive").join(&uuid).is_dir(), "local data moved to archive/");
    assert!(!l.dir.join("stores").join(&uuid).exists());
    let deleted_at = l.run(&["--store", "root", "get", &format!("/stores/{uuid}/deleted_at")]).ok();
    assert!(!deleted_at.stdout.is_empty());
    let names = l.run(&["list-stores"]).ok().out();
    assert!(names.contains("default") && !names.contains("photos"), "{names}");
    let all = l.run(&["list-stores", "--all"]).ok().out();
    assert!(all.lines().any(|line| line.contains("photos") && line.contains("archived")), "{all}");
    l.run(&["--store", "photos", "get", "cat"]).fails(1, "no store named");
    l.run(&["--store", &uuid, "get", "cat"]).fails(1, "deleted");
    l.run(&["get", "cat"]).fails(1, "no current store");
    l.run(&["use", "default"]).ok();
    l.run(&["delete-store", "root"]).fails(2, "root store cannot be deleted");
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    let l = Lattice::init();
    l.run(&["--store", "nope", "get", "a"]).fails(1, "no store named \"nope\"");
    l.run(&["--store", "12345678-zzzz-4c36-9a55-b1b1a1a1a1a1", "get", "a"]).fails(1, "no store named");
    l.run(&["--store", "0b6f3f4e-8c1e-4c36-9a55-b1b1a1a1a1a1", "get", "a"]).fails(1, "no store with uuid");
    l.run(&["use", "not-a-store"]).fails(1, "no store named");
    l.run(&["delete-store", "0b6f3f4e-8c1e-4c36-9a55"]).fails(1, "no store named");
    l.run(&["get", ""]).fails(2, "key must not be empty");
    l.run(&["put", "", "v"]).fails(2, "key must not be empty");
    l.run(&["put", &"k".repeat(5000), "v"]).fails(2, "limit");
    l.run_with_stdin(&["put", "big", "-"], &vec![b'x'; 1024 * 1024 + 1]).fails(2, "limit");
    l.run(&["watch", "("]).fails(2, "invalid pattern");

    for key in ["/nodes/x/status", "/stores/y/name", "/tokens/t/secret_hash"] {
        l.run(&["--store", "root", "put", key, "v"]).fails(1, "reserved prefix");
        l.run(&["--store", "root", "delete", key]).fails(1, "reserved prefix");
    }
    l.run(&["--store", "root", "put", "/app/setting", "1"]).ok();
    l.run(&["put", "/nodes/fine-elsewhere", "1"]).ok();

    // Usage errors (clap) exit 2.
    assert_eq!(l.run(&["put", "only-key"]).code, 2);
    assert_eq!(l.run(&["frobnicate"]).code, 2);
    assert_eq!(l.run(&["serve", "--bind", "not-an-address"]).code, 2);
    assert_eq!(l.run(&["--help"]).code, 0);
}

#[test]
fn missing_or_uninitialised_data_dir() {
    let l = Lattice::new();
    l.run(&["get", "a"]).fails(1, "not initialised");
    l.run(&["status"]).fails(1, "not initialised");
    assert!(!l.dir.exists(), "a command other than init, join and serve creates nothing");
    std::fs::create_dir_all(&l.dir).unwrap();
    l.run(&["put", "a", "1"]).fails(1, "not initialised");
    l.run(&["list-stores"]).fails(1, "not initialised");
    l.run(&["init"]).ok();
    l.run(&["put", "a", "1"]).ok();
}

#[test]
fn identity_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let l = Lattice::init();
    let key = l.dir.join("identity.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    l.run(&["get", "a"]).fails(1, "chmod 600");
    l.run(&["status"]).fails(1, "readable by group or others");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    l.run(&["status"]).ok();
}

#[test]
fn data_dir_from_environment() {
    let l = Lattice::new();
    let mut cmd = std::process::Command::new(common::bin());
    common::isolate(&mut cmd, l.tmp.path());
    let out = cmd.env("LATTICE_DATA_DIR", &l.dir).args(["init"]).output().unwrap();
    assert!(out.status.success());
    assert!(l.dir.join("meta.db").exists());
    // And the platform default under $HOME when nothing is set.
    let mut cmd = std::process::Command::new(common::bin());
    common::isolate(&mut cmd, l.tmp.path());
    let out = cmd.args(["init"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(l.tmp.path().join(".local/share/lattice/meta.db").exists());
}

/// Two authors wrote the same key concurrently: a plain `get` marks the conflict, `-v` shows
/// every head. The second author's log is made with the store library and dropped into the
/// store's `logs/` dir, which the store replays at open.
#[test]
fn conflicting_heads_are_marked() {
    let l = Lattice::init();
    l.run(&["put", "k", "mine"]).ok();
    let status = l.run(&["--json", "status"]).ok().json();
    let uuid = status["stores"][1]["uuid"].as_str().unwrap().to_string();
    let store_id = lattice_core::StoreId::parse(&uuid).unwrap();

    let other_dir = l.tmp.path().join("other").join(&uuid);
    let other = lattice_core::Identity::generate();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use lattice_store::KvStore;
        let handle = lattice_store::StoreHandle::open(&other_dir, store_id, other.clone(), Default::default()).unwrap();
        handle.put(b"k".to_vec(), b"theirs".to_vec()).await.unwrap();
        handle.close().await.unwrap();
    });
    let log = format!("{}.log", other.author().to_hex());
    std::fs::copy(other_dir.join("logs").join(&log), l.dir.join("stores").join(&uuid).join("logs").join(&log)).unwrap();

    let plain = l.run(&["get", "k"]).ok().out();
    assert!(plain.ends_with("  (2 heads)\n"), "{plain:?}");
    assert!(plain.starts_with("mine") || plain.starts_with("theirs"), "{plain:?}");
    let verbose = l.run(&["get", "-v", "k"]).ok().out();
    assert_eq!(verbose.lines().count(), 2, "{verbose}");
    assert!(verbose.contains(&other.author().to_hex()) && verbose.contains(status["node_id"].as_str().unwrap()));
    assert!(verbose.contains("hlc ") && verbose.contains("hash "));
    let json = l.run(&["--json", "get", "k"]).ok().json();
    assert_eq!(json["heads"].as_array().unwrap().len(), 2);
    let status = l.run(&["--json", "status"]).ok().json();
    assert_eq!(status["stores"][1]["conflicts"], 1);
    assert_eq!(status["stores"][1]["authors"], 2);
    // The next write merges the fork.
    l.run(&["put", "k", "merged"]).ok();
    assert_eq!(l.run(&["get", "k"]).ok().stdout, b"merged");
}

/// One owner at a time: concurrent one-shot commands wait for the lock in turn; none fails.
#[test]
fn concurrent_one_shot_commands_take_turns() {
    let l = Lattice::init();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut cmd = l.command(&["put", &format!("c{i}"), &format!("v{i}")]);
            cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
            cmd.stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(l.run(&["list", "c"]).ok().out().lines().count(), 8);
}

/// Every file and directory under `dir` that group or other may access (the socket aside).
fn exposed(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.permissions().mode() & 0o077 != 0 && !path.ends_with("lattice.sock") {
            out.push(format!("{} {:o}", path.display(), meta.permissions().mode() & 0o777));
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

/// `cmd` with umask 0: whatever the data dir ends up with, lattice chose it.
fn without_umask(mut cmd: std::process::Command) -> common::Run {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn init_makes_the_data_dir_and_everything_in_it_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let l = Lattice::new();
    std::fs::create_dir_all(&l.dir).unwrap();
    std::fs::set_permissions(&l.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    without_umask(l.command(&["init", "--name", "n"])).ok();
    assert_eq!(std::fs::metadata(&l.dir).unwrap().permissions().mode() & 0o777, 0o700);
    // Files made after init too: a new store (its dir, logs, indexes), a log, an archive.
    without_umask(l.command(&["create-store", "photos"])).ok();
    without_umask(l.command(&["--store", "photos", "put", "k", "v"])).ok();
    without_umask(l.command(&["delete-store", "photos"])).ok();
    assert!(l.dir.join("archive").is_dir());
    assert_eq!(exposed(&l.dir), Vec::<String>::new(), "group/other-accessible after init");
    // A fresh dir made by init itself (no umask either).
    let fresh = Lattice::new();
    without_umask(fresh.command(&["init"])).ok();
    assert_eq!(exposed(&fresh.dir), Vec::<String>::new());
}

#[test]
fn a_data_dir_open_to_group_or_other_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let l = Lattice::init();
    l.run(&["put", "k", "v"]).ok();
    let dir = l.dir.display().to_string();
    for mode in [0o750, 0o701, 0o755] {
        std::fs::set_permissions(&l.dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let line = format!("data dir {dir} is accessible by group/other; run chmod 700 {dir}");
        l.run(&["get", "k"]).fails(1, &line);
        l.run(&["serve"]).fails(1, "run chmod 700");
    }
    std::fs::set_permissions(&l.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(l.run(&["get", "k"]).ok().stdout, b"v");
}
