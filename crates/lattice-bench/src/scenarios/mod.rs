//! The scenario registry. A scenario is a name and a function from the run's [`Ctx`] to report
//! rows; adding one is a module here plus a line in [`SCENARIOS`].

pub mod compare;
pub mod entries;
pub mod fixtures;
pub mod gossip;
pub mod http;
pub mod http_batch;
pub mod http_watch;
pub mod merkle;
pub mod net_sync;
pub mod store_kv;
pub mod store_sync;

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Result, bail};

use crate::limits::Limits;
use crate::measure::Budget;
use crate::report::{Mode, Row};

/// What a scenario may use: the mode, a private directory on the measured disk, the limits
/// measured in this run (for [`Row::ratio_to`]), the time budget of one figure, and fixtures
/// that several scenarios share.
#[derive(Debug)]
pub struct Ctx {
    pub mode: Mode,
    /// A directory on the disk the fsync limit was measured on, removed after the run.
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub budget: Budget,
    /// Share of the mode's data sizes (stores, entry counts) the scenarios use: 1 in real runs,
    /// small in tests.
    pub scale: f64,
    /// The `lattice-bench` executable, which scenarios that need a child process run with a
    /// hidden subcommand (`sync.two_node`'s receiver). Set by the binary to itself; tests set
    /// the built binary.
    pub exe: Option<PathBuf>,
    pub shared: Shared,
}

impl Ctx {
    pub fn new(mode: Mode, data_dir: PathBuf, limits: Limits, budget: Budget) -> Self {
        Ctx { mode, data_dir, limits, budget, scale: 1.0, exe: None, shared: Shared::default() }
    }

    /// `quick` or `full` by mode, times [`Ctx::scale`], at least 1.
    pub fn size(&self, quick: u64, full: u64) -> u64 {
        ((self.mode.pick(quick, full) as f64 * self.scale).ceil() as u64).max(1)
    }
}

/// Fixtures expensive enough to build once per run, built by the first scenario that needs them.
#[derive(Debug, Default)]
pub struct Shared {
    /// The large multi-author stores (`store.rebuild`, `store.open_indexed`, the sender of
    /// `sync.two_node`), one per shape.
    pub big_stores: Mutex<Vec<fixtures::BigStore>>,
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
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "entries",
        about: "entry sign + encode, decode + verify (single and batch), trusted decode",
        run: entries::run,
    },
    Scenario { name: "store.put_single", about: "one writer, sequential durable puts", run: store_kv::put_single },
    Scenario {
        name: "store.put_64",
        about: "64 concurrent writer tasks, durable puts (group commit)",
        run: store_kv::put_64,
    },
    Scenario {
        name: "store.incr_64",
        about: "64 concurrent writer tasks incrementing 16 counters (group commit)",
        run: store_kv::incr_64,
    },
    Scenario { name: "store.get", about: "random gets of existing keys, 1 and 8 tasks", run: store_kv::get },
    Scenario { name: "store.list_100k", about: "paging through every key, 1000 per page", run: store_kv::list },
    Scenario {
        name: "store.ingest",
        about: "ingest_batch of pre-signed entries from many authors, 1 and 2 streams",
        run: store_sync::ingest,
    },
    Scenario {
        name: "store.open_indexed",
        about: "open of the large store after a clean close",
        run: store_sync::open_indexed,
    },
    Scenario {
        name: "store.rebuild",
        about: "open after state.db was deleted: rebuild the index from the logs",
        run: store_sync::rebuild,
    },
    Scenario {
        name: "merkle",
        about: "the Merkle tree of the large store: built from scratch, proofs made and checked",
        run: merkle::run,
    },
    Scenario {
        name: "sync.two_node",
        about: "full sync of a 16-author store between two nodes on loopback (receiver in a child process)",
        run: net_sync::run,
    },
    Scenario {
        name: "gossip.convergence",
        about: "10-node full mesh: time until a put reaches every node by gossip (p50/p99/max)",
        run: gossip::run,
    },
    Scenario {
        name: "http.api",
        about: "the HTTP API with a token: PUTs and GETs over 16 keep-alive connections",
        run: http::run,
    },
    Scenario {
        name: "http.batch",
        about: "POST /batch of 16 puts each (one entry per batch) over 16 keep-alive connections",
        run: http_batch::run,
    },
    Scenario {
        name: "http.watch",
        about: "the HTTP watch (SSE): events/s delivered to 8 clients while 16 tasks put",
        run: http_watch::run,
    },
    Scenario {
        name: "compare.iroh_docs",
        about: "iroh-docs side by side: 1-writer set_bytes vs store.put_single, sync vs sync.two_node",
        run: compare::run,
    },
];

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
