//! `http.batch`: [`CONNECTIONS`] keep-alive connections each sending `POST /stores/bench/batch`
//! of [`BATCH_OPS`] puts (100-byte values) back to back; each batch is one durable entry. The
//! figure is ops/s (puts written), with the batches/s beside it; compare with `http.put`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use lattice_node::Permissions;
use serde_json::json;
use tokio::task::JoinSet;

use super::Ctx;
use super::fixtures::{VALUE_BYTES, runtime, scratch_dir};
use super::http::{BenchApi, CONNECTIONS, Conn};
use crate::measure::Rate;
use crate::report::Row;

/// Puts per batch.
pub const BATCH_OPS: u64 = 16;

/// The body of connection `c`'s `i`-th batch: [`BATCH_OPS`] puts of distinct keys.
fn batch_body(c: u64, i: u64) -> Vec<u8> {
    let ops: Vec<_> = (0..BATCH_OPS)
        .map(|j| {
            // 100 bytes of text (the shared `value` is binary, which JSON would carry as base64).
            let v = format!("{}{:020}", "v".repeat(VALUE_BYTES - 20), i * BATCH_OPS + j);
            json!({"op": "put", "key": format!("b/{c}/{i}/{j}"), "value": v})
        })
        .collect();
    json!({ "ops": ops }).to_string().into_bytes()
}

pub fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = scratch_dir(ctx, "http-batch")?;
    let rt = runtime(2)?;
    rt.block_on(async {
        let api = BenchApi::start(dir.path(), Permissions::ReadWrite).await?;
        let batches = timed(api.server.local_addr(), &api.token, ctx.budget.time).await?;
        api.stop().await?;
        let ops = Rate { ops: batches.ops * BATCH_OPS, elapsed: batches.elapsed };
        Ok(vec![
            Row::from_rate("http.batch", "op/s", ops)
                .param("batches_per_sec", (batches.per_sec() * 10.0).round() / 10.0)
                .param("ops_per_batch", BATCH_OPS)
                .param("connections", CONNECTIONS)
                .param("value_bytes", VALUE_BYTES)
                .param("durable", "each answer follows its log fsync")
                .ratio_to(&ctx.limits.fsync),
        ])
    })
}

/// Batches answered 200 in a window of `time`, over [`CONNECTIONS`] connections.
async fn timed(addr: SocketAddr, token: &str, time: std::time::Duration) -> Result<Rate> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for c in 0..CONNECTIONS {
        let mut conn = Conn::open(addr, token).await?;
        let (done, stop) = (done.clone(), stop.clone());
        clients.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let status = conn.request("POST", "/stores/bench/batch", &batch_body(c, i)).await?;
                ensure!(status == 200, "batch {c}/{i} answered {status}");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        });
    }
    let (d0, t0) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(time).await;
    let (d1, elapsed) = (done.load(Ordering::Relaxed), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    while let Some(client) = clients.join_next().await {
        client.context("a client task panicked")??;
    }
    Ok(Rate { ops: d1 - d0, elapsed })
}
