//! `incr`, `decr`, `sadd`, `srem` and `smembers`: counters and sets (DESIGN.md §4, value kinds).
//!
//! KEY and MEMBER are bytes: an argument that is not UTF-8 is used as it is.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use lattice_store::Value;

use super::Context;
use crate::failure::Failure;
use crate::render;

/// Adds `delta` to the counter at `key` (`None`: a `decr` whose negation does not fit an i64);
/// prints the counter's value after the write, as this node sees it.
pub(super) async fn incr(ctx: &Context<'_>, key: &OsStr, delta: Option<i64>) -> Result<i32, Failure> {
    let delta = delta.ok_or_else(|| Failure::usage(format!("decr by {} does not fit a counter delta", i64::MIN)))?;
    let (node, store) = ctx.target().await?;
    let key = key.as_bytes();
    let receipt = node.incr(&store, key.to_vec(), delta).await?;
    let value = match node.value(&store, key).await? {
        Some(Value::Counter(sum)) => Some(sum),
        _ => None,
    };
    ctx.print(
        || render::json::counter_receipt(key, value, &store, &receipt),
        || value.map_or_else(|| "ok\n".to_string(), |sum| format!("{sum}\n")),
    );
    Ok(0)
}

/// Adds (`add`) or removes `members` of the set at `key`, as one entry.
pub(super) async fn sadd(ctx: &Context<'_>, key: &OsStr, members: &[OsString], add: bool) -> Result<i32, Failure> {
    let (node, store) = ctx.target().await?;
    let key = key.as_bytes();
    let members: Vec<Vec<u8>> = members.iter().map(|m| m.as_bytes().to_vec()).collect();
    let receipt = if add {
        node.sadd(&store, key.to_vec(), members).await?
    } else {
        node.srem(&store, key.to_vec(), members).await?
    };
    ctx.print(|| render::json::put_receipt(key, &store, &receipt), || "ok\n".into());
    Ok(0)
}

/// The members of the set at `key`, one a line in byte order; "not found" (exit 1) if the key
/// has no value, an error if it holds another kind.
pub(super) async fn smembers(ctx: &Context<'_>, key: &OsStr) -> Result<i32, Failure> {
    let (node, store) = ctx.target().await?;
    let key = key.as_bytes();
    let Some(members) = node.smembers(&store, key).await? else {
        ctx.out.err("not found");
        return Ok(1);
    };
    ctx.print(
        || serde_json::Value::Object(lattice_http::typed_value(key, &Value::Set(members.clone()))),
        || members.iter().map(|m| format!("{}\n", render::text(m))).collect(),
    );
    Ok(0)
}
