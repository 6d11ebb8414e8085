//! The root store's control plane (docs/design.md, Control plane): every reserved prefix and key is
//! spelled here, and each kind of record has one field enum, one key function, one function that
//! writes it and one that reads it back:
//!
//! - `/nodes/{pubkey}/{status|info|role|cutoff}`: [`NodeField`], [`node_key`], [`NodeRecord`].
//! - `/stores/{uuid}/{name|created_at|created_by|deleted_at}`: [`StoreField`], [`store_key`],
//!   [`StoreDecl`].
//! - `/tokens/{id}/{store_id|secret_hash|permissions|name|created_at|expires_at|revoked_at|rate}`:
//!   [`TokenField`], [`token_key`], [`TokenRecord`].
//!
//! Only node code writes under the reserved prefixes, through [`crate::Node`]'s privileged path;
//! the user-facing `put`/`delete` refuse them ([`reserved_prefix`]). Values are UTF-8 text but
//! `info` (JSON [`NodeInfo`]).

use std::collections::BTreeMap;

use lattice_core::{AuthorId, MemberStatus, Op, StoreId};
use serde::{Deserialize, Serialize};

use crate::authority::{Cutoffs, Role, format_cutoffs};
use crate::error::NodeError;
use crate::tokens::{Permissions, TokenRecord, is_token_id};

/// The name under which the root store is shown and selected (`--store root`).
pub(crate) const ROOT_NAME: &str = "root";
/// Where node records live.
pub(crate) const NODES_PREFIX: &str = "/nodes/";
/// Where stores are declared.
pub(crate) const STORES_PREFIX: &str = "/stores/";
/// Where tokens live.
pub(crate) const TOKENS_PREFIX: &str = "/tokens/";
/// Prefixes of the root store that change only through their commands.
const RESERVED_PREFIXES: [&str; 3] = [NODES_PREFIX, STORES_PREFIX, TOKENS_PREFIX];

/// The reserved prefix `key` falls under, if any.
pub(crate) fn reserved_prefix(key: &[u8]) -> Option<&'static str> {
    RESERVED_PREFIXES.into_iter().find(|p| key.starts_with(p.as_bytes()))
}

/// Declares the field enum of one kind of record: its variants, their one spelling in a key
/// (`as_str`) and the reading back of a key's last segment (`parse`, `None` for a field this
/// version does not know).
macro_rules! record_fields {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $name {
            $(#[doc = concat!("`", $text, "`")] $variant,)*
        }

        impl $name {
            pub(crate) const ALL: &[$name] = &[$($name::$variant,)*];

            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            pub(crate) fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|field| field.as_str() == text)
            }
        }
    };
}

record_fields! {
    /// The fields of `/nodes/{pubkey}/`.
    NodeField {
        Status = "status",
        Info = "info",
        Role = "role",
        Cutoff = "cutoff",
    }
}

record_fields! {
    /// The fields of a store declaration, `/stores/{uuid}/`.
    StoreField {
        Name = "name",
        CreatedAt = "created_at",
        CreatedBy = "created_by",
        DeletedAt = "deleted_at",
    }
}

record_fields! {
    /// The fields of a token, `/tokens/{id}/`.
    TokenField {
        StoreId = "store_id",
        SecretHash = "secret_hash",
        Permissions = "permissions",
        Name = "name",
        CreatedAt = "created_at",
        ExpiresAt = "expires_at",
        RevokedAt = "revoked_at",
        Rate = "rate",
    }
}

/// `/nodes/{pubkey}/{field}`.
pub(crate) fn node_key(node: AuthorId, field: NodeField) -> String {
    format!("{NODES_PREFIX}{}/{}", node.to_hex(), field.as_str())
}

/// `/stores/{uuid}/{field}`.
pub(crate) fn store_key(id: StoreId, field: StoreField) -> String {
    format!("{STORES_PREFIX}{id}/{}", field.as_str())
}

