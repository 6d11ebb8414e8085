//! The sync side of a store (`SyncStore`) and opening large stores:
//!
//! - `store.ingest` / `store.ingest_2`: `ingest_batch` of pre-signed entries from many authors
//!   in batches of [`INGEST_BATCH`], from 1 stream and from 2 concurrent streams (disjoint
//!   authors), vs `limit.ed25519_verify_batch`. Params split the time: `verify_per_sec` is
//!   `VerifiedEntry::decode_batch` alone on the same batches, split across the cores as
//!   `ingest_batch` does, `apply_per_sec` what the rest (the actor's apply + commit) runs at in
//!   the 1-stream figure.
//! - `store.rebuild`: the large store (many authors, filled through `ingest_batch`) is closed,
//!   its `state.db` deleted, and `StoreHandle::open` timed: the index is rebuilt from the logs.
//!   Runs after `store.open_indexed`, which opens the same store as it was built.
//!   Compared to `limit.blake3_small` (hashing each record is the least replay must do);
//!   `log_scan_per_sec` is reading and decoding every log record alone (`missing_entries` from
//!   nothing), so the rest of the time is the index.
//! - `store.open_indexed`: opening the large store after a clean close: no replay expected.
//!
//! Both large-store rows carry `build_per_sec`: signing (2 threads) and ingesting the store,
//! pipelined.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lattice_core::{StoreId, SyncState, VerifiedEntry};
use lattice_store::{StoreHandle, SyncStore};

use super::Ctx;
use super::fixtures::{
    Signing, VALUE_BYTES, big_store, close, ingest_applied, open, runtime, scratch_dir, sign_batches,
};
use crate::measure::Rate;
use crate::report::Row;

/// Entries per `ingest_batch` call.
pub const INGEST_BATCH: usize = 4000;
/// Rebuild rate the store aims for (entries/s).
pub const REBUILD_TARGET: f64 = 200_000.0;

/// Authors of `store.ingest`.
pub const INGEST_AUTHORS: usize = 40;
/// Entries per author of `store.ingest` (quick, full): 20,000 and 200,000 entries.
pub const INGEST_PER_AUTHOR: (u64, u64) = (500, 5_000);
/// Authors of the large store.
pub const BIG_AUTHORS: usize = 16;
/// Entries per author of the large store (quick, full): 50,000 and 1,000,000 entries.
pub const BIG_PER_AUTHOR: (u64, u64) = (3_125, 62_500);
/// Timed opens of `store.open_indexed` (quick, full).
pub const OPENS: (u64, u64) = (3, 10);

