//! Hybrid logical clock.
//!
//! An [`Hlc`] is `(wall_ms, counter)`, ordered lexicographically. A [`Clock`] hands out strictly
//! increasing timestamps for local writes ([`Clock::tick`]) and absorbs the timestamps of received
//! entries ([`Clock::merge`]), so a write made after seeing an entry carries a larger HLC — unless
//! that entry's clock ran further ahead than `max_drift`, in which case the local clock advances
//! only to `wall + max_drift` and the caller is told (see [`MergeOutcome::Clamped`]).
//!
//! The wall clock is passed in, never read here: callers own time, tests control it.

use crate::proto;

/// Default bound, in milliseconds (one minute), on how far a remote clock may pull ours ahead of
/// the wall clock.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

/// A hybrid logical timestamp, ordered by `wall_ms` then `counter`; shown as `wall_ms.counter`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    // Field order is the ordering: wall time first, then the counter.
    /// Wall-clock time, in milliseconds (since the Unix epoch, as supplied by the caller).
    pub wall_ms: u64,
    /// Tie-breaker among timestamps with the same `wall_ms`; starts at 0.
    pub counter: u32,
}

impl Hlc {
    /// The smallest timestamp; also the `Default`. A fresh [`Clock`] starts here.
    pub const ZERO: Hlc = Hlc { wall_ms: 0, counter: 0 };

    /// A timestamp from its two parts.
    pub fn new(wall_ms: u64, counter: u32) -> Self {
        Hlc { wall_ms, counter }
    }

    /// The smallest HLC strictly greater than `self`.
    pub fn successor(self) -> Hlc {
        match self.counter.checked_add(1) {
            Some(counter) => Hlc { wall_ms: self.wall_ms, counter },
            None => Hlc { wall_ms: self.wall_ms.saturating_add(1), counter: 0 },
        }
    }

    /// The protobuf form, as carried in entries and heads.
    pub fn to_proto(self) -> proto::Hlc {
        proto::Hlc { wall_ms: self.wall_ms, counter: self.counter }
    }
    /// From the protobuf form; every value is valid, so this cannot fail.
    pub fn from_proto(p: &proto::Hlc) -> Self {
        Hlc { wall_ms: p.wall_ms, counter: p.counter }
    }
}

impl std::fmt::Display for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.counter)
    }
}

/// Why a text is not an [`Hlc`] (`wall_ms.counter`, both decimal).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a timestamp (expected WALL_MS.COUNTER, e.g. 1700000000000.0): {0:?}")]
pub struct ParseHlcError(pub String);

impl std::str::FromStr for Hlc {
    type Err = ParseHlcError;

    /// The [`Display`](std::fmt::Display) form back: `wall_ms.counter`.
    fn from_str(text: &str) -> Result<Hlc, ParseHlcError> {
        let bad = || ParseHlcError(text.chars().take(64).collect());
        let (wall, counter) = text.split_once('.').ok_or_else(bad)?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(wall) || !digits(counter) {
            return Err(bad());
        }
        Ok(Hlc { wall_ms: wall.parse().map_err(|_| bad())?, counter: counter.parse().map_err(|_| bad())? })
    }
}

/// What [`Clock::merge`] did with a remote timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The remote timestamp was at or behind ours, or was adopted.
    Merged,
    /// The remote timestamp was more than `max_drift` ahead of the wall clock: the local clock
    /// advanced only to the drift bound. `ahead_ms` says by how much the remote led the wall.
    Clamped {
        /// Remote `wall_ms` minus the wall clock, in milliseconds (always more than `max_drift`).
        ahead_ms: u64,
    },
}

/// A hybrid logical clock: the last timestamp handed out or absorbed, and the drift bound.
#[derive(Clone, Debug)]
pub struct Clock {
    last: Hlc,
    max_drift_ms: u64,
}

impl Clock {
    /// A clock starting at [`Hlc::ZERO`] that lets remote timestamps lead the wall clock by at
    /// most `max_drift_ms` milliseconds (see [`DEFAULT_MAX_DRIFT_MS`]).
    pub fn new(max_drift_ms: u64) -> Self {
        Clock { last: Hlc::ZERO, max_drift_ms }
    }

    /// A clock that resumes after `last` (e.g. the largest HLC found in a store at open).
    pub fn resume(last: Hlc, max_drift_ms: u64) -> Self {
        Clock { last, max_drift_ms }
    }

