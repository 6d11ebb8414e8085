//! One line per watch event: `put KEY VALUE` / `delete KEY` as text, or a JSON object.

use lattice_store::WatchEvent;
use serde_json::{Map, Value, json};

use super::text;

/// The line `watch` prints for `event`, newline included.
pub fn watch_line(event: &WatchEvent, json: bool) -> String {
    match (event, json) {
        (WatchEvent::Put { key, value }, false) => format!("put {} {}\n", text(key), text(value)),
        (WatchEvent::Delete { key }, false) => format!("delete {}\n", text(key)),
        (WatchEvent::Put { key, value }, true) => {
            let mut obj = lattice_http::key_value(key, value);
            obj.insert("event".into(), json!("put"));
            format!("{}\n", Value::Object(obj))
        }
        (WatchEvent::Delete { key }, true) => {
            let mut obj = Map::new();
            obj.insert("event".into(), json!("delete"));
            lattice_http::insert_bytes(&mut obj, "key", "key_encoding", key);
            format!("{}\n", Value::Object(obj))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines_as_text_and_json() {
        let put = WatchEvent::Put { key: b"k".to_vec(), value: vec![0xff] };
        let delete = WatchEvent::Delete { key: b"a b".to_vec() };
        assert_eq!(watch_line(&put, false), "put k base64:/w==\n");
        assert_eq!(watch_line(&delete, false), "delete a b\n");
        let parse = |line: String| serde_json::from_str::<Value>(&line).unwrap();
        assert_eq!(
            parse(watch_line(&put, true)),
            json!({"event": "put", "key": "k", "value": "/w==", "encoding": "base64"})
        );
        assert_eq!(parse(watch_line(&delete, true)), json!({"event": "delete", "key": "a b"}));
    }
}
