//! Smoke test: the limits and every registered scenario run with a tiny budget and give
//! positive, finite figures. No timing threshold is asserted: the machine is whatever CI has.

use std::time::Duration;

use lattice_bench::limits::Limits;
use lattice_bench::measure::Budget;
use lattice_bench::report::{Mode, Row};
use lattice_bench::scenarios::{Ctx, SCENARIOS};

const TINY: Budget = Budget::time(Duration::from_millis(40));

fn assert_positive(row: &Row) {
    assert!(row.value.is_finite() && row.value > 0.0, "{} = {}", row.name, row.value);
    assert!(row.params.get("ops").and_then(|v| v.as_u64()).is_some_and(|n| n > 0), "{}: no ops", row.name);
}

#[test]
fn limits_and_scenarios_give_positive_figures() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::measure(dir.path(), TINY).unwrap();
    let rows = limits.rows();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        assert!(row.name.starts_with("limit."), "{}", row.name);
        assert_positive(row);
    }
    // The fsync probe cleans up after itself.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let mut ctx = Ctx::new(Mode::Quick, dir.path().to_path_buf(), limits, TINY);
    // Stores of a few hundred entries: the store scenarios run end to end in a debug build.
    ctx.scale = 0.01;
    // `sync.two_node` runs its receiver as a child process of the bench binary.
    ctx.exe = Some(env!("CARGO_BIN_EXE_lattice-bench").into());
    for scenario in SCENARIOS {
        let rows = (scenario.run)(&ctx).unwrap();
        assert!(!rows.is_empty(), "{} gave no rows", scenario.name);
        for row in &rows {
            assert_positive(row);
            if let Some(limit) = &row.limit_name {
                assert!(ctx.limits.rows().iter().any(|l| &l.name == limit), "{}: unknown limit {limit}", row.name);
                assert!(row.ratio_to_limit.is_some_and(|r| r.is_finite() && r > 0.0), "{}", row.name);
            }
        }
    }
}
