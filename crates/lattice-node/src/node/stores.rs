//! The stores of the mesh as this node sees them: declared in the root store's `/stores/`,
//! materialised (active) or archived here, one of them current.

use std::collections::BTreeMap;

use lattice_core::{AuthorId, StoreId};
use lattice_store::{KvStore, StoreStatus};

use super::{Node, StoreRef};
use crate::control::{
    ROOT_NAME, STORES_PREFIX, StoreDecl, StoreField, declare_store_ops, parse_store_decls, store_key,
};
use crate::datadir::DataDir;
use crate::error::NodeError;
use crate::meta::{LocalState, MetaDb};
use crate::time::{now_ms, rfc3339};

/// The name of the store `init` creates and makes current.
pub const DEFAULT_STORE_NAME: &str = "default";
/// Longest store name accepted.
const MAX_STORE_NAME: usize = 64;

/// One line of `list-stores`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    /// The store's uuid.
    pub id: StoreId,
    /// Its declared name (its uuid if the name has not arrived yet).
    pub name: String,
    /// RFC 3339 time of its declaration (empty if not arrived yet).
    pub created_at: String,
    /// Hex id of the node that declared it (empty if not arrived yet).
    pub created_by: String,
    /// `active` or `archived`.
    pub state: LocalState,
}

/// What `status` shows.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// This node's id.
    pub node_id: AuthorId,
    /// The data dir it owns.
    pub data_dir: std::path::PathBuf,
    /// The current store, if one is set and live.
    pub current: Option<StoreRef>,
    /// The root store first, then the live stores in name order.
    pub stores: Vec<(StoreRef, StoreStatus)>,
}

impl Node {
    /// The declarations under `/stores/` of the root store, by uuid.
    async fn declarations(&self) -> Result<BTreeMap<StoreId, StoreDecl>, NodeError> {
        Ok(parse_store_decls(&self.list_root(STORES_PREFIX).await?))
    }

