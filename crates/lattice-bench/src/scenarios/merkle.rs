//! The Merkle tree (DESIGN.md §10) on the large store (16 authors, a key per entry: 1M keys in
//! a full run):
//!
//! - `merkle.build_1m`: the tree built from scratch over every key's heads, as the first open
//!   of a store indexed before the tree existed does (its rows deleted, then the store opened):
//!   keys per second, and the rows it wrote.
//! - `merkle.proof_1m`: proofs of random keys (present, and absent) against the signed root:
//!   proofs made per second through `StoreHandle::prove`, their depth, their size (binary: 4
//!   sibling hashes per node, the leaf, the attestation; and as the JSON `lattice proof` prints).
//! - `merkle.verify`: checking a proof as a light client does (`lattice_http::verify_proof` on
//!   its JSON: the path's hashes, the heads digest, the attestation's signature).
//!
//! Put and ingest throughput with the tree are `store.put_64`, `store.ingest`, `store.rebuild`
//! and `sync.two_node` themselves (the tree is always on); docs/performance.md sets them beside
//! the previous build's figures.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use lattice_store::StoreHandle;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::Ctx;
use super::fixtures::{big_store, close, open, runtime};
use super::store_sync::big_spec;
use crate::measure::Rate;
use crate::report::Row;

/// Proofs made and checked (quick, full).
const PROOFS: (u64, u64) = (200, 2_000);

pub fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let big = big_store(ctx, big_spec(ctx))?;
    let keys = big.spec.total();
    let rt = runtime(1)?;

    // The tree from scratch: what an older store's first open builds.
    let nodes_before = drop_tree(&big.dir)?;
    let started = Instant::now();
    let store: StoreHandle = open(&big.dir, big.store_id)?;
    let build = Rate { ops: keys, elapsed: started.elapsed() };
    let status = rt.block_on(store.status())?;
    ensure!(status.entries == keys, "the store holds {} entries of {keys}", status.entries);

    let mut rng = StdRng::seed_from_u64(18);
    let n = ctx.size(PROOFS.0, PROOFS.1);
    let mut proofs = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for i in 0..n {
        let key = if i % 10 == 9 {
            format!("absent/{}", rng.random::<u64>())
        } else {
            let author = rng.random_range(0..big.spec.authors);
            format!("author/{author:04}/{:010}", rng.random_range(1..=big.spec.per_author))
        };
        proofs.push(rt.block_on(store.prove(key.as_bytes())).context("proving a key")?);
    }
    let prove = Rate { ops: n, elapsed: started.elapsed() };
    close(&rt, store)?;

    let depths: Vec<usize> = proofs.iter().map(|p| p.path.siblings.len()).collect();
    let mean_depth = depths.iter().sum::<usize>() as f64 / depths.len() as f64;
    let max_depth = depths.iter().copied().max().unwrap_or(0);
    // Binary: 32-byte path, 4 × 32 per node, a 65-byte end, a 200-byte attestation.
    let binary = |depth: usize| 32 + 128 * depth + 65 + 200;
    let docs: Vec<serde_json::Value> = proofs.iter().map(lattice_http::proof_json).collect();
    let json_bytes = docs.iter().map(|d| d.to_string().len()).sum::<usize>() as f64 / docs.len() as f64;

    let started = Instant::now();
    for doc in &docs {
        let checked = lattice_http::verify_proof(doc).map_err(|e| anyhow::anyhow!("a proof did not verify: {e}"))?;
        ensure!(checked.attestation.root == status.root, "a proof against another root");
    }
    let verify = Rate { ops: docs.len() as u64, elapsed: started.elapsed() };
    let present = proofs.iter().filter(|p| p.path.proves_presence()).count();
    ensure!(present == proofs.len() - (n / 10) as usize, "{present} of {} proofs show their key present", proofs.len());

    Ok(vec![
        Row::from_rate("merkle.build_1m", "key/s", build)
            .param("keys", keys)
            .param("build_ms", (build.elapsed.as_secs_f64() * 1000.0).round())
            .param("tree_rows", count_nodes(&big.dir)?)
            .param("tree_rows_before", nodes_before),
        Row::from_rate("merkle.proof_1m", "proof/s", prove)
            .param("keys", keys)
            .param("absent_share", 0.1)
            .param("mean_depth", (mean_depth * 100.0).round() / 100.0)
            .param("max_depth", max_depth)
            .param("binary_bytes_mean", binary(mean_depth.round() as usize))
            .param("binary_bytes_max", binary(max_depth))
            .param("json_bytes_mean", json_bytes.round()),
        Row::from_rate("merkle.verify", "proof/s", verify)
            .param("keys", keys)
            .param("call", "lattice_http::verify_proof (JSON parsed, path hashed, heads digest, signature)")
            .param("us_per_proof", (verify.elapsed.as_secs_f64() * 1e6 / verify.ops as f64 * 10.0).round() / 10.0)
            .ratio_to(&ctx.limits.verify),
    ])
}

/// The tree's rows (a node's 16 slots above the bucket depth, a bucket's leaves at it).
const NODES: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("merkle_nodes_v2");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta_v1");

/// Deletes the tree's rows and root from the closed store's state.db, as a store indexed before
/// the tree had them; returns how many rows there were.
fn drop_tree(dir: &std::path::Path) -> Result<u64> {
    let nodes = count_nodes(dir)?;
    let db = redb::Database::open(dir.join("state.db")).context("opening state.db")?;
    let tx = db.begin_write()?;
    tx.delete_table(NODES)?;
    tx.open_table(META)?.remove("merkle_root_v2")?;
    tx.commit()?;
    Ok(nodes)
}

fn count_nodes(dir: &std::path::Path) -> Result<u64> {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let db = redb::Database::open(dir.join("state.db")).context("opening state.db")?;
    let tx = db.begin_read()?;
    Ok(tx.open_table(NODES).map(|t| t.len()).unwrap_or(Ok(0))?)
}
