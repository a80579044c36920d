//! Backoff for retried work: exponential, capped, with full jitter.
//!
//! Pure: the random factor is passed in, so delays are testable.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Retry timing. Retries of transient failures never give up (nothing may be
/// lost), but every retry is counted in metrics and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// First delay (default `100ms`).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Largest delay (default `30s`).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (0-based): a uniform draw between
    /// half and all of `min(max, initial * 2^attempt)`; `jitter` is in [0, 1).
    /// Keeping half spreads retries of many workers without ever hammering.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let ceiling = self
            .initial_backoff
            .checked_mul(2u32.saturating_pow(attempt.min(31)))
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff);
        ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// [`RetryPolicy::delay`] with a random jitter.
    pub fn random_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        };
        let ceilings: Vec<u128> = (0..8)
            .map(|attempt| policy.delay(attempt, 1.0).as_millis())
            .collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(policy.delay(3, 0.0), Duration::from_millis(400));
        assert_eq!(policy.delay(u32::MAX, 1.0), Duration::from_secs(2));
    }

    #[test]
    fn random_delays_stay_in_bounds() {
        let policy = RetryPolicy::default();
        for attempt in 0..40 {
            let delay = policy.random_delay(attempt);
            assert!(
                delay <= policy.max_backoff && delay >= policy.initial_backoff / 2,
                "{delay:?}"
            );
        }
    }
}
