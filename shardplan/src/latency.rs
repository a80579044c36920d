//! Latency-curve analysis for `measure`: percentiles of a window of query
//! latencies, the stop rule, and where the curve crosses the target.
//!
//! Pure: the binary times the queries and reads the shard size; this module
//! only turns those numbers into a curve and a verdict.

use serde::Serialize;

use crate::units::ByteSize;

/// The nearest-rank percentile (`percentile` in 0..=100) of `samples_ms`;
/// `None` for no samples.
pub fn percentile(samples_ms: &[f64], percentile: f64) -> Option<f64> {
    if samples_ms.is_empty() {
        return None;
    }
    let mut sorted = samples_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (percentile.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// One step of the measurement: the shard at that moment and the latencies
/// of the queries run while it had that size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Documents in the shard.
    pub docs: u64,
    /// Store size of the shard in bytes.
    pub store_bytes: u64,
    /// Queries timed in this window.
    pub queries: usize,
    /// Median latency.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The percentile the stop rule watches.
    pub chosen_ms: f64,
}

impl CurvePoint {
    /// Builds a point from raw latencies; `None` when no query was timed.
    pub fn from_samples(
        docs: u64,
        store_bytes: u64,
        samples_ms: &[f64],
        chosen_percentile: f64,
    ) -> Option<Self> {
        Some(Self {
            docs,
            store_bytes,
            queries: samples_ms.len(),
            p50_ms: percentile(samples_ms, 50.0)?,
            p95_ms: percentile(samples_ms, 95.0)?,
            p99_ms: percentile(samples_ms, 99.0)?,
            chosen_ms: percentile(samples_ms, chosen_percentile)?,
        })
    }
}

/// When to stop growing the probe shard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StopRule {
    /// The watched percentile, e.g. 95.
    pub percentile: f64,
    /// Stop when the watched percentile reaches this many milliseconds.
    pub target_ms: f64,
    /// Stop when the shard reaches this size.
    pub size_cap: ByteSize,
    /// Stop after this many measurement steps.
    pub max_steps: usize,
}

/// Why the measurement stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The watched percentile reached the target.
    TargetReached,
    /// The shard reached the size cap first.
    SizeCap,
    /// The step limit was reached first.
    StepLimit,
}

impl StopRule {
    /// The reason to stop after `curve` (latest point last), if any.
    pub fn should_stop(&self, curve: &[CurvePoint]) -> Option<StopReason> {
        let latest = curve.last()?;
        if latest.chosen_ms >= self.target_ms {
            Some(StopReason::TargetReached)
        } else if latest.store_bytes >= self.size_cap.bytes() {
            Some(StopReason::SizeCap)
        } else if curve.len() >= self.max_steps {
            Some(StopReason::StepLimit)
        } else {
            None
        }
    }
}

/// Where the curve meets the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossing {
    /// Largest measured point still under the target (the largest shard
    /// measured to meet it), if any.
    pub last_under: Option<CurvePoint>,
    /// First measured point at or over the target, if any.
    pub first_over: Option<CurvePoint>,
    /// Shard size at the target, interpolated linearly between the two
    /// points (the first point's size when it is already over).
    pub estimated_bytes: Option<u64>,
    /// Documents at the target, interpolated the same way.
    pub estimated_docs: Option<u64>,
}

/// Finds where `curve` first reaches `target_ms` on the watched percentile.
pub fn find_crossing(curve: &[CurvePoint], target_ms: f64) -> Crossing {
    let first_over_index = curve.iter().position(|point| point.chosen_ms >= target_ms);
    let last_under = match first_over_index {
        Some(0) => None,
        Some(index) => Some(curve[index - 1].clone()),
        None => curve.last().cloned(),
    };
    let first_over = first_over_index.map(|index| curve[index].clone());
    let (estimated_bytes, estimated_docs) = match (&last_under, &first_over) {
        (Some(under), Some(over)) => {
            let span = over.chosen_ms - under.chosen_ms;
            let fraction = if span > 0.0 {
                ((target_ms - under.chosen_ms) / span).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let between = |low: u64, high: u64| {
                low + ((high.saturating_sub(low)) as f64 * fraction).round() as u64
            };
            (
                Some(between(under.store_bytes, over.store_bytes)),
                Some(between(under.docs, over.docs)),
            )
        }
        (None, Some(over)) => (Some(over.store_bytes), Some(over.docs)),
        _ => (None, None),
    };
    Crossing {
        last_under,
        first_over,
        estimated_bytes,
        estimated_docs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(store_bytes: u64, chosen_ms: f64) -> CurvePoint {
        CurvePoint {
            docs: store_bytes / 100,
            store_bytes,
            queries: 10,
            p50_ms: chosen_ms / 2.0,
            p95_ms: chosen_ms,
            p99_ms: chosen_ms,
            chosen_ms,
        }
    }

    #[test]
    fn percentile_table() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let cases = [
            (50.0, 50.0),
            (95.0, 95.0),
            (99.0, 99.0),
            (100.0, 100.0),
            (0.0, 1.0),
        ];
        for (wanted, expected) in cases {
            assert_eq!(percentile(&samples, wanted), Some(expected), "p{wanted}");
        }
        assert_eq!(percentile(&[7.0, 3.0, 5.0], 50.0), Some(5.0));
        assert_eq!(percentile(&[], 95.0), None);
    }

    #[test]
    fn stop_rule_table() {
        let rule = StopRule {
            percentile: 95.0,
            target_ms: 200.0,
            size_cap: ByteSize::gb(1),
            max_steps: 3,
        };
        assert_eq!(rule.should_stop(&[]), None);
        assert_eq!(rule.should_stop(&[point(100, 50.0)]), None);
        assert_eq!(
            rule.should_stop(&[point(100, 250.0)]),
            Some(StopReason::TargetReached)
        );
        assert_eq!(
            rule.should_stop(&[point(1 << 30, 50.0)]),
            Some(StopReason::SizeCap)
        );
        assert_eq!(
            rule.should_stop(&[point(1, 1.0), point(2, 1.0), point(3, 1.0)]),
            Some(StopReason::StepLimit)
        );
    }

    #[test]
    fn crossing_interpolates() {
        // README example: 150 ms at 30 GB, 250 ms at 40 GB -> 200 ms at 35 GB.
        let gb = 1_u64 << 30;
        let curve = [
            point(20 * gb, 100.0),
            point(30 * gb, 150.0),
            point(40 * gb, 250.0),
        ];
        let crossing = find_crossing(&curve, 200.0);
        assert_eq!(crossing.last_under.map(|p| p.store_bytes), Some(30 * gb));
        assert_eq!(crossing.first_over.map(|p| p.store_bytes), Some(40 * gb));
        assert_eq!(crossing.estimated_bytes, Some(35 * gb));

        let never = find_crossing(&curve, 500.0);
        assert_eq!(never.first_over, None);
        assert_eq!(never.estimated_bytes, None);
        assert_eq!(never.last_under.map(|p| p.store_bytes), Some(40 * gb));

        let at_once = find_crossing(&curve, 50.0);
        assert_eq!(at_once.last_under, None);
        assert_eq!(at_once.estimated_bytes, Some(20 * gb));
    }
}
