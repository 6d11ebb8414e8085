//! History and time travel through the `lattice` binary (issue 19, DESIGN.md §11): `history`
//! lists every version of a key with its time, author, hash and heads; `get --at` answers as of
//! an RFC 3339 time or an HLC; bad times and counters are refused with the reason.

mod common;

use common::Lattice;

#[test]
fn history_lists_versions_and_get_at_travels_back() {
    let l = Lattice::init();
    l.run(&["put", "color", "red"]).ok();
    l.run(&["put", "color", "green"]).ok();
    l.run(&["delete", "color"]).ok();
    l.run(&["put", "color", "blue"]).ok();

    let doc = l.run(&["--json", "history", "color"]).ok().json();
    let versions = doc["versions"].as_array().unwrap();
    assert_eq!(doc["key"], "color");
    let ops: Vec<(&str, Option<&str>)> =
        versions.iter().map(|v| (v["op"].as_str().unwrap(), v["value"].as_str())).collect();
    assert_eq!(ops, [("put", Some("red")), ("put", Some("green")), ("delete", None), ("put", Some("blue"))]);
    let heads: Vec<bool> = versions.iter().map(|v| v["head"].as_bool().unwrap()).collect();
    assert_eq!(heads, [false, false, false, true]);
    for v in versions {
        assert_eq!(v["hash"].as_str().unwrap().len(), 64);
        assert_eq!(v["author"].as_str().unwrap().len(), 64);
        assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
    }

    // As of each version's HLC: its value, or nothing after the delete; before all: nothing.
    let hlc = |i: usize| versions[i]["hlc"].as_str().unwrap().to_string();
    assert_eq!(l.run(&["get", "color", "--at", &hlc(0)]).ok().out(), "red");
    assert_eq!(l.run(&["get", "color", "--at", &hlc(1)]).ok().out(), "green");
    l.run(&["get", "color", "--at", &hlc(2)]).fails(1, "not found");
    assert_eq!(l.run(&["get", "color", "--at", &hlc(3)]).ok().out(), "blue");
    l.run(&["get", "color", "--at", "1970-01-01T00:00:00Z"]).fails(1, "not found");
    // An RFC 3339 time: the version's own millisecond includes it.
    let time = versions[1]["time"].as_str().unwrap();
    let at = l.run(&["--json", "get", "color", "--at", time]).ok().json();
    assert!(at["value"] == "green" || at["value"] == "red", "{at}");
    assert_eq!(l.run(&["get", "color", "--at", "2999-01-01T00:00:00+02:00"]).ok().out(), "blue");

    let text = l.run(&["history", "color"]).ok().out();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().last().unwrap().contains("put blue") && text.lines().last().unwrap().contains("head"));
    assert!(text.lines().nth(2).unwrap().contains("delete"), "{text}");

    l.run(&["get", "color", "--at", "yesterday"]).fails(2, "not a time");
    l.run(&["history", "nothing"]).fails(1, "not found");
    l.run(&["incr", "hits", "5"]).ok();
    l.run(&["get", "hits", "--at", "2999-01-01T00:00:00Z"]).fails(2, "time travel reads registers");
    let hits = l.run(&["--json", "history", "hits"]).ok().json();
    assert_eq!((hits["versions"][0]["op"].as_str(), hits["versions"][0]["by"].as_i64()), (Some("incr"), Some(5)));
}
