//! `lattice-bench`: measures this machine's limits, runs the benchmark scenarios, prints a
//! markdown table on stdout and, with `--json PATH`, writes the same figures as JSON.
//! Progress goes to stderr so stdout is only the report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::Parser;
use lattice_bench::limits::Limits;
use lattice_bench::measure::Budget;
use lattice_bench::report::{Mode, Report};
use lattice_bench::scenarios::{self, Ctx, SCENARIOS, net_sync};
use lattice_core::StoreId;

/// Time budget of one figure in quick mode (CI smoke: the whole run well under two minutes).
const QUICK_BUDGET: Duration = Duration::from_millis(1000);
/// Time budget of one figure in full mode.
const FULL_BUDGET: Duration = Duration::from_secs(5);

/// Lattice benchmarks: figures with units, parameters and ratios to this machine's limits.
#[derive(Parser, Debug)]
#[command(name = "lattice-bench", version)]
struct Args {
    /// Short run for CI smoke tests (about a second per figure).
    #[arg(long)]
    quick: bool,
    /// Also write the report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Directory whose disk the stores (and the fsync probe) live on; a temporary directory is
    /// made inside it and removed afterwards [default: the current directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Run only these scenarios (comma-separated); `limits` alone runs no scenario. The limits
    /// are measured on every run.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    only: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    #[command(subcommand)]
    internal: Option<Internal>,
}

/// Roles the benchmark runs itself in as a child process; not for people.
#[derive(clap::Subcommand, Debug)]
enum Internal {
    /// The receiving node of `sync.two_node`: prints its report as JSON on stdout.
    #[command(name = "__sync-receiver", hide = true)]
    SyncReceiver {
        #[arg(long)]
        peer: String,
        #[arg(long)]
        store: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        expect: u64,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever RUST_BACKTRACE says: the context chain names what failed.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    if let Some(Internal::SyncReceiver { peer, store, dir, expect }) = args.internal {
        let store = StoreId::parse(&store).with_context(|| format!("bad store id {store:?}"))?;
        let report = net_sync::receive(&net_sync::ReceiverArgs { peer, store, dir, expect })?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    if args.list {
        println!("{:<20} the machine's physical limits (always measured)", scenarios::LIMITS);
        for s in SCENARIOS {
            println!("{:<20} {}", s.name, s.about);
        }
        return Ok(());
    }
    let selected = scenarios::select(&args.only)?;
    let mode = if args.quick { Mode::Quick } else { Mode::Full };
    let budget = Budget::time(mode.pick(QUICK_BUDGET, FULL_BUDGET));
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; figures are for smoke tests only (build with --release)");
    }

    let started_at = SystemTime::now();
    let parent = args.data_dir.unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let dir = tempfile::Builder::new()
        .prefix(".lattice-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    let data_dir = std::fs::canonicalize(dir.path()).with_context(|| format!("resolving {}", dir.path().display()))?;

    eprintln!("measuring limits in {}", data_dir.display());
    let limits = Limits::measure(&data_dir, budget)?;
    let mut results = limits.rows();
    let mut ctx = Ctx::new(mode, data_dir, limits, budget);
    ctx.exe = Some(std::env::current_exe().context("locating the lattice-bench executable")?);
    for scenario in selected {
        eprintln!("running {}", scenario.name);
        results.extend((scenario.run)(&ctx).with_context(|| format!("scenario {}", scenario.name))?);
    }
    dir.close().context("removing the benchmark's temporary directory")?;

    let report = Report::new(mode, started_at, results);
    print!("{}", report.to_markdown());
    if let Some(path) = &args.json {
        write_atomically(path, report.to_json()?.as_bytes())?;
    }
    Ok(())
}

/// Writes `bytes` to `path.tmp`, then renames it over `path`, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
