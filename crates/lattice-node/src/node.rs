//! [`Node`]: the data dir opened by its owner. Control plane (init, stores, current store) and the
//! guarded key-value path the CLI uses (reserved prefixes of the root store are refused).

use std::collections::BTreeMap;
use std::sync::Arc;

use lattice_core::entry::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use lattice_core::{AuthorId, Head, Identity, MemberStatus, Op, StoreId};
use lattice_store::{KvStore, StoreConfig, StoreHandle, StoreStatus, WatchEvent, WriteReceipt};
use tokio::sync::{Mutex, mpsc};

use crate::datadir::DataDir;
use crate::error::NodeError;
use crate::lock::DirLock;
use crate::meta::{LocalState, MetaDb};
use crate::root::{
    self, NODES_PREFIX, NodeInfo, NodeRecord, ROOT_NAME, STORES_PREFIX, StoreDecl, StoreField, node_info_key,
    node_status_key, store_key,
};
use crate::stores::StoreManager;
use crate::time::{now_ms, rfc3339};
use crate::tokens::{self, Permissions, TOKENS_PREFIX, TokenRecord, token_key};

/// The name of the store `init` creates and makes current.
pub const DEFAULT_STORE_NAME: &str = "default";
/// Longest store name accepted.
pub const MAX_STORE_NAME: usize = 64;
/// Page size when the node reads a whole prefix (e.g. `/stores/`).
const LIST_PAGE: usize = 1000;

/// A store picked by name or uuid: what commands act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreRef {
    pub id: StoreId,
    /// `root` for the root store, else its declared name.
    pub name: String,
}

impl StoreRef {
    pub fn is_root(&self) -> bool {
        self.name == ROOT_NAME
    }
}

/// One line of `list-stores`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    pub id: StoreId,
    pub name: String,
    pub created_at: String,
    pub created_by: String,
    /// `active` or `archived`.
    pub state: LocalState,
}

/// What `status` shows.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub node_id: AuthorId,
    pub data_dir: std::path::PathBuf,
    pub current: Option<StoreRef>,
    /// The root store first, then the live stores in name order.
    pub stores: Vec<(StoreRef, StoreStatus)>,
}

/// An initialised data dir, opened by the process that owns it.
///
/// Holding a `Node` implies holding the data dir's lock: the constructors take it. Call
/// [`shutdown`](Self::shutdown) before dropping it so every store closes cleanly.
pub struct Node {
    dir: DataDir,
    identity: Identity,
    meta: MetaDb,
    root: StoreId,
    stores: StoreManager,
    // Serialises control-plane changes (create/delete/use), so name checks and writes are atomic
    // with respect to each other inside this process.
    control: Mutex<()>,
    _lock: Arc<DirLock>,
}

