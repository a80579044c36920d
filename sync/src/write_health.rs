//! Whether the writer is held up, for `/healthz`: "writes to index X blocked
//! since T because R".
//!
//! Pure: the writer reports per round which indexes failed with which
//! [`RetryReason`] and which took writes; the clock is passed in. A reason
//! only a human can end (a block, a missing index, refused credentials)
//! fails the check at once; a reason that passes by itself (push-back, an
//! unavailable shard) only once it has lasted `patience`.

use crate::bulk::RetryReason;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// How long a self-healing reason may last before `/healthz` fails.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stall {
    since: SystemTime,
    reason: RetryReason,
    detail: String,
}

/// Indexes whose writes keep failing, by index name.
#[derive(Debug, Default, Clone)]
pub struct WriteHealth {
    stalled: BTreeMap<String, Stall>,
}

impl WriteHealth {
    /// Writes to `index` failed for `reason` at `now`; the first failure's
    /// time is kept while the stall lasts, the reason and detail are the latest.
    pub fn failed(&mut self, index: &str, reason: RetryReason, detail: &str, now: SystemTime) {
        let detail = crate::id::truncate_for_message(detail);
        match self.stalled.get_mut(index) {
            Some(stall) => {
                stall.reason = reason;
                stall.detail = detail;
            }
            None => {
                self.stalled.insert(
                    index.to_owned(),
                    Stall {
                        since: now,
                        reason,
                        detail,
                    },
                );
            }
        }
    }

    /// `index` took a document: whatever held it up is gone.
    pub fn written(&mut self, index: &str) {
        self.stalled.remove(index);
    }

    /// What `/healthz` reports, or `None` when the writer is not held up.
    pub fn problem(&self, now: SystemTime, patience: Duration) -> Option<String> {
        let problems: Vec<String> = self
            .stalled
            .iter()
            .filter(|(_, stall)| {
                stall.reason.needs_operator()
                    || now.duration_since(stall.since).unwrap_or_default() >= patience
            })
            .map(|(index, stall)| {
                let since = chrono::DateTime::<chrono::Utc>::from(stall.since)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                format!(
                    "writes to index {index} blocked since {since} because {} ({})",
                    stall.reason, stall.detail
                )
            })
            .collect();
        (!problems.is_empty()).then(|| format!("elasticsearch: {}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    #[test]
    fn operator_reasons_fail_at_once_and_clear_on_a_write() {
        let mut health = WriteHealth::default();
        assert_eq!(health.problem(at(0), DEFAULT_PATIENCE), None);
        health.failed(
            "orders",
            RetryReason::IndexBlocked,
            "cluster_block_exception: x",
            at(0),
        );
        health.failed(
            "orders",
            RetryReason::IndexBlocked,
            "cluster_block_exception: y",
            at(5),
        );
        let problem = health.problem(at(5), DEFAULT_PATIENCE).expect("failing");
        assert!(
            problem.contains("index orders blocked since 2023-11-14T22:13:20Z because index_blocked (cluster_block_exception: y)"),
            "{problem}"
        );
        health.written("customers");
        assert!(health.problem(at(6), DEFAULT_PATIENCE).is_some());
        health.written("orders");
        assert_eq!(health.problem(at(6), DEFAULT_PATIENCE), None);
    }

    #[test]
    fn passing_reasons_fail_only_when_they_last() {
        let mut health = WriteHealth::default();
        health.failed(
            "orders",
            RetryReason::Rejected,
            "es_rejected_execution_exception",
            at(0),
        );
        assert_eq!(health.problem(at(59), DEFAULT_PATIENCE), None);
        health.failed(
            "orders",
            RetryReason::Rejected,
            "es_rejected_execution_exception",
            at(59),
        );
        assert!(health.problem(at(60), DEFAULT_PATIENCE).is_some());
    }
}
