//! The JSON shapes the HTTP API shares with the `lattice` CLI's `--json` output: a key and its
//! value (listings, watch events) and a write receipt. Both front ends build them here, so a
//! script sees the same field names from either (docs/design.md, HTTP API and CLI).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lattice_store::{Change, WatchEvent, WriteReceipt};
use serde_json::{Map, Value, json};

/// Sets `obj[field]` to `bytes`: the text when it is UTF-8, else base64 with
/// `obj[encoding_field] = "base64"` beside it (a reader assumes UTF-8 when that field is absent).
pub fn insert_bytes(obj: &mut Map<String, Value>, field: &str, encoding_field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            obj.insert(field.into(), json!(text));
        }
        Err(_) => {
            obj.insert(field.into(), json!(B64.encode(bytes)));
            obj.insert(encoding_field.into(), json!("base64"));
        }
    }
}

/// Sets `obj["members"]` to the members as strings: their text when every one is UTF-8, else
/// all in base64 with `"encoding":"base64"` beside them.
pub fn insert_members(obj: &mut Map<String, Value>, members: &[Vec<u8>]) {
    let texts: Option<Vec<&str>> = members.iter().map(|m| std::str::from_utf8(m).ok()).collect();
    match texts {
        Some(texts) => {
            obj.insert("members".into(), json!(texts));
        }
        None => {
            let encoded: Vec<String> = members.iter().map(|m| B64.encode(m)).collect();
            obj.insert("members".into(), json!(encoded));
            obj.insert("encoding".into(), json!("base64"));
        }
    }
}

/// `{"key", "value"}`, with `"encoding":"base64"` (value) or `"key_encoding":"base64"` (key)
/// only for bytes that are not UTF-8: the shape of a CLI watch event.
pub fn key_value(key: &[u8], value: &[u8]) -> Map<String, Value> {
    let mut obj = Map::new();
    insert_bytes(&mut obj, "key", "key_encoding", key);
    insert_bytes(&mut obj, "value", "encoding", value);
    obj
}

/// A watch event: `{"event": "put"|"delete", "key", "value"}` ([`key_value`]; no value for a
/// delete), `{"event": "counter", "key", "kind": "counter", "value": N}` or `{"event": "set",
/// "key", "kind": "set", "members": [...]}`, with the `hash`, `hlc` and `author` (hex) of the entry behind it
/// ([`lattice_store::Change`]). The CLI's `watch --json` line and the data of an HTTP watch
/// event.
pub fn watch_event(event: &WatchEvent) -> Map<String, Value> {
    let mut obj = match event {
        WatchEvent::Put { key, value, .. } => {
            let mut obj = key_value(key, value);
            obj.insert("event".into(), json!("put"));
            obj
        }
        WatchEvent::Counter { key, value, .. } => {
            let mut obj = typed_value(key, &lattice_store::Value::Counter(*value));
            obj.insert("event".into(), json!("counter"));
            obj
        }
        WatchEvent::Set { key, members, .. } => {
            let mut obj = typed_value(key, &lattice_store::Value::Set(members.clone()));
            obj.insert("event".into(), json!("set"));
            obj
        }
        WatchEvent::Delete { key, .. } => {
            let mut obj = Map::new();
            obj.insert("event".into(), json!("delete"));
            insert_bytes(&mut obj, "key", "key_encoding", key);
            obj
        }
    };
    insert_change(&mut obj, event.source());
    obj
}

/// `hash`, `hlc` and `author` of the entry `change` names.
pub(crate) fn insert_change(obj: &mut Map<String, Value>, change: &Change) {
    obj.insert("hash".into(), json!(change.hash.to_hex()));
    obj.insert("hlc".into(), json!(change.hlc.to_string()));
    obj.insert("author".into(), json!(change.author.to_hex()));
}

/// A typed value with its key: a register as [`key_value`], `{"key", "kind":"counter",
/// "value": N}`, or `{"key", "kind":"set", "members": [...]}` ([`insert_members`]). The shape of
/// `lattice get --json` / `smembers --json` for counters and sets, and of an HTTP GET asking for
/// JSON.
pub fn typed_value(key: &[u8], value: &lattice_store::Value) -> Map<String, Value> {
    match value {
        lattice_store::Value::Register(bytes) => key_value(key, bytes),
        lattice_store::Value::Counter(sum) => {
            let mut obj = Map::new();
            insert_bytes(&mut obj, "key", "key_encoding", key);
            obj.insert("kind".into(), json!("counter"));
            obj.insert("value".into(), json!(sum));
            obj
        }
        lattice_store::Value::Set(members) => {
            let mut obj = Map::new();
            insert_bytes(&mut obj, "key", "key_encoding", key);
            obj.insert("kind".into(), json!("set"));
            insert_members(&mut obj, members);
            obj
        }
    }
}

/// One item of a listing: [`key_value`] with `encoding` always present (`utf8` or `base64`).
pub fn list_item(key: &[u8], value: &[u8]) -> Value {
    let mut obj = key_value(key, value);
    obj.entry("encoding").or_insert_with(|| json!("utf8"));
    Value::Object(obj)
}

/// `{"hash", "hlc"}` of a write; the CLI adds its own fields (key, store, seq) to the map.
pub fn write_receipt(receipt: &WriteReceipt) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("hash".into(), json!(receipt.hash.to_hex()));
    obj.insert("hlc".into(), json!(receipt.hlc.to_string()));
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_mark_only_binary() {
        let item = |k: &[u8], v: &[u8]| Value::Object(key_value(k, v));
        assert_eq!(item(b"k", b"v"), json!({"key": "k", "value": "v"}));
        assert_eq!(item(b"k", &[0xff]), json!({"key": "k", "value": "/w==", "encoding": "base64"}));
        assert_eq!(item(&[0xfe], b"v"), json!({"key": "/g==", "key_encoding": "base64", "value": "v"}));
    }

    #[test]
    fn list_items_always_say_their_encoding() {
        assert_eq!(list_item(b"k", b"v"), json!({"key": "k", "value": "v", "encoding": "utf8"}));
        assert_eq!(list_item(b"k", &[0xff]), json!({"key": "k", "value": "/w==", "encoding": "base64"}));
        assert_eq!(
            list_item(&[0xfe], b"v"),
            json!({"key": "/g==", "key_encoding": "base64", "value": "v", "encoding": "utf8"})
        );
    }
}
