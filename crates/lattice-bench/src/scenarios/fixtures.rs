//! Building blocks of the store scenarios: runtimes, scratch stores, keys and values, stores
//! filled through local batch writes, pre-signed entries from many authors, and the large
//! multi-author stores shared by `store.rebuild`, `store.open_indexed` and `sync.two_node`.

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use lattice_core::{EntryBuilder, Hash, Hlc, Identity, Op, StoreId};
use lattice_store::{IngestOutcome, KvStore, StoreConfig, StoreHandle, SyncStore};
use tokio::runtime::Runtime;

use super::Ctx;
use crate::measure::Rate;

/// Value size of every put: a small record.
pub const VALUE_BYTES: usize = 100;
/// Threads that sign entries (the benchmark machine has two cores).
pub const SIGNING_THREADS: usize = 2;
/// Operations per local batch write when filling a store with keys.
const FILL_OPS_PER_ENTRY: usize = 1000;
/// How far in the past generated entries are timestamped, so that their HLCs never run ahead of
/// the wall clock (one day, in ms).
const PAST_MS: u64 = 86_400_000;

/// A multi-thread tokio runtime with `workers` worker threads.
pub fn runtime(workers: usize) -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting a tokio runtime")
}

/// A fresh directory on the measured disk, removed when dropped.
pub fn scratch_dir(ctx: &Ctx, name: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(&ctx.data_dir)
        .with_context(|| format!("creating a store directory in {}", ctx.data_dir.display()))
}

/// Opens (or creates) the store in `dir` with a fresh local identity and default config.
pub fn open(dir: &Path, store_id: StoreId) -> Result<StoreHandle> {
    StoreHandle::open(dir, store_id, Identity::generate(), StoreConfig::default())
        .with_context(|| format!("opening the store in {}", dir.display()))
}

/// Closes the store (durable checkpoint, files closed).
pub fn close(rt: &Runtime, store: StoreHandle) -> Result<()> {
    rt.block_on(store.close()).context("closing the store")
}

/// The `i`-th key of a store filled by [`fill_keys`].
pub fn kv_key(i: u64) -> Vec<u8> {
    format!("key/{i:010}").into_bytes()
}

