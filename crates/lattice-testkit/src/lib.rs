//! # lattice-testkit
//!
//! What the tests of every Lattice crate share, so each does it one way (a dev-dependency only:
//! nothing here ships in a library).
//!
//! - Polling with a deadline: [`wait_until`] (blocking) and [`eventually`] (async). Tests wait
//!   on a condition, never on a bare sleep; the deadline only bounds a failure.
//! - Seeds that can be replayed: [`seeded_rng`] and [`proptest_config`] draw a fresh seed per
//!   run, print it (cargo shows a test's output only when it fails), and take
//!   `LATTICE_TEST_SEED=<u64>` to replay a failing run exactly.

use std::future::Future;
use std::time::{Duration, Instant};

use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How long a test waits for something that normally takes milliseconds: long enough for a
/// loaded 2-core CI machine, short enough that a real failure is reported promptly.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The environment variable that replays a randomised test with a given seed.
pub const SEED_VAR: &str = "LATTICE_TEST_SEED";

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` until it holds; panics with `what` once `deadline` has passed.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// Polls `check` until it holds; panics with `what` once `deadline` has passed.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    while !check().await {
        assert!(tokio::time::Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// The seed of this run: `LATTICE_TEST_SEED` if set, else a fresh random one. Printed, with
/// how to replay it, so a failing run's output carries it.
pub fn seed(what: &str) -> u64 {
    let seed = match std::env::var(SEED_VAR) {
        Ok(text) => match text.trim().parse() {
            Ok(seed) => seed,
            Err(_) => panic!("{SEED_VAR}={text:?} is not a u64"),
        },
        Err(_) => rand::rng().random(),
    };
    eprintln!("{what}: seed {seed} (replay with {SEED_VAR}={seed})");
    seed
}

/// A deterministic RNG seeded by [`seed`].
pub fn seeded_rng(what: &str) -> StdRng {
    StdRng::seed_from_u64(seed(what))
}

/// A proptest config with `cases` cases (`PROPTEST_CASES` overrides) whose RNG is seeded by
/// [`seed`], so `LATTICE_TEST_SEED` replays a property test like any other randomised test.
pub fn proptest_config(what: &str, cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, rng_seed: RngSeed::Fixed(seed(what)), ..ProptestConfig::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_seed_gives_the_same_draws() {
        let draws = |seed: u64| -> Vec<u32> {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..4).map(|_| rng.random()).collect()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn wait_until_returns_once_the_condition_holds() {
        let mut calls = 0;
        wait_until("three calls", DEADLINE, || {
            calls += 1;
            calls == 3
        });
        assert_eq!(calls, 3);
    }

    #[test]
    #[should_panic(expected = "timed out")]
    fn wait_until_panics_at_the_deadline() {
        wait_until("never", Duration::from_millis(30), || false);
    }

    #[tokio::test]
    async fn eventually_returns_once_the_condition_holds() {
        let mut calls = 0;
        eventually("three calls", DEADLINE, || {
            calls += 1;
            let done = calls == 3;
            async move { done }
        })
        .await;
        assert_eq!(calls, 3);
    }
}
