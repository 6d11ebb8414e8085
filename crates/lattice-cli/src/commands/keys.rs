//! `put`, `get`, `delete`, `list` and `watch`: the keys of a store.
//!
//! KEY, VALUE and PREFIX are bytes: an argument that is not UTF-8 is used as it is.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use lattice_core::Op;
use lattice_node::Lookup;
use lattice_store::{Transaction, Value};
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::failure::Failure;
use crate::render;

/// Page size for `list`.
const LIST_PAGE: usize = 1000;

pub(super) async fn put(
    ctx: &Context<'_>,
    key: &OsStr,
    value: &OsStr,
    (if_match, if_absent): (Option<&str>, bool),
    stdin: Option<Vec<u8>>,
) -> Result<i32, Failure> {
    let key = key.as_bytes();
    let condition = lattice_http::condition(key, if_match, if_absent).map_err(Failure::usage)?;
    let (node, store) = ctx.target().await?;
    let value = if value == "-" {
        stdin.ok_or_else(|| {
            Failure::usage("VALUE \"-\" reads stdin, which a shell line does not have; give the value inline")
        })?
    } else {
        value.as_bytes().to_vec()
    };
    let mut transaction = Transaction::new(vec![Op::Put { key: key.to_vec(), value }]);
    transaction.conditions.extend(condition);
    let receipt = node.transact(&store, transaction).await?;
    ctx.print(|| render::json::put_receipt(key, &store, &receipt), || "ok\n".into());
    Ok(0)
}

/// `batch`: the JSON lines of `input` as one entry, or nothing (a bad line, a failed condition).
pub(super) async fn batch(ctx: &Context<'_>, input: Option<Vec<u8>>) -> Result<i32, Failure> {
    let input = input.ok_or_else(|| {
        Failure::usage("batch reads stdin, which a shell line does not have; give a FILE (`batch ops.jsonl`)")
    })?;
    let transaction = lattice_http::batch_from_lines(&input).map_err(|e| Failure::usage(format!("batch: {e}")))?;
    let (node, store) = ctx.target().await?;
    let ops = transaction.ops.len();
    let receipt = node.transact(&store, transaction).await?;
    ctx.print(|| render::json::batch_receipt(ops, &store, &receipt), || format!("ok ({ops} operations)\n"));
    Ok(0)
}

pub(super) async fn get(ctx: &Context<'_>, key: &OsStr, verbose: bool) -> Result<i32, Failure> {
    let (node, store) = ctx.target().await?;
    let key = key.as_bytes();
    // For a reserved key of the root store the value is the control plane's effective one; the
    // heads stay the raw entries (one may be a write that took no effect).
    let Lookup { value: visible, typed, heads, control } = node.lookup(&store, key).await?;
    if heads.is_empty() || (visible.is_none() && !verbose) {
        ctx.out.err("not found");
        return Ok(1);
    }
    if ctx.json {
        ctx.out.json(&render::json::get(key, typed.as_ref(), &heads));
    } else if verbose {
        if control {
            ctx.out.bytes(render::text::effective(visible.as_deref()));
        }
        if let Some(value) = typed.as_ref().filter(|v| v.kind() != lattice_core::Kind::Register) {
            ctx.out.bytes(render::text::kinded(value));
        }
        ctx.out.bytes(render::text::heads(&heads, ctx.palette()));
    } else {
        // Concurrent ops on a counter or a set merge: several heads are no conflict there.
        let merged = typed.as_ref().is_some_and(|v| v.kind() != lattice_core::Kind::Register);
        let heads = if merged { 1 } else { heads.len() };
        ctx.out.bytes(render::raw_value(visible.unwrap_or_default(), heads, ctx.opts.terminal, ctx.palette()));
    }
    Ok(0)
}

