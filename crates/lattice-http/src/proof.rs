//! A key's Merkle proof as JSON (DESIGN.md §10), the one shape `lattice proof`, `GET
//! /stores/{store}/proof/{*key}` and `lattice verify-proof` share, and its offline check.
//!
//! ```text
//! { "store": UUID, "key": K, "present": bool,
//!   "kind": "register"|"counter"|"set", "value": V | null,   (the visible head's; registers only)
//!   "heads": [{"value","hlc","author","hash","tombstone","kind"}],   winner first
//!   "path": {"key_hash": HEX, "siblings": [[HEX x4], ...], "end": {"empty": true} | {"key_hash", "digest"}},
//!   "root": HEX,
//!   "attestation": {"store","root","frontier","entries","hlc","node","signature"} }
//! ```
//! Bytes that are not UTF-8 (key, values) are base64 with `key_encoding` / `encoding` beside
//! them, as everywhere else. [`verify`] recomputes everything from the key and the heads: the
//! path's end must be the key's own leaf with the heads' digest (or show it absent), the path
//! must hash to `root`, the attestation must sign that root for that store, and `value` must
//! be what the heads show. Whether the signer is to be trusted is the caller's question.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lattice_core::merkle::{self, Digest, MerklePath, Terminal};
use lattice_core::{Attestation, AuthorId, Hash, Head, Hlc, Kind, StoreId};
use lattice_store::KeyProof;
use serde_json::{Map, Value, json};

use crate::json::insert_bytes;

/// The JSON of a proof.
pub fn proof_json(proof: &KeyProof) -> Value {
    let mut obj = Map::new();
    obj.insert("store".into(), json!(proof.attestation.store.to_string()));
    insert_bytes(&mut obj, "key", "key_encoding", &proof.key);
    let present = proof.path.proves_presence();
    obj.insert("present".into(), json!(present));
    if let Some(head) = lattice_core::visible(&proof.heads) {
        obj.insert("kind".into(), json!(head.kind.name()));
    }
    match shown_value(&proof.heads) {
        Some(value) => insert_bytes(&mut obj, "value", "encoding", value),
        None => {
            obj.insert("value".into(), Value::Null);
        }
    }
    obj.insert("heads".into(), Value::Array(proof.heads.iter().map(head_json).collect()));
    let siblings: Vec<Value> =
        proof.path.siblings.iter().map(|four| json!(four.iter().map(hex::encode).collect::<Vec<_>>())).collect();
    let end = match proof.path.terminal {
        Terminal::Empty => json!({"empty": true}),
        Terminal::Leaf { path, digest } => json!({"key_hash": hex::encode(path), "digest": hex::encode(digest)}),
    };
    obj.insert("path".into(), json!({"key_hash": hex::encode(proof.path.path), "siblings": siblings, "end": end}));
    obj.insert("root".into(), json!(hex::encode(proof.attestation.root)));
    let a = &proof.attestation;
    obj.insert(
        "attestation".into(),
        json!({
            "store": a.store.to_string(), "root": hex::encode(a.root), "frontier": hex::encode(a.frontier),
            "entries": a.entries, "hlc": a.hlc.to_string(), "node": a.signer.to_hex(),
            "signature": hex::encode(a.signature),
        }),
    );
    Value::Object(obj)
}

/// The register value a key's heads show (none for an absent or deleted key, or a counter or
/// set, whose value is not in its heads).
fn shown_value(heads: &[Head]) -> Option<&[u8]> {
    lattice_core::visible(heads).filter(|h| h.kind == Kind::Register).map(|h| h.value.as_slice())
}

fn head_json(head: &Head) -> Value {
    let mut obj = Map::new();
    insert_bytes(&mut obj, "value", "encoding", &head.value);
    obj.insert("hlc".into(), json!(head.hlc.to_string()));
    obj.insert("author".into(), json!(head.author.to_hex()));
    obj.insert("hash".into(), json!(head.hash.to_hex()));
    obj.insert("tombstone".into(), json!(head.tombstone));
    obj.insert("kind".into(), json!(head.kind.name()));
    Value::Object(obj)
}

/// What a valid proof shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedProof {
    /// The store.
    pub store: StoreId,
    /// The key.
    pub key: Vec<u8>,
    /// Its heads (empty: absent).
    pub heads: Vec<Head>,
    /// Whether the key is in the tree.
    pub present: bool,
    /// The root it was checked against, signed by `attestation.signer`.
    pub attestation: Attestation,
}

/// Why a proof was rejected: one line for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProofRejected(pub String);

fn reject(reason: impl Into<String>) -> ProofRejected {
    ProofRejected(reason.into())
}

