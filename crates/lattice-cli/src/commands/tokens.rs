//! `create-token`, `list-tokens` and `revoke-token`: HTTP access tokens.

use lattice_node::{Permissions, now_ms};

use super::Context;
use crate::failure::Failure;
use crate::render;

pub(super) async fn create(
    ctx: &Context<'_>,
    store: &str,
    name: Option<String>,
    permissions: &str,
    expires: Option<&str>,
    rate: Option<&str>,
) -> Result<i32, Failure> {
    let permissions: Permissions = permissions.parse()?;
    let expires = expires.map(lattice_node::parse_duration).transpose()?;
    let rate = rate.map(lattice_node::parse_rate).transpose()?;
    let (record, secret) = ctx.node().await?.create_rated_token(store, name, permissions, expires, rate).await?;
    let token = format!("{}:{secret}", record.id);
    ctx.print(|| render::json::created_token(&record, &secret, &token, now_ms()), || format!("{token}\n"));
    Ok(0)
}

pub(super) async fn list(ctx: &Context<'_>) -> Result<i32, Failure> {
    let tokens = ctx.node().await?.list_tokens().await?;
    let now = now_ms();
    ctx.print(|| render::json::tokens(&tokens, now), || render::text::tokens(&tokens, now, ctx.palette()));
    Ok(0)
}

pub(super) async fn revoke(ctx: &Context<'_>, id: &str) -> Result<i32, Failure> {
    let record = ctx.node().await?.revoke_token(id).await?;
    ctx.print(|| render::json::token(&record, now_ms()), || format!("revoked token {}\n", record.id));
    Ok(0)
}
