//! Sync decisions as plain functions: backoff after failures, which peer to ask next, when a
//! peer's gossip has gone stale. Time and randomness come in as arguments, so every rule is
//! testable without a network or a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lattice_core::AuthorId;

/// Tunables of the self-healing mesh.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Mean interval between anti-entropy syncs with a random active peer.
    pub anti_entropy_interval: Duration,
    /// Anti-entropy intervals vary by ± this fraction, so nodes do not sync in lockstep.
    pub jitter: f64,
    /// A peer we have heard nothing from for this long gets an immediate sync.
    pub stale_after: Duration,
    /// First retry delay after a failure; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Largest gossip message; entries that do not fit are announced and fetched by sync.
    pub max_gossip_bytes: usize,
    /// Syncs running at once.
    pub max_concurrent_syncs: usize,
    /// How long gossip waits for an announced message to arrive by eager push before it pulls
    /// it (plumtree's first graft timeout). iroh-gossip's 80 ms default made every lazily
    /// reached node see writes ~90 ms late; direct-address meshes have millisecond round trips.
    pub graft_timeout: Duration,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            anti_entropy_interval: Duration::from_secs(30),
            jitter: 0.25,
            stale_after: Duration::from_secs(120),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            max_gossip_bytes: 256 * 1024,
            max_concurrent_syncs: 8,
            graft_timeout: Duration::from_millis(25),
        }
    }
}

/// What we know about one peer's reachability.
#[derive(Clone, Debug, Default)]
pub struct PeerHealth {
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// No new attempt before this instant (backoff).
    pub retry_at: Option<Instant>,
    /// When the last sync with the peer succeeded.
    pub last_success: Option<Instant>,
    /// When and why the last attempt failed.
    pub last_failure: Option<(Instant, String)>,
    /// Last time anything arrived from the peer (gossip, a connection).
    pub last_heard: Option<Instant>,
}

/// Exponential backoff with jitter: `base * 2^(failures-1)`, capped, scaled by
/// `1 ± jitter/2` where `unit` ∈ [0, 1) is the caller's random draw.
pub fn backoff(failures: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let exp = base.saturating_mul(1u32 << (failures - 1).min(20));
    let capped = exp.min(max);
    capped.mul_f64(0.75 + unit.clamp(0.0, 1.0) * 0.5)
}

impl PeerHealth {
    /// Records a successful sync: the backoff ends.
    pub fn succeeded(&mut self, now: Instant) {
        self.failures = 0;
        self.retry_at = None;
        self.last_success = Some(now);
        self.last_heard = Some(now);
    }

    /// Records a failed attempt: the next one waits for [`backoff`] (`unit` ∈ [0, 1)).
    pub fn failed(&mut self, now: Instant, error: String, config: &MeshConfig, unit: f64) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + backoff(self.failures, config.backoff_base, config.backoff_max, unit));
        self.last_failure = Some((now, error));
    }

    /// May the peer be tried at `now` (not in backoff)?
    pub fn available(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// Has the peer been silent for `stale_after` or longer (or never heard from)?
    pub fn stale(&self, now: Instant, stale_after: Duration) -> bool {
        self.last_heard.is_none_or(|t| now.duration_since(t) >= stale_after)
    }
}

/// The next anti-entropy partner: a stale peer first (longest silent), else a random available
/// one (`draw` ∈ [0, 1)). Peers in backoff are skipped.
pub fn pick_peer(
    peers: &[AuthorId],
    health: &HashMap<AuthorId, PeerHealth>,
    now: Instant,
    stale_after: Duration,
    draw: f64,
) -> Option<AuthorId> {
    let default = PeerHealth::default();
    let available: Vec<AuthorId> =
        peers.iter().copied().filter(|p| health.get(p).unwrap_or(&default).available(now)).collect();
    let stale = available
        .iter()
        .filter(|p| health.get(p).unwrap_or(&default).stale(now, stale_after))
        .min_by_key(|p| health.get(p).and_then(|h| h.last_heard));
    if let Some(p) = stale {
        return Some(*p);
    }
    if available.is_empty() {
        return None;
    }
    let i = ((draw.clamp(0.0, 0.999_999)) * available.len() as f64) as usize;
    available.get(i).copied()
}

