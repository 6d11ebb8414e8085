//! The application API of a store (`KvStore`), on a fresh store in the data dir:
//!
//! - `store.put_single`: one writer, sequential durable puts, vs `limit.fsync` (each put waits
//!   for its own log fsync, so the fsync rate bounds it).
//! - `store.put_64`: 64 concurrent writer tasks; group commit folds queued puts into one fsync.
//!   The ratio to `limit.fsync` is puts per fsync the disk allows; `avg_batch` counts the puts of
//!   each group commit exactly (from `subscribe_commits`).
//! - `store.incr_64`: as `store.put_64`, each writer incrementing one of 16 counters (each
//!   increment one entry, like a put; issue 17's target is the same 20,000/s).
//! - `store.get` / `store.get_8`: random gets of existing keys from 1 and 8 tasks.
//! - `store.list_100k`: paging through every key with `list(b"", after, 1000)`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lattice_core::StoreId;
use lattice_store::SyncStore;
use lattice_store::{KvStore, StoreHandle};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;

use super::Ctx;
use super::fixtures::{VALUE_BYTES, close, fill_keys, kv_key, open, runtime, scratch_dir, value};
use crate::measure::{Rate, measure};
use crate::report::Row;

/// Puts per timed step of `store.put_single` (the clock is read once per step).
const PUTS_PER_STEP: u64 = 8;
/// Concurrent writers of `store.put_64`.
pub const WRITERS: u64 = 64;
/// Counters the writers of `store.incr_64` share.
pub const COUNTERS: u64 = 16;
/// Untimed warm-up of `store.put_64` before its counters are read.
const PUT_64_WARM_UP: Duration = Duration::from_millis(200);
/// Gets per task and timed step of `store.get`.
const GETS_PER_STEP: u64 = 64;
/// Concurrent readers of `store.get_8`.
pub const READERS: u64 = 8;
/// Page size of `store.list_100k`.
pub const PAGE: usize = 1000;

/// Keys in the store `store.get` reads (quick, full).
pub const GET_KEYS: (u64, u64) = (10_000, 100_000);
/// Keys in the store `store.list_100k` pages through (quick, full).
pub const LIST_KEYS: (u64, u64) = (20_000, 100_000);

fn put_row(row: Row) -> Row {
    row.param("value_bytes", VALUE_BYTES).param("ops_per_entry", 1)
}

pub fn put_single(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = scratch_dir(ctx, "put-single")?;
    let rt = runtime(1)?;
    let store = open(dir.path(), StoreId::new_random())?;
    let mut i = 0u64;
    let rate = measure(ctx.budget, || {
        rt.block_on(async {
            for _ in 0..PUTS_PER_STEP {
                store.put(kv_key(i), value(i)).await.context("put")?;
                i += 1;
            }
            anyhow::Ok(PUTS_PER_STEP)
        })
    })?;
    close(&rt, store)?;
    Ok(vec![put_row(Row::from_rate("store.put_single", "put/s", rate)).param("writers", 1).ratio_to(&ctx.limits.fsync)])
}

pub fn put_64(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = scratch_dir(ctx, "put-64")?;
    let rt = runtime(2)?;
    let store = open(dir.path(), StoreId::new_random())?;
    let (rate, commits) = rt.block_on(concurrent_writes(&store, ctx.budget.time, Write::Put))?;
    close(&rt, store)?;
    Ok(vec![concurrent_row("store.put_64", "put/s", rate, commits).ratio_to(&ctx.limits.fsync)])
}

pub fn incr_64(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = scratch_dir(ctx, "incr-64")?;
    let rt = runtime(2)?;
    let store = open(dir.path(), StoreId::new_random())?;
    let (rate, commits) = rt.block_on(concurrent_writes(&store, ctx.budget.time, Write::Incr))?;
    let mut sum = 0i64;
    for c in 0..COUNTERS {
        if let Some(lattice_store::Value::Counter(n)) = rt.block_on(store.value(&counter_key(c)))? {
            sum += n;
        }
    }
    close(&rt, store)?;
    ensure!(sum as u64 >= rate.ops, "the counters sum to {sum}, below the {} timed increments", rate.ops);
    Ok(vec![
        concurrent_row("store.incr_64", "incr/s", rate, commits)
            .param("counters", COUNTERS)
            .ratio_to(&ctx.limits.fsync),
    ])
}

fn counter_key(c: u64) -> Vec<u8> {
    format!("counter/{c:02}").into_bytes()
}

/// What the writers of [`concurrent_writes`] write.
#[derive(Clone, Copy)]
enum Write {
    /// A put of a fresh key.
    Put,
    /// An increment of one of [`COUNTERS`] counters.
    Incr,
}