impl Node {
    /// Initialises `dir`: identity (reused if `identity.key` already exists), root store, the
    /// `default` store, and `meta.db` last, renamed into place, so a crash leaves no half-initialised
    /// dir (only unreferenced store directories).
    pub async fn init(dir: DataDir, lock: Arc<DirLock>, name: Option<String>) -> Result<Node, NodeError> {
        if dir.is_initialised() {
            return Err(NodeError::AlreadyInitialised(dir.path().to_path_buf()));
        }
        let name = match name {
            Some(n) if n.trim().is_empty() => return Err(NodeError::Invalid("--name must not be empty".into())),
            Some(n) => n,
            None => root::hostname(),
        };
        let key_path = dir.identity_key();
        let identity = if key_path.exists() {
            tracing::info!(path = %key_path.display(), "reusing the existing identity key");
            lattice_store::load_identity(&key_path)?
        } else {
            let identity = Identity::generate();
            lattice_store::save_identity(&key_path, &identity)?;
            identity
        };
        let me = identity.author();
        let root_id = StoreId::new_random();
        let default_id = StoreId::new_random();
        let staging = dir.meta_db_staging();
        let _ = std::fs::remove_file(&staging);
        {
            let meta = MetaDb::create(&staging, root_id)?;
            meta.set_local_state(root_id, LocalState::Active)?;
            meta.set_local_state(default_id, LocalState::Active)?;
            meta.set_current_store(Some(default_id))?;
        }
        let stores = StoreManager::new(dir.clone(), identity.clone(), StoreConfig::default());
        let written = async {
            let root_handle = stores.get(root_id).await?;
            let now = rfc3339(now_ms());
            let info = NodeInfo {
                name,
                hostname: root::hostname(),
                added_at: now.clone(),
                added_by: me.to_hex(),
                addrs: vec![],
            };
            let info = serde_json::to_vec(&info).map_err(|e| NodeError::Corrupt(format!("node info: {e}")))?;
            let mut ops =
                vec![Op::put(node_info_key(me), info), Op::put(node_status_key(me), MemberStatus::Active.as_str())];
            ops.extend(declare_ops(default_id, DEFAULT_STORE_NAME, &now, me));
            root_handle.batch(ops).await?;
            stores.get(default_id).await?;
            Ok::<_, NodeError>(())
        }
        .await;
        let closed = stores.close_all().await;
        written?;
        closed?;
        std::fs::rename(&staging, dir.meta_db())
            .map_err(|e| NodeError::io(format!("cannot create {}", dir.meta_db().display()), e))?;
        sync_dir(dir.path());
        Node::open(dir, lock).await
    }

    /// Opens an initialised data dir and reconciles local stores with the root store.
    pub async fn open(dir: DataDir, lock: Arc<DirLock>) -> Result<Node, NodeError> {
        dir.require_initialised()?;
        let identity = lattice_store::load_identity(&dir.identity_key())?;
        let meta = MetaDb::open(&dir.meta_db())?;
        let root = meta.root_store()?;
        let stores = StoreManager::new(dir.clone(), identity.clone(), StoreConfig::default());
        let node = Node { dir, identity, meta, root, stores, control: Mutex::new(()), _lock: lock };
        node.reconcile().await?;
        Ok(node)
    }