/// The shape of the large store of this run.
pub(super) fn big_spec(ctx: &Ctx) -> Signing {
    Signing {
        store: StoreId::new_random(),
        authors: BIG_AUTHORS,
        per_author: ctx.size(BIG_PER_AUTHOR.0, BIG_PER_AUTHOR.1),
        batch: INGEST_BATCH,
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

pub fn ingest(ctx: &Ctx) -> Result<Vec<Row>> {
    let spec = Signing {
        store: StoreId::new_random(),
        authors: INGEST_AUTHORS,
        per_author: ctx.size(INGEST_PER_AUTHOR.0, INGEST_PER_AUTHOR.1),
        batch: INGEST_BATCH,
    };
    let mut batches: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
    sign_batches(spec, |thread, batch| {
        batches.push((thread, batch));
        Ok(())
    })?;
    let n = spec.total();
    let entry_bytes = batches.iter().flat_map(|(_, b)| b).map(Vec::len).sum::<usize>() as u64 / n.max(1);

    // Signature verification alone, as `ingest_batch` runs it: each batch split in one chunk per
    // core, each chunk one `decode_batch` on its own thread.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    for (_, batch) in &batches {
        let chunk = batch.len().div_ceil(cores).max(1);
        let valid = std::thread::scope(|scope| {
            let parts: Vec<_> = batch
                .chunks(chunk)
                .map(|part| scope.spawn(move || VerifiedEntry::decode_batch(part.to_vec()).iter().all(Result::is_ok)))
                .collect();
            parts.into_iter().all(|p| p.join().unwrap_or(false))
        });
        ensure!(valid, "a pre-signed entry failed to verify");
    }
    let verify = started.elapsed();

    let rt = runtime(2)?;
    // One stream: the batches one after the other, as one sync session sends them.
    let dir = scratch_dir(ctx, "ingest-1")?;
    let store = open(dir.path(), spec.store)?;
    let started = Instant::now();
    rt.block_on(async {
        for (_, batch) in batches.clone() {
            ingest_applied(&store, batch).await?;
        }
        anyhow::Ok(())
    })?;
    let one = Rate { ops: n, elapsed: started.elapsed() };
    close(&rt, store)?;
    drop(dir);

    // Two streams: each signing thread's batches (disjoint authors) in order, concurrently.
    let dir = scratch_dir(ctx, "ingest-2")?;
    let store = open(dir.path(), spec.store)?;
    let started = Instant::now();
    rt.block_on(async {
        let mut streams = tokio::task::JoinSet::new();
        for stream in 0..2 {
            let mine: Vec<Vec<Vec<u8>>> =
                batches.iter().filter(|(t, _)| t % 2 == stream).map(|(_, b)| b.clone()).collect();
            let store = store.clone();
            streams.spawn(async move {
                for batch in mine {
                    ingest_applied(&store, batch).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = streams.join_next().await {
            done.context("an ingest stream panicked")??;
        }
        anyhow::Ok(())
    })?;
    let two = Rate { ops: n, elapsed: started.elapsed() };
    close(&rt, store)?;

    let verify_per_sec = n as f64 / secs(verify);
    let apply = one.elapsed.saturating_sub(verify);
    let shaped = |row: Row| {
        row.param("authors", spec.authors)
            .param("batch", INGEST_BATCH)
            .param("entry_bytes", entry_bytes)
            .param("value_bytes", VALUE_BYTES)
            .param("verify_per_sec", verify_per_sec.round())
            .param("verify_threads", cores)
    };
    Ok(vec![
        shaped(Row::from_rate("store.ingest", "entry/s", one))
            .param("streams", 1)
            .param("apply_per_sec", if apply.is_zero() { 0.0 } else { (n as f64 / secs(apply)).round() })
            .ratio_to(&ctx.limits.verify_batch),
        shaped(Row::from_rate("store.ingest_2", "entry/s", two)).param("streams", 2).ratio_to(&ctx.limits.verify_batch),
    ])
}

pub fn rebuild(ctx: &Ctx) -> Result<Vec<Row>> {
    let big = big_store(ctx, big_spec(ctx))?;
    let n = big.spec.total();
    let state = big.dir.join("state.db");
    std::fs::remove_file(&state).with_context(|| format!("removing {}", state.display()))?;

    // Until the index is whole: the open replays the logs, and the status reads the Merkle root,
    // which merges the leaves still waiting (a rebuild is not done before its tree is).
    let rt = runtime(1)?;
    let started = Instant::now();
    let store = open(&big.dir, big.store_id)?;
    let entries = rt.block_on(store.status())?.entries;
    let rate = Rate { ops: n, elapsed: started.elapsed() };
    ensure!(entries == n, "rebuilt {entries} entries of {n}");
    // Reading and decoding every record, merged across authors, without touching the index.
    let missing = rt.block_on(store.missing_entries(SyncState::default())).context("missing_entries")?;
    let started = Instant::now();
    let mut scanned = 0u64;
    for entry in missing {
        entry.context("reading the logs")?;
        scanned += 1;
    }
    let scan = started.elapsed();
    ensure!(scanned == n, "read {scanned} entries of {n} from the logs");
    close(&rt, store)?;

    let per_sec = rate.per_sec();
    Ok(vec![
        Row::from_rate("store.rebuild", "entry/s", rate)
            .param("entries", n)
            .param("authors", big.spec.authors)
            .param("value_bytes", VALUE_BYTES)
            .param("rebuild_ms", (secs(rate.elapsed) * 1000.0).round())
            .param("log_scan_per_sec", (n as f64 / secs(scan)).round())
            .param("build_per_sec", big.build.per_sec().round())
            .param("target_entry_per_sec", REBUILD_TARGET)
            .param("meets_target", per_sec >= REBUILD_TARGET)
            .ratio_to(&ctx.limits.blake3_small),
    ])
}

pub fn open_indexed(ctx: &Ctx) -> Result<Vec<Row>> {
    let big = big_store(ctx, big_spec(ctx))?;
    let n = big.spec.total();
    let rt = runtime(1)?;
    let mut times = Vec::new();
    for _ in 0..ctx.size(OPENS.0, OPENS.1) {
        let started = Instant::now();
        let store: StoreHandle = open(&big.dir, big.store_id)?;
        times.push(started.elapsed());
        let entries = rt.block_on(store.status())?.entries;
        ensure!(entries == n, "reopened with {entries} entries of {n}");
        close(&rt, store)?;
    }
    let ms = |d: &Duration| (secs(*d) * 1000.0 * 100.0).round() / 100.0;
    let mean = times.iter().map(ms).sum::<f64>() / times.len() as f64;
    Ok(vec![
        Row::new("store.open_indexed", (mean * 100.0).round() / 100.0, "ms")
            .param("entries", n)
            .param("authors", big.spec.authors)
            .param("ops", times.len())
            .param("build_per_sec", big.build.per_sec().round())
            .param("min_ms", times.iter().map(ms).fold(f64::INFINITY, f64::min))
            .param("max_ms", times.iter().map(ms).fold(0.0, f64::max)),
    ])
}