/// `/tokens/{id}/{field}`.
pub(crate) fn token_key(id: &str, field: TokenField) -> String {
    format!("{}{}", token_prefix(id), field.as_str())
}

/// Splits a key `{prefix}{id}/{field}` into `(id, field)`; `None` if it is not one (another
/// prefix, not UTF-8, no field).
pub(crate) fn split_record_key<'k>(key: &'k [u8], prefix: &str) -> Option<(&'k str, &'k str)> {
    let rest = std::str::from_utf8(key.strip_prefix(prefix.as_bytes())?).ok()?;
    rest.split_once('/')
}

/// `/tokens/{id}/`: every field of one token.
pub(crate) fn token_prefix(id: &str) -> String {
    format!("{TOKENS_PREFIX}{id}/")
}

/// The value of `/nodes/{pubkey}/info`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The name the node goes by (`init --name`, `join --name`; the host name by default).
    pub name: String,
    /// The host name of the machine the node last published from.
    pub hostname: String,
    /// RFC 3339 time the node was invited (or initialised the mesh).
    pub added_at: String,
    /// Hex node id of the member that added it.
    pub added_by: String,
    /// Direct addresses the node listens on (`host:port`), published by the node itself so
    /// members can reach each other without discovery. An extension of the design's fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
}

/// A node as the root store describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeRecord {
    /// `/nodes/{pubkey}/status`; `None` if absent or not a status.
    pub status: Option<MemberStatus>,
    /// `/nodes/{pubkey}/info`; `None` if absent or not its JSON.
    pub info: Option<NodeInfo>,
    /// Its effective role (the genesis admin is always an admin).
    pub role: Role,
}

/// The op that sets a node's membership status.
pub(crate) fn node_status_op(node: AuthorId, status: MemberStatus) -> Op {
    Op::put(node_key(node, NodeField::Status), status.as_str())
}

/// The op that sets a node's role.
pub(crate) fn node_role_op(node: AuthorId, role: Role) -> Op {
    Op::put(node_key(node, NodeField::Role), role.as_str())
}

/// The op that records a removed node's cut-offs.
pub(crate) fn node_cutoff_op(node: AuthorId, cutoffs: &Cutoffs) -> Op {
    Op::put(node_key(node, NodeField::Cutoff), format_cutoffs(cutoffs))
}

/// The op that sets a node's info.
pub(crate) fn node_info_op(node: AuthorId, info: &NodeInfo) -> Result<Op, NodeError> {
    let json = serde_json::to_vec(info).map_err(|e| NodeError::Corrupt(format!("node info: {e}")))?;
    Ok(Op::put(node_key(node, NodeField::Info), json))
}

/// A status value read back (a value that spells no status counts as none).
pub(crate) fn parse_node_status(value: &[u8]) -> Option<MemberStatus> {
    std::str::from_utf8(value).ok().and_then(MemberStatus::parse)
}

/// An info value read back (JSON that is not a [`NodeInfo`] counts as none).
pub(crate) fn parse_node_info(value: &[u8]) -> Option<NodeInfo> {
    serde_json::from_slice(value).ok()
}

/// Groups the visible items under `/nodes/` by node id; unparsable keys are skipped.
pub(crate) fn parse_node_records(items: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<AuthorId, NodeRecord> {
    let key = |id: &str, field: &str| Some((AuthorId::from_hex(id).ok()?, NodeField::parse(field)?));
    group_records(items, NODES_PREFIX, key, |record: &mut NodeRecord, field, value| match field {
        NodeField::Status => record.status = parse_node_status(value),
        NodeField::Info => record.info = parse_node_info(value),
        NodeField::Role => record.role = std::str::from_utf8(value).ok().and_then(Role::parse).unwrap_or_default(),
        // Read through the control plane's fold where they matter (authority).
        NodeField::Cutoff => {}
    })
}

/// A store as the root store declares it. Fields a peer has not written yet are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StoreDecl {
    pub(crate) name: Option<String>,
    pub(crate) created_at: Option<String>,
    pub(crate) created_by: Option<String>,
    pub(crate) deleted_at: Option<String>,
}

