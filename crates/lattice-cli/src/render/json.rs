//! The `--json` document of each command: one JSON value per command, field names as scripts
//! rely on them (docs/design.md, CLI). Key/value items and write receipts are `lattice_http`'s.

use std::path::Path;

use lattice_core::{AuthorId, Head, MemberStatus, Op, StoreId};
use lattice_node::{PeerSync, StoreInfo, StoreRef, TokenRecord};
use lattice_store::WriteReceipt;
use serde_json::{Map, Value, json};

use super::{PeerView, StatusView, StoreNames};

/// A store as `create-store`, `list-stores` and `delete-store` show it.
pub fn store_info(info: &StoreInfo) -> Value {
    json!({
        "name": info.name, "uuid": info.id.to_string(), "created_by": info.created_by,
        "created_at": info.created_at, "state": info.state.as_str(),
    })
}

/// `list-stores`.
pub fn stores(stores: &[StoreInfo]) -> Value {
    json!({ "stores": stores.iter().map(store_info).collect::<Vec<_>>() })
}

/// `delete-store`: the store, and where its local data was kept.
pub fn deleted_store(info: &StoreInfo, archive: &Path) -> Value {
    let mut value = store_info(info);
    value["archive"] = json!(archive.display().to_string());
    value
}

/// `use`.
pub fn current_store(store: &StoreRef) -> Value {
    json!({ "current_store": store.name, "uuid": store.id.to_string() })
}

/// A token as `create-token`, `list-tokens` and `revoke-token` show it (never the secret's
/// hash).
pub fn token(t: &TokenRecord, now_ms: u64) -> Value {
    json!({
        "id": t.id, "name": t.name, "store_id": t.store_id.map(|s| s.to_string()),
        "permissions": t.permissions.map(|p| p.as_str()), "created_at": t.created_at,
        "expires_at": t.expires_at, "revoked_at": t.revoked_at,
        "rate": t.rate.map(lattice_node::format_rate),
        "state": t.state(now_ms),
    })
}

/// `list-tokens`.
pub fn tokens(tokens: &[TokenRecord], now_ms: u64) -> Value {
    json!({ "tokens": tokens.iter().map(|t| token(t, now_ms)).collect::<Vec<_>>() })
}

/// `create-token`: the token, its secret (shown this once) and `token` = `ID:SECRET`.
pub fn created_token(record: &TokenRecord, secret: &str, token_text: &str, now_ms: u64) -> Value {
    let mut value = token(record, now_ms);
    value["secret"] = json!(secret);
    value["token"] = json!(token_text);
    value
}

/// `put`: the HTTP API's receipt plus the key, the store and the entry's sequence number.
pub fn put_receipt(key: &[u8], store: &StoreRef, receipt: &WriteReceipt) -> Value {
    Value::Object(key_receipt(key, store, receipt))
}

/// `incr` / `decr`: as [`put_receipt`], with the counter's `value` after the write.
pub fn counter_receipt(key: &[u8], value: Option<i64>, store: &StoreRef, receipt: &WriteReceipt) -> Value {
    let mut obj = key_receipt(key, store, receipt);
    obj.insert("kind".into(), json!("counter"));
    obj.insert("value".into(), json!(value));
    Value::Object(obj)
}

/// `batch`: the entry's receipt, the store and how many operations it wrote.
pub fn batch_receipt(ops: usize, store: &StoreRef, receipt: &WriteReceipt) -> Value {
    let mut obj = store_receipt(store, receipt);
    obj.insert("ops".into(), json!(ops));
    Value::Object(obj)
}

/// `delete`: as [`put_receipt`], with `"deleted": true`.
pub fn delete_receipt(key: &[u8], store: &StoreRef, receipt: &WriteReceipt) -> Value {
    let mut obj = key_receipt(key, store, receipt);
    obj.insert("deleted".into(), json!(true));
    Value::Object(obj)
}

fn key_receipt(key: &[u8], store: &StoreRef, receipt: &WriteReceipt) -> Map<String, Value> {
    let mut obj = store_receipt(store, receipt);
    lattice_http::insert_bytes(&mut obj, "key", "key_encoding", key);
    obj
}

/// The HTTP API's receipt plus the store and the entry's sequence number.
fn store_receipt(store: &StoreRef, receipt: &WriteReceipt) -> Map<String, Value> {
    let mut obj = lattice_http::write_receipt(receipt);
    obj.insert("store".into(), json!(store.name));
    obj.insert("seq".into(), json!(receipt.seq));
    obj
}

/// `get`: the visible value (`null` when the winner is a deletion) and every head.
/// A register as `{"key", "value", "heads"}`; a counter or a set adds `"kind"` and gives its
/// `"value"` as a number or its `"members"` ([`lattice_http::typed_value`]).
pub fn get(key: &[u8], visible: Option<&lattice_store::Value>, heads: &[Head]) -> Value {
    let mut obj = match visible {
        Some(value) => lattice_http::typed_value(key, value),
        None => {
            let mut obj = Map::new();
            lattice_http::insert_bytes(&mut obj, "key", "key_encoding", key);
            obj.insert("value".into(), Value::Null);
            obj
        }
    };
    obj.insert("heads".into(), json!(heads.iter().map(head).collect::<Vec<_>>()));
    Value::Object(obj)
}