/// Order in which to ask peers to fill a gap: the peer that delivered the orphan first, then the
/// others that are available, rotated by `draw` so repeated gaps spread the load.
pub fn gap_fill_order(
    prefer: Option<AuthorId>,
    peers: &[AuthorId],
    health: &HashMap<AuthorId, PeerHealth>,
    now: Instant,
    draw: f64,
) -> Vec<AuthorId> {
    let default = PeerHealth::default();
    let mut others: Vec<AuthorId> = peers
        .iter()
        .copied()
        .filter(|p| Some(*p) != prefer && health.get(p).unwrap_or(&default).available(now))
        .collect();
    if !others.is_empty() {
        let k = ((draw.clamp(0.0, 0.999_999)) * others.len() as f64) as usize;
        others.rotate_left(k);
    }
    prefer.into_iter().chain(others).collect()
}

/// The next anti-entropy delay: the interval scaled by `1 ± jitter` (`unit` ∈ [0, 1)).
pub fn jittered(interval: Duration, jitter: f64, unit: f64) -> Duration {
    interval.mul_f64((1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0)).max(0.05))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(b: u8) -> AuthorId {
        AuthorId([b; 32])
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(backoff(0, base, max, 0.5), Duration::ZERO);
        assert_eq!(backoff(1, base, max, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(2, base, max, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(10, base, max, 0.5), max);
        assert!(backoff(3, base, max, 0.0) < backoff(3, base, max, 0.99));
        assert_eq!(backoff(u32::MAX, base, max, 0.5), max);
    }

    #[test]
    fn failed_peer_waits_then_recovers() {
        let config = MeshConfig::default();
        let now = Instant::now();
        let mut h = PeerHealth::default();
        assert!(h.available(now));
        h.failed(now, "down".into(), &config, 0.5);
        assert!(!h.available(now));
        assert!(h.available(now + config.backoff_max));
        h.failed(now, "down".into(), &config, 0.5);
        assert_eq!(h.failures, 2);
        h.succeeded(now);
        assert!(h.available(now) && h.failures == 0);
    }

    #[test]
    fn pick_prefers_stale_then_random_skipping_backoff() {
        let now = Instant::now();
        let stale_after = Duration::from_secs(10);
        let peers = [peer(1), peer(2), peer(3)];
        let mut health = HashMap::new();
        for p in &peers {
            health.insert(*p, PeerHealth { last_heard: Some(now), ..Default::default() });
        }
        // All fresh: random by draw.
        assert_eq!(pick_peer(&peers, &health, now, stale_after, 0.0), Some(peer(1)));
        assert_eq!(pick_peer(&peers, &health, now, stale_after, 0.99), Some(peer(3)));
        // peer 2 silent for long: it goes first.
        health.get_mut(&peer(2)).unwrap().last_heard = None;
        assert_eq!(pick_peer(&peers, &health, now, stale_after, 0.99), Some(peer(2)));
        // ...unless it is in backoff.
        health.get_mut(&peer(2)).unwrap().retry_at = Some(now + Duration::from_secs(5));
        assert_ne!(pick_peer(&peers, &health, now, stale_after, 0.5), Some(peer(2)));
        assert_eq!(pick_peer(&[], &health, now, stale_after, 0.5), None);
    }

    #[test]
    fn gap_fill_asks_the_sender_first_then_the_others() {
        let now = Instant::now();
        let peers = [peer(1), peer(2), peer(3)];
        let order = gap_fill_order(Some(peer(2)), &peers, &HashMap::new(), now, 0.0);
        assert_eq!(order, vec![peer(2), peer(1), peer(3)]);
        let order = gap_fill_order(None, &peers, &HashMap::new(), now, 0.5);
        assert_eq!(order.len(), 3);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let i = Duration::from_secs(10);
        assert_eq!(jittered(i, 0.25, 0.0), Duration::from_millis(7500));
        assert_eq!(jittered(i, 0.25, 1.0), Duration::from_millis(12500));
    }
}
