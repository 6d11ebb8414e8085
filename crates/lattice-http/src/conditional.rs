//! Conditional requests (RFC 9110, section 13) on one key: a key's ETag is the hash of the entry
//! that wrote its winning head, in double quotes.
//!
//! - GET with `If-None-Match` (`*`, one ETag or a list): 304 with the ETag and no body when it
//!   matches the key's current ETag.
//! - PUT and DELETE with `If-Match: "<hash>"`: written only if the winner is still that entry
//!   (else 412); PUT with `If-None-Match: *`: written only if the key has no visible value.
//!   Both become a [`Condition`] of the write's [`lattice_store::Transaction`], so the check and
//!   the write happen together in the store's actor.
//!
//! A write condition is one ETag: `If-Match: *`, a list of ETags, and `If-None-Match` with
//! anything but `*` on a write are refused (400) rather than guessed at, and so are both headers
//! on one request.

use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use lattice_core::Hash;
use lattice_store::Condition;

use crate::batch::parse_hash;
use crate::reply::{ApiError, etag};

/// One header's text; a value that is not visible ASCII is a 400.
fn text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, ApiError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let text = value.to_str().map_err(|_| bad(name, "is not ASCII text"))?;
    Ok(Some(text.trim()))
}

fn bad(name: &HeaderName, why: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, format!("{name}: {why}"))
}

/// The condition a PUT (`create_only`: `If-None-Match: *` is allowed) or a DELETE puts on `key`.
pub(crate) fn write_condition(
    headers: &HeaderMap,
    key: &[u8],
    allow_if_none_match: bool,
) -> Result<Option<Condition>, ApiError> {
    let if_match = text(headers, &header::IF_MATCH)?;
    let if_none_match = text(headers, &header::IF_NONE_MATCH)?;
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(ApiError::new(StatusCode::BAD_REQUEST, "give If-Match or If-None-Match, not both")),
        (Some(value), None) => {
            if value == "*" || value.contains(',') {
                return Err(bad(&header::IF_MATCH, "takes one ETag (the hash of the key's winning entry)"));
            }
            let hash = parse_hash(value).map_err(|e| bad(&header::IF_MATCH, &e))?;
            Ok(Some(Condition::Matches { key: key.to_vec(), hash }))
        }
        (None, Some("*")) if allow_if_none_match => Ok(Some(Condition::Absent { key: key.to_vec() })),
        (None, Some(_)) if allow_if_none_match => Err(bad(&header::IF_NONE_MATCH, "on a PUT takes only *")),
        (None, Some(_)) => Err(bad(&header::IF_NONE_MATCH, "is not allowed here")),
        (None, None) => Ok(None),
    }
}

/// Whether a GET's `If-None-Match` matches the key's current winner `current`: `*` matches any
/// value, otherwise any ETag of the list equal to it (weak or strong; entries that are not
/// ETags match nothing).
pub(crate) fn not_modified(headers: &HeaderMap, current: &Hash) -> bool {
    let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else { return false };
    let current = etag(current);
    value.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn if_none_match_takes_a_star_an_etag_or_a_list() {
        let h = Hash::from_hex(&"0a".repeat(32)).unwrap();
        let tag = etag(&h);
        let other = etag(&Hash::from_hex(&"0b".repeat(32)).unwrap());
        for value in ["*".to_string(), tag.clone(), format!("{other}, {tag}"), format!("W/{tag}")] {
            assert!(not_modified(&headers(&[(header::IF_NONE_MATCH, &value)]), &h), "{value}");
        }
        for value in [other.clone(), "0a".repeat(32), "junk".into()] {
            assert!(!not_modified(&headers(&[(header::IF_NONE_MATCH, &value)]), &h), "{value}");
        }
        assert!(!not_modified(&HeaderMap::new(), &h));
    }

    #[test]
    fn a_write_condition_is_one_etag_or_create_only() {
        let hex = "0c".repeat(32);
        let want = Condition::Matches { key: b"k".to_vec(), hash: Hash::from_hex(&hex).unwrap() };
        let cond = |pairs: &[(HeaderName, &str)], put| write_condition(&headers(pairs), b"k", put);
        assert_eq!(cond(&[(header::IF_MATCH, &format!("\"{hex}\""))], false).unwrap(), Some(want.clone()));
        assert_eq!(cond(&[(header::IF_MATCH, &hex)], true).unwrap(), Some(want));
        assert_eq!(
            cond(&[(header::IF_NONE_MATCH, "*")], true).unwrap(),
            Some(Condition::Absent { key: b"k".to_vec() })
        );
        assert_eq!(cond(&[], true).unwrap(), None);
        for bad in [
            vec![(header::IF_MATCH, "\"nope\"")],
            vec![(header::IF_MATCH, "*")],
            vec![(header::IF_MATCH, "\"a\", \"b\"")],
            vec![(header::IF_NONE_MATCH, "\"x\"")],
            vec![(header::IF_MATCH, hex.as_str()), (header::IF_NONE_MATCH, "*")],
        ] {
            assert!(cond(&bad, true).is_err(), "{bad:?}");
        }
        assert!(cond(&[(header::IF_NONE_MATCH, "*")], false).is_err(), "DELETE takes no If-None-Match");
    }
}
