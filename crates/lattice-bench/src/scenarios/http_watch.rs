//! `http.watch`: change events delivered to [`CLIENTS`] Server-Sent Events clients of
//! `GET /stores/bench/watch` while [`WRITERS`] tasks write [`KEYS_PER_ENTRY`] 100-byte values
//! per entry into the store (in process, and several keys per fsync, so the figure is the
//! watch path's: store watcher, JSON, SSE framing, loopback, rather than the disk's).
//!
//! - `http.watch.delivered`: events received per second, summed over the clients, from the
//!   first write until every client has every event (or the drain deadline passes).
//! - `http.watch.writes`: the keys written per second meanwhile.
//!
//! The writers stay at most [`BACKLOG`] events ahead of the slowest client (half of
//! [`lattice_store::WATCH_CAPACITY`], past which the store cuts a watcher off), so the figure is
//! the rate the watch path sustains. `lost` counts events some client never got (0 is expected).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lattice_core::Op;
use lattice_node::Permissions;
use lattice_store::Transaction;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::Ctx;
use super::fixtures::{VALUE_BYTES, runtime, scratch_dir, value};
use super::http::BenchApi;
use crate::measure::Rate;
use crate::report::Row;

/// SSE clients watching the store.
pub const CLIENTS: usize = 8;
/// Concurrent writers.
pub const WRITERS: u64 = 16;
/// Keys each entry writes.
pub const KEYS_PER_ENTRY: u64 = 16;
/// How long the clients may take to receive what was written once the writers stop.
const DRAIN: Duration = Duration::from_secs(30);
/// How many events the writers may be ahead of the slowest client.
const BACKLOG: u64 = lattice_store::WATCH_CAPACITY as u64 / 2;

/// Counts the `put` events of an SSE stream, a read at a time (a marker split across two reads
/// is found with the tail of the previous read).
struct PutCounter {
    tail: Vec<u8>,
}

impl PutCounter {
    const MARKER: &'static [u8] = b"event: put\n";

    fn feed(&mut self, bytes: &[u8]) -> u64 {
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(bytes);
        let found = window.windows(Self::MARKER.len()).filter(|w| *w == Self::MARKER).count() as u64;
        let keep = window.len().min(Self::MARKER.len() - 1);
        self.tail = window[window.len() - keep..].to_vec();
        found
    }
}

pub fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let dir = scratch_dir(ctx, "http_watch")?;
    let rt = runtime(2)?;
    rt.block_on(async {
        let api = BenchApi::start(dir.path(), Permissions::Read).await?;
        let (node, token) = (api.node.clone(), api.token.clone());
        let store = node.resolve(Some("bench")).await?;
        let addr = api.server.local_addr();

        // The clients, each counting the put events it has received.
        let stop = Arc::new(AtomicBool::new(false));
        let received: Arc<Vec<AtomicU64>> = Arc::new((0..CLIENTS).map(|_| AtomicU64::new(0)).collect());
        let mut clients = JoinSet::new();
        for c in 0..CLIENTS {
            let mut stream = TcpStream::connect(addr).await.context("connecting to the HTTP API")?;
            let head = format!(
                "GET /stores/bench/watch?prefix=w%2F HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            // The response head, then the first frame (the retry hint): the watch is live.
            let mut buf = vec![0u8; 64 * 1024];
            let mut seen = Vec::new();
            while !seen.windows(10).any(|w| w == b": watching") {
                let n = stream.read(&mut buf).await?;
                ensure!(n > 0, "the watch closed before it started");
                seen.extend_from_slice(&buf[..n]);
            }
            ensure!(seen.starts_with(b"HTTP/1.1 200"), "the watch answered {:?}", String::from_utf8_lossy(&seen[..12]));
            let (received, stop) = (received.clone(), stop.clone());
            clients.spawn(async move {
                let mut counter = PutCounter { tail: Vec::new() };
                while !stop.load(Ordering::Relaxed) {
                    let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
                    let Ok(read) = read else { continue };
                    let n = read?;
                    if n == 0 {
                        break;
                    }
                    received[c].fetch_add(counter.feed(&buf[..n]), Ordering::Relaxed);
                }
                anyhow::Ok(())
            });
        }

        let writing = Arc::new(AtomicBool::new(true));
        let written = Arc::new(AtomicU64::new(0));
        let mut writers = JoinSet::new();
        let t0 = Instant::now();
        for w in 0..WRITERS {
            let (node, store, writing, written) = (node.clone(), store.clone(), writing.clone(), written.clone());
            let received = received.clone();
            writers.spawn(async move {
                let mut i = 0u64;
                while writing.load(Ordering::Relaxed) {
                    // Flow control: writers stay at most BACKLOG events ahead of the slowest
                    // client, so no watcher is cut off and the figure is the sustained rate.
                    let slowest = || received.iter().map(|r| r.load(Ordering::Relaxed)).min().unwrap_or(0);
                    if written.load(Ordering::Relaxed) >= slowest() + BACKLOG {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                        continue;
                    }
                    let ops = (0..KEYS_PER_ENTRY).map(|k| Op::put(format!("w/{w}/{i}/{k}"), value(i + k))).collect();
                    node.transact(&store, Transaction::new(ops)).await?;
                    written.fetch_add(KEYS_PER_ENTRY, Ordering::Relaxed);
                    i += 1;
                }
                anyhow::Ok(())
            });
        }
        tokio::time::sleep(ctx.budget.time).await;
        writing.store(false, Ordering::Relaxed);
        while let Some(writer) = writers.join_next().await {
            writer.context("a writer panicked")??;
        }
        let write_time = t0.elapsed();
        let total = written.load(Ordering::Relaxed);
        let count = |received: &[AtomicU64]| received.iter().map(|r| r.load(Ordering::Relaxed)).sum::<u64>();
        let want = total * CLIENTS as u64;
        let drain_until = Instant::now() + DRAIN;
        while count(&received) < want && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delivered = count(&received);
        let delivery_time = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        while let Some(client) = clients.join_next().await {
            client.context("a client panicked")??;
        }
        drop(node);
        api.stop().await?;
        Ok(vec![
            Row::from_rate("http.watch.delivered", "event/s", Rate { ops: delivered, elapsed: delivery_time })
                .param("clients", CLIENTS as u64)
                .param("writers", WRITERS)
                .param("keys_per_entry", KEYS_PER_ENTRY)
                .param("value_bytes", VALUE_BYTES)
                .param("lost", want.saturating_sub(delivered)),
            Row::from_rate("http.watch.writes", "key/s", Rate { ops: total, elapsed: write_time })
                .param("writers", WRITERS)
                .param("keys_per_entry", KEYS_PER_ENTRY)
                .param("watchers", CLIENTS as u64),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_markers_are_counted_across_reads() {
        let mut c = PutCounter { tail: Vec::new() };
        assert_eq!(c.feed(b"event: put\ndata: {}\n\nevent: pu"), 1);
        assert_eq!(c.feed(b"t\nid: 1\n\nevent: delete\n"), 1);
        assert_eq!(c.feed(b""), 0);
    }
}
