//! One line per watch event: `put KEY VALUE` / `delete KEY` as text, or a JSON object (with the
//! hash, HLC and author of the entry behind the change).

use lattice_store::WatchEvent;
use serde_json::Value;

use super::text;

/// The line `watch` prints for `event`, newline included.
pub fn watch_line(event: &WatchEvent, json: bool) -> String {
    match (event, json) {
        (WatchEvent::Put { key, value, .. }, false) => format!("put {} {}\n", text(key), text(value)),
        (WatchEvent::Counter { key, value, .. }, false) => format!("counter {} {value}\n", text(key)),
        (WatchEvent::Set { key, members, .. }, false) => {
            let members: Vec<String> = members.iter().map(|m| text(m)).collect();
            format!("set {} {}\n", text(key), members.join(" "))
        }
        (WatchEvent::Delete { key, .. }, false) => format!("delete {}\n", text(key)),
        (_, true) => format!("{}\n", Value::Object(lattice_http::watch_event(event))),
    }
}

#[cfg(test)]
mod tests {
    use lattice_core::{AuthorId, Hash, Hlc};
    use lattice_store::Change;
    use serde_json::json;

    use super::*;

    #[test]
    fn watch_lines_as_text_and_json() {
        let source = Change { hash: Hash([1; 32]), hlc: Hlc::new(1700, 2), author: AuthorId([2; 32]) };
        let put = WatchEvent::Put { key: b"k".to_vec(), value: vec![0xff], source };
        let delete = WatchEvent::Delete { key: b"a b".to_vec(), source };
        assert_eq!(watch_line(&put, false), "put k base64:/w==\n");
        assert_eq!(watch_line(&delete, false), "delete a b\n");
        let parse = |line: String| serde_json::from_str::<Value>(&line).unwrap();
        let (hash, author) = ("01".repeat(32), "02".repeat(32));
        assert_eq!(
            parse(watch_line(&put, true)),
            json!({"event": "put", "key": "k", "value": "/w==", "encoding": "base64",
                   "hash": hash, "hlc": "1700.2", "author": author})
        );
        assert_eq!(
            parse(watch_line(&delete, true)),
            json!({"event": "delete", "key": "a b", "hash": hash, "hlc": "1700.2", "author": author})
        );
    }
}
