//! The report model and its two renderings: a markdown table for people, JSON for scripts.
//!
//! A [`Row`] is one figure: a value with its unit and the parameters it was taken with, and, when
//! a physical limit of the machine bounds it, the name of that limit's row and the ratio to it.
//! A [`Report`] is one run: the rows plus what is needed to compare runs (version, mode, build,
//! machine, start time).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::measure::Rate;

/// One figure of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// The parameters the figure was taken with. Always a JSON object.
    pub params: Map<String, Value>,
    /// Name of the row holding the limit this figure is compared to.
    pub limit_name: Option<String>,
    /// `value / limit value`: the share of the machine's limit this figure reaches.
    pub ratio_to_limit: Option<f64>,
}

impl Row {
    pub fn new(name: impl Into<String>, value: f64, unit: impl Into<String>) -> Self {
        Row { name: name.into(), value, unit: unit.into(), params: Map::new(), limit_name: None, ratio_to_limit: None }
    }

    /// A rate in operations per second, with the operation count and the time it took as params.
    pub fn from_rate(name: impl Into<String>, unit: impl Into<String>, rate: Rate) -> Self {
        Row::new(name, rate.per_sec(), unit).param("ops", rate.ops).param("seconds", round3(rate.elapsed.as_secs_f64()))
    }

    /// Adds one parameter.
    pub fn param(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.params.insert(key.to_string(), value.into());
        self
    }

    /// Compares this figure to `limit` (a row of [`crate::limits::Limits`]).
    pub fn ratio_to(mut self, limit: &Row) -> Self {
        self.limit_name = Some(limit.name.clone());
        self.ratio_to_limit = (limit.value > 0.0).then(|| self.value / limit.value);
        self
    }
}

/// Quick runs are CI smoke tests; full runs are the figures to quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Quick,
    Full,
}

impl Mode {
    /// `quick` in quick mode, `full` in full mode.
    pub fn pick<T>(self, quick: T, full: T) -> T {
        match self {
            Mode::Quick => quick,
            Mode::Full => full,
        }
    }
}

/// The machine the figures describe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Cores this process may use (cgroup and affinity limits included).
    pub cores: usize,
    pub os: String,
    /// `model name` from `/proc/cpuinfo`, when there is one.
    pub cpu_model: Option<String>,
}

impl Machine {
    pub fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut os = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
        if let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
            let _ = write!(os, " (kernel {})", release.trim());
        }
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|text| cpu_model(&text));
        Machine { cores, os, cpu_model }
    }
}

/// The first `model name` line of a `/proc/cpuinfo` text.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// One run of the benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub lattice_version: String,
    pub mode: Mode,
    /// `release` or `debug`: debug builds are for smoke tests, not for figures.
    pub build: String,
    pub machine: Machine,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub results: Vec<Row>,
}

impl Report {
    /// A report of this build on this machine, started at `started_at`.
    pub fn new(mode: Mode, started_at: SystemTime, results: Vec<Row>) -> Self {
        Report {
            lattice_version: env!("CARGO_PKG_VERSION").to_string(),
            mode,
            build: if cfg!(debug_assertions) { "debug" } else { "release" }.to_string(),
            machine: Machine::detect(),
            started_at: rfc3339_utc(started_at),
            results,
        }
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// A heading naming the run and the machine, then one table row per figure.
    pub fn to_markdown(&self) -> String {
        let mode = match self.mode {
            Mode::Quick => "quick",
            Mode::Full => "full",
        };
        let m = &self.machine;
        let mut out = format!("# lattice-bench {} ({mode} mode, {} build)\n\n", self.lattice_version, self.build);
        let cpu = m.cpu_model.as_deref().unwrap_or("unknown CPU");
        let _ = writeln!(out, "Machine: {} cores, {cpu}, {}. Started {}.\n", m.cores, m.os, self.started_at);
        out.push_str("| scenario | value | unit | ratio to limit | params |\n");
        out.push_str("|---|---:|---|---|---|\n");
        for row in &self.results {
            let ratio = match (row.ratio_to_limit, &row.limit_name) {
                (Some(r), Some(limit)) => format!("{r:.3} of {limit}"),
                (None, Some(limit)) => format!("n/a ({limit} is 0)"),
                _ => "-".to_string(),
            };
            let params = row
                .params
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&row.name),
                format_value(row.value),
                cell(&row.unit),
                cell(&ratio),
                cell(&params)
            );
        }
        out
    }
}

/// Escapes the one character that would break a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Three significant figures for small values, whole numbers from 100 up.
fn format_value(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 || a == 0.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.2e}"),
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `time` as RFC 3339 in UTC with millisecond precision, e.g. `2025-01-31T12:00:00.000Z`
/// (the node's own formatter, so every timestamp Lattice prints looks the same).
pub fn rfc3339_utc(time: SystemTime) -> String {
    let ms = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    lattice_node::rfc3339(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56 UTC.
        assert_eq!(rfc3339_utc(UNIX_EPOCH + Duration::from_secs(951_827_696)), "2000-02-29T12:34:56.000Z");
        assert_eq!(rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_767_225_599)), "2025-12-31T23:59:59.000Z");
    }

    #[test]
    fn cpu_model_from_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n";
        assert_eq!(cpu_model(text).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("Processor\t: ARMv8\n"), None);
    }

    #[test]
    fn values_keep_three_significant_figures() {
        assert_eq!(format_value(12345.6), "12346");
        assert_eq!(format_value(42.42), "42.4");
        assert_eq!(format_value(1.234), "1.23");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(0.001234), "1.23e-3");
    }

    #[test]
    fn ratio_to_a_zero_limit_is_absent() {
        let limit = Row::new("limit.x", 0.0, "op/s");
        let row = Row::new("x", 5.0, "op/s").ratio_to(&limit);
        assert_eq!(row.limit_name.as_deref(), Some("limit.x"));
        assert_eq!(row.ratio_to_limit, None);
    }
}