    /// Closes every open store. The node refuses further store access afterwards.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.stores.close_all().await
    }

    pub fn node_id(&self) -> AuthorId {
        self.identity.author()
    }
    /// The node's key pair (the network layer derives its endpoint key from it).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    /// The raw handle of store `id`, opened if needed: for the network layer (`SyncStore`) and
    /// node-internal control-plane writes. It bypasses the reserved-prefix check, so commands
    /// that users drive go through [`put`](Self::put) / [`delete`](Self::delete) instead.
    pub async fn store_handle(&self, id: StoreId) -> Result<StoreHandle, NodeError> {
        self.stores.get(id).await
    }
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }
    pub fn root_store(&self) -> StoreRef {
        StoreRef { id: self.root, name: ROOT_NAME.into() }
    }

    // ---- control plane ------------------------------------------------------------------------

    /// The declarations under `/stores/` of the root store, by uuid.
    async fn declarations(&self) -> Result<BTreeMap<StoreId, StoreDecl>, NodeError> {
        let root = self.stores.get(self.root).await?;
        let items = list_all(&root, STORES_PREFIX.as_bytes()).await?;
        Ok(root::parse_store_decls(&items))
    }

    /// Brings local data in line with the root store: live declared stores are active here,
    /// deleted ones are archived. Runs at open, after every control-plane change, and whenever
    /// a peer's change to `/stores/` arrives.
    pub async fn reconcile(&self) -> Result<(), NodeError> {
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

    /// Closes store `id` and moves `stores/{uuid}` to `archive/{uuid}` (if it exists here).
    async fn archive(&self, id: StoreId) -> Result<(), NodeError> {
        self.stores.close(id).await?;
        let from = self.dir.store(id);
        if from.exists() {
            let to = self.dir.archived_store(id);
            std::fs::create_dir_all(self.dir.archive_dir())
                .map_err(|e| NodeError::io(format!("cannot create {}", self.dir.archive_dir().display()), e))?;
            if to.exists() {
                // An earlier archive of the same store (cannot normally happen): keep both.
                let aside = self.dir.archive_dir().join(format!("{id}.{}", now_ms()));
                std::fs::rename(&to, &aside).map_err(|e| NodeError::io(format!("cannot move {}", to.display()), e))?;
            }
            std::fs::rename(&from, &to).map_err(|e| NodeError::io(format!("cannot archive {}", from.display()), e))?;
            sync_dir(&self.dir.archive_dir());
            tracing::info!(store = %id, "store archived");
        }
        self.meta.set_local_state(id, LocalState::Archived)?;
        if self.meta.current_store()? == Some(id) {
            self.meta.set_current_store(None)?;
        }
        Ok(())
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

    /// Declares a new store in the root store and materialises it here.
    pub async fn create_store(&self, name: &str) -> Result<StoreInfo, NodeError> {
        validate_store_name(name)?;
        let _guard = self.control.lock().await;
        let decls = self.declarations().await?;
        if let Some((id, _)) = decls.iter().find(|(_, d)| d.is_live() && d.name.as_deref() == Some(name)) {
            return Err(NodeError::Exists(format!("a store named {name:?} already exists ({id})")));
        }
        let id = StoreId::new_random();
        let now = rfc3339(now_ms());
        let me = self.node_id();
        self.stores.get(self.root).await?.batch(declare_ops(id, name, &now, me)).await?;
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
        let store = self.resolve(Some(selector)).await?;
        if store.is_root() {
            return Err(NodeError::Invalid("the root store cannot be deleted".into()));
        }
        let decl = self.declarations().await?.remove(&store.id).unwrap_or_default();
        let now = rfc3339(now_ms());
        let root = self.stores.get(self.root).await?;
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

    // ---- the mesh: peers ------------------------------------------------------------------------

    pub fn meta(&self) -> &MetaDb {
        &self.meta
    }

    /// Every node the root store knows, with its status and info.
    pub async fn node_records(&self) -> Result<BTreeMap<AuthorId, NodeRecord>, NodeError> {
        let root = self.stores.get(self.root).await?;
        Ok(root::parse_node_records(&list_all(&root, NODES_PREFIX.as_bytes()).await?))
    }

    /// A node's status in the root store, if it has one (a value that spells no status counts
    /// as none).
    pub async fn node_status(&self, peer: AuthorId) -> Result<Option<MemberStatus>, NodeError> {
        let root = self.stores.get(self.root).await?;
        let value = root.get(node_status_key(peer).as_bytes()).await?;
        Ok(value.and_then(|v| std::str::from_utf8(&v).ok().and_then(MemberStatus::parse)))
    }

    /// Invites a node: `/nodes/{pk}/status = invited` (it may then join).
    pub async fn invite(&self, peer: AuthorId) -> Result<(), NodeError> {
        if peer == self.node_id() {
            return Err(NodeError::Invalid("a node cannot invite itself".into()));
        }
        let _guard = self.control.lock().await;
        if self.node_status(peer).await? == Some(MemberStatus::Active) {
            return Err(NodeError::Exists(format!("node {peer} is already an active member")));
        }
        let root = self.stores.get(self.root).await?;
        let mut ops = vec![Op::put(node_status_key(peer), MemberStatus::Invited.as_str())];
        if root.get(node_info_key(peer).as_bytes()).await?.is_none() {
            let info = NodeInfo {
                name: String::new(),
                hostname: String::new(),
                added_at: rfc3339(now_ms()),
                added_by: self.node_id().to_hex(),
                addrs: vec![],
            };
            ops.push(Op::put(node_info_key(peer), json_bytes(&info)?));
        }
        root.batch(ops).await?;
        Ok(())
    }

    /// Removes a node from the mesh: `/nodes/{pk}/status = removed`; its connections are refused.
    pub async fn remove_peer(&self, peer: AuthorId) -> Result<(), NodeError> {
        if peer == self.node_id() {
            return Err(NodeError::Invalid("a node cannot remove itself".into()));
        }
        let _guard = self.control.lock().await;
        if self.node_status(peer).await?.is_none() {
            return Err(NodeError::NotFound(format!("node {peer} is not in this mesh")));
        }
        self.stores
            .get(self.root)
            .await?
            .put(node_status_key(peer).into_bytes(), MemberStatus::Removed.as_str().as_bytes().to_vec())
            .await?;
        Ok(())
    }

    /// Creates an HTTP access token for a store. Returns its record and the secret, which is
    /// stored only as a hash: this is the one time it can be shown.
    pub async fn create_token(
        &self,
        store: &str,
        name: Option<String>,
        permissions: Permissions,
        expires_in: Option<std::time::Duration>,
    ) -> Result<(TokenRecord, String), NodeError> {
        let store = self.resolve(Some(store)).await?;
        if store.is_root() {
            return Err(NodeError::Invalid("tokens grant access to declared stores, not to the root store".into()));
        }
        let (id, secret) = tokens::generate();
        let now = now_ms();
        let record = TokenRecord {
            id: id.clone(),
            store_id: Some(store.id),
            secret_hash: tokens::secret_hash(&secret),
            permissions: Some(permissions),
            name: name.unwrap_or_default(),
            created_at: Some(rfc3339(now)),
            expires_at: expires_in.map(|d| rfc3339(now.saturating_add(d.as_millis() as u64))),
            revoked_at: None,
        };
        let mut ops = vec![
            Op::put(token_key(&id, "store_id"), store.id.to_string()),
            Op::put(token_key(&id, "secret_hash"), record.secret_hash.clone()),
            Op::put(token_key(&id, "permissions"), permissions.as_str()),
            Op::put(token_key(&id, "name"), record.name.clone()),
        ];
        for (field, value) in [("created_at", &record.created_at), ("expires_at", &record.expires_at)] {
            if let Some(value) = value {
                ops.push(Op::put(token_key(&id, field), value.clone()));
            }
        }
        self.stores.get(self.root).await?.batch(ops).await?;
        Ok((record, secret))
    }

    /// Every token of the mesh (revoked and expired ones too), by id.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, NodeError> {
        let root = self.stores.get(self.root).await?;
        Ok(tokens::parse_token_records(&list_all(&root, TOKENS_PREFIX.as_bytes()).await?).into_values().collect())
    }

    /// One token's record, if it exists.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>, NodeError> {
        if !tokens::is_token_id(id) {
            return Ok(None);
        }
        let root = self.stores.get(self.root).await?;
        let prefix = token_key(id, "");
        Ok(tokens::parse_token_records(&list_all(&root, prefix.as_bytes()).await?).remove(id))
    }

    /// Revokes a token: from now on (on every node, once synced) it is refused.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenRecord, NodeError> {
        let _guard = self.control.lock().await;
        let mut record = self.token(id).await?.ok_or_else(|| NodeError::NotFound(format!("no token {id:?}")))?;
        if record.revoked_at.is_none() {
            let at = rfc3339(now_ms());
            self.stores
                .get(self.root)
                .await?
                .put(token_key(id, "revoked_at").into_bytes(), at.clone().into_bytes())
                .await?;
            record.revoked_at = Some(at);
        }
        Ok(record)
    }

    /// Writes this node's own record: info (name, hostname, addresses; who added it is kept)
    /// and `status = active`. Done after joining and whenever the listen addresses change.
    pub async fn publish_self(&self, name: Option<String>, addrs: Vec<String>) -> Result<(), NodeError> {
        let me = self.node_id();
        let root = self.stores.get(self.root).await?;
        let old: Option<NodeInfo> =
            root.get(node_info_key(me).as_bytes()).await?.and_then(|v| serde_json::from_slice(&v).ok());
        let status = self.node_status(me).await?;
        let info = NodeInfo {
            name: name
                .or_else(|| old.as_ref().map(|o| o.name.clone()).filter(|n| !n.is_empty()))
                .unwrap_or_else(root::hostname),
            hostname: root::hostname(),
            added_at: old.as_ref().map(|o| o.added_at.clone()).unwrap_or_else(|| rfc3339(now_ms())),
            added_by: old.as_ref().map(|o| o.added_by.clone()).unwrap_or_else(|| me.to_hex()),
            addrs,
        };
        if old.as_ref() == Some(&info) && status == Some(MemberStatus::Active) {
            return Ok(());
        }
        root.batch(vec![
            Op::put(node_info_key(me), json_bytes(&info)?),
            Op::put(node_status_key(me), MemberStatus::Active.as_str()),
        ])
        .await?;
        Ok(())
    }

    /// The root store and every live store held here: what this node serves and syncs.
    pub async fn active_store_ids(&self) -> Result<Vec<StoreId>, NodeError> {
        let decls = self.declarations().await?;
        let mut out = vec![self.root];
        for (id, state) in self.meta.local_stores()? {
            if id != self.root && state == LocalState::Active && decls.get(&id).is_some_and(|d| d.is_live()) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// True if nothing but this node has ever written to its root store (a fresh `init`):
    /// such a node may join another mesh.
    pub async fn is_fresh(&self) -> Result<bool, NodeError> {
        let root = self.stores.get(self.root).await?;
        let state = lattice_store::SyncStore::sync_state(&root).await?;
        Ok(state.authors.keys().all(|a| *a == self.node_id()))
    }

    /// Makes `root` this node's root store, archiving the stores of the mesh it leaves (only
    /// allowed for a fresh node, see [`is_fresh`](Self::is_fresh)). The node must be reopened.
    pub async fn switch_root(self, root: StoreId) -> Result<(DataDir, Arc<DirLock>), NodeError> {
        let Node { dir, meta, stores, _lock, .. } = self;
        stores.close_all().await?;
        for (id, state) in meta.local_stores()? {
            if state == LocalState::Active && id != root {
                let from = dir.store(id);
                if from.exists() {
                    std::fs::create_dir_all(dir.archive_dir())
                        .map_err(|e| NodeError::io(format!("cannot create {}", dir.archive_dir().display()), e))?;
                    std::fs::rename(&from, dir.archived_store(id))
                        .map_err(|e| NodeError::io(format!("cannot archive {}", from.display()), e))?;
                }
                meta.set_local_state(id, LocalState::Archived)?;
            }
        }
        meta.set_local_state(root, LocalState::Active)?;
        meta.set_root_store(root)?;
        meta.set_current_store(None)?;
        Ok((dir, _lock))
    }

    /// After joining: makes the mesh's `default` store current if none is.
    pub async fn pick_default_store(&self) -> Result<(), NodeError> {
        if self.current_store().await?.is_none()
            && let Ok(store) = self.resolve(Some(DEFAULT_STORE_NAME)).await
        {
            self.meta.set_current_store(Some(store.id))?;
        }
        Ok(())
    }

    // ---- key-value path (what users may do) ----------------------------------------------------

    async fn handle(&self, store: &StoreRef) -> Result<StoreHandle, NodeError> {
        self.stores.get(store.id).await
    }

    /// Refuses writes into the root store's reserved prefixes.
    fn check_writable(&self, store: &StoreRef, key: &[u8]) -> Result<(), NodeError> {
        if store.id == self.root
            && let Some(prefix) = root::reserved_prefix(key)
        {
            return Err(NodeError::Reserved { key: String::from_utf8_lossy(key).into_owned(), prefix });
        }
        Ok(())
    }

    pub async fn put(&self, store: &StoreRef, key: Vec<u8>, value: Vec<u8>) -> Result<WriteReceipt, NodeError> {
        validate_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(NodeError::Invalid(format!(
                "value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            )));
        }
        self.check_writable(store, &key)?;
        Ok(self.handle(store).await?.put(key, value).await?)
    }

    /// Deletes `key`; `None` if it had no visible value (nothing is written then).
    pub async fn delete(&self, store: &StoreRef, key: Vec<u8>) -> Result<Option<WriteReceipt>, NodeError> {
        validate_key(&key)?;
        self.check_writable(store, &key)?;
        Ok(self.handle(store).await?.delete(key).await?)
    }

    pub async fn get(&self, store: &StoreRef, key: &[u8]) -> Result<Option<Vec<u8>>, NodeError> {
        validate_key(key)?;
        Ok(self.handle(store).await?.get(key).await?)
    }

    /// Every head of `key`, winner first (empty if the key was never written).
    pub async fn get_heads(&self, store: &StoreRef, key: &[u8]) -> Result<Vec<Head>, NodeError> {
        validate_key(key)?;
        Ok(self.handle(store).await?.get_heads(key).await?)
    }

    /// Visible keys under `prefix`, in key order, after `after`, at most `limit`.
    pub async fn list(
        &self,
        store: &StoreRef,
        prefix: &[u8],
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, NodeError> {
        Ok(self.handle(store).await?.list(prefix, after, limit).await?)
    }

    /// Current matches of `pattern` (a regex over keys) and a stream of later changes.
    pub async fn watch(
        &self,
        store: &StoreRef,
        pattern: &str,
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, mpsc::Receiver<WatchEvent>), NodeError> {
        regex::bytes::Regex::new(pattern).map_err(|e| {
            // regex errors span several lines (pattern, caret, reason): keep the reason.
            let text = e.to_string();
            let reason = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
            NodeError::Invalid(format!("invalid pattern {pattern:?}: {}", reason.trim().trim_start_matches("error: ")))
        })?;
        Ok(self.handle(store).await?.watch(pattern).await?)
    }
}

fn json_bytes<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, NodeError> {
    serde_json::to_vec(value).map_err(|e| NodeError::Corrupt(format!("json: {e}")))
}

/// The ops that declare store `id` in the root store.
fn declare_ops(id: StoreId, name: &str, now: &str, by: AuthorId) -> Vec<Op> {
    vec![
        Op::put(store_key(id, StoreField::Name), name),
        Op::put(store_key(id, StoreField::CreatedAt), now),
        Op::put(store_key(id, StoreField::CreatedBy), by.to_hex()),
    ]
}

fn decl_name(id: StoreId, decl: &StoreDecl) -> String {
    decl.name.clone().unwrap_or_else(|| id.to_string())
}

/// Every visible item under `prefix`, page by page.
async fn list_all(handle: &StoreHandle, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, NodeError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = handle.list(prefix, after, LIST_PAGE).await?;
        let full = page.len() == LIST_PAGE;
        after = page.last().map(|(k, _)| k.clone());
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

fn validate_key(key: &[u8]) -> Result<(), NodeError> {
    if key.is_empty() {
        return Err(NodeError::Invalid("key must not be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(NodeError::Invalid(format!("key of {} bytes is over the {MAX_KEY_BYTES}-byte limit", key.len())));
    }
    Ok(())
}

/// Store names: 1 to 64 characters of letters, digits, `-`, `_`, `.`; not starting with `-`; not
/// `root`; not a UUID (a UUID selects by id).
pub fn validate_store_name(name: &str) -> Result<(), NodeError> {
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

/// fsyncs a directory so a rename inside it is durable. Best effort: failures are logged.
fn sync_dir(path: &std::path::Path) {
    if let Err(e) = std::fs::File::open(path).and_then(|f| f.sync_all()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot fsync directory");
    }
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

    #[test]
    fn keys() {
        assert!(validate_key(b"k").is_ok());
        assert!(validate_key(b"").is_err());
        assert!(validate_key(&vec![b'k'; MAX_KEY_BYTES + 1]).is_err());
    }
}
