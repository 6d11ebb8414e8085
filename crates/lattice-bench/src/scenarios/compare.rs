//! `compare.iroh_docs`: Lattice next to iroh-docs (0.101, on iroh 1.4, persistent fs stores), in
//! the same process, measured back to back on the same disk and cores:
//!
//! - `compare.iroh_docs.put_single`: one writer, sequential `Doc::set_bytes` with distinct
//!   [`VALUE_BYTES`]-byte values on a persistent doc, next to Lattice's `store.put_single`
//!   (measured again just before).
//! - `compare.iroh_docs.sync`: a fresh node syncs a doc of N entries (16 authors) from another
//!   over loopback, next to Lattice's `sync.two_node` of the same size (run again just before).
//!
//! Honesty notes, also in each row's params:
//! - iroh-docs' persistent store keeps one redb write transaction open and commits it at most
//!   every 500 ms, so a returned `set_bytes` (or a synced entry) is not yet durable; a returned
//!   Lattice `put` has been fsynced.
//! - An iroh-docs entry holds the value's hash and size; the value is a separate blob. The sync
//!   figure is the entries alone (the receiver's download policy fetches no content), so
//!   iroh-docs moves less data than Lattice, whose entries carry their values.
//!
//! Both nodes' endpoints mirror Lattice's (`lattice_net::endpoint`): loopback, direct addresses
//! only, no relay, no address lookup service, no port mapping, minimal net report.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use iroh::address_lookup::memory::MemoryLookup;
use iroh::endpoint::{PortmapperConfig, presets};
use iroh::protocol::Router;
use iroh::{Endpoint, EndpointAddr, NetReportConfig, RelayMode};
use iroh_blobs::BlobsProtocol;
use iroh_blobs::store::fs::FsStore;
use iroh_docs::engine::LiveEvent;
use iroh_docs::protocol::Docs;
use iroh_docs::store::DownloadPolicy;
use iroh_docs::{AuthorId, Capability};
use iroh_gossip::Gossip;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use super::fixtures::{VALUE_BYTES, kv_key, runtime, scratch_dir, value};
use super::store_sync::BIG_AUTHORS;
use super::{Ctx, net_sync, store_kv};
use crate::measure::{Rate, measure};
use crate::report::Row;

/// Writes per timed step of the put figure (the clock is read once per step).
const PUTS_PER_STEP: u64 = 8;
/// How long the receiver may take to get every entry.
const SYNC_TIMEOUT: Duration = Duration::from_secs(600);
/// The durability note every row carries.
const DURABILITY: &str = "iroh-docs commits its redb transaction at most every 500 ms: its returned writes are not yet durable; Lattice's are fsynced";

/// One iroh-docs node: endpoint + blobs + gossip + docs behind a router, all on `dir`.
struct DocsNode {
    router: Router,
    docs: Docs,
    blobs: FsStore,
    lookup: MemoryLookup,
}

impl DocsNode {
    async fn spawn(dir: &Path) -> Result<Self> {
        let lookup = MemoryLookup::new();
        let endpoint = Endpoint::builder(presets::Minimal)
            .relay_mode(RelayMode::Disabled)
            .clear_address_lookup()
            .portmapper_config(PortmapperConfig::Disabled)
            .net_report_config(NetReportConfig::minimal())
            .address_lookup(lookup.clone())
            .alpns(vec![iroh_docs::ALPN.to_vec(), iroh_blobs::ALPN.to_vec(), iroh_gossip::ALPN.to_vec()])
            .clear_ip_transports()
            .bind_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
            .context("iroh-docs endpoint address")?
            .bind()
            .await
            .context("binding an iroh-docs endpoint")?;
        let docs_dir = dir.join("docs");
        std::fs::create_dir_all(&docs_dir).with_context(|| format!("creating {}", docs_dir.display()))?;
        let blobs = FsStore::load(dir.join("blobs")).await.context("opening the iroh-blobs fs store")?;
        let gossip = Gossip::builder().spawn(endpoint.clone());
        let docs = Docs::persistent(docs_dir)
            .spawn(endpoint.clone(), (*blobs).clone(), gossip.clone())
            .await
            .context("starting iroh-docs")?;
        let router = Router::builder(endpoint)
            .accept(iroh_blobs::ALPN, BlobsProtocol::new(&blobs, None))
            .accept(iroh_gossip::ALPN, gossip)
            .accept(iroh_docs::ALPN, docs.clone())
            .spawn();
        Ok(DocsNode { router, docs, blobs, lookup })
    }

    fn addr(&self) -> EndpointAddr {
        let endpoint = self.router.endpoint();
        endpoint.bound_sockets().into_iter().fold(EndpointAddr::new(endpoint.id()), |a, s| a.with_ip_addr(s))
    }

    /// Stops every protocol; the blobs protocol's shutdown also shuts the blob store down.
    async fn shutdown(self) -> Result<()> {
        self.router.shutdown().await.context("stopping an iroh-docs router")
    }
}

pub fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let rt = runtime(2)?;
    let mut rows = put_single(ctx, &rt)?;
    rows.extend(sync(ctx, &rt)?);
    Ok(rows)
}

