//! Counters and sets from the command line (issue 17): `incr`/`decr` print the sum, `sadd`/`srem`
//! write one entry, `smembers` prints one member a line (sorted) or `--json`; `get` shows a
//! counter's sum, `get -v` its kind and `list` every key's; the wrong kind and an overflow exit 1 with one line.

mod common;

use common::Lattice;
use serde_json::json;

#[test]
fn counters_and_sets_on_the_command_line() {
    let l = Lattice::init();
    assert_eq!(l.run(&["incr", "hits"]).ok().out(), "1\n");
    assert_eq!(l.run(&["incr", "hits", "41"]).ok().out(), "42\n");
    assert_eq!(l.run(&["decr", "hits", "2"]).ok().out(), "40\n");
    assert_eq!(l.run(&["incr", "hits", "-5"]).ok().out(), "35\n");
    assert_eq!(l.run(&["get", "hits"]).ok().out(), "35");
    let verbose = l.run(&["get", "-v", "hits"]).ok().out();
    assert!(verbose.starts_with("counter: 35\n") && verbose.contains("(counter op)"), "{verbose}");
    let receipt = l.run(&["--json", "incr", "hits"]).ok().json();
    assert_eq!((receipt["kind"].clone(), receipt["value"].clone()), (json!("counter"), json!(36)));

    assert_eq!(l.run(&["sadd", "peers", "n2", "n1", "n3"]).ok().out(), "ok\n");
    l.run(&["srem", "peers", "n3"]).ok();
    assert_eq!(l.run(&["smembers", "peers"]).ok().out(), "n1\nn2\n");
    assert_eq!(
        l.run(&["--json", "smembers", "peers"]).ok().json(),
        json!({"key": "peers", "kind": "set", "members": ["n1", "n2"]})
    );
    l.run(&["smembers", "nothing"]).fails(1, "not found");
    l.run(&["sadd", "hits", "x"]).fails(1, "key hits holds a counter, not a set");
    l.run(&["incr", "peers"]).fails(1, "key peers holds a set, not a counter");
    l.run(&["put", "hits", "v"]).fails(1, "holds a counter, not a register");
    l.run(&["incr", "max", &i64::MAX.to_string()]).ok();
    l.run(&["incr", "max"]).fails(1, "would overflow");
    l.run(&["decr", "min", &i64::MIN.to_string()]).fails(2, "does not fit a counter delta");
    l.run_with_stdin(
        &["batch", "-"],
        b"{\"op\":\"incr\",\"key\":\"hits\",\"by\":4}\n{\"op\":\"sadd\",\"key\":\"peers\",\"member\":\"n9\"}\n",
    )
    .ok();
    assert_eq!(l.run(&["get", "hits"]).ok().out(), "40");
    assert_eq!(l.run(&["smembers", "peers"]).ok().out(), "n1\nn2\nn9\n");
    // `list` says which keys are counters and sets.
    let listed = l.run(&["list"]).ok().out();
    assert!(listed.contains("hits\t40  (counter)\n") && listed.contains("peers\t{n1, n2, n9}  (set)\n"), "{listed}");
    let items = l.run(&["--json", "list"]).ok().json()["items"].clone();
    assert!(items.as_array().unwrap().contains(&json!({"key": "hits", "kind": "counter", "value": 40})), "{items}");
}