    /// The last timestamp handed out by [`tick`](Self::tick) or absorbed by [`merge`](Self::merge).
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// The drift bound, in milliseconds.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// A timestamp for a local write: strictly greater than every timestamp handed out or merged
    /// before, and at least the wall clock. Wall clocks going backwards cannot reorder writes.
    pub fn tick(&mut self, wall_now_ms: u64) -> Hlc {
        let next = if wall_now_ms > self.last.wall_ms { Hlc::new(wall_now_ms, 0) } else { self.last.successor() };
        debug_assert!(next > self.last);
        self.last = next;
        next
    }

    /// Absorbs a received timestamp so the next [`tick`](Self::tick) is greater than it, unless it
    /// lies beyond `wall_now + max_drift`: then the clock only advances to that bound.
    pub fn merge(&mut self, remote: Hlc, wall_now_ms: u64) -> MergeOutcome {
        let bound = wall_now_ms.saturating_add(self.max_drift_ms);
        if remote.wall_ms > bound {
            let capped = Hlc::new(bound, 0);
            if capped > self.last {
                self.last = capped;
            }
            return MergeOutcome::Clamped { ahead_ms: remote.wall_ms - wall_now_ms };
        }
        if remote > self.last {
            self.last = remote;
        }
        MergeOutcome::Merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hlc_text_round_trips() {
        let hlc = Hlc::new(1_700_000_000_123, 7);
        assert_eq!(hlc.to_string().parse::<Hlc>(), Ok(hlc));
        assert_eq!("0.0".parse::<Hlc>(), Ok(Hlc::ZERO));
        for bad in ["", "1", "1.", ".1", "1.2.3", "-1.0", "1.-0", "a.b", "1.99999999999", " 1.0"] {
            assert!(bad.parse::<Hlc>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tick_uses_wall_then_counter() {
        let mut c = Clock::new(1000);
        assert_eq!(c.tick(10), Hlc::new(10, 0));
        assert_eq!(c.tick(10), Hlc::new(10, 1));
        assert_eq!(c.tick(5), Hlc::new(10, 2));
        assert_eq!(c.tick(11), Hlc::new(11, 0));
    }

    #[test]
    fn counter_overflow_rolls_into_wall() {
        let mut c = Clock::resume(Hlc::new(7, u32::MAX), 1000);
        assert_eq!(c.tick(0), Hlc::new(8, 0));
    }

    #[test]
    fn merge_beyond_drift_is_clamped_and_reported() {
        let mut c = Clock::new(1000);
        let out = c.merge(Hlc::new(10_000, 3), 100);
        assert_eq!(out, MergeOutcome::Clamped { ahead_ms: 9_900 });
        assert_eq!(c.last(), Hlc::new(1100, 0));
        let t = c.tick(100);
        assert!(t.wall_ms <= 1100 && t > Hlc::new(1100, 0));
    }

    proptest! {
        #![proptest_config(lattice_testkit::proptest_config("hlc properties", 256))]

        #[test]
        fn ticks_strictly_increase(walls in proptest::collection::vec(0u64..1_000, 1..200)) {
            let mut c = Clock::new(10);
            let mut prev = Hlc::ZERO;
            for w in walls {
                let t = c.tick(w);
                prop_assert!(t > prev);
                prop_assert!(t.wall_ms >= w);
                prev = t;
            }
        }

        #[test]
        fn tick_after_merge_is_greater(
            start in 0u64..10_000, remote_wall in 0u64..20_000, counter in any::<u32>(),
            now in 0u64..10_000, drift in 0u64..5_000,
        ) {
            let mut c = Clock::resume(Hlc::new(start, 0), drift);
            let remote = Hlc::new(remote_wall, counter);
            let outcome = c.merge(remote, now);
            let t = c.tick(now);
            if remote_wall <= now + drift {
                prop_assert_eq!(outcome, MergeOutcome::Merged);
                prop_assert!(t > remote);
            } else {
                let clamped = matches!(outcome, MergeOutcome::Clamped { .. });
                prop_assert!(clamped);
                // Never dragged past the drift bound by a remote clock.
                prop_assert!(t.wall_ms <= (now + drift).max(start));
            }
        }
    }
}