fn put_single(ctx: &Ctx, rt: &Runtime) -> Result<Vec<Row>> {
    let lattice = store_kv::put_single(ctx)?.into_iter().next().context("store.put_single gave no row")?;
    let dir = scratch_dir(ctx, "iroh-docs-put")?;
    let node = rt.block_on(DocsNode::spawn(dir.path()))?;
    let measured = rt.block_on(async {
        let author = node.docs.author_create().await.context("author_create")?;
        let doc = node.docs.create().await.context("creating a doc")?;
        anyhow::Ok((author, doc))
    });
    let rate = measured.and_then(|(author, doc)| {
        let mut i = 0u64;
        measure(ctx.budget, || {
            rt.block_on(async {
                for _ in 0..PUTS_PER_STEP {
                    doc.set_bytes(author, kv_key(i), value(i)).await.context("set_bytes")?;
                    i += 1;
                }
                anyhow::Ok(PUTS_PER_STEP)
            })
        })
    });
    rt.block_on(node.shutdown())?;
    let rate = rate?;
    let ratio = lattice.value / rate.per_sec().max(1e-9);
    Ok(vec![
        Row::from_rate("compare.iroh_docs.put_single", "put/s", rate)
            .param("writers", 1)
            .param("value_bytes", VALUE_BYTES)
            .param("call", "Doc::set_bytes (persistent docs + fs blobs)")
            .param("lattice_put_per_sec", lattice.value.round())
            .param("lattice_over_iroh_docs", (ratio * 100.0).round() / 100.0)
            .param("durability", DURABILITY)
            .ratio_to(&ctx.limits.fsync),
    ])
}

fn sync(ctx: &Ctx, rt: &Runtime) -> Result<Vec<Row>> {
    let per_author = ctx.size(net_sync::PER_AUTHOR.0, net_sync::PER_AUTHOR.1);
    let lattice = net_sync::run_size(ctx, "sync.two_node", per_author)?.into_iter().next().context("no sync row")?;
    let n = per_author * BIG_AUTHORS as u64;

    let dir_a = scratch_dir(ctx, "iroh-docs-a")?;
    let dir_b = scratch_dir(ctx, "iroh-docs-b")?;
    let a = rt.block_on(DocsNode::spawn(dir_a.path()))?;
    let b = match rt.block_on(DocsNode::spawn(dir_b.path())) {
        Ok(b) => b,
        Err(e) => {
            rt.block_on(a.shutdown())?;
            return Err(e);
        }
    };
    let result = rt.block_on(sync_docs(&a, &b, per_author));
    rt.block_on(a.shutdown())?;
    rt.block_on(b.shutdown())?;
    let (fill, rate, failed_sessions) = result?;

    let ratio = lattice.value / rate.per_sec().max(1e-9);
    Ok(vec![
        Row::from_rate("compare.iroh_docs.sync", "entry/s", rate)
            .param("entries", n)
            .param("authors", BIG_AUTHORS)
            .param("value_bytes", VALUE_BYTES)
            .param("what", "entries only: the receiver's download policy fetches no content blobs")
            .param("fill_per_sec", fill.per_sec().round())
            .param("failed_sessions", failed_sessions)
            .param("lattice_entry_per_sec", lattice.value.round())
            .param("lattice_over_iroh_docs", (ratio * 100.0).round() / 100.0)
            .param("durability", DURABILITY)
            .ratio_to(&ctx.limits.verify_batch),
    ])
}

/// Fills a doc on `a` with [`BIG_AUTHORS`] × `per_author` entries (one content blob, referenced
/// by every entry through `set_hash`), then times `b` importing the doc and syncing it from `a`
/// until every entry has arrived. Returns the fill rate, the sync rate and the sync sessions
/// that failed on the way.
async fn sync_docs(a: &DocsNode, b: &DocsNode, per_author: u64) -> Result<(Rate, Rate, u64)> {
    let n = per_author * BIG_AUTHORS as u64;
    let doc = a.docs.create().await.context("creating a doc")?;
    let content = a.blobs.add_bytes(value(0)).await.context("adding the content blob")?;
    let started = Instant::now();
    let mut writers = JoinSet::new();
    for w in 0..BIG_AUTHORS {
        let author: AuthorId = a.docs.author_create().await.context("author_create")?;
        let doc = doc.clone();
        let hash = content.hash;
        writers.spawn(async move {
            for i in 0..per_author {
                let key = format!("author/{w:04}/{i:010}");
                doc.set_hash(author, key.into_bytes(), hash, VALUE_BYTES as u64).await.context("set_hash")?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done.context("an iroh-docs writer panicked")??;
    }
    let fill = Rate { ops: n, elapsed: started.elapsed() };
    // Only a doc in live sync accepts sync requests.
    doc.start_sync(vec![]).await.context("start_sync on the sender")?;

    let addr = a.addr();
    b.lookup.add_endpoint_info(addr.clone());
    let theirs = b.docs.import_namespace(Capability::Read(doc.id())).await.context("importing the doc")?;
    theirs.set_download_policy(DownloadPolicy::NothingExcept(Vec::new())).await.context("download policy")?;
    let mut events = theirs.subscribe().await.context("subscribing to the doc")?;
    let started = Instant::now();
    theirs.start_sync(vec![addr]).await.context("start_sync on the receiver")?;
    let (mut received, mut failed) = (0u64, 0u64);
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    while received < n {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) => bail!("iroh-docs sync: {received} of {n} entries after {SYNC_TIMEOUT:?}"),
            Ok(None) => bail!("iroh-docs sync: the event stream ended after {received} of {n} entries"),
            Ok(Some(event)) => match event.context("iroh-docs event")? {
                LiveEvent::InsertRemote { .. } => received += 1,
                // A session can fail (both nodes dial each other at once, one side gives up);
                // live sync goes on, so only the entries count.
                LiveEvent::SyncFinished(ev) => failed += u64::from(ev.result.is_err()),
                _ => {}
            },
        }
    }
    let rate = Rate { ops: n, elapsed: started.elapsed() };
    ensure!(received == n, "received {received} entries of {n}");
    Ok((fill, rate, failed))
}
