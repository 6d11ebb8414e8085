//! `meta.db`: the node's local metadata (root store id, current store, local store table).
//!
//! Tables are declared in [`crate::tables`]. Every write commits with redb's default (immediate)
//! durability: these writes are rare and must survive a crash.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lattice_core::{AuthorId, StoreId};
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::error::NodeError;
use crate::tables::{
    LOCAL_STORES, PEERS, SCHEMA_VERSION, SETTING_CURRENT_STORE, SETTING_MESH_BINDING, SETTING_ROOT_STORE,
    SETTING_SCHEMA, SETTINGS,
};

/// Whether a store's data is live on this node or archived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalState {
    /// Data under `stores/{uuid}`, served and synced.
    Active,
    /// Deleted from the mesh; data under `archive/{uuid}`, never served.
    Archived,
}

impl LocalState {
    /// Every state.
    pub const ALL: [LocalState; 2] = [LocalState::Active, LocalState::Archived];

    /// The stored spelling: `active` or `archived`.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalState::Active => "active",
            LocalState::Archived => "archived",
        }
    }

    /// The state a stored value spells, if it spells one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What this node knows locally about a peer (`meta.db`, table `peers_v1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerRecord {
    /// Direct addresses the peer was reached at or announced (`host:port`).
    #[serde(default)]
    pub addrs: Vec<String>,
    /// RFC 3339 time of the last connection either way.
    #[serde(default)]
    pub last_seen: Option<String>,
    /// RFC 3339 time and result of the last sync (`ok: N received, M sent` or the error).
    #[serde(default)]
    pub last_sync: Option<String>,
    /// Whether that last sync succeeded.
    #[serde(default)]
    pub last_sync_ok: Option<bool>,
}

impl PeerRecord {
    /// Puts `addr` first among the addresses tried for this peer (once).
    pub(crate) fn remember_addr(&mut self, addr: String) {
        if !self.addrs.contains(&addr) {
            self.addrs.insert(0, addr);
        }
    }
}

/// An open `meta.db`.
pub struct MetaDb {
    db: Database,
}

/// Who founded the mesh, and the nonce its root store id was derived from (docs/design.md,
/// Control plane): every member can check `root == StoreId::root_of(genesis, nonce)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeshBinding {
    /// The node that ran `init`: the genesis admin.
    pub genesis: AuthorId,
    /// 16 random bytes chosen at `init`.
    pub nonce: [u8; 16],
}

impl MeshBinding {
    /// A new mesh founded by `genesis`, with a fresh random nonce.
    pub fn generate(genesis: AuthorId) -> MeshBinding {
        MeshBinding { genesis, nonce: rand::random() }
    }

    /// The root store id this binding derives.
    pub fn root(&self) -> StoreId {
        StoreId::root_of(&self.genesis, &self.nonce)
    }

    fn to_bytes(self) -> Vec<u8> {
        [self.genesis.as_bytes().as_slice(), &self.nonce].concat()
    }

    fn from_bytes(bytes: &[u8]) -> Option<MeshBinding> {
        let genesis = AuthorId::from_bytes(bytes.get(..32)?).ok()?;
        let nonce = bytes.get(32..)?.try_into().ok()?;
        Some(MeshBinding { genesis, nonce })
    }
}

fn db_err(e: impl Into<redb::Error>) -> NodeError {
    NodeError::Meta(e.into())
}

impl MetaDb {
    /// Creates a new `meta.db` at `path` with its tables, the schema version and the root store.
    pub(crate) fn create(path: &Path, root: StoreId) -> Result<MetaDb, NodeError> {
        let db = Database::create(path).map_err(db_err)?;
        // redb creates the file with the process's default mode; meta.db is private (0600).
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| NodeError::io(format!("cannot chmod {}", path.display()), e))?;
        let meta = MetaDb { db };
        let tx = meta.db.begin_write().map_err(db_err)?;
        {
            let mut settings = tx.open_table(SETTINGS).map_err(db_err)?;
            settings.insert(SETTING_SCHEMA, SCHEMA_VERSION.to_le_bytes().as_slice()).map_err(db_err)?;
            settings.insert(SETTING_ROOT_STORE, root.as_bytes().as_slice()).map_err(db_err)?;
            tx.open_table(LOCAL_STORES).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(meta)
    }

