//! Timing loops: run a step until a time budget or an operation cap is reached, and report the
//! rate. Every figure of the benchmark goes through [`measure`], so all of them are taken the
//! same way: one untimed warm-up step, then steps until the budget is spent.

use std::time::{Duration, Instant};

use anyhow::Result;

/// How long one figure may take: stop at `time` or after `max_ops` operations, whichever comes
/// first. At least one timed step always runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub time: Duration,
    pub max_ops: u64,
}

impl Budget {
    /// A budget bounded by time only.
    pub const fn time(time: Duration) -> Self {
        Budget { time, max_ops: u64::MAX }
    }

    /// The same budget, with at most `max_ops` operations.
    pub fn capped(self, max_ops: u64) -> Self {
        Budget { max_ops: self.max_ops.min(max_ops), ..self }
    }
}

/// `ops` operations took `elapsed`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub ops: u64,
    pub elapsed: Duration,
}

impl Rate {
    /// Operations per second.
    pub fn per_sec(&self) -> f64 {
        // A timed step always runs, so `elapsed` is only zero on a clock too coarse to see it.
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `step` once untimed (warm-up), then repeatedly until `budget` is spent. `step` does one
/// unit of work and returns how many operations it performed (a batch step returns its size), so
/// cheap operations can be grouped and the clock read only once per group.
pub fn measure(budget: Budget, mut step: impl FnMut() -> Result<u64>) -> Result<Rate> {
    step()?;
    let start = Instant::now();
    let mut ops = 0u64;
    loop {
        ops = ops.saturating_add(step()?);
        let elapsed = start.elapsed();
        if elapsed >= budget.time || ops >= budget.max_ops {
            return Ok(Rate { ops, elapsed });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_operation_cap() {
        let mut calls = 0;
        let rate = measure(Budget::time(Duration::from_secs(60)).capped(10), || {
            calls += 1;
            Ok(3)
        })
        .unwrap();
        // One warm-up call, then four timed calls of three operations reach the cap of ten.
        assert_eq!(calls, 5);
        assert_eq!(rate.ops, 12);
        assert!(rate.per_sec() > 0.0);
    }

    #[test]
    fn stops_at_the_time_budget() {
        let rate = measure(Budget::time(Duration::ZERO), || Ok(1)).unwrap();
        assert_eq!(rate.ops, 1);
    }

    #[test]
    fn step_errors_propagate() {
        assert!(measure(Budget::time(Duration::ZERO), || anyhow::bail!("disk gone")).is_err());
    }
}
