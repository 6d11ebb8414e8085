//! [`Node`]: the data dir opened by its owner. One file per concern:
//!
//! - `lifecycle`: init, open, shutdown, and the switch to another mesh's root store.
//! - `stores`: create, delete, list, use, resolve, reconcile with the root store, status.
//! - `members`: invite, remove, publish this node's own record, read `/nodes/`.
//! - `tokens`: create, list, read and revoke HTTP access tokens.
//! - `kv`: the guarded key-value path users drive (reserved prefixes of the root store refused).

mod authority;
mod kv;
mod lifecycle;
mod members;
mod stores;
mod tokens;

use std::sync::Arc;

use lattice_core::{AuthorId, Identity, StoreId};
use lattice_store::StoreHandle;
use tokio::sync::Mutex;

pub use kv::Lookup;
pub use stores::{DEFAULT_STORE_NAME, NodeStatus, StoreInfo};

pub(crate) use members::hostname;

use crate::control::ROOT_NAME;
use crate::datadir::DataDir;
use crate::error::NodeError;
use crate::lock::DirLock;
use crate::meta::{MeshBinding, MetaDb};
use crate::own_log::{NodeStore, OwnLogs};
use crate::stores::StoreManager;

/// A store picked by name or uuid: what commands act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreRef {
    /// The store's uuid.
    pub id: StoreId,
    /// `root` for the root store, else its declared name.
    pub name: String,
}

impl StoreRef {
    /// True for the root store (the control plane).
    pub fn is_root(&self) -> bool {
        self.name == ROOT_NAME
    }
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
    /// The mesh's genesis admin and root-id nonce (`None` in a data dir from before roots were
    /// bound: this node then counts itself as the genesis admin).
    binding: Option<MeshBinding>,
    /// The effective control plane, folded from the root store.
    authority: std::sync::Mutex<authority::Authority>,
    /// This node's own log per store as its peers hold it: local writes wait for, or are
    /// refused by, it (see `own_log`).
    own: Arc<OwnLogs>,
    _lock: Arc<DirLock>,
}

impl Node {
    /// This node's id (its public key).
    pub fn node_id(&self) -> AuthorId {
        self.identity.author()
    }
    /// The node's key pair (the network layer derives its endpoint key from it).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    /// The data dir this node owns.
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }
    /// The root store (the control plane).
    pub fn root_store(&self) -> StoreRef {
        StoreRef { id: self.root, name: ROOT_NAME.into() }
    }
    /// The node's local metadata (what it knows of its peers, its local stores).
    pub fn meta(&self) -> &MetaDb {
        &self.meta
    }
    /// The raw handle of store `id`, opened if needed: for the network layer (`SyncStore`) and
    /// node-internal control-plane writes. It bypasses the reserved-prefix check, so commands
    /// that users drive go through [`put`](Self::put) / [`delete`](Self::delete) instead.
    pub(crate) async fn store_handle(&self, id: StoreId) -> Result<StoreHandle, NodeError> {
        self.stores.get(id).await
    }
    /// The raw handle of the root store, for a library user that writes entries itself (a test
    /// that forges a member's control-plane entries, a tool). Like
    /// [`store_handle`](Self::store_handle) it bypasses every check of this node: what such
    /// writes may change is decided by the control plane's fold on every node, as for any
    /// entry a peer sends.
    pub async fn root_store_handle(&self) -> Result<StoreHandle, NodeError> {
        self.stores.get(self.root).await
    }
    /// The handle of `store` for a local write, once this node's own log there is known not to
    /// be behind what a peer holds of it (waits briefly while unconfirmed, refuses while
    /// behind: see `own_log`). Every local write goes through here.
    pub(crate) async fn writer(&self, store: &StoreRef) -> Result<StoreHandle, NodeError> {
        self.own.ready(store.id, &store.name).await?;
        self.store_handle(store.id).await
    }
    /// Store `id` as the network layer sees it: what peers hold of this node's own log there
    /// is reported to the node.
    pub(crate) async fn sync_store(&self, id: StoreId) -> Result<NodeStore, NodeError> {
        Ok(NodeStore::new(self.store_handle(id).await?, self.own.clone()))
    }
    /// The node's own-log frontiers (the network arms and disarms them).
    pub(crate) fn own_logs(&self) -> &Arc<OwnLogs> {
        &self.own
    }
    /// Every effective item under the reserved `prefix` of the root store: what took effect in
    /// the control plane, not the raw winners (an operation without the right changes nothing).
    async fn list_root(&self, prefix: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>, NodeError> {
        self.with_plane(|plane| plane.items(prefix)).await
    }
}
