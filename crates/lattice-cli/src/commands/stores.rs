//! `create-store`, `list-stores`, `delete-store` and `use`.

use super::Context;
use crate::failure::Failure;
use crate::render;

pub(super) async fn create(ctx: &Context<'_>, name: &str) -> Result<i32, Failure> {
    let info = ctx.node().await?.create_store(name).await?;
    ctx.print(|| render::json::store_info(&info), || format!("created store {} ({})\n", info.name, info.id));
    Ok(0)
}

pub(super) async fn list(ctx: &Context<'_>, all: bool) -> Result<i32, Failure> {
    let stores = ctx.node().await?.list_stores(all).await?;
    ctx.print(|| render::json::stores(&stores), || render::text::stores(&stores, ctx.palette()));
    Ok(0)
}

pub(super) async fn delete(ctx: &Context<'_>, store: &str) -> Result<i32, Failure> {
    let node = ctx.node().await?;
    let info = node.delete_store(store).await?;
    let archive = node.data_dir().archived_store(info.id);
    ctx.print(
        || render::json::deleted_store(&info, &archive),
        || format!("deleted store {} ({}); local data kept in {}\n", info.name, info.id, archive.display()),
    );
    Ok(0)
}

pub(super) async fn use_store(ctx: &Context<'_>, store: &str) -> Result<i32, Failure> {
    let store = ctx.node().await?.use_store(store).await?;
    ctx.print(|| render::json::current_store(&store), || format!("using store {} ({})\n", store.name, store.id));
    Ok(0)
}