    /// Brings local data in line with the root store: live declared stores are active here,
    /// deleted ones are archived. Runs at open, after every control-plane change, and whenever
    /// a peer's change to `/stores/` arrives.
    pub(crate) async fn reconcile(&self) -> Result<(), NodeError> {
        let decls = self.declarations().await?;
        let local: BTreeMap<StoreId, LocalState> = self.meta.local_stores()?.into_iter().collect();
        for (id, decl) in &decls {
            match (decl.is_live(), local.get(id)) {
                (true, None) => self.meta.set_local_state(*id, LocalState::Active)?,
                (false, Some(LocalState::Active)) | (false, None) => self.archive(*id).await?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Closes store `id` and archives it ([`archive_closed`]).
    async fn archive(&self, id: StoreId) -> Result<(), NodeError> {
        self.stores.close(id).await?;
        archive_closed(&self.dir, &self.meta, id)
    }

    /// Resolves `NAME|UUID|root`, or the current store when `selector` is `None`.
    pub async fn resolve(&self, selector: Option<&str>) -> Result<StoreRef, NodeError> {
        let Some(selector) = selector else {
            return match self.current_store().await? {
                Some(current) => Ok(current),
                None => Err(NodeError::NotFound("no current store: pick one with `lattice use NAME`".into())),
            };
        };
        if selector == ROOT_NAME {
            return Ok(self.root_store());
        }
        let decls = self.declarations().await?;
        if let Ok(id) = StoreId::parse(selector) {
            if id == self.root {
                return Ok(self.root_store());
            }
            return match decls.get(&id) {
                Some(decl) if decl.is_live() => Ok(StoreRef { id, name: decl_name(id, decl) }),
                Some(_) => Err(NodeError::NotFound(format!("store {id} has been deleted"))),
                None => Err(NodeError::NotFound(format!("no store with uuid {id}"))),
            };
        }
        let matches: Vec<StoreId> = decls
            .iter()
            .filter(|(_, d)| d.is_live() && d.name.as_deref() == Some(selector))
            .map(|(id, _)| *id)
            .collect();
        match matches.as_slice() {
            [id] => Ok(StoreRef { id: *id, name: selector.to_string() }),
            [] => Err(NodeError::NotFound(format!("no store named {selector:?}"))),
            many => {
                let ids: Vec<String> = many.iter().map(|id| id.to_string()).collect();
                Err(NodeError::Invalid(format!(
                    "several stores are named {selector:?}; pick one by uuid: {}",
                    ids.join(", ")
                )))
            }
        }
    }

    /// The current store, if one is set and still live.
    pub async fn current_store(&self) -> Result<Option<StoreRef>, NodeError> {
        let Some(id) = self.meta.current_store()? else { return Ok(None) };
        if id == self.root {
            return Ok(Some(self.root_store()));
        }
        let decls = self.declarations().await?;
        Ok(decls.get(&id).filter(|d| d.is_live()).map(|d| StoreRef { id, name: decl_name(id, d) }))
    }

    /// Makes `selector` the current store.
    pub async fn use_store(&self, selector: &str) -> Result<StoreRef, NodeError> {
        let _guard = self.control.lock().await;
        let store = self.resolve(Some(selector)).await?;
        self.meta.set_current_store(Some(store.id))?;
        Ok(store)
    }

    /// After joining: makes the mesh's `default` store current if none is.
    pub(crate) async fn pick_default_store(&self) -> Result<(), NodeError> {
        if self.current_store().await?.is_none()
            && let Ok(store) = self.resolve(Some(DEFAULT_STORE_NAME)).await
        {
            self.meta.set_current_store(Some(store.id))?;
        }
        Ok(())
    }

    /// Declares a new store in the root store and materialises it here.
    pub async fn create_store(&self, name: &str) -> Result<StoreInfo, NodeError> {
        let _guard = self.control.lock().await;
        self.require_admin("create stores").await?;
        validate_store_name(name)?;
        let decls = self.declarations().await?;
        if let Some((id, _)) = decls.iter().find(|(_, d)| d.is_live() && d.name.as_deref() == Some(name)) {
            return Err(NodeError::Exists(format!("a store named {name:?} already exists ({id})")));
        }
        let id = StoreId::new_random();
        let now = rfc3339(now_ms());
        let me = self.node_id();
        self.writer(&self.root_store()).await?.batch(declare_store_ops(id, name, &now, me)).await?;
        self.meta.set_local_state(id, LocalState::Active)?;
        self.stores.get(id).await?;
        Ok(StoreInfo {
            id,
            name: name.to_string(),
            created_at: now,
            created_by: me.to_hex(),
            state: LocalState::Active,
        })
    }

    /// Deletes a store from the mesh: tombstone `/stores/{uuid}/deleted_at`, then archive locally.
    pub async fn delete_store(&self, selector: &str) -> Result<StoreInfo, NodeError> {
        let _guard = self.control.lock().await;
        self.require_admin("delete stores").await?;
        let store = self.resolve(Some(selector)).await?;
        if store.is_root() {
            return Err(NodeError::Invalid("the root store cannot be deleted".into()));
        }
        let decl = self.declarations().await?.remove(&store.id).unwrap_or_default();
        let now = rfc3339(now_ms());
        let root = self.writer(&self.root_store()).await?;
        root.put(store_key(store.id, StoreField::DeletedAt).into_bytes(), now.into_bytes()).await?;
        self.archive(store.id).await?;
        Ok(StoreInfo {
            id: store.id,
            name: store.name,
            created_at: decl.created_at.unwrap_or_default(),
            created_by: decl.created_by.unwrap_or_default(),
            state: LocalState::Archived,
        })
    }

    /// Declared stores in name order (never the root store). Deleted ones only with
    /// `include_archived`, in state `archived`.
    pub async fn list_stores(&self, include_archived: bool) -> Result<Vec<StoreInfo>, NodeError> {
        let decls = self.declarations().await?;
        let local: BTreeMap<StoreId, LocalState> = self.meta.local_stores()?.into_iter().collect();
        let mut out: Vec<StoreInfo> = decls
            .into_iter()
            .filter(|(_, d)| include_archived || d.is_live())
            .map(|(id, d)| StoreInfo {
                id,
                name: decl_name(id, &d),
                state: if d.is_live() {
                    local.get(&id).copied().unwrap_or(LocalState::Active)
                } else {
                    LocalState::Archived
                },
                created_at: d.created_at.unwrap_or_default(),
                created_by: d.created_by.unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| {
            (a.state != LocalState::Active, &a.name, a.id).cmp(&(b.state != LocalState::Active, &b.name, b.id))
        });
        Ok(out)
    }

    /// Node id, data dir, current store and the figures of the root store and every live store.
    pub async fn status(&self) -> Result<NodeStatus, NodeError> {
        let mut stores = vec![];
        let root = self.root_store();
        stores.push((root.clone(), self.stores.get(root.id).await?.status().await?));
        for info in self.list_stores(false).await? {
            let figures = self.stores.get(info.id).await?.status().await?;
            stores.push((StoreRef { id: info.id, name: info.name }, figures));
        }
        Ok(NodeStatus {
            node_id: self.node_id(),
            data_dir: self.dir.path().to_path_buf(),
            current: self.current_store().await?,
            stores,
        })
    }

    /// The root store and every live store held here: what this node serves and syncs.
    pub(crate) async fn active_store_ids(&self) -> Result<Vec<StoreId>, NodeError> {
        let decls = self.declarations().await?;
        let mut out = vec![self.root];
        for (id, state) in self.meta.local_stores()? {
            if id != self.root && state == LocalState::Active && decls.get(&id).is_some_and(|d| d.is_live()) {
                out.push(id);
            }
        }
        Ok(out)
    }
}

/// Archives store `id`, which must be closed: its data moves to `archive/{uuid}` (if it is here,
/// see [`DataDir::archive`]), `meta.db` marks it archived, and it stops being the current store.
pub(super) fn archive_closed(dir: &DataDir, meta: &MetaDb, id: StoreId) -> Result<(), NodeError> {
    if dir.archive(id)? {
        tracing::info!(store = %id, "store archived");
    }
    meta.set_local_state(id, LocalState::Archived)?;
    if meta.current_store()? == Some(id) {
        meta.set_current_store(None)?;
    }
    Ok(())
}

fn decl_name(id: StoreId, decl: &StoreDecl) -> String {
    decl.name.clone().unwrap_or_else(|| id.to_string())
}

/// Store names: 1 to 64 characters of letters, digits, `-`, `_`, `.`; not starting with `-`; not
/// `root`; not a UUID (a UUID selects by id).
fn validate_store_name(name: &str) -> Result<(), NodeError> {
    let bad = |why: &str| Err(NodeError::Invalid(format!("invalid store name {name:?}: {why}")));
    if name.is_empty() || name.len() > MAX_STORE_NAME {
        return bad(&format!("must be 1 to {MAX_STORE_NAME} characters"));
    }
    if !name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return bad("use letters, digits, '-', '_' and '.'");
    }
    if name.starts_with('-') {
        return bad("must not start with '-'");
    }
    if name == ROOT_NAME {
        return bad("\"root\" names the root store");
    }
    if StoreId::parse(name).is_ok() {
        return bad("a UUID selects a store by id");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names() {
        assert!(validate_store_name("default").is_ok());
        assert!(validate_store_name("my.store-2_x").is_ok());
        for bad in ["", "root", "-x", "a b", "a/b", &"x".repeat(65), "0b6f3f4e-8c1e-4c36-9a55-b1b1a1a1a1a1"] {
            assert!(matches!(validate_store_name(bad), Err(NodeError::Invalid(_))), "{bad:?}");
        }
    }
}
