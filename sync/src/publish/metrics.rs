//! Prometheus metrics of `esync publish`, registered in the same registry as
//! the daemon's (names `esync_publish_*`).

use crate::metrics::MappingLabel;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The publisher's metrics.
#[derive(Debug)]
pub struct PublishMetrics {
    /// Ids produced and acknowledged by Kafka.
    pub ids_published: Family<MappingLabel, Counter>,
    /// Ids found behind the watermark by the look-back window (late commits).
    pub late_ids: Family<MappingLabel, Counter>,
    /// Rows re-seen in the look-back window and not produced again.
    pub suppressed: Family<MappingLabel, Counter>,
    /// Rows read by the poller.
    pub rows_scanned: Family<MappingLabel, Counter>,
    /// Time of one poll (every page until caught up), seconds.
    pub poll_duration: Histogram,
    /// Now minus the watermark's timestamp, seconds.
    pub watermark_lag: Family<MappingLabel, Gauge<f64, AtomicU64>>,
    /// Rows whose timestamp column is NULL (the poller cannot see them).
    pub null_timestamp_rows: Family<MappingLabel, Gauge>,
    /// Failed database queries, Kafka sends or checkpoint writes, retried.
    pub errors: Family<MappingLabel, Counter>,
    /// Outbox rows relayed (then deleted or marked).
    pub outbox_relayed: Family<MappingLabel, Counter>,
}

impl PublishMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<PublishMetrics> {
        let metrics = PublishMetrics {
            ids_published: Family::default(),
            late_ids: Family::default(),
            suppressed: Family::default(),
            rows_scanned: Family::default(),
            poll_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            watermark_lag: Family::default(),
            null_timestamp_rows: Family::default(),
            errors: Family::default(),
            outbox_relayed: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("esync_publish");
        registry.register(
            "ids",
            "Ids produced and acknowledged by Kafka",
            metrics.ids_published.clone(),
        );
        registry.register(
            "late_ids",
            "Ids found behind the watermark by the look-back window",
            metrics.late_ids.clone(),
        );
        registry.register(
            "suppressed",
            "Rows re-seen in the look-back window and not produced again",
            metrics.suppressed.clone(),
        );
        registry.register(
            "rows_scanned",
            "Rows read by the poller",
            metrics.rows_scanned.clone(),
        );
        registry.register_with_unit(
            "poll_duration",
            "Time of one poll until caught up",
            Unit::Seconds,
            metrics.poll_duration.clone(),
        );
        registry.register_with_unit(
            "watermark_lag",
            "Now minus the watermark timestamp",
            Unit::Seconds,
            metrics.watermark_lag.clone(),
        );
        registry.register(
            "null_timestamp_rows",
            "Rows whose timestamp column is NULL, invisible to the poller",
            metrics.null_timestamp_rows.clone(),
        );
        registry.register(
            "errors",
            "Failed queries, sends or checkpoint writes (retried)",
            metrics.errors.clone(),
        );
        registry.register(
            "outbox_relayed",
            "Outbox rows relayed",
            metrics.outbox_relayed.clone(),
        );
        Arc::new(metrics)
    }

    /// Metrics registered nowhere (tests, tools).
    pub fn unregistered() -> Arc<PublishMetrics> {
        PublishMetrics::register(&mut Registry::default())
    }
}
