//! Prometheus metrics of a recovery run (`esync-recover run
//! --metrics-listen`), beside the writer's own `esync_*` metrics.
//!
//! Every series carries the label `run` (the run's name), never ids. The run
//! records them where it updates its live counters; what to show for a
//! throttle state is decided by the pure [`limit_gauge`].

use crate::recover::checkpoint::Totals;
use crate::recover::control::ThrottleView;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Label set `{run}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabel {
    /// The run's name (`--run-name`).
    pub run: String,
}

/// The metrics of recovery runs (`esync_recover_*`).
#[derive(Debug, Default)]
pub struct RecoverMetrics {
    /// Ids walked (`esync_recover_rows_total`).
    pub rows: Family<RunLabel, Counter>,
    /// Rows that could not be written and were dead-lettered
    /// (`esync_recover_failed_total`).
    pub failed: Family<RunLabel, Counter>,
    /// Chunks done, those of earlier runs and other workers included as
    /// this process knows them (`esync_recover_chunks_done`).
    pub chunks_done: Family<RunLabel, Gauge>,
    /// Chunks in the plan (`esync_recover_chunks_total`).
    pub chunks_total: Family<RunLabel, Gauge>,
    /// The effective limit in rows per second, 0 while paused, absent while
    /// unlimited (`esync_recover_rate_limit_rows_per_second`).
    pub rate_limit: Family<RunLabel, Gauge<f64, AtomicU64>>,
    /// 1 while an operator paused the run (`esync_recover_paused`).
    pub paused: Family<RunLabel, Gauge>,
}

impl RecoverMetrics {
    /// Creates the metrics and registers them in `registry` (prefix
    /// `esync_recover`).
    pub fn register(registry: &mut Registry) -> Arc<RecoverMetrics> {
        let metrics = RecoverMetrics::default();
        let registry = registry.sub_registry_with_prefix("esync_recover");
        registry.register("rows", "Ids walked by the run", metrics.rows.clone());
        registry.register(
            "failed",
            "Rows the run could not write (dead-lettered)",
            metrics.failed.clone(),
        );
        registry.register(
            "chunks_done",
            "Chunks of the run's plan done",
            metrics.chunks_done.clone(),
        );
        registry.register(
            "chunks_total",
            "Chunks in the run's plan",
            metrics.chunks_total.clone(),
        );
        registry.register(
            "rate_limit_rows_per_second",
            "Effective rate limit in rows per second (0 while paused, absent while unlimited)",
            metrics.rate_limit.clone(),
        );
        registry.register(
            "paused",
            "1 while an operator paused the run",
            metrics.paused.clone(),
        );
        Arc::new(metrics)
    }

    /// Metrics registered nowhere, for runs that do not serve them.
    pub fn unregistered() -> Arc<RecoverMetrics> {
        RecoverMetrics::register(&mut Registry::default())
    }

    /// The metrics of the run `run_name`.
    pub fn run(self: &Arc<RecoverMetrics>, run_name: &str) -> RunMetrics {
        RunMetrics {
            metrics: self.clone(),
            label: RunLabel {
                run: run_name.to_owned(),
            },
        }
    }
}

/// The metrics of one run, with its label.
#[derive(Debug, Clone)]
pub struct RunMetrics {
    metrics: Arc<RecoverMetrics>,
    label: RunLabel,
}

impl RunMetrics {
    /// Creates every series of the run at its start value, so the counters
    /// exist (at 0) before the first page, and an alert on their growth
    /// sees a run that never wrote anything.
    pub fn start(&self, chunks_done: u64, chunks_total: u64, view: &ThrottleView) {
        let metrics = &self.metrics;
        metrics.rows.get_or_create(&self.label).inc_by(0);
        metrics.failed.get_or_create(&self.label).inc_by(0);
        self.set_chunks_done(chunks_done);
        metrics
            .chunks_total
            .get_or_create(&self.label)
            .set(gauge_value(chunks_total));
        self.set_throttle(view);
    }

    /// Adds one written page.
    pub fn add_page(&self, page: &Totals) {
        self.metrics
            .rows
            .get_or_create(&self.label)
            .inc_by(page.rows);
        self.metrics
            .failed
            .get_or_create(&self.label)
            .inc_by(page.failed);
    }

    /// Sets the number of chunks done.
    pub fn set_chunks_done(&self, chunks_done: u64) {
        self.metrics
            .chunks_done
            .get_or_create(&self.label)
            .set(gauge_value(chunks_done));
    }

    /// Shows a throttle state: the limit gauge and the paused gauge.
    pub fn set_throttle(&self, view: &ThrottleView) {
        match limit_gauge(view) {
            Some(limit) => {
                self.metrics
                    .rate_limit
                    .get_or_create(&self.label)
                    .set(limit);
            }
            None => {
                self.metrics.rate_limit.remove(&self.label);
            }
        }
        self.metrics
            .paused
            .get_or_create(&self.label)
            .set(i64::from(view.paused));
    }
}

/// The value of `esync_recover_rate_limit_rows_per_second` for a throttle
/// state: the effective limit, 0 while paused, `None` (no series) while
/// unlimited, since a number would read as a real limit.
pub fn limit_gauge(view: &ThrottleView) -> Option<f64> {
    view.current_limit()
}

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recover::control::LimitReason;

    fn view(limit: Option<f64>, paused: bool) -> ThrottleView {
        ThrottleView {
            limit,
            paused,
            reason: LimitReason::Start(limit),
        }
    }

    fn encoded(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
        text
    }

    #[test]
    fn the_limit_gauge_is_the_limit_zero_when_paused_and_absent_when_unlimited() {
        assert_eq!(limit_gauge(&view(Some(500.0), false)), Some(500.0));
        assert_eq!(limit_gauge(&view(Some(500.0), true)), Some(0.0));
        assert_eq!(limit_gauge(&view(None, true)), Some(0.0));
        assert_eq!(limit_gauge(&view(None, false)), None);
    }

    #[test]
    fn a_run_exports_its_progress_under_its_name() {
        let mut registry = Registry::default();
        let metrics = RecoverMetrics::register(&mut registry);
        let run = metrics.run("nightly");
        run.start(2, 10, &view(Some(40.0), false));
        run.add_page(&Totals {
            rows: 100,
            indexed: 97,
            deleted: 0,
            conflicts: 0,
            failed: 3,
        });
        run.set_chunks_done(3);
        let text = encoded(&registry);
        for line in [
            "esync_recover_rows_total{run=\"nightly\"} 100",
            "esync_recover_failed_total{run=\"nightly\"} 3",
            "esync_recover_chunks_done{run=\"nightly\"} 3",
            "esync_recover_chunks_total{run=\"nightly\"} 10",
            "esync_recover_rate_limit_rows_per_second{run=\"nightly\"} 40.0",
            "esync_recover_paused{run=\"nightly\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        run.set_throttle(&view(Some(40.0), true));
        let text = encoded(&registry);
        assert!(
            text.contains("esync_recover_paused{run=\"nightly\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("esync_recover_rate_limit_rows_per_second{run=\"nightly\"} 0.0"),
            "{text}"
        );
        run.set_throttle(&view(None, false));
        let text = encoded(&registry);
        assert!(
            !text.contains("esync_recover_rate_limit_rows_per_second{"),
            "{text}"
        );
    }
}