/// `get KEY --at TIME|HLC`: the value as of then ("not found" and exit 1 if it had none).
pub(super) async fn get_at(ctx: &Context<'_>, key: &OsStr, at: &str) -> Result<i32, Failure> {
    let at = lattice_node::parse_at(at)?;
    let (node, store) = ctx.target().await?;
    let key = key.as_bytes();
    let value = node.get_at(&store, key, at).await?;
    if ctx.json {
        ctx.out.json(&render::json::value_at(key, at, value.as_deref()));
        return Ok(if value.is_some() { 0 } else { 1 });
    }
    match value {
        Some(value) => {
            ctx.out.bytes(render::raw_value(value, 1, ctx.opts.terminal, ctx.palette()));
            Ok(0)
        }
        None => {
            ctx.out.err("not found");
            Ok(1)
        }
    }
}

/// `history KEY`: every version this node holds ("not found" and exit 1 if none).
pub(super) async fn history(ctx: &Context<'_>, key: &OsStr) -> Result<i32, Failure> {
    let (node, store) = ctx.target().await?;
    let key = key.as_bytes();
    let versions = node.versions(&store, key).await?;
    if ctx.json {
        ctx.out.json(&render::json::history(key, &versions));
    } else if versions.is_empty() {
        ctx.out.err("not found");
    } else {
        ctx.out.bytes(render::text::history(&versions, ctx.palette()).into_bytes());
    }
    Ok(if versions.is_empty() { 1 } else { 0 })
}

pub(super) async fn delete(ctx: &Context<'_>, key: &OsStr) -> Result<i32, Failure> {
    let (node, store) = ctx.target().await?;
    let key = key.as_bytes();
    let Some(receipt) = node.delete(&store, key.to_vec()).await? else {
        ctx.out.err("not found");
        return Ok(1);
    };
    ctx.print(|| render::json::delete_receipt(key, &store, &receipt), || "deleted\n".into());
    Ok(0)
}

/// Text is printed a page at a time as it is read; JSON is one document, so it waits for all.
pub(super) async fn list(ctx: &Context<'_>, prefix: Option<&OsStr>) -> Result<i32, Failure> {
    let (node, store) = ctx.target().await?;
    let prefix = prefix.map(OsStr::as_bytes).unwrap_or_default();
    let mut items = Vec::new();
    let mut after = None;
    loop {
        let page = node.list_values(&store, prefix, after, LIST_PAGE).await?;
        let full = page.len() == LIST_PAGE;
        after = page.last().map(|(k, _)| k.clone());
        if ctx.json {
            items.extend(page.iter().map(|(k, v)| match v {
                Value::Register(bytes) => lattice_http::list_item(k, bytes),
                other => serde_json::Value::Object(lattice_http::typed_value(k, other)),
            }));
        } else {
            ctx.out.bytes(render::text::key_values(&page));
        }
        if !full {
            break;
        }
    }
    if ctx.json {
        ctx.out.json(&render::json::list(items));
    }
    Ok(0)
}

/// Prints every change to a matching key until the client, the owner or Ctrl-C stops it.
pub(super) async fn watch(ctx: &Context<'_>, pattern: &str) -> Result<i32, Failure> {
    let (node, store) = ctx.target().await?;
    let (_current, mut events) = node.watch(&store, pattern).await?;
    // Printed once the subscription is live: everything written from now on is reported.
    ctx.out.err(format_args!("watching {pattern:?} in store {} (Ctrl-C to stop)", store.name));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => ctx.out.bytes(render::watch_line(&event, ctx.json)),
                None => return Err(Failure::other("the watch ended: the store closed or this watcher fell behind")),
            },
            _ = ctx.out.closed() => return Ok(0),
            _ = ctx.engine.shutting_down() => return Ok(0),
            _ = interrupted(ctx.opts.local) => return Ok(0),
            _ = stopped(ctx.opts.stop.as_ref()) => return Ok(0),
        }
    }
}

/// Resolves on Ctrl-C when `enabled`, never otherwise.
async fn interrupted(enabled: bool) {
    if enabled && tokio::signal::ctrl_c().await.is_ok() {
        return;
    }
    std::future::pending::<()>().await
}

/// Resolves when `token` is cancelled; never without one.
async fn stopped(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}