/// A [`VALUE_BYTES`]-byte value that differs with `i`.
pub fn value(i: u64) -> Vec<u8> {
    let mut v = vec![b'v'; VALUE_BYTES];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// Writes keys `kv_key(0..n)` with local batch writes of [`FILL_OPS_PER_ENTRY`] puts each.
pub fn fill_keys(rt: &Runtime, store: &StoreHandle, n: u64) -> Result<()> {
    rt.block_on(async {
        let mut i = 0;
        while i < n {
            let end = (i + FILL_OPS_PER_ENTRY as u64).min(n);
            store.batch((i..end).map(|k| Op::put(kv_key(k), value(k))).collect()).await.context("filling the store")?;
            i = end;
        }
        let keys = store.status().await?.keys;
        ensure!(keys == n, "filled {n} keys, the store counts {keys}");
        Ok(())
    })
}

/// What to sign: `authors` authors, each writing `per_author` entries of one put (a key of its
/// own, a [`VALUE_BYTES`]-byte value), handed out in batches of about `batch` entries.
#[derive(Clone, Copy, Debug)]
pub struct Signing {
    pub store: StoreId,
    pub authors: usize,
    pub per_author: u64,
    pub batch: usize,
}

impl Signing {
    pub fn total(&self) -> u64 {
        self.authors as u64 * self.per_author
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Signs the entries of `spec` on [`SIGNING_THREADS`] threads, each owning a share of the
/// authors, and hands them to `sink` in batches, with the index of the thread that signed them.
/// A batch holds the entries of one thread's authors, each author's in seq order, and one
/// thread's batches arrive in the order signed: ingesting a thread's batches in order never
/// leaves an orphan, and the threads' batches can be ingested concurrently. Only a few batches
/// exist at a time, so any number of entries can be streamed. Stops early if `sink` fails.
pub fn sign_batches(spec: Signing, mut sink: impl FnMut(usize, Vec<Vec<u8>>) -> Result<()>) -> Result<()> {
    ensure!(spec.authors > 0 && spec.batch > 0, "nothing to sign: {spec:?}");
    let threads = SIGNING_THREADS.min(spec.authors);
    // Entry `seq` of every author is stamped `wall0 + seq`: increasing per author, in the past.
    let wall0 = now_ms().saturating_sub(spec.per_author + PAST_MS);
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Result<(usize, Vec<Vec<u8>>)>>(2 * threads);
        for t in 0..threads {
            let tx = tx.clone();
            let authors: Vec<usize> = (0..spec.authors).filter(|a| a % threads == t).collect();
            scope.spawn(move || {
                let signed = sign_share(spec, wall0, &authors, |batch| tx.send(Ok((t, batch))).is_ok());
                if let Err(e) = signed {
                    let _ = tx.send(Err(e));
                }
            });
        }
        drop(tx);
        // Returning early drops `rx`, so the signing threads stop at their next send.
        for item in rx {
            let (t, batch) = item?;
            sink(t, batch)?;
        }
        Ok(())
    })
}

/// Signs the entries of `authors` (global author indices), round by round: each round signs
/// the next `batch / authors.len()` entries of every author and passes them to `send`, which
/// returns false when nobody listens any more.
fn sign_share(spec: Signing, wall0: u64, authors: &[usize], mut send: impl FnMut(Vec<Vec<u8>>) -> bool) -> Result<()> {
    let ids: Vec<Identity> = authors.iter().map(|_| Identity::generate()).collect();
    let mut prev = vec![Hash::ZERO; authors.len()];
    let per_round = (spec.batch / authors.len()).max(1) as u64;
    let mut seq = 1;
    while seq <= spec.per_author {
        let end = (seq + per_round).min(spec.per_author + 1);
        let mut batch = Vec::with_capacity(authors.len() * (end - seq) as usize);
        for ((author, id), prev) in authors.iter().zip(&ids).zip(&mut prev) {
            for s in seq..end {
                let entry = EntryBuilder::new(spec.store, s)
                    .prev_hash(*prev)
                    .timestamp(Hlc::new(wall0 + s, 0))
                    .op(Op::put(format!("author/{author:04}/{s:010}"), value(s)))
                    .sign(id)?;
                *prev = entry.hash();
                batch.push(entry.into_bytes());
            }
        }
        if !send(batch) {
            return Ok(());
        }
        seq = end;
    }
    Ok(())
}

/// Ingests `batch` and checks that every entry was applied.
pub async fn ingest_applied(store: &StoreHandle, batch: Vec<Vec<u8>>) -> Result<()> {
    let n = batch.len();
    let results = store.ingest_batch(batch).await.context("ingest_batch")?;
    ensure!(results.len() == n, "ingest_batch answered {} results for {n} entries", results.len());
    for result in results {
        match result.context("ingesting a pre-signed entry")? {
            IngestOutcome::Applied { .. } => {}
            other => bail!("a pre-signed entry was not applied: {other:?}"),
        }
    }
    Ok(())
}

/// The large multi-author store, closed cleanly.
#[derive(Clone, Debug)]
pub struct BigStore {
    pub dir: PathBuf,
    pub store_id: StoreId,
    pub spec: Signing,
    /// Signing and ingesting every entry (pipelined, both cores busy).
    pub build: Rate,
}

/// The large store of `spec`'s shape (`spec.store` is ignored), built on first use by signing
/// its entries on [`SIGNING_THREADS`] threads while ingesting them batch by batch. Stores are
/// shared by shape (authors × entries per author), so scenarios asking for the same shape reuse
/// one store.
pub fn big_store(ctx: &Ctx, spec: Signing) -> Result<BigStore> {
    let mut shared = ctx.shared.big_stores.lock().map_err(|_| anyhow::anyhow!("a scenario panicked"))?;
    if let Some(big) = shared.iter().find(|b| b.spec.authors == spec.authors && b.spec.per_author == spec.per_author) {
        return Ok(big.clone());
    }
    let dir = ctx.data_dir.join(format!("big-store-{}x{}", spec.authors, spec.per_author));
    let store_id = StoreId::new_random();
    let spec = Signing { store: store_id, ..spec };
    let rt = runtime(1)?;
    let store = open(&dir, store_id)?;
    let started = Instant::now();
    sign_batches(spec, |_, batch| rt.block_on(ingest_applied(&store, batch)))?;
    let build = Rate { ops: spec.total(), elapsed: started.elapsed() };
    let entries = rt.block_on(store.status())?.entries;
    ensure!(entries == spec.total(), "built {} entries, the store counts {entries}", spec.total());
    close(&rt, store)?;
    let big = BigStore { dir, store_id, spec, build };
    shared.push(big.clone());
    Ok(big)
}
