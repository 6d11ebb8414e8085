//! # lattice-bench
//!
//! Reproducible Lattice benchmarks. Every figure is taken in the same run as the machine's
//! physical limits (fsync rate of the data dir's disk, Ed25519 sign/verify rates, blake3 rates)
//! and reported with its unit, its parameters and its ratio to the limit that bounds it.
//!
//! The binary (`src/main.rs`) parses the command line and prints; this library holds everything
//! else so tests can drive it, and never prints.
//!
//! - [`measure`]: the timing loop every figure goes through (`Budget`, `Rate`).
//! - [`limits`]: the physical limits, one public function each, and `Limits::measure`.
//! - [`report`]: `Row`, `Report`, and their markdown and JSON renderings.
//! - [`scenarios`]: `Ctx`, the `SCENARIOS` registry, and one module per scenario.

pub mod limits;
pub mod measure;
pub mod report;
pub mod scenarios;
