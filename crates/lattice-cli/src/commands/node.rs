//! `init` and `status`: this node itself.

use super::Context;
use crate::engine::Role;
use crate::failure::Failure;
use crate::render::{self, MemberLine, StatusView};

pub(super) async fn init(ctx: &Context<'_>, name: Option<String>) -> Result<i32, Failure> {
    let node = ctx.engine.init(name).await?;
    let current = node.current_store().await?;
    let dir = ctx.engine.dir().path();
    ctx.print(
        || render::json::initialised(node.node_id(), dir, node.root_store().id, current.as_ref()),
        || {
            let (name, id) = current.as_ref().map(|s| (s.name.clone(), s.id.to_string())).unwrap_or_default();
            format!("initialised {}\nnode id:       {}\ncurrent store: {name} ({id})\n", dir.display(), node.node_id())
        },
    );
    Ok(0)
}

/// `serve` or `demo` over the socket or in a shell: they run from the command line only (serve
/// owns a data dir, which this process owns already; the demo runs nodes of its own).
pub(super) fn serve_refused(ctx: &Context<'_>) -> Failure {
    Failure::other(format!(
        "this data dir is already owned by {} (pid {}); `serve` and `demo` run from the command line",
        ctx.engine.role().name(),
        std::process::id()
    ))
}

/// `completions` or `man` in a shell (the only way they reach a command here): they write to
/// the terminal or a directory of the command line's, so they run there.
pub(super) fn command_line_only(usage: &str) -> Failure {
    Failure::usage(format!("run `lattice {usage}` from the command line, not in the lattice shell"))
}

pub(super) async fn status(ctx: &Context<'_>) -> Result<i32, Failure> {
    let node = ctx.node().await?;
    let status = node.status().await?;
    let listen = ctx.engine.listen_addrs().await;
    let me = node.node_id();
    let members: Vec<MemberLine> = node
        .node_records()
        .await?
        .into_iter()
        .filter(|(id, _)| *id != me)
        .map(|(id, r)| MemberLine {
            id,
            name: r.info.map(|i| i.name).unwrap_or_default(),
            status: r.status.map_or_else(String::new, |s| s.as_str().into()),
        })
        .collect();
    let role = ctx.engine.role();
    let view = StatusView {
        status: &status,
        members: &members,
        listen: &listen,
        daemon: (role != Role::OneShot).then(|| (std::process::id(), role.name())),
        http: ctx.engine.http_addr(),
    };
    ctx.print(|| render::json::status(&view), || render::text::status(&view, ctx.palette()));
    Ok(0)
}