impl StoreDecl {
    /// Declared and not deleted.
    pub(crate) fn is_live(&self) -> bool {
        self.deleted_at.is_none()
    }
}

/// The ops that declare store `id` in the root store.
pub(crate) fn declare_store_ops(id: StoreId, name: &str, now: &str, by: AuthorId) -> Vec<Op> {
    vec![
        Op::put(store_key(id, StoreField::Name), name),
        Op::put(store_key(id, StoreField::CreatedAt), now),
        Op::put(store_key(id, StoreField::CreatedBy), by.to_hex()),
    ]
}

/// Groups the visible items under `/stores/` by uuid. Keys that do not parse (a uuid that is not
/// one, an unknown field) are skipped: a newer peer may write fields this version does not know.
pub(crate) fn parse_store_decls(items: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<StoreId, StoreDecl> {
    let key = |id: &str, field: &str| Some((StoreId::parse(id).ok()?, StoreField::parse(field)?));
    group_records(items, STORES_PREFIX, key, |decl: &mut StoreDecl, field, value| {
        let text = Some(String::from_utf8_lossy(value).into_owned());
        match field {
            StoreField::Name => decl.name = text,
            StoreField::CreatedAt => decl.created_at = text,
            StoreField::CreatedBy => decl.created_by = text,
            StoreField::DeletedAt => decl.deleted_at = text,
        }
    })
}

/// The ops that write every field `record` has (absent ones are left unwritten).
pub(crate) fn token_ops(record: &TokenRecord) -> Vec<Op> {
    let id = &record.id;
    let fields = [
        (TokenField::StoreId, record.store_id.map(|s| s.to_string())),
        (TokenField::SecretHash, Some(record.secret_hash.clone())),
        (TokenField::Permissions, record.permissions.map(|p| p.as_str().to_string())),
        (TokenField::Name, Some(record.name.clone())),
        (TokenField::CreatedAt, record.created_at.clone()),
        (TokenField::ExpiresAt, record.expires_at.clone()),
        (TokenField::RevokedAt, record.revoked_at.clone()),
        (TokenField::Rate, record.rate.map(crate::tokens::format_rate)),
    ];
    fields.into_iter().filter_map(|(field, value)| Some(Op::put(token_key(id, field), value?))).collect()
}

/// Groups the visible items under `/tokens/` by id; unparsable keys are skipped.
pub(crate) fn parse_token_records(items: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<String, TokenRecord> {
    let key = |id: &str, field: &str| Some((is_token_id(id).then(|| id.to_string())?, TokenField::parse(field)?));
    let mut records = group_records(items, TOKENS_PREFIX, key, |record: &mut TokenRecord, field, value| {
        let value = String::from_utf8_lossy(value).into_owned();
        match field {
            TokenField::StoreId => record.store_id = StoreId::parse(&value).ok(),
            TokenField::SecretHash => record.secret_hash = value,
            TokenField::Permissions => record.permissions = value.parse::<Permissions>().ok(),
            TokenField::Name => record.name = value,
            TokenField::CreatedAt => record.created_at = Some(value),
            TokenField::ExpiresAt => record.expires_at = Some(value),
            TokenField::RevokedAt => record.revoked_at = Some(value),
            TokenField::Rate => record.rate = Some(crate::tokens::parse_rate(&value).unwrap_or(1)),
        }
    });
    for (id, record) in &mut records {
        record.id.clone_from(id);
    }
    records
}

/// Groups items whose keys are `{prefix}{id}/{field}` into one record per id. `key` reads the
/// id and the field (`None`: skip the item, as for any key that is not `{prefix}{id}/{field}`);
/// `set` stores one field's value into its record.
fn group_records<Id: Ord, Field, Record: Default>(
    items: &[(Vec<u8>, Vec<u8>)],
    prefix: &str,
    key: impl Fn(&str, &str) -> Option<(Id, Field)>,
    mut set: impl FnMut(&mut Record, Field, &[u8]),
) -> BTreeMap<Id, Record> {
    let mut out: BTreeMap<Id, Record> = BTreeMap::new();
    for (item_key, value) in items {
        let Some((id, field)) = split_record_key(item_key, prefix).and_then(|(id, field)| key(id, field)) else {
            continue;
        };
        set(out.entry(id).or_default(), field, value);
    }
    out
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
    fn every_field_reads_back_as_itself() {
        assert!(NodeField::ALL.iter().all(|f| NodeField::parse(f.as_str()) == Some(*f)));
        assert!(StoreField::ALL.iter().all(|f| StoreField::parse(f.as_str()) == Some(*f)));
        assert!(TokenField::ALL.iter().all(|f| TokenField::parse(f.as_str()) == Some(*f)));
        assert_eq!(TokenField::parse("future_field"), None);
    }

    #[test]
    fn written_records_read_back() {
        let me = lattice_core::Identity::generate().author();
        let info = NodeInfo { name: "n".into(), added_by: me.to_hex(), ..Default::default() };
        let items: Vec<(Vec<u8>, Vec<u8>)> =
            [node_status_op(me, MemberStatus::Invited), node_info_op(me, &info).unwrap()]
                .into_iter()
                .chain(std::iter::once(Op::put(node_key(me, NodeField::Role), "admin")))
                .map(put_item)
                .collect();
        let nodes = parse_node_records(&items);
        assert_eq!(nodes[&me], NodeRecord { status: Some(MemberStatus::Invited), info: Some(info), role: Role::Admin });

        let token = TokenRecord {
            id: "0123456789abcdef".into(),
            store_id: Some(StoreId::new_random()),
            secret_hash: "ab".repeat(32),
            permissions: Some(Permissions::Write),
            name: "ci".into(),
            created_at: Some("2026-01-01T00:00:00.000Z".into()),
            expires_at: None,
            revoked_at: Some("2026-01-02T00:00:00.000Z".into()),
            rate: Some(25),
        };
        let items: Vec<_> = token_ops(&token).into_iter().map(put_item).collect();
        assert_eq!(items.len(), 7, "an absent expiry is not written");
        assert!(items.contains(&(b"/tokens/0123456789abcdef/rate".to_vec(), b"25/s".to_vec())));
        assert_eq!(parse_token_records(&items).remove(&token.id), Some(token));

        let store = StoreId::new_random();
        let items: Vec<_> = declare_store_ops(store, "s", "now", me).into_iter().map(put_item).collect();
        let decl = &parse_store_decls(&items)[&store];
        assert_eq!((decl.name.as_deref(), decl.created_by.clone()), (Some("s"), Some(me.to_hex())));
    }

    #[test]
    fn records_are_read_back_from_root_store_items() {
        let sid = StoreId::new_random();
        let items: Vec<(Vec<u8>, Vec<u8>)> = [
            ("/tokens/0123456789abcdef/store_id", sid.to_string()),
            ("/tokens/0123456789abcdef/permissions", "rw".into()),
            ("/tokens/0123456789abcdef/name", "ci".into()),
            ("/tokens/0123456789abcdef/revoked_at", "2026-01-01T00:00:00.000Z".into()),
            ("/tokens/0123456789abcdef/rate", "lots".into()),
            ("/tokens/not-an-id/name", "skipped".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
        .collect();
        let records = parse_token_records(&items);
        assert_eq!(records.len(), 1);
        let r = &records["0123456789abcdef"];
        assert_eq!((r.store_id, r.permissions, r.name.as_str()), (Some(sid), Some(Permissions::ReadWrite), "ci"));
        assert_eq!(r.state(0), "revoked");
        assert_eq!(r.rate, Some(1), "an unreadable rate limits to 1/s");
    }

    fn put_item(op: Op) -> (Vec<u8>, Vec<u8>) {
        match op {
            Op::Put { key, value } => (key, value),
            other => panic!("expected a put, got {other:?}"),
        }
    }
}
