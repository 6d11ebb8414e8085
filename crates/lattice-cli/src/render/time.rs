//! Times for people: local wall-clock time (RFC 3339 with a space, milliseconds and the offset),
//! beside the HLC it came from, so `1796161239085.0` reads as
//! `2026-12-01 21:40:39.085+00:00 (hlc 1796161239085.0)`.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use lattice_core::Hlc;

/// How a local time is written: RFC 3339, with the space its section 5.6 allows for readability.
const LOCAL: &str = "%Y-%m-%d %H:%M:%S%.3f%:z";

/// Milliseconds since the Unix epoch as local time (the system's time zone, else UTC).
pub fn local(ms: u64) -> String {
    let Some(at) = i64::try_from(ms).ok().and_then(|ms| Timestamp::from_millisecond(ms).ok()) else {
        return format!("{ms} ms after 1970");
    };
    at.to_zoned_datetime(zone()).strftime(LOCAL).to_string()
}

/// An HLC as its local wall-clock time, the HLC itself in brackets.
pub fn hlc(hlc: Hlc) -> String {
    format!("{} (hlc {hlc})", local(hlc.wall_ms))
}

/// A stored RFC 3339 UTC time (`created_at`, `last_seen`, ...) as local time, also at the start
/// of a longer text (`last_sync` is the time, then the outcome); any other text is shown as it is.
pub fn local_text(utc: &str) -> String {
    let (time, rest) = utc.split_once(' ').map_or((utc, None), |(time, rest)| (time, Some(rest)));
    match (time.parse::<Timestamp>(), rest) {
        (Ok(at), None) => at.to_zoned_datetime(zone()).strftime(LOCAL).to_string(),
        (Ok(at), Some(rest)) => format!("{} {rest}", at.to_zoned_datetime(zone()).strftime(LOCAL)),
        (Err(_), _) => utc.to_string(),
    }
}

/// The system's time zone; UTC where none is configured (a container, a CI machine).
fn zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlc_beside_its_local_time() {
        let text = hlc(Hlc::new(1_796_161_239_085, 0));
        assert!(text.ends_with(" (hlc 1796161239085.0)"), "{text}");
        // Whatever the zone, the milliseconds and the shape are the same.
        let time = text.split(" (hlc").next().unwrap();
        assert_eq!(time.len(), "2026-12-01 21:40:39.085+00:00".len(), "{time}");
        assert_eq!(&time[19..23], ".085", "{time}");
        assert_eq!(local_text("2026-12-01T21:40:39.085Z").len(), time.len());
        assert_eq!(local_text("never"), "never");
        let sync = local_text("2026-12-01T21:40:39.085Z ok (3 received)");
        assert!(sync.ends_with(" ok (3 received)") && !sync.contains('T'), "{sync}");
        assert_eq!(sync.len(), time.len() + " ok (3 received)".len(), "{sync}");
    }
}
