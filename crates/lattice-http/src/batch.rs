//! The operations of a batch, as `lattice batch` reads them (one JSON object per line) and
//! `POST /stores/{store}/batch` takes them (`{"ops": [...]}`), parsed into one
//! [`Transaction`] (docs/design.md, CLI and HTTP API):
//!
//! ```text
//! {"op":"put","key":"a","value":"1"}
//! {"op":"put","key":"/w==","key_encoding":"base64","value":"AAE=","encoding":"base64"}
//! {"op":"delete","key":"b","if_match":"<hash of b's winner>"}
//! {"op":"put","key":"c","value":"new","if_absent":true}
//! {"op":"incr","key":"hits","by":5}          (by: default 1; "decr" subtracts)
//! {"op":"sadd","key":"peers","member":"n1"}  ("srem" removes; member takes "encoding" too)
//! ```
//!
//! Unknown fields are refused (a misspelt `if_match` must not drop a condition silently), and so
//! is a whole batch with any bad item: nothing of it is written.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lattice_core::{Hash, Op};
use lattice_store::{Condition, Transaction};
use serde::Deserialize;

/// One item of a batch, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchOp {
    op: String,
    key: String,
    #[serde(default)]
    key_encoding: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    by: Option<i64>,
    #[serde(default)]
    member: Option<String>,
    #[serde(default)]
    if_match: Option<String>,
    #[serde(default)]
    if_absent: bool,
}

/// Bytes of a text field: the text itself (`utf8`, the default) or base64 of them.
fn bytes(field: &str, text: String, encoding: Option<&str>) -> Result<Vec<u8>, String> {
    match encoding {
        None | Some("utf8") => Ok(text.into_bytes()),
        Some("base64") => B64.decode(text).map_err(|e| format!("{field} is not valid base64: {e}")),
        Some(other) => Err(format!("unknown encoding {other:?} for {field}: use utf8 or base64")),
    }
}

/// A hash as `--if-match`, `if_match` and `If-Match` give it: 64 hex characters, optionally in
/// double quotes (an ETag as the server sent it).
pub fn parse_hash(text: &str) -> Result<Hash, String> {
    let bare = text.trim().trim_start_matches("W/").trim_matches('"');
    Hash::from_hex(bare).map_err(|_| format!("{text:?} is not an entry hash (64 hex characters)"))
}

fn parse_op(item: BatchOp) -> Result<(Op, Option<Condition>), String> {
    let key = bytes("key", item.key, item.key_encoding.as_deref())?;
    if key.is_empty() {
        return Err("key must not be empty".into());
    }
    let takes_value = matches!(item.op.as_str(), "put");
    let takes_member = matches!(item.op.as_str(), "sadd" | "srem");
    if !takes_value && item.value.is_some() {
        return Err(format!("{:?} takes no \"value\"", item.op));
    }
    if !takes_member && item.member.is_some() {
        return Err(format!("{:?} takes no \"member\"", item.op));
    }
    if !matches!(item.op.as_str(), "incr" | "decr") && item.by.is_some() {
        return Err(format!("{:?} takes no \"by\"", item.op));
    }
    if !takes_value && !takes_member && item.encoding.is_some() {
        return Err(format!("{:?} takes no \"encoding\"", item.op));
    }
    let op = match item.op.as_str() {
        "put" => {
            let value = item.value.ok_or("a put needs a \"value\"")?;
            Op::Put { key: key.clone(), value: bytes("value", value, item.encoding.as_deref())? }
        }
        "delete" => Op::Delete { key: key.clone() },
        "incr" => Op::CounterAdd { key: key.clone(), delta: item.by.unwrap_or(1) },
        "decr" => {
            let delta = item.by.unwrap_or(1).checked_neg().ok_or("\"by\" is out of range for a decr")?;
            Op::CounterAdd { key: key.clone(), delta }
        }
        "sadd" | "srem" => {
            let text = item.member.ok_or_else(|| format!("{:?} needs a \"member\"", item.op))?;
            let member = bytes("member", text, item.encoding.as_deref())?;
            if item.op == "sadd" {
                Op::SetAdd { key: key.clone(), member }
            } else {
                Op::SetRemove { key: key.clone(), member }
            }
        }
        other => return Err(format!("unknown op {other:?}: use put, delete, incr, decr, sadd or srem")),
    };
    Ok((op, condition(&key, item.if_match.as_deref(), item.if_absent)?))
}

/// The condition `if_match` (a hash, see [`parse_hash`]) or `if_absent` puts on `key`, as a
/// batch item and `put --if-match/--if-absent` give them; at most one of the two.
pub fn condition(key: &[u8], if_match: Option<&str>, if_absent: bool) -> Result<Option<Condition>, String> {
    let key = key.to_vec();
    match (if_match, if_absent) {
        (Some(_), true) => Err("give if_match or if_absent, not both".into()),
        (Some(hash), false) => Ok(Some(Condition::Matches { key, hash: parse_hash(hash)? })),
        (None, true) => Ok(Some(Condition::Absent { key })),
        (None, false) => Ok(None),
    }
}

fn push(tx: &mut Transaction, (op, condition): (Op, Option<Condition>)) {
    tx.ops.push(op);
    tx.conditions.extend(condition);
}

