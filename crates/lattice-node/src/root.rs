//! The root store's control-plane keys (DESIGN.md section 7): how they are spelled, which
//! prefixes are reserved, and how the `/stores/` declarations read back.
//!
//! Only node code writes under the reserved prefixes, through [`crate::Node`]'s privileged path;
//! the user-facing `put`/`delete` refuse them ([`reserved_prefix`]).

use std::collections::BTreeMap;

use lattice_core::{AuthorId, MemberStatus, StoreId};
use serde::{Deserialize, Serialize};

/// The name under which the root store is shown and selected (`--store root`).
pub const ROOT_NAME: &str = "root";
/// Prefixes of the root store that change only through their commands.
pub const RESERVED_PREFIXES: [&str; 3] = ["/nodes/", "/stores/", "/tokens/"];
/// Where stores are declared: `/stores/{uuid}/{name|created_at|created_by|deleted_at}`.
pub const STORES_PREFIX: &str = "/stores/";

/// The reserved prefix `key` falls under, if any.
pub fn reserved_prefix(key: &[u8]) -> Option<&'static str> {
    RESERVED_PREFIXES.into_iter().find(|p| key.starts_with(p.as_bytes()))
}

/// `/nodes/{pubkey}/info`: JSON [`NodeInfo`].
pub fn node_info_key(node: AuthorId) -> String {
    format!("/nodes/{}/info", node.to_hex())
}
/// `/nodes/{pubkey}/status`: `invited | active | removed`.
pub fn node_status_key(node: AuthorId) -> String {
    format!("/nodes/{}/status", node.to_hex())
}
/// Where node records live: `/nodes/{pubkey}/{info|status}`.
pub const NODES_PREFIX: &str = "/nodes/";

/// A node as the root store describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeRecord {
    pub status: Option<MemberStatus>,
    pub info: Option<NodeInfo>,
}

/// Splits a control-plane key `{prefix}{id}/{field}` into `(id, field)`; `None` if it is not
/// one (another prefix, not UTF-8, no field).
pub fn split_record_key<'k>(key: &'k [u8], prefix: &str) -> Option<(&'k str, &'k str)> {
    let rest = std::str::from_utf8(key.strip_prefix(prefix.as_bytes())?).ok()?;
    rest.split_once('/')
}

/// Groups the visible items under `/nodes/` by node id; unparsable keys are skipped.
pub fn parse_node_records(items: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<AuthorId, NodeRecord> {
    let mut out: BTreeMap<AuthorId, NodeRecord> = BTreeMap::new();
    for (key, value) in items {
        let Some((id, field)) = split_record_key(key, NODES_PREFIX) else { continue };
        let Ok(id) = AuthorId::from_hex(id) else { continue };
        let record = out.entry(id).or_default();
        match field {
            "status" => record.status = std::str::from_utf8(value).ok().and_then(MemberStatus::parse),
            "info" => record.info = serde_json::from_slice(value).ok(),
            _ => {}
        }
    }
    out
}

/// `/stores/{uuid}/{field}`.
pub fn store_key(id: StoreId, field: StoreField) -> String {
    format!("{STORES_PREFIX}{id}/{}", field.as_str())
}

/// The fields of a store declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreField {
    Name,
    CreatedAt,
    CreatedBy,
    DeletedAt,
}

impl StoreField {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreField::Name => "name",
            StoreField::CreatedAt => "created_at",
            StoreField::CreatedBy => "created_by",
            StoreField::DeletedAt => "deleted_at",
        }
    }
}

/// The value of `/nodes/{pubkey}/info`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub hostname: String,
    pub added_at: String,
    pub added_by: String,
    /// Direct addresses the node listens on (`host:port`), published by the node itself so
    /// members can reach each other without discovery. An extension of DESIGN.md's fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
}

/// A store as the root store declares it. Fields a peer has not written yet are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreDecl {
    pub name: Option<String>,
    pub created_at: Option<String>,
    pub created_by: Option<String>,
    pub deleted_at: Option<String>,
}

impl StoreDecl {
    /// Declared and not deleted.
    pub fn is_live(&self) -> bool {
        self.deleted_at.is_none()
    }
}

/// Groups the visible items under `/stores/` by uuid. Keys that do not parse (a uuid that is not
/// one, an unknown field) are skipped: a newer peer may write fields this version does not know.
pub fn parse_store_decls(items: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<StoreId, StoreDecl> {
    let mut out: BTreeMap<StoreId, StoreDecl> = BTreeMap::new();
    for (key, value) in items {
        let Some((uuid, field)) = split_record_key(key, STORES_PREFIX) else { continue };
        let Ok(id) = StoreId::parse(uuid) else { continue };
        let text = String::from_utf8_lossy(value).into_owned();
        let decl = out.entry(id).or_default();
        match field {
            "name" => decl.name = Some(text),
            "created_at" => decl.created_at = Some(text),
            "created_by" => decl.created_by = Some(text),
            "deleted_at" => decl.deleted_at = Some(text),
            _ => {}
        }
    }
    out
}

/// This machine's host name, or `"unknown"`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_prefixes() {
        assert_eq!(reserved_prefix(b"/nodes/abc/status"), Some("/nodes/"));
        assert_eq!(reserved_prefix(b"/stores/"), Some("/stores/"));
        assert_eq!(reserved_prefix(b"/tokens/x"), Some("/tokens/"));
        assert_eq!(reserved_prefix(b"/nodes"), None);
        assert_eq!(reserved_prefix(b"nodes/x"), None);
        assert_eq!(reserved_prefix(b"/other/x"), None);
    }

    #[test]
    fn store_declarations_group_by_uuid() {
        let a = StoreId::new_random();
        let b = StoreId::new_random();
        let kv = |k: String, v: &str| (k.into_bytes(), v.as_bytes().to_vec());
        let items = vec![
            kv(store_key(a, StoreField::Name), "alpha"),
            kv(store_key(a, StoreField::CreatedBy), "me"),
            kv(store_key(b, StoreField::Name), "beta"),
            kv(store_key(b, StoreField::DeletedAt), "then"),
            kv("/stores/not-a-uuid/name".into(), "x"),
            kv(format!("/stores/{a}/future_field"), "y"),
        ];
        let decls = parse_store_decls(&items);
        assert_eq!(decls.len(), 2);
        assert_eq!(decls[&a].name.as_deref(), Some("alpha"));
        assert!(decls[&a].is_live());
        assert!(!decls[&b].is_live());
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }
}
