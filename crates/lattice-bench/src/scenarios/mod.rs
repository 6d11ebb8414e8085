//! The scenario registry. A scenario is a name and a function from the run's [`Ctx`] to report
//! rows; adding one is a module here plus a line in [`SCENARIOS`].

pub mod entries;

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::limits::Limits;
use crate::measure::Budget;
use crate::report::{Mode, Row};

/// What a scenario may use: the mode, a private directory on the measured disk, the limits
/// measured in this run (for [`Row::ratio_to`]) and the time budget of one figure.
#[derive(Debug)]
pub struct Ctx {
    pub mode: Mode,
    /// A directory on the disk the fsync limit was measured on, removed after the run.
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub budget: Budget,
}

/// One registered scenario.
#[derive(Debug)]
pub struct Scenario {
    /// What `--only` selects it by.
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&Ctx) -> Result<Vec<Row>>,
}

/// The name `--only` accepts for the limit rows alone. Limits are measured on every run, since
/// every ratio depends on them.
pub const LIMITS: &str = "limits";

/// Every scenario, in the order they run.
pub const SCENARIOS: &[Scenario] = &[Scenario {
    name: "entries",
    about: "entry sign + encode, decode + verify (single and batch), trusted decode",
    run: entries::run,
}];

/// The scenarios `only` names (all of them when `only` is empty), in registry order. Unknown
/// names are an error that lists the known ones.
pub fn select(only: &[String]) -> Result<Vec<&'static Scenario>> {
    if let Some(unknown) = only.iter().find(|n| *n != LIMITS && !SCENARIOS.iter().any(|s| s.name == *n)) {
        let known: Vec<&str> = std::iter::once(LIMITS).chain(SCENARIOS.iter().map(|s| s.name)).collect();
        bail!("unknown scenario {unknown:?}; known: {}", known.join(", "));
    }
    Ok(SCENARIOS.iter().filter(|s| only.is_empty() || only.iter().any(|n| n == s.name)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_by_name() {
        assert_eq!(select(&[]).unwrap().len(), SCENARIOS.len());
        assert!(select(&[LIMITS.to_string()]).unwrap().is_empty());
        let picked = select(&["entries".to_string()]).unwrap();
        assert_eq!(picked.iter().map(|s| s.name).collect::<Vec<_>>(), ["entries"]);
        let err = select(&["nope".to_string()]).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("entries"), "{err}");
    }

    #[test]
    fn names_are_unique() {
        for (i, s) in SCENARIOS.iter().enumerate() {
            assert_ne!(s.name, LIMITS);
            assert!(SCENARIOS[i + 1..].iter().all(|t| t.name != s.name), "duplicate {}", s.name);
        }
    }
}
