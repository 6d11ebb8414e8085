//! A node's life: `init` (a new data dir), `open`, `shutdown`, and the one-way switch of a
//! fresh node to the root store of the mesh it joins.

use std::sync::Arc;

use lattice_core::{Identity, MemberStatus, StoreId};
use lattice_store::{KvStore, StoreConfig};
use tokio::sync::Mutex;

use super::authority::Authority;
use super::{DEFAULT_STORE_NAME, Node};
use crate::control::{NodeInfo, declare_store_ops, node_info_op, node_status_op};
use crate::datadir::DataDir;
use crate::error::NodeError;
use crate::lock::DirLock;
use crate::meta::{LocalState, MeshBinding, MetaDb};
use crate::node::hostname;
use crate::stores::StoreManager;
use crate::time::{now_ms, rfc3339};

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
            None => hostname(),
        };
        // A dir that existed before `init` (e.g. made by `mkdir`, 0755) becomes private too.
        dir.make_private()?;
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
        let binding = MeshBinding::generate(me);
        let root_id = binding.root();
        let default_id = StoreId::new_random();
        let staging = dir.meta_db_staging();
        let _ = std::fs::remove_file(&staging);
        {
            let meta = MetaDb::create(&staging, root_id)?;
            meta.set_local_state(root_id, LocalState::Active)?;
            meta.set_local_state(default_id, LocalState::Active)?;
            meta.set_current_store(Some(default_id))?;
            meta.set_mesh_binding(&binding)?;
        }
        let stores = StoreManager::new(dir.clone(), identity.clone(), StoreConfig::default());
        let written = async {
            let root_handle = stores.get(root_id).await?;
            let now = rfc3339(now_ms());
            let info =
                NodeInfo { name, hostname: hostname(), added_at: now.clone(), added_by: me.to_hex(), addrs: vec![] };
            let mut ops = vec![node_info_op(me, &info)?, node_status_op(me, MemberStatus::Active)];
            ops.extend(declare_store_ops(default_id, DEFAULT_STORE_NAME, &now, me));
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
        // meta.db's name is what marks the data dir initialised: durable before init succeeds.
        lattice_store::durable::sync_dir(dir.path())
            .map_err(|e| NodeError::io(format!("cannot fsync {}", dir.path().display()), e))?;
        Node::open(dir, lock).await
    }

    /// Opens an initialised data dir and reconciles local stores with the root store.
    pub async fn open(dir: DataDir, lock: Arc<DirLock>) -> Result<Node, NodeError> {
        dir.require_initialised()?;
        dir.require_private()?;
        let identity = lattice_store::load_identity(&dir.identity_key())?;
        let meta = MetaDb::open(&dir.meta_db())?;
        let root = meta.root_store()?;
        let binding = meta.mesh_binding()?;
        let genesis = binding.map_or(identity.author(), |b| b.genesis);
        let authority = std::sync::Mutex::new(Authority::new(genesis, root));
        let stores = StoreManager::new(dir.clone(), identity.clone(), StoreConfig::default());
        let node = Node {
            dir,
            identity,
            meta,
            root,
            stores,
            control: Mutex::new(()),
            binding,
            authority,
            own: Arc::default(),
            _lock: lock,
        };
        node.reconcile().await?;
        Ok(node)
    }

    /// Closes every open store. The node refuses further store access afterwards.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.stores.close_all().await
    }

    /// True if nothing but this node has ever written to its root store (a fresh `init`):
    /// such a node may join another mesh.
    pub(crate) async fn is_fresh(&self) -> Result<bool, NodeError> {
        let root = self.stores.get(self.root).await?;
        let state = lattice_store::SyncStore::sync_state(&root).await?;
        Ok(state.authors.keys().all(|a| *a == self.node_id()))
    }

    /// Makes `root` this node's root store, archiving the stores of the mesh it leaves (only
    /// allowed for a fresh node, see [`is_fresh`](Self::is_fresh)). The node must be reopened.
    pub(crate) async fn switch_root(self, binding: MeshBinding) -> Result<(DataDir, Arc<DirLock>), NodeError> {
        let root = binding.root();
        let Node { dir, meta, stores, _lock, .. } = self;
        stores.close_all().await?;
        for (id, state) in meta.local_stores()? {
            if state == LocalState::Active && id != root {
                super::stores::archive_closed(&dir, &meta, id)?;
            }
        }
        meta.set_local_state(root, LocalState::Active)?;
        meta.set_root_store(root)?;
        meta.set_mesh_binding(&binding)?;
        meta.set_current_store(None)?;
        Ok((dir, _lock))
    }
}