/// A batch from JSON lines (blank lines skipped); an error names the first bad line (1-based).
pub fn batch_from_lines(text: &[u8]) -> Result<Transaction, String> {
    let text = std::str::from_utf8(text).map_err(|e| format!("the batch is not UTF-8 text: {e}"))?;
    let mut tx = Transaction::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        push(&mut tx, parse_op(item).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    if tx.ops.is_empty() {
        return Err("the batch has no operations".into());
    }
    Ok(tx)
}

/// A batch from the items of `{"ops": [...]}`; an error names the first bad item (0-based).
pub fn batch_from_items(items: Vec<serde_json::Value>) -> Result<Transaction, String> {
    let mut tx = Transaction::default();
    for (i, item) in items.into_iter().enumerate() {
        let item = serde_json::from_value(item).map_err(|e| format!("ops[{i}]: {e}"))?;
        push(&mut tx, parse_op(item).map_err(|e| format!("ops[{i}]: {e}"))?);
    }
    if tx.ops.is_empty() {
        return Err("the batch has no operations".into());
    }
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_make_one_transaction_with_their_conditions() {
        let h = "ab".repeat(32);
        let text = format!(
            "{{\"op\":\"put\",\"key\":\"a\",\"value\":\"1\"}}\n\n\
             {{\"op\":\"put\",\"key\":\"/w==\",\"key_encoding\":\"base64\",\"value\":\"AAE=\",\"encoding\":\"base64\",\"if_absent\":true}}\n\
             {{\"op\":\"delete\",\"key\":\"b\",\"if_match\":\"{h}\"}}\n"
        );
        let tx = batch_from_lines(text.as_bytes()).unwrap();
        assert_eq!(tx.ops, vec![Op::put("a", "1"), Op::put(vec![0xff], vec![0, 1]), Op::Delete { key: b"b".to_vec() }]);
        assert_eq!(
            tx.conditions,
            vec![
                Condition::Absent { key: vec![0xff] },
                Condition::Matches { key: b"b".to_vec(), hash: Hash::from_hex(&h).unwrap() }
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named_and_refuses_the_batch() {
        let err = |text: &str| batch_from_lines(text.as_bytes()).unwrap_err();
        let good = "{\"op\":\"put\",\"key\":\"a\",\"value\":\"1\"}\n";
        assert!(err(&format!("{good}not json\n")).starts_with("line 2: "), "{}", err(&format!("{good}not json")));
        assert!(err(&format!("{good}{good}{{\"op\":\"put\",\"key\":\"a\"}}")).starts_with("line 3: a put needs"));
        assert!(err("{\"op\":\"put\",\"key\":\"a\",\"value\":\"1\",\"if_mach\":\"x\"}").contains("unknown field"));
        assert!(err("{\"op\":\"frob\",\"key\":\"a\"}").contains("unknown op \"frob\""));
        assert!(err("{\"op\":\"delete\",\"key\":\"a\",\"if_match\":\"zz\"}").contains("not an entry hash"));
        assert!(err("{\"op\":\"delete\",\"key\":\"a\",\"if_absent\":true,\"if_match\":\"zz\"}").contains("not both"));
        assert!(err("{\"op\":\"put\",\"key\":\"\",\"value\":\"1\"}").contains("key must not be empty"));
        assert!(err("{\"op\":\"put\",\"key\":\"!\",\"key_encoding\":\"base64\",\"value\":\"1\"}").contains("base64"));
        assert_eq!(err("\n\n"), "the batch has no operations");
        assert!(batch_from_items(vec![serde_json::json!({"op": "put"})]).unwrap_err().starts_with("ops[0]: "));
    }

    #[test]
    fn counter_and_set_ops_parse() {
        let text = "{\"op\":\"incr\",\"key\":\"c\",\"by\":5}\n{\"op\":\"incr\",\"key\":\"c\"}\n\
                    {\"op\":\"decr\",\"key\":\"c\",\"by\":2}\n{\"op\":\"sadd\",\"key\":\"s\",\"member\":\"m\"}\n\
                    {\"op\":\"srem\",\"key\":\"s\",\"member\":\"/w==\",\"encoding\":\"base64\"}\n";
        let tx = batch_from_lines(text.as_bytes()).unwrap();
        assert_eq!(
            tx.ops,
            vec![
                Op::counter_add("c", 5),
                Op::counter_add("c", 1),
                Op::counter_add("c", -2),
                Op::set_add("s", "m"),
                Op::set_remove("s", vec![0xff])
            ]
        );
        let err = |text: &str| batch_from_lines(text.as_bytes()).unwrap_err();
        assert!(err("{\"op\":\"sadd\",\"key\":\"s\"}").contains("needs a \"member\""));
        assert!(err("{\"op\":\"incr\",\"key\":\"c\",\"value\":\"1\"}").contains("takes no \"value\""));
        assert!(err("{\"op\":\"put\",\"key\":\"c\",\"value\":\"1\",\"by\":1}").contains("takes no \"by\""));
        assert!(err("{\"op\":\"delete\",\"key\":\"c\",\"member\":\"m\"}").contains("takes no \"member\""));
        assert!(err("{\"op\":\"incr\",\"key\":\"c\",\"by\":1.5}").starts_with("line 1: "));
        let min = format!("{{\"op\":\"decr\",\"key\":\"c\",\"by\":{}}}", i64::MIN);
        assert!(err(&min).contains("out of range"));
    }

    #[test]
    fn hashes_parse_bare_or_as_etags() {
        let h = "0f".repeat(32);
        let want = Hash::from_hex(&h).unwrap();
        assert_eq!(parse_hash(&h), Ok(want));
        assert_eq!(parse_hash(&format!("\"{h}\"")), Ok(want));
        assert!(parse_hash("\"abc\"").is_err());
    }
}