/// Checks a proof's JSON offline (see the module docs); says what it proves.
pub fn verify(doc: &Value) -> Result<CheckedProof, ProofRejected> {
    let obj = doc.as_object().ok_or_else(|| reject("a proof is a JSON object"))?;
    let key = bytes_field(obj, "key", "key_encoding")?;
    let store = StoreId::parse(str_field(obj, "store")?).map_err(|e| reject(format!("store: {e}")))?;
    let heads: Vec<Head> = obj
        .get("heads")
        .and_then(Value::as_array)
        .ok_or_else(|| reject("missing heads"))?
        .iter()
        .enumerate()
        .map(|(i, h)| parse_head(h).map_err(|e| reject(format!("head {i}: {}", e.0))))
        .collect::<Result<_, _>>()?;
    let path = parse_path(obj.get("path").ok_or_else(|| reject("missing path"))?)?;
    let root = digest(obj, "root")?;
    let attestation = parse_attestation(obj.get("attestation").ok_or_else(|| reject("missing attestation"))?)?;

    let proven = path.verify(&key, &root).map_err(|e| reject(e.to_string()))?;
    match (proven, heads.is_empty()) {
        (Some(digest), false) if digest == merkle::heads_digest(&key, &heads) => {}
        (Some(_), false) => return Err(reject("the heads in the proof do not match the digest in the tree")),
        (Some(_), true) => return Err(reject("the tree holds the key, but the proof lists no heads")),
        (None, false) => return Err(reject("the path shows the key absent, but the proof lists heads")),
        (None, true) => {}
    }
    let present = proven.is_some();
    if obj.get("present").and_then(Value::as_bool) != Some(present) {
        return Err(reject(format!("\"present\" must be {present}")));
    }
    let claimed = match obj.get("value") {
        None | Some(Value::Null) => None,
        Some(_) => Some(bytes_field(obj, "value", "encoding")?),
    };
    if claimed.as_deref() != shown_value(&heads) {
        return Err(reject("the value is not the one the heads show"));
    }
    let kind = lattice_core::visible(&heads).map(|h| h.kind.name());
    if obj.get("kind").and_then(Value::as_str) != kind {
        return Err(reject("the kind is not the one the heads show"));
    }
    if attestation.store != store {
        return Err(reject("the attestation is for another store"));
    }
    if attestation.root != root {
        return Err(reject("the attestation signs another root"));
    }
    attestation.verify().map_err(|e| reject(e.to_string()))?;
    Ok(CheckedProof { store, key, heads, present, attestation })
}

fn str_field<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, ProofRejected> {
    obj.get(field).and_then(Value::as_str).ok_or_else(|| reject(format!("missing {field}")))
}

fn bytes_field(obj: &Map<String, Value>, field: &str, encoding: &str) -> Result<Vec<u8>, ProofRejected> {
    let text = str_field(obj, field)?;
    match obj.get(encoding).and_then(Value::as_str) {
        None | Some("utf8") => Ok(text.as_bytes().to_vec()),
        Some("base64") => B64.decode(text).map_err(|e| reject(format!("{field}: bad base64: {e}"))),
        Some(other) => Err(reject(format!("{encoding}: unknown encoding {other:?}"))),
    }
}

fn hex32(text: &str, what: &str) -> Result<Digest, ProofRejected> {
    let bytes = hex::decode(text).map_err(|_| reject(format!("{what}: not hex")))?;
    bytes.try_into().map_err(|_| reject(format!("{what}: not 32 bytes")))
}

fn digest(obj: &Map<String, Value>, field: &str) -> Result<Digest, ProofRejected> {
    hex32(str_field(obj, field)?, field)
}

fn parse_head(v: &Value) -> Result<Head, ProofRejected> {
    let obj = v.as_object().ok_or_else(|| reject("not an object"))?;
    let kind = match str_field(obj, "kind")? {
        "register" => Kind::Register,
        "counter" => Kind::Counter,
        "set" => Kind::Set,
        other => return Err(reject(format!("unknown kind {other:?}"))),
    };
    Ok(Head {
        value: bytes_field(obj, "value", "encoding")?,
        hlc: str_field(obj, "hlc")?.parse::<Hlc>().map_err(|e| reject(e.to_string()))?,
        author: AuthorId::from_hex(str_field(obj, "author")?).map_err(|e| reject(format!("author: {e}")))?,
        hash: Hash(digest(obj, "hash")?),
        tombstone: obj.get("tombstone").and_then(Value::as_bool).ok_or_else(|| reject("missing tombstone"))?,
        kind,
    })
}

fn parse_path(v: &Value) -> Result<MerklePath, ProofRejected> {
    let obj = v.as_object().ok_or_else(|| reject("path: not an object"))?;
    let path = digest(obj, "key_hash")?;
    let siblings = obj
        .get("siblings")
        .and_then(Value::as_array)
        .ok_or_else(|| reject("path: missing siblings"))?
        .iter()
        .map(|four| {
            let four = four.as_array().filter(|f| f.len() == 4).ok_or_else(|| reject("path: 4 siblings per node"))?;
            let mut out = [merkle::EMPTY; 4];
            for (slot, h) in out.iter_mut().zip(four) {
                *slot = hex32(h.as_str().ok_or_else(|| reject("path: sibling not a string"))?, "sibling")?;
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>, ProofRejected>>()?;
    let end = obj.get("end").and_then(Value::as_object).ok_or_else(|| reject("path: missing end"))?;
    let terminal = if end.get("empty").and_then(Value::as_bool) == Some(true) {
        Terminal::Empty
    } else {
        Terminal::Leaf { path: digest(end, "key_hash")?, digest: digest(end, "digest")? }
    };
    Ok(MerklePath { path, siblings, terminal })
}

fn parse_attestation(v: &Value) -> Result<Attestation, ProofRejected> {
    let obj = v.as_object().ok_or_else(|| reject("attestation: not an object"))?;
    let signature = hex::decode(str_field(obj, "signature")?).map_err(|_| reject("signature: not hex"))?;
    Ok(Attestation {
        store: StoreId::parse(str_field(obj, "store")?).map_err(|e| reject(format!("attestation store: {e}")))?,
        root: digest(obj, "root")?,
        frontier: digest(obj, "frontier")?,
        entries: obj.get("entries").and_then(Value::as_u64).ok_or_else(|| reject("attestation: missing entries"))?,
        hlc: str_field(obj, "hlc")?.parse::<Hlc>().map_err(|e| reject(e.to_string()))?,
        signer: AuthorId::from_hex(str_field(obj, "node")?).map_err(|e| reject(format!("node: {e}")))?,
        signature: signature.try_into().map_err(|_| reject("signature: not 64 bytes"))?,
    })
}