    /// Opens an existing `meta.db`, refusing a schema it does not know.
    pub(crate) fn open(path: &Path) -> Result<MetaDb, NodeError> {
        let db = Database::open(path).map_err(db_err)?;
        let meta = MetaDb { db };
        let schema = meta.setting(SETTING_SCHEMA)?.and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok());
        match schema.map(u32::from_le_bytes) {
            Some(SCHEMA_VERSION) => Ok(meta),
            Some(other) => Err(NodeError::Corrupt(format!(
                "{} has schema version {other}; this lattice understands version {SCHEMA_VERSION}",
                path.display()
            ))),
            None => Err(NodeError::Corrupt(format!("{} has no schema version", path.display()))),
        }
    }

    fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, NodeError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = match tx.open_table(SETTINGS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        Ok(table.get(name).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    fn set_setting(&self, name: &str, value: Option<&[u8]>) -> Result<(), NodeError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(SETTINGS).map_err(db_err)?;
            match value {
                Some(v) => drop(table.insert(name, v).map_err(db_err)?),
                None => drop(table.remove(name).map_err(db_err)?),
            }
        }
        tx.commit().map_err(db_err)
    }

    fn store_setting(&self, name: &str) -> Result<Option<StoreId>, NodeError> {
        match self.setting(name)? {
            None => Ok(None),
            Some(bytes) => StoreId::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| NodeError::Corrupt(format!("meta.db setting {name}: {e}"))),
        }
    }

    /// The root store's id.
    pub(crate) fn root_store(&self) -> Result<StoreId, NodeError> {
        self.store_setting(SETTING_ROOT_STORE)?
            .ok_or_else(|| NodeError::Corrupt("meta.db does not name a root store".into()))
    }

    /// Makes `root` this node's root store (used when joining a mesh).
    pub(crate) fn set_root_store(&self, root: StoreId) -> Result<(), NodeError> {
        self.set_setting(SETTING_ROOT_STORE, Some(root.as_bytes().as_slice()))
    }

    /// The mesh's binding (genesis admin, nonce), if this data dir records one.
    pub(crate) fn mesh_binding(&self) -> Result<Option<MeshBinding>, NodeError> {
        let Some(bytes) = self.setting(SETTING_MESH_BINDING)? else { return Ok(None) };
        MeshBinding::from_bytes(&bytes)
            .map(Some)
            .ok_or_else(|| NodeError::Corrupt(format!("meta.db setting {SETTING_MESH_BINDING}: {} bytes", bytes.len())))
    }

    /// Records the mesh's binding (at `init`, and when joining a mesh).
    pub(crate) fn set_mesh_binding(&self, binding: &MeshBinding) -> Result<(), NodeError> {
        self.set_setting(SETTING_MESH_BINDING, Some(&binding.to_bytes()))
    }

    /// What this node knows locally about a peer (addresses, last contact).
    pub fn peer(&self, id: AuthorId) -> Result<PeerRecord, NodeError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = match tx.open_table(PEERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(PeerRecord::default()),
            Err(e) => return Err(db_err(e)),
        };
        let value = table.get(id.0.as_slice()).map_err(db_err)?;
        Ok(value.and_then(|v| serde_json::from_str(v.value()).ok()).unwrap_or_default())
    }

    /// Updates the local record of a peer.
    pub(crate) fn update_peer(&self, id: AuthorId, f: impl FnOnce(&mut PeerRecord)) -> Result<(), NodeError> {
        let mut record = self.peer(id)?;
        f(&mut record);
        let text = serde_json::to_string(&record).map_err(|e| NodeError::Corrupt(format!("peer record: {e}")))?;
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(PEERS).map_err(db_err)?;
            table.insert(id.0.as_slice(), text.as_str()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// The store commands use when no `--store` is given, if one is set.
    pub(crate) fn current_store(&self) -> Result<Option<StoreId>, NodeError> {
        self.store_setting(SETTING_CURRENT_STORE)
    }

    /// Sets (or, with `None`, clears) the current store.
    pub(crate) fn set_current_store(&self, id: Option<StoreId>) -> Result<(), NodeError> {
        self.set_setting(SETTING_CURRENT_STORE, id.as_ref().map(|id| id.as_bytes().as_slice()))
    }

    /// Every store this node holds data for, in uuid order.
    pub(crate) fn local_stores(&self) -> Result<Vec<(StoreId, LocalState)>, NodeError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(LOCAL_STORES).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let id =
                StoreId::from_bytes(k.value()).map_err(|e| NodeError::Corrupt(format!("meta.db local store: {e}")))?;
            let state = LocalState::parse(v.value())
                .ok_or_else(|| NodeError::Corrupt(format!("meta.db: store {id} has unknown state {:?}", v.value())))?;
            out.push((id, state));
        }
        Ok(out)
    }

    /// The local state of store `id`, if this node holds it.
    #[cfg(test)]
    fn local_state(&self, id: StoreId) -> Result<Option<LocalState>, NodeError> {
        Ok(self.local_stores()?.into_iter().find(|(s, _)| *s == id).map(|(_, state)| state))
    }

    /// Records the local state of store `id`.
    pub(crate) fn set_local_state(&self, id: StoreId, state: LocalState) -> Result<(), NodeError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(LOCAL_STORES).map_err(db_err)?;
            table.insert(id.as_bytes().as_slice(), state.as_str()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_local_stores_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("meta.db");
        let root = StoreId::new_random();
        let other = StoreId::new_random();
        {
            let meta = MetaDb::create(&path, root).unwrap();
            assert_eq!(meta.current_store().unwrap(), None);
            meta.set_current_store(Some(other)).unwrap();
            meta.set_local_state(root, LocalState::Active).unwrap();
            meta.set_local_state(other, LocalState::Active).unwrap();
            meta.set_local_state(other, LocalState::Archived).unwrap();
        }
        let meta = MetaDb::open(&path).unwrap();
        assert_eq!(meta.root_store().unwrap(), root);
        assert_eq!(meta.current_store().unwrap(), Some(other));
        assert_eq!(meta.local_state(other).unwrap(), Some(LocalState::Archived));
        assert_eq!(meta.local_state(root).unwrap(), Some(LocalState::Active));
        assert_eq!(meta.local_stores().unwrap().len(), 2);
        meta.set_current_store(None).unwrap();
        assert_eq!(meta.current_store().unwrap(), None);
    }
}
