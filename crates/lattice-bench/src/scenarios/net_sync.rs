//! `sync.two_node`: a full sync of a multi-author store between two nodes on loopback.
//!
//! Node A (the sender) runs in the benchmark process and serves a large store (the shared
//! multi-author store of that size, built by ingesting pre-signed entries). Node B (the
//! receiver) runs in a child process (`lattice-bench __sync-receiver`, see [`receive`]) with an
//! empty store of the same id and times `sync_stores` with A. Running B alone in its own process
//! makes its peak RSS (`VmHWM`, read by the child when done) the receiver's and nothing else's.
//!
//! Every received entry is verified, so the figure is compared to `limit.ed25519_verify_batch`
//! (one core) and, in the params, to twice that (`ingest_batch` verifies on both cores). The CPU
//! time of both processes during the sync shows where the time goes.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use lattice_core::MemberStatus;
use lattice_core::StoreId;
use lattice_net::test_utils::{TestNode, TestNodeConfig};
use lattice_net::{NetConfig, PeerAddr};
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::fixtures::{Signing, VALUE_BYTES, big_store, close, runtime, scratch_dir};
use super::store_sync::{BIG_AUTHORS, INGEST_BATCH};
use crate::measure::Rate;
use crate::report::Row;

/// The hidden subcommand that runs the receiver.
pub const RECEIVER_COMMAND: &str = "__sync-receiver";
/// Entries per author of the synced store: 20,000 (quick) and 100,000 (full) entries.
pub const PER_AUTHOR: (u64, u64) = (1_250, 6_250);
/// Entries per author of the second, large sync of full runs: 1,000,000 entries.
pub const LARGE_PER_AUTHOR: u64 = 62_500;
/// Sync rate aimed for (entries/s).
pub const TARGET_ENTRY_PER_SEC: f64 = 100_000.0;
/// Peak RSS the receiver of 1,000,000 entries must stay under (MB, 10^6 bytes).
pub const TARGET_RSS_MB: f64 = 150.0;

/// What the receiver is told (command-line arguments of [`RECEIVER_COMMAND`]).
#[derive(Clone, Debug)]
pub struct ReceiverArgs {
    /// The sender, `NODE_ID@HOST:PORT`.
    pub peer: String,
    pub store: StoreId,
    /// Where the receiver's (empty) store is created.
    pub dir: PathBuf,
    /// Entries the sync must bring.
    pub expect: u64,
}

impl ReceiverArgs {
    fn to_args(&self) -> Vec<String> {
        vec![
            RECEIVER_COMMAND.to_string(),
            "--peer".into(),
            self.peer.clone(),
            "--store".into(),
            self.store.to_string(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--expect".into(),
            self.expect.to_string(),
        ]
    }
}

/// What the receiver reports, as one JSON object on its stdout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceiverReport {
    pub applied: u64,
    /// `sync_stores` alone: connect, exchange of states, every entry received and ingested.
    pub seconds: f64,
    /// `VmHWM` of the receiver process at the end (kB).
    pub peak_rss_kb: u64,
    /// `VmHWM` just before the sync started (kB): the process with its empty store and endpoint.
    pub rss_before_kb: u64,
    /// CPU time of the receiver process during the sync (user + system, seconds).
    pub cpu_seconds: f64,
}

/// The receiver: opens an empty store, syncs it with the sender, and reports.
pub fn receive(args: &ReceiverArgs) -> Result<ReceiverReport> {
    let peer: PeerAddr = args.peer.parse().with_context(|| format!("bad sender address {:?}", args.peer))?;
    let rt = runtime(2)?;
    let node = TestNode::with_config(TestNodeConfig::default())?;
    node.set_peer(peer.id, MemberStatus::Active);
    let store = node.open_store_at(&args.dir, args.store)?;
    let (report, result) = rt.block_on(async {
        let server = node.serve(NetConfig::loopback()).await?;
        let rss_before_kb = peak_rss_kb()?;
        let cpu = cpu_seconds();
        let started = Instant::now();
        let result = server.sync_stores(&peer, vec![store.clone()], None).await;
        // Until the receiver's index is whole: its Merkle root current (the status merges the
        // leaves still waiting), as the next sync session or attestation would need it.
        let entries = store.status().await.map(|s| s.entries);
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = cpu_seconds() - cpu;
        server.shutdown().await;
        let outcome = match result.context("syncing with the sender")?.pop() {
            Some((_, outcome)) => outcome.context("the sync session failed")?,
            None => bail!("sync_stores ran no session"),
        };
        let entries = entries?;
        anyhow::Ok((
            ReceiverReport { applied: outcome.applied, seconds, peak_rss_kb: 0, rss_before_kb, cpu_seconds },
            entries,
        ))
    })?;
    close(&rt, store)?;
    ensure!(result == args.expect, "the receiver holds {result} entries after the sync, expected {}", args.expect);
    Ok(ReceiverReport { peak_rss_kb: peak_rss_kb()?, ..report })
}