fn head(h: &Head) -> Value {
    let mut obj = Map::new();
    if h.tombstone {
        obj.insert("value".into(), Value::Null);
    } else {
        lattice_http::insert_bytes(&mut obj, "value", "encoding", &h.value);
    }
    obj.insert("hlc".into(), json!(h.hlc.to_string()));
    obj.insert("author".into(), json!(h.author.to_hex()));
    obj.insert("hash".into(), json!(h.hash.to_hex()));
    obj.insert("tombstone".into(), json!(h.tombstone));
    if h.kind != lattice_core::Kind::Register {
        // A counter's or a set's head is an op on it; its value is the key's, not the head's.
        obj.insert("kind".into(), json!(h.kind.name()));
        obj.remove("value");
        obj.remove("encoding");
    }
    Value::Object(obj)
}

/// `history`: every version of the key, oldest first.
pub fn history(key: &[u8], versions: &[lattice_store::Version]) -> Value {
    let mut obj = Map::new();
    lattice_http::insert_bytes(&mut obj, "key", "key_encoding", key);
    obj.insert("versions".into(), json!(versions.iter().map(version).collect::<Vec<_>>()));
    Value::Object(obj)
}

/// One version: when, who, which entry, whether it is a head now, and what it wrote (its last op
/// on the key; a counter's increments summed, a set's members listed).
fn version(v: &lattice_store::Version) -> Value {
    let mut obj = Map::new();
    obj.insert("hlc".into(), json!(v.hlc.to_string()));
    obj.insert("time".into(), json!(lattice_node::rfc3339(v.hlc.wall_ms)));
    obj.insert("author".into(), json!(v.author.to_hex()));
    obj.insert("hash".into(), json!(v.hash.to_hex()));
    obj.insert("head".into(), json!(v.head));
    match v.ops.last() {
        Some(Op::Put { value, .. }) => {
            obj.insert("op".into(), json!("put"));
            lattice_http::insert_bytes(&mut obj, "value", "encoding", value);
        }
        Some(Op::Delete { .. }) | None => {
            obj.insert("op".into(), json!("delete"));
            obj.insert("value".into(), Value::Null);
            obj.insert("tombstone".into(), json!(true));
        }
        Some(Op::CounterAdd { .. }) => {
            let by = v.counter_added();
            obj.insert("op".into(), json!("incr"));
            // Several increments of one entry can sum past i64 (the counter itself saturates).
            obj.insert("by".into(), i64::try_from(by).map_or_else(|_| json!(by.to_string()), |by| json!(by)));
        }
        Some(last @ (Op::SetAdd { .. } | Op::SetRemove { .. })) => {
            let name = if matches!(last, Op::SetAdd { .. }) { "sadd" } else { "srem" };
            let members: Vec<Vec<u8>> = v
                .ops
                .iter()
                .filter_map(|op| match op {
                    Op::SetAdd { member, .. } | Op::SetRemove { member, .. } => Some(member.clone()),
                    _ => None,
                })
                .collect();
            lattice_http::insert_members(&mut obj, &members);
            obj.insert("op".into(), json!(name));
        }
    }
    Value::Object(obj)
}

/// `get --at`: the value as of then (`null`: none then).
pub fn value_at(key: &[u8], at: lattice_core::Hlc, value: Option<&[u8]>) -> Value {
    let mut obj = Map::new();
    lattice_http::insert_bytes(&mut obj, "key", "key_encoding", key);
    match value {
        Some(value) => lattice_http::insert_bytes(&mut obj, "value", "encoding", value),
        None => {
            obj.insert("value".into(), Value::Null);
        }
    }
    obj.insert("at".into(), json!(at.to_string()));
    Value::Object(obj)
}

/// `list`: every item, in key order.
pub fn list(items: Vec<Value>) -> Value {
    json!({ "items": items })
}

/// `invite` and `remove`: the node and its standing now.
pub fn member(node: AuthorId, status: MemberStatus) -> Value {
    json!({ "node_id": node.to_hex(), "status": status.as_str() })
}

/// `peers`.
pub fn peers(peers: &[PeerView]) -> Value {
    json!({ "peers": peers.iter().map(peer).collect::<Vec<_>>() })
}

fn peer(p: &PeerView) -> Value {
    let (info, local) = (&p.info, &p.local);
    json!({
        "node_id": p.id.to_hex(), "name": info.name, "status": p.status, "role": p.role,
        "hostname": info.hostname, "added_at": info.added_at, "added_by": info.added_by,
        "addrs": if local.addrs.is_empty() { &info.addrs } else { &local.addrs },
        "last_seen": local.last_seen, "last_sync": local.last_sync, "last_sync_ok": local.last_sync_ok,
        "consecutive_failures": p.failures,
        "equivocated": p.equivocated.iter()
            .map(|(store, seq)| json!({"store": store, "seq": seq}))
            .collect::<Vec<_>>(),
    })
}

