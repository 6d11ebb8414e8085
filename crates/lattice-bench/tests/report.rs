//! The report's two renderings, on fake rows: the JSON document's shape and the markdown table.

use std::time::{Duration, UNIX_EPOCH};

use lattice_bench::report::{Mode, Report, Row};
use serde_json::Value;

fn fake_report() -> Report {
    let limit = Row::new("limit.ed25519_verify", 20_000.0, "verify/s").param("message_bytes", 150);
    let figure =
        Row::new("entry.decode_verify", 15_000.0, "entry/s").param("pool", 256).param("note", "a|b").ratio_to(&limit);
    Report::new(Mode::Quick, UNIX_EPOCH + Duration::from_secs(1_767_225_599), vec![limit, figure])
}

#[test]
fn json_has_the_documented_shape() {
    let report = fake_report();
    let doc: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();

    assert_eq!(doc["lattice_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["mode"], "quick");
    assert_eq!(doc["started_at"], "2025-12-31T23:59:59.000Z");
    let machine = &doc["machine"];
    assert!(machine["cores"].as_u64().unwrap() >= 1);
    assert!(machine["os"].is_string());
    assert!(machine["cpu_model"].is_string() || machine["cpu_model"].is_null());

    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for row in results {
        let keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
        for key in ["name", "value", "unit", "params", "limit_name", "ratio_to_limit"] {
            assert!(keys.contains(&key), "row lacks {key}: {row}");
        }
        assert!(row["params"].is_object());
    }
    assert!(results[0]["limit_name"].is_null() && results[0]["ratio_to_limit"].is_null());
    assert_eq!(results[1]["name"], "entry.decode_verify");
    assert_eq!(results[1]["value"], 15_000.0);
    assert_eq!(results[1]["unit"], "entry/s");
    assert_eq!(results[1]["params"]["pool"], 256);
    assert_eq!(results[1]["limit_name"], "limit.ed25519_verify");
    assert_eq!(results[1]["ratio_to_limit"], 0.75);

    // The JSON reads back into the same report.
    let again: Report = serde_json::from_value(doc).unwrap();
    assert_eq!(again, report);
}

#[test]
fn markdown_names_the_cores_and_has_one_line_per_row() {
    let report = fake_report();
    let md = report.to_markdown();
    let cores = report.machine.cores;

    let header = md.lines().take_while(|l| !l.starts_with('|')).collect::<Vec<_>>().join("\n");
    assert!(header.contains("quick mode"), "{header}");
    assert!(header.contains(&format!("{cores} cores")), "{header}");
    assert!(header.contains("2025-12-31T23:59:59.000Z"), "{header}");

    let table: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table[0], "| scenario | value | unit | ratio to limit | params |");
    assert_eq!(table[1], "|---|---:|---|---|---|");
    assert_eq!(table.len(), 2 + report.results.len());
    assert_eq!(table[2], "| limit.ed25519_verify | 20000 | verify/s | - | message_bytes=150 |");
    // A `|` inside a cell is escaped, so every row keeps five columns.
    assert_eq!(
        table[3],
        "| entry.decode_verify | 15000 | entry/s | 0.750 of limit.ed25519_verify | note=a\\|b, pool=256 |"
    );
}
