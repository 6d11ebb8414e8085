//! Wall-clock timestamps for the control plane (`created_at`, `added_at`, `expires_at`): RFC 3339
//! in UTC with millisecond precision, through jiff.

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use lattice_core::Hlc;

use crate::error::NodeError;

/// How [`rfc3339`] writes a time, e.g. `2026-11-25T17:15:59.123Z`.
const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// The two spellings [`parse_rfc3339`] reads (`0` stands for any digit): what [`rfc3339`] writes,
/// and the same without milliseconds.
const SHAPES: [&str; 2] = ["0000-00-00T00:00:00.000Z", "0000-00-00T00:00:00Z"];

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// RFC 3339 UTC text with millisecond precision, e.g. `2026-11-25T17:15:59.123Z`. A time past the
/// year 9999 (a far expiry) is written as the last one jiff knows, so that it still reads back.
pub fn rfc3339(ms: u64) -> String {
    let at = i64::try_from(ms).ok().and_then(|ms| Timestamp::from_millisecond(ms).ok()).unwrap_or(Timestamp::MAX);
    at.strftime(FORMAT).to_string()
}

/// Reads back what [`rfc3339`] writes (milliseconds optional). `None` if it is not that form.
///
/// Other RFC 3339 spellings (offsets, other precisions, lowercase) are refused rather than read:
/// every node of a mesh must read a peer's `expires_at` alike, whichever version it runs.
pub(crate) fn parse_rfc3339(text: &str) -> Option<u64> {
    if !SHAPES.iter().any(|shape| has_shape(text, shape)) {
        return None;
    }
    let at: Timestamp = text.parse().ok()?;
    u64::try_from(at.as_millisecond()).ok()
}

/// A point in time for `get --at` / `?at=`: an RFC 3339 time with its offset (any precision;
/// the whole millisecond it names is included) or an HLC (`WALL_MS.COUNTER`, as `history` shows).
pub fn parse_at(text: &str) -> Result<Hlc, NodeError> {
    if let Ok(hlc) = text.parse::<Hlc>() {
        return Ok(hlc);
    }
    let at: Timestamp = text.parse().map_err(|_| {
        NodeError::Invalid(format!(
            "{text:?} is not a time: give an RFC 3339 time with its offset (2026-12-03T17:00:00.000Z) or an HLC (1796318083000.0)"
        ))
    })?;
    let ms = u64::try_from(at.as_millisecond())
        .map_err(|_| NodeError::Invalid(format!("{text:?} is before 1970: no entry is that old")))?;
    Ok(Hlc::new(ms, u32::MAX))
}

fn has_shape(text: &str, shape: &str) -> bool {
    text.len() == shape.len()
        && text.bytes().zip(shape.bytes()).all(|(c, s)| if s == b'0' { c.is_ascii_digit() } else { c == s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_to_travel_to() {
        assert_eq!(parse_at("1796318083000.7").unwrap(), Hlc::new(1_796_318_083_000, 7));
        assert_eq!(parse_at("1970-01-01T00:00:01.250Z").unwrap(), Hlc::new(1_250, u32::MAX));
        assert_eq!(parse_at("1970-01-01T01:00:01+01:00").unwrap(), Hlc::new(1_000, u32::MAX));
        for bad in ["yesterday", "2026-12-03 17:00", "2026-12-03T17:00:00", "", "1.2.3", "1969-12-31T23:59:59Z"] {
            let err = parse_at(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn timestamps_read_back() {
        for ms in [0, 951_782_400_000, 1_700_000_000_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339("2026-11-25T17:15:59Z"), Some(parse_rfc3339("2026-11-25T17:15:59.000Z").unwrap()));
        for bad in [
            "",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T17:15:59.1Z",
            "x026-11-25T17:15:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_time_past_the_year_9999_still_reads_back_as_a_far_future() {
        let far = parse_rfc3339(&rfc3339(u64::MAX)).unwrap();
        assert!(far > parse_rfc3339("9999-01-01T00:00:00Z").unwrap());
    }
}
