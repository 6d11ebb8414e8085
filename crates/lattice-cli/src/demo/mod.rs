//! `lattice demo`: three real nodes on 127.0.0.1 in this process, each with its own data dir,
//! and what they do, narrated with the figures measured as it runs: gossip between them, a
//! write to one key on two partitioned nodes and its resolution, an offline node catching up,
//! a counter and a set written on both sides of a partition, the HTTP API with a token, and all three converged. `--json` prints one summary document.
//!
//! - `cluster`: the three nodes (init, invite, join; offline and back on the same port).
//! - `steps`: what each step does and measures, as a [`steps::Report`].
//! - `http`: a minimal HTTP/1.1 client for the demo's requests to its own API.
//!
//! The data dirs live in a temporary directory removed at the end, or in `--keep DIR`.

mod cluster;
mod http;
mod steps;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use futures::TryFutureExt;
use serde_json::{Value, json};

use cluster::Cluster;

use crate::render::style;
use steps::Report;

/// Runs the demo; returns the exit code (0: every step did what it says).
pub async fn run(keep: Option<PathBuf>, json: bool) -> i32 {
    let place = match Place::new(keep) {
        Ok(place) => place,
        Err(e) => {
            style::eprint_line(&format!("error: {e:#}"));
            return 2;
        }
    };
    let palette = style::Palette::new(style::stdout_color());
    let mut narrator = Narrator { json, palette, steps: Vec::new(), started: Instant::now() };
    if !json {
        println!(
            "Lattice demo: three nodes on 127.0.0.1, each with its own data dir in {} ({})\n",
            place.path().display(),
            if place.kept() { "kept afterwards" } else { "removed at the end" }
        );
    }
    let outcome = narrate(&mut narrator, place.path()).await;
    let ok = outcome.is_ok();
    if let Err(e) = &outcome {
        style::eprint_line(&format!("error: {e:#}"));
    }
    if json {
        let seconds = narrator.started.elapsed().as_secs_f64();
        let summary = json!({"ok": ok, "seconds": seconds, "data_dir": place.path(), "kept": place.kept(),
                             "steps": narrator.steps});
        println!("{summary}");
    } else if ok {
        println!("All steps passed in {:.1} s.", narrator.started.elapsed().as_secs_f64());
        if place.kept() {
            let a = place.path().join("a");
            println!("The nodes' data dirs are kept: try `lattice --data-dir {} status`.", a.display());
        }
        println!("Next: `lattice serve` runs a node of your own; README.md has a five-minute tour.");
    }
    if let Err(e) = place.finish() {
        style::eprint_line(&format!("warning: {e:#}"));
    }
    if ok { 0 } else { 1 }
}

/// Every step, in order, on a mesh started in `root`; the mesh is stopped however they end.
async fn narrate(narrator: &mut Narrator, root: &Path) -> anyhow::Result<()> {
    let mut cluster = narrator
        .step("mesh", async {
            let cluster = Cluster::start(root).await?;
            let report = steps::mesh(&cluster);
            Ok((cluster, report))
        })
        .await?;
    let outcome = async {
        narrator.step("gossip", steps::gossip(&cluster).map_ok(|r| ((), r))).await?;
        narrator.step("conflict", steps::conflict(&mut cluster).map_ok(|r| ((), r))).await?;
        narrator.step("catch-up", steps::catch_up(&mut cluster).map_ok(|r| ((), r))).await?;
        narrator.step("kinds", steps::kinds(&mut cluster).map_ok(|r| ((), r))).await?;
        narrator.step("http", steps::http(&cluster).map_ok(|r| ((), r))).await?;
        narrator.step("converged", steps::converged(&cluster).map_ok(|r| ((), r))).await
    }
    .await;
    let stopped = cluster.shutdown().await.context("stopping the nodes");
    outcome.and(stopped)
}

/// Prints each step as it completes (or gathers them for `--json`).
struct Narrator {
    json: bool,
    /// Step names in bold on a terminal.
    palette: style::Palette,
    steps: Vec<Value>,
    started: Instant,
}

impl Narrator {
    /// Runs one step, timing it; a failed step is reported and ends the demo.
    async fn step<T>(
        &mut self,
        name: &'static str,
        step: impl Future<Output = anyhow::Result<(T, Report)>>,
    ) -> anyhow::Result<T> {
        let started = Instant::now();
        let outcome = step.await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match outcome {
            Ok((value, report)) => {
                if !self.json {
                    let title = self.palette.bold(&format!("{}. {name}:", self.steps.len() + 1));
                    println!("{title} {}  ({ms:.0} ms)", report.summary);
                    for line in &report.details {
                        println!("     {line}");
                    }
                }
                let mut entry = json!({"step": name, "ok": true, "ms": ms, "summary": report.summary});
                if let (Value::Object(entry), Value::Object(figures)) = (&mut entry, report.figures) {
                    entry.extend(figures);
                }
                self.steps.push(entry);
                Ok(value)
            }
            Err(e) => {
                self.steps.push(json!({"step": name, "ok": false, "ms": ms, "error": format!("{e:#}")}));
                Err(e.context(format!("demo step `{name}` failed")))
            }
        }
    }
}

/// Where the data dirs go: a temporary directory, or the one `--keep` names.
enum Place {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Place {
    fn new(keep: Option<PathBuf>) -> anyhow::Result<Place> {
        let Some(dir) = keep else {
            let temp = tempfile::Builder::new().prefix("lattice-demo-").tempdir().context("a temporary directory")?;
            return Ok(Place::Temporary(temp));
        };
        match std::fs::read_dir(&dir).map(|mut entries| entries.next().is_none()) {
            Ok(false) => bail!("--keep {}: not empty (give a new or empty directory)", dir.display()),
            Ok(true) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir).with_context(|| format!("--keep {}", dir.display()))?
            }
            Err(e) => return Err(e).with_context(|| format!("--keep {}", dir.display())),
        }
        Ok(Place::Kept(dir))
    }

    fn path(&self) -> &Path {
        match self {
            Place::Temporary(temp) => temp.path(),
            Place::Kept(dir) => dir,
        }
    }

    fn kept(&self) -> bool {
        matches!(self, Place::Kept(_))
    }

    /// Removes a temporary directory (a kept one stays).
    fn finish(self) -> anyhow::Result<()> {
        match self {
            Place::Temporary(temp) => temp.close().context("removing the demo's temporary directory"),
            Place::Kept(_) => Ok(()),
        }
    }
}