/// `status`.
pub fn status(view: &StatusView<'_>) -> Value {
    let status = view.status;
    let stores: Vec<Value> = status
        .stores
        .iter()
        .map(|(s, f)| {
            json!({
                "name": s.name, "uuid": s.id.to_string(), "entries": f.entries, "authors": f.authors,
                "keys": f.keys, "orphans": f.orphans, "conflicts": f.conflicts, "refused": f.refused,
                "root": hex::encode(f.root),
                "equivocated": f.equivocated.iter()
                    .map(|(author, seq)| json!({"author": author.to_hex(), "seq": seq}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let members: Vec<Value> =
        view.members.iter().map(|m| json!({"node_id": m.id.to_hex(), "name": m.name, "status": m.status})).collect();
    let daemon_pid = view.daemon.map(|(pid, _)| pid);
    json!({
        "node_id": status.node_id.to_hex(),
        "data_dir": status.data_dir.display().to_string(),
        "current_store": status.current.as_ref().map(|s| s.name.clone()),
        "current_store_uuid": status.current.as_ref().map(|s| s.id.to_string()),
        "daemon": daemon_pid.is_some(),
        "daemon_pid": daemon_pid,
        "stores": stores,
        "peers": members,
        "listen_addrs": view.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "http_addr": view.http.map(|a| a.to_string()),
    })
}

/// `init`: the new node, its root store and its current store (`""` fields if it has none).
pub fn initialised(node: AuthorId, data_dir: &Path, root: StoreId, current: Option<&StoreRef>) -> Value {
    json!({
        "node_id": node.to_hex(),
        "data_dir": data_dir.display().to_string(),
        "root_store": root.to_string(),
        "current_store": current.map(|s| s.name.clone()).unwrap_or_default(),
        "current_store_uuid": current.map(|s| s.id.to_string()).unwrap_or_default(),
    })
}

/// `join`: whose mesh, its root store, and the current store.
pub fn joined(peer: AuthorId, root: StoreId, current: Option<&StoreRef>) -> Value {
    json!({
        "joined": peer.to_hex(), "root_store": root.to_string(),
        "current_store": current.map(|s| s.name.clone()),
    })
}

/// `sync`: per peer, per store, what moved (or the error).
pub fn sync(results: &[PeerSync], names: &StoreNames) -> Value {
    let peers: Vec<Value> = results
        .iter()
        .map(|r| match &r.result {
            Ok(stores) => json!({
                "node_id": r.peer.to_hex(), "ok": stores.iter().all(|(_, s)| s.is_ok()),
                "stores": stores.iter().map(|(id, s)| match s {
                    Ok(o) => json!({"uuid": id.to_string(), "name": names.get(id), "received": o.received,
                        "applied": o.applied, "sent": o.sent, "rejected": o.rejected,
                        "unauthorised": o.unauthorised, "in_sync": o.in_sync}),
                    Err(e) => json!({"uuid": id.to_string(), "name": names.get(id), "error": e}),
                }).collect::<Vec<_>>(),
            }),
            Err(e) => json!({ "node_id": r.peer.to_hex(), "ok": false, "error": e }),
        })
        .collect();
    json!({ "peers": peers })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version's JSON: what it wrote, by op; increments summed past i64 as a decimal string.
    #[test]
    fn versions_say_what_they_wrote() {
        let v = |ops: Vec<Op>| lattice_store::Version {
            hlc: lattice_core::Hlc::new(1_000, 2),
            author: AuthorId([7; 32]),
            hash: lattice_core::Hash([9; 32]),
            ops,
            head: true,
        };
        let put = version(&v(vec![Op::put("k", "a"), Op::put("k", "b")]));
        assert_eq!(
            (put["op"].clone(), put["value"].clone(), put["head"].clone()),
            (json!("put"), json!("b"), json!(true))
        );
        assert_eq!(put["hlc"], "1000.2");
        assert_eq!(put["time"], "1970-01-01T00:00:01.000Z");
        let gone = version(&v(vec![Op::delete("k")]));
        assert_eq!(
            (gone["op"].clone(), gone["value"].clone(), gone["tombstone"].clone()),
            (json!("delete"), Value::Null, json!(true))
        );
        let add = |delta| Op::CounterAdd { key: b"k".to_vec(), delta };
        assert_eq!(version(&v(vec![add(2), add(3)]))["by"], json!(5));
        assert_eq!(version(&v(vec![add(i64::MAX), add(i64::MAX)]))["by"], json!((2 * i64::MAX as i128).to_string()));
        let set = version(&v(vec![Op::SetAdd { key: b"k".to_vec(), member: b"x".to_vec() }]));
        assert_eq!((set["op"].clone(), set["members"].clone()), (json!("sadd"), json!(["x"])));
    }

    #[test]
    fn peers_carry_the_stores_a_node_equivocated_in() {
        let view = PeerView::active_member(lattice_core::Identity::generate().author(), vec![("default".into(), 3)]);
        let doc = peers(&[view]);
        assert_eq!(doc["peers"][0]["equivocated"], json!([{"store": "default", "seq": 3}]));
    }
}
