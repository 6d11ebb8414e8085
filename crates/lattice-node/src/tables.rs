//! Every redb table of `meta.db`, in one place. Names carry a version: a change of key or value
//! layout gets a new name and a numbered migration in [`crate::meta`], never a silent reinterpretation.
//!
//! `meta.db` is local to this node and never replicated: what the mesh agrees on lives in the root
//! store; this file only says which store is the root, which one the CLI uses, and what is on disk.

use redb::TableDefinition;

/// Key: a setting name, one of the `SETTING_*` constants below.
/// Value: the setting's bytes (a 16-byte store uuid, or a little-endian `u32` for the schema).
pub(crate) const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings_v1");

/// Key: a store uuid (16 bytes). Value: its local state, `"active"` (data under `stores/{uuid}`)
/// or `"archived"` (deleted from the mesh, data moved to `archive/{uuid}`).
pub(crate) const LOCAL_STORES: TableDefinition<&[u8], &str> = TableDefinition::new("local_stores_v1");

/// Key: a peer's node id (32 bytes). Value: JSON `PeerRecord` (what this node knows of the peer
/// locally: direct addresses it was reached at, last seen, last sync result). Never replicated.
pub(crate) const PEERS: TableDefinition<&[u8], &str> = TableDefinition::new("peers_v1");

/// `SETTINGS` key: the root store's uuid. Written by `init`, replaced by `join`.
pub(crate) const SETTING_ROOT_STORE: &str = "root_store";
/// `SETTINGS` key: the mesh's binding, 48 bytes: the genesis admin's public key (32) and the
/// nonce (16) from which the root store id is derived (`StoreId::root_of`). Written by `init`,
/// replaced by `join`; absent in data dirs made before root ids were bound (their node then
/// counts itself as the genesis admin).
pub(crate) const SETTING_MESH_BINDING: &str = "mesh_binding";
/// `SETTINGS` key: the uuid of the store commands use when no `--store` is given.
pub(crate) const SETTING_CURRENT_STORE: &str = "current_store";
/// `SETTINGS` key: the schema version of this file, `u32` LE.
pub(crate) const SETTING_SCHEMA: &str = "schema";

/// The schema version this code writes and understands.
pub(crate) const SCHEMA_VERSION: u32 = 1;
