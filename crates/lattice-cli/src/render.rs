//! Turning values into text for people and JSON for scripts.
//!
//! Text: valid UTF-8 is shown as is, with control characters escaped (`\n`, `\t`, `\u{1b}`) so one
//! item stays on one line; anything else is shown as `base64:...`. JSON: UTF-8 values are strings;
//! binary values are base64 with `"encoding": "base64"` beside them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

/// One-line text for a key or value.
pub fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                match c {
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
                    c => out.push(c),
                }
            }
            out
        }
        Err(_) => format!("base64:{}", B64.encode(bytes)),
    }
}

/// Inserts `field` into `obj`: a string if `bytes` is UTF-8, else base64 plus `encoding_field` =
/// `"base64"`.
pub fn put_bytes(obj: &mut Map<String, Value>, field: &str, encoding_field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            obj.insert(field.into(), json!(s));
        }
        Err(_) => {
            obj.insert(field.into(), json!(B64.encode(bytes)));
            obj.insert(encoding_field.into(), json!("base64"));
        }
    }
}

/// `{"key", "value"}` with `encoding` (value) / `key_encoding` (key) set when binary.
pub fn item(key: &[u8], value: &[u8]) -> Value {
    let mut obj = Map::new();
    put_bytes(&mut obj, "key", "key_encoding", key);
    put_bytes(&mut obj, "value", "encoding", value);
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        assert_eq!(text(b"plain"), "plain");
        assert_eq!(text("é\n\t".as_bytes()), "é\\n\\t");
        assert_eq!(text(b"\x1b"), "\\u{1b}");
        assert_eq!(text(&[0xff, 0x00]), "base64:/wA=");
    }

    #[test]
    fn json_items() {
        assert_eq!(item(b"k", b"v"), json!({"key": "k", "value": "v"}));
        assert_eq!(item(b"k", &[0xff]), json!({"key": "k", "value": "/w==", "encoding": "base64"}));
        assert_eq!(item(&[0xfe], b"v"), json!({"key": "/g==", "key_encoding": "base64", "value": "v"}));
    }
}