fn concurrent_row(name: &str, unit: &str, rate: Rate, commits: u64) -> Row {
    let per_sec = rate.per_sec();
    let commits_per_sec = commits as f64 / rate.elapsed.as_secs_f64().max(1e-9);
    let avg_batch = if commits > 0 { rate.ops as f64 / commits as f64 } else { 0.0 };
    put_row(Row::from_rate(name, unit, rate))
        .param("writers", WRITERS)
        .param("group_commits_per_sec", commits_per_sec.round())
        .param("avg_batch", (avg_batch * 10.0).round() / 10.0)
        .param("target_put_per_sec", 20_000)
        .param("meets_target", per_sec >= 20_000.0)
}

/// Runs [`WRITERS`] writer tasks for a warm-up, then for `time`; returns the writes of the timed
/// window and the group commits (each one log fsync) made in it.
async fn concurrent_writes(store: &StoreHandle, time: Duration, write: Write) -> Result<(Rate, u64)> {
    let puts = Arc::new(AtomicU64::new(0));
    let commits = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut committed = store.subscribe_commits();
    let counter = {
        let commits = commits.clone();
        tokio::spawn(async move {
            loop {
                match committed.recv().await {
                    Ok(c) if !c.local.is_empty() => commits.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => 0,
                    Err(RecvError::Lagged(missed)) => commits.fetch_add(missed, Ordering::Relaxed),
                    Err(RecvError::Closed) => break,
                };
            }
        })
    };
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let (store, puts, stop) = (store.clone(), puts.clone(), stop.clone());
        writers.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match write {
                    Write::Put => drop(store.put(kv_key(w << 32 | i), value(i)).await.context("put")?),
                    Write::Incr => drop(store.incr(counter_key(w % COUNTERS), 1).await.context("incr")?),
                }
                puts.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        });
    }
    tokio::time::sleep(PUT_64_WARM_UP).await;
    let (p0, c0, t0) = (puts.load(Ordering::Relaxed), commits.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(time).await;
    let (p1, c1, elapsed) = (puts.load(Ordering::Relaxed), commits.load(Ordering::Relaxed), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = writers.join_next().await {
        done.context("a writer task panicked")??;
    }
    counter.abort();
    Ok((Rate { ops: p1 - p0, elapsed }, c1 - c0))
}

pub fn get(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = scratch_dir(ctx, "get")?;
    let rt = runtime(2)?;
    let store = open(dir.path(), StoreId::new_random())?;
    let n = ctx.size(GET_KEYS.0, GET_KEYS.1);
    fill_keys(&rt, &store, n)?;
    let single = measure(ctx.budget, || rt.block_on(random_gets(store.clone(), n)))?;
    let concurrent = measure(ctx.budget, || {
        rt.block_on(async {
            let mut readers = JoinSet::new();
            for _ in 0..READERS {
                readers.spawn(random_gets(store.clone(), n));
            }
            let mut gets = 0;
            while let Some(done) = readers.join_next().await {
                gets += done.context("a reader task panicked")??;
            }
            anyhow::Ok(gets)
        })
    })?;
    close(&rt, store)?;
    let shaped = |row: Row| row.param("keys", n).param("value_bytes", VALUE_BYTES);
    Ok(vec![
        shaped(Row::from_rate("store.get", "get/s", single)).param("tasks", 1),
        shaped(Row::from_rate("store.get_8", "get/s", concurrent)).param("tasks", READERS),
    ])
}

/// [`GETS_PER_STEP`] gets of random existing keys of a store filled with `n` keys.
async fn random_gets(store: StoreHandle, n: u64) -> Result<u64> {
    for _ in 0..GETS_PER_STEP {
        let key = kv_key(rand::random_range(0..n));
        ensure!(store.get(&key).await.context("get")?.is_some(), "a filled key is missing");
    }
    Ok(GETS_PER_STEP)
}

pub fn list(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = scratch_dir(ctx, "list")?;
    let rt = runtime(1)?;
    let store = open(dir.path(), StoreId::new_random())?;
    let n = ctx.size(LIST_KEYS.0, LIST_KEYS.1);
    fill_keys(&rt, &store, n)?;
    let mut passes = 0u64;
    let rate = measure(ctx.budget, || {
        passes += 1;
        let listed = rt.block_on(list_all(&store))?;
        ensure!(listed == n, "listed {listed} keys of {n}");
        Ok(listed)
    })?;
    close(&rt, store)?;
    // `passes` counts the warm-up too.
    let pass_ms = rate.elapsed.as_secs_f64() * 1000.0 / (passes - 1).max(1) as f64;
    Ok(vec![
        Row::from_rate("store.list_100k", "key/s", rate)
            .param("keys", n)
            .param("page", PAGE)
            .param("value_bytes", VALUE_BYTES)
            .param("pass_ms", (pass_ms * 10.0).round() / 10.0),
    ])
}

/// Pages through every key; returns how many were listed.
async fn list_all(store: &StoreHandle) -> Result<u64> {
    let mut after = None;
    let mut listed = 0;
    loop {
        let page = store.list(b"", after, PAGE).await.context("list")?;
        let Some((last, _)) = page.last() else { return Ok(listed) };
        listed += page.len() as u64;
        after = Some(last.clone());
    }
}
