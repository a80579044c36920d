//! What the benchmark binaries share: service variables, rates, and the CPU
//! time of a measured process.

use anyhow::Context as _;
use std::time::Instant;

/// A variable of `scripts/services.sh up`, or an error saying how to get it.
pub fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run scripts/services.sh up and source .services/env")
    })
}

/// Items per second since `started`.
pub fn rate(count: i64, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64()
}

/// /proc reports CPU time in USER_HZ ticks, fixed at 100 per second on Linux.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of a /proc stat file (fields 14 and 15).
pub fn cpu_ticks(path: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(path)?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("bad /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}
