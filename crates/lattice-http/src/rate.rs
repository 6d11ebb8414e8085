//! Per-token rate limiting: a token bucket per token id, refilled continuously.
//!
//! Hand-written rather than tower's `RateLimit` or a `governor` layer: the key is the token id,
//! known only once the token is authenticated (a layer would have to re-parse the header), and
//! each token may carry its own rate from the root store (`create-token --rate`), read per
//! request; tower's limiter is one bucket per service, and governor's keyed limiter has one
//! quota for every key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sustained rate and the burst allowed above it.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    /// Requests per second a token may make for as long as it likes.
    pub per_second: u32,
    /// Requests a token may make at once above that rate, after being idle.
    pub burst: u32,
}

/// Buckets are dropped once full again for this long, so the map does not grow with every token
/// ever seen.
const IDLE_EVICT: Duration = Duration::from_secs(600);

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub(crate) struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Limiter {
        Limiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `id`'s bucket, or says how long until one is available. `own` is
    /// the token's own rate per second (its burst is one second of it); `None`: the default.
    pub(crate) fn admit(&self, id: &str, own: Option<u32>) -> Result<(), Duration> {
        let limit = own.map_or(self.limit, |r| RateLimit { per_second: r, burst: r });
        self.admit_at(id, limit, Instant::now())
    }

    fn admit_at(&self, id: &str, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(limit.per_second.max(1));
        let burst = f64::from(limit.burst.max(1));
        // A poisoned lock only means another request panicked mid-update; the counts stay usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.refilled) < IDLE_EVICT);
        }
        let bucket = buckets.entry(id.to_string()).or_insert(Bucket { tokens: burst, refilled: now });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_the_rate_refills() {
        let limit = RateLimit { per_second: 2, burst: 3 };
        let limiter = Limiter::new(limit);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit_at("a", limit, t0), Ok(()));
        }
        let wait = limiter.admit_at("a", limit, t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
        assert_eq!(limiter.admit_at("b", limit, t0), Ok(()), "buckets are per token");
        assert_eq!(limiter.admit_at("a", limit, t0 + Duration::from_millis(500)), Ok(()), "refilled at 2/s");
        assert!(limiter.admit_at("a", limit, t0 + Duration::from_millis(500)).is_err());
        assert_eq!(limiter.admit_at("a", limit, t0 + Duration::from_secs(60)), Ok(()));
        // A token's own rate: a burst of one second of it.
        let own = RateLimit { per_second: 5, burst: 5 };
        for _ in 0..5 {
            assert_eq!(limiter.admit_at("c", own, t0), Ok(()));
        }
        assert!(limiter.admit_at("c", own, t0).is_err());
    }
}