/// This process's peak resident set (`VmHWM` of `/proc/self/status`), in kB.
pub fn peak_rss_kb() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

/// CPU time this process has used so far (user + system, all threads), in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

pub fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut rows = run_size(ctx, "sync.two_node", ctx.size(PER_AUTHOR.0, PER_AUTHOR.1))?;
    if ctx.mode == crate::report::Mode::Full {
        rows.extend(run_size(ctx, "sync.two_node_1m", ctx.size(LARGE_PER_AUTHOR, LARGE_PER_AUTHOR))?);
    }
    Ok(rows)
}

/// One sync of a store of [`BIG_AUTHORS`] × `per_author` entries: the rate row and the receiver's
/// peak RSS row.
pub fn run_size(ctx: &Ctx, name: &str, per_author: u64) -> Result<Vec<Row>> {
    let exe = ctx.exe.as_ref().context("sync.two_node runs its receiver as a child process: no executable set")?;
    let spec = Signing { store: StoreId::new_random(), authors: BIG_AUTHORS, per_author, batch: INGEST_BATCH };
    let big = big_store(ctx, spec)?;
    let n = big.spec.total();

    let rt = runtime(2)?;
    let node = TestNode::with_config(TestNodeConfig {
        default_status: Some(MemberStatus::Active),
        ..TestNodeConfig::default()
    })?;
    let store = node.open_store_at(&big.dir, big.store_id)?;
    let server = rt.block_on(node.serve(NetConfig::loopback()))?;
    let receiver_dir = scratch_dir(ctx, "sync-receiver")?;
    let args = ReceiverArgs {
        peer: server.peer_addr().to_string(),
        store: big.store_id,
        dir: receiver_dir.path().join("store"),
        expect: n,
    };
    let cpu = cpu_seconds();
    let output = Command::new(exe)
        .args(args.to_args())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {RECEIVER_COMMAND}", exe.display()))?;
    let sender_cpu = cpu_seconds() - cpu;
    rt.block_on(server.shutdown());
    close(&rt, store)?;
    ensure!(output.status.success(), "the sync receiver failed ({})", output.status);
    let report: ReceiverReport =
        serde_json::from_slice(&output.stdout).context("reading the sync receiver's report")?;
    ensure!(report.applied == n, "the receiver applied {} entries of {n}", report.applied);

    let rate = Rate { ops: n, elapsed: std::time::Duration::from_secs_f64(report.seconds) };
    let per_sec = rate.per_sec();
    let verify_2 = 2.0 * ctx.limits.verify_batch.value;
    let mb = |kb: u64| (kb as f64 * 1024.0 / 1e6 * 10.0).round() / 10.0;
    let peak_mb = mb(report.peak_rss_kb);
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    let sync_row = Row::from_rate(name, "entry/s", rate)
        .param("entries", n)
        .param("authors", big.spec.authors)
        .param("value_bytes", VALUE_BYTES)
        .param("receiver_peak_rss_mb", peak_mb)
        .param("receiver_cpu_s", round2(report.cpu_seconds))
        .param("receiver_cores_busy", round2(report.cpu_seconds / report.seconds.max(1e-9)))
        .param("sender_cpu_s", round2(sender_cpu))
        .param(
            "ratio_to_2x_verify_batch",
            if verify_2 > 0.0 { (per_sec / verify_2 * 1000.0).round() / 1000.0 } else { 0.0 },
        )
        .param("target_entry_per_sec", TARGET_ENTRY_PER_SEC)
        .param("meets_target", per_sec >= TARGET_ENTRY_PER_SEC)
        .ratio_to(&ctx.limits.verify_batch);
    let rss_row = Row::new(format!("{name}.receiver_rss"), peak_mb, "MB")
        .param("ops", n)
        .param("entries", n)
        .param("rss_before_sync_mb", mb(report.rss_before_kb))
        .param("what", "VmHWM of the receiver process");
    let rss_row = if n >= 1_000_000 {
        rss_row.param("target_mb", TARGET_RSS_MB).param("meets_target", peak_mb < TARGET_RSS_MB)
    } else {
        rss_row
    };
    Ok(vec![sync_row, rss_row])
}
