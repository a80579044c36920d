//! What the benchmark binaries share beyond `esync_testkit`: rates.

use std::time::Instant;

/// Items per second since `started`.
pub fn rate(count: i64, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64()
}
