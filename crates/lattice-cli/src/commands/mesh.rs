//! `invite`, `remove`, `peers`, `join` and `sync`: this node's mesh.

use std::collections::HashMap;

use lattice_core::{AuthorId, MemberStatus};
use lattice_net::PeerAddr;
use lattice_node::{PeerSync, Role};

use super::{Context, parse_node_id};
use crate::failure::Failure;
use crate::render::{self, PeerView, StoreNames, SyncBar};

pub(super) async fn invite(ctx: &Context<'_>, pubkey: &str, admin: bool) -> Result<i32, Failure> {
    let node = ctx.node().await?;
    node.require_admin("invite nodes").await?;
    let peer = parse_node_id(pubkey)?;
    node.invite(peer, if admin { Role::Admin } else { Role::Member }).await?;
    // Where this node listens, when it does (serve, a shell); else the user fills it in.
    let at = match ctx.engine.listen_addrs().await.first() {
        Some(addr) if addr.ip().is_unspecified() => format!("HOST:{}", addr.port()),
        Some(addr) => addr.to_string(),
        None => "HOST:PORT".into(),
    };
    ctx.print(
        || render::json::member(peer, MemberStatus::Invited),
        || format!("invited {peer}; it can now run `lattice join {}@{at}`\n", node.node_id()),
    );
    Ok(0)
}

pub(super) async fn remove(ctx: &Context<'_>, pubkey: &str) -> Result<i32, Failure> {
    let node = ctx.node().await?;
    node.require_admin("remove nodes").await?;
    let peer = parse_node_id(pubkey)?;
    node.remove_peer(peer).await?;
    ctx.print(|| render::json::member(peer, MemberStatus::Removed), || format!("removed {peer}\n"));
    Ok(0)
}

pub(super) async fn set_role(ctx: &Context<'_>, pubkey: &str, role: Role) -> Result<i32, Failure> {
    let node = ctx.node().await?;
    node.require_admin("change roles").await?;
    let peer = parse_node_id(pubkey)?;
    node.set_role(peer, role).await?;
    ctx.print(
        || serde_json::json!({ "node_id": peer.to_hex(), "role": role.as_str() }),
        || format!("{peer} is now {} {}\n", if role == Role::Admin { "an" } else { "a" }, role.as_str()),
    );
    Ok(0)
}

pub(super) async fn peers(ctx: &Context<'_>) -> Result<i32, Failure> {
    let node = ctx.node().await?;
    let me = node.node_id();
    let health = match ctx.engine.running_network().await {
        Some(net) => net.server().peer_health(),
        None => Default::default(),
    };
    // Equivocation is per store: gather each author's forks from every store's figures.
    let mut forks: HashMap<AuthorId, Vec<(String, u64)>> = HashMap::new();
    for (store, figures) in node.status().await?.stores {
        for (author, seq) in figures.equivocated {
            forks.entry(author).or_default().push((store.name.clone(), seq));
        }
    }
    let mut peers = Vec::new();
    for (id, record) in node.node_records().await? {
        peers.push(PeerView {
            id,
            this_node: id == me,
            info: record.info.unwrap_or_default(),
            status: record.status.map_or("unknown", MemberStatus::as_str),
            role: record.role.as_str(),
            local: node.meta().peer(id)?,
            failures: health.get(&id).filter(|h| h.failures > 0).map(|h| h.failures),
            equivocated: forks.remove(&id).unwrap_or_default(),
        });
    }
    ctx.print(|| render::json::peers(&peers), || render::text::peers(&peers, ctx.palette()));
    Ok(0)
}

pub(super) async fn join(ctx: &Context<'_>, peer: &str, name: Option<String>) -> Result<i32, Failure> {
    let peer: PeerAddr = peer.parse().map_err(|e: lattice_net::NetError| Failure::usage(e.to_string()))?;
    let (progress, bar) = SyncBar::start(ctx.opts.local);
    let joined = ctx.engine.join(peer.clone(), name, progress).await;
    SyncBar::finish(bar).await;
    let node = joined?;
    let root = node.root_store().id;
    let current = node.current_store().await?;
    ctx.print(
        || render::json::joined(peer.id, root, current.as_ref()),
        || {
            let mut text = format!("joined the mesh of {} (root store {root})\n", peer.id);
            if let Some(store) = &current {
                text.push_str(&format!("current store: {} ({})\n", store.name, store.id));
            }
            text
        },
    );
    Ok(0)
}

/// Exit 1 when the one peer asked for failed, or every peer did; some failing of many is 0.
pub(super) async fn sync(ctx: &Context<'_>, peer: Option<&str>) -> Result<i32, Failure> {
    let peer = peer.map(parse_node_id).transpose()?;
    let net = ctx.engine.network().await?;
    let (progress, bar) = SyncBar::start(ctx.opts.local);
    let results = net.sync(peer, progress).await;
    SyncBar::finish(bar).await;
    let results = results?;
    let names = store_names(ctx).await?;
    if ctx.json {
        ctx.out.json(&render::json::sync(&results, &names));
    } else {
        render::text::sync(&results, &names, ctx.out);
    }
    let failed = results.iter().filter(|r| !synced_fully(r)).count();
    Ok(if failed > 0 && (peer.is_some() || failed == results.len()) { 1 } else { 0 })
}

/// True when the sync with this peer, and with every store of it, succeeded.
fn synced_fully(r: &PeerSync) -> bool {
    r.result.as_ref().is_ok_and(|stores| stores.iter().all(|(_, s)| s.is_ok()))
}

/// Every store's name, deleted ones too (a peer may still sync them), and `root`.
async fn store_names(ctx: &Context<'_>) -> Result<StoreNames, Failure> {
    let node = ctx.node().await?;
    let mut names: StoreNames = node.list_stores(true).await?.into_iter().map(|info| (info.id, info.name)).collect();
    names.insert(node.root_store().id, "root".to_string());
    Ok(names)
}
