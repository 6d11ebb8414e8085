//! Value text forms: how a key or a value appears in text output.
//!
//! Valid UTF-8 is shown as is, with control characters escaped (`\n`, `\t`, `\u{1b}`) so one
//! item stays on one line; anything else is shown as `base64:...`. JSON forms are
//! `lattice_http`'s, shared with the HTTP API.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::style::Palette;

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

/// What a plain `get` prints: the raw value bytes, so `get k > file` round-trips binary exactly.
/// A conflict is marked after the value (`  (2 heads)`); a reader on a terminal gets a final
/// newline when the value lacks one, and with `palette` on the marker in yellow.
pub fn raw_value(mut value: Vec<u8>, heads: usize, terminal: bool, palette: Palette) -> Vec<u8> {
    if heads > 1 {
        value.extend_from_slice(format!("  {}\n", palette.yellow(&format!("({heads} heads)"))).as_bytes());
    } else if terminal && !value.ends_with(b"\n") {
        value.push(b'\n');
    }
    value
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
    fn raw_values_end_a_line_only_for_a_reader_of_lines() {
        let (off, on) = (Palette::new(false), Palette::new(true));
        assert_eq!(raw_value(b"v".to_vec(), 1, false, off), b"v");
        assert_eq!(raw_value(b"v".to_vec(), 1, true, off), b"v\n");
        assert_eq!(raw_value(b"v\n".to_vec(), 1, true, off), b"v\n");
        assert_eq!(raw_value(b"v".to_vec(), 2, false, off), b"v  (2 heads)\n");
        assert_eq!(raw_value(b"v".to_vec(), 2, true, on), b"v  \x1b[33m(2 heads)\x1b[0m\n");
    }
}
