//! Every Prometheus metric of the daemon, in one place.
//!
//! Names follow `esync_<name>_<unit>`, counters end in `_total`; labels are
//! low-cardinality (mapping, topic, partition, outcome), never ids.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Label set `{mapping}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MappingLabel {
    /// Mapping name.
    pub mapping: String,
}

/// Label set `{topic}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// Topic.
    pub topic: String,
}

/// Label set `{topic, partition}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: String,
}

/// Label set `{stage, reason}` for retries. Stages: `database`,
/// `elasticsearch`, `dead_letter`; reasons: for `elasticsearch` the
/// [`crate::bulk::RetryReason`] labels (`index_blocked`, `index_missing`,
/// `unauthorized`, `rejected`, `unavailable`, `request_too_large`,
/// `tombstone`, `delete_behind`, ...), for `database` `query_failed`, for
/// `dead_letter` `produce_failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabel {
    /// Stage.
    pub stage: &'static str,
    /// Why.
    pub reason: &'static str,
}

/// Label set `{reason}` for dead-lettered items.
/// A dual write's outcome on the index being built.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DualWriteLabel {
    /// The mapping.
    pub mapping: String,
    /// `written`, `superseded` or `failed` (retried in the background).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Reason code.
    pub reason: String,
}

/// The daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Kafka messages consumed.
    pub messages: Family<TopicLabel, Counter>,
    /// Ids decoded from messages, duplicates included.
    pub ids_received: Family<MappingLabel, Counter>,
    /// Distinct ids per batch, summed (ids after dedupe).
    pub ids_distinct: Family<MappingLabel, Counter>,
    /// Rows re-read from the database.
    pub rows_read: Family<MappingLabel, Counter>,
    /// Documents written (created or replaced).
    pub docs_indexed: Family<MappingLabel, Counter>,
    /// Documents deleted.
    pub docs_deleted: Family<MappingLabel, Counter>,
    /// Writes skipped because the index held this or a newer version.
    pub version_conflicts: Family<MappingLabel, Counter>,
    /// Retries, per stage and reason.
    pub retries: Family<RetryLabel, Counter>,
    /// Messages or ids sent to the dead-letter topic (or dropped without one).
    pub dead_lettered: Family<ReasonLabel, Counter>,
    /// Dead letters produced truncated because the whole record was refused.
    pub dead_letters_truncated: Counter,
    /// Time to handle one batch, seconds.
    pub batch_duration: Histogram,
    /// Distinct ids per batch.
    pub batch_size: Histogram,
    /// Consumer lag per partition, messages (from librdkafka statistics).
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Row change to indexed, seconds (when a mapping has `lag_column`).
    pub end_to_end_lag: Histogram,
    /// Offset commits that failed (retried at the next interval).
    pub commit_failures: Counter,
    /// Writes to indexes being rebuilt (`<alias>.next`), per outcome.
    pub dual_writes: Family<DualWriteLabel, Counter>,
    /// Ids whose write to an index being rebuilt failed and waits for a retry.
    pub dual_write_pending: Family<MappingLabel, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Metrics> {
        let metrics = Metrics {
            messages: Family::default(),
            ids_received: Family::default(),
            ids_distinct: Family::default(),
            rows_read: Family::default(),
            docs_indexed: Family::default(),
            docs_deleted: Family::default(),
            version_conflicts: Family::default(),
            retries: Family::default(),
            dead_lettered: Family::default(),
            dead_letters_truncated: Counter::default(),
            batch_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            consumer_lag: Family::default(),
            end_to_end_lag: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            commit_failures: Counter::default(),
            dual_writes: Family::default(),
            dual_write_pending: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("esync");
        registry.register(
            "messages",
            "Kafka messages consumed",
            metrics.messages.clone(),
        );
        registry.register(
            "ids_received",
            "Ids decoded from messages, duplicates included",
            metrics.ids_received.clone(),
        );
        registry.register(
            "ids_distinct",
            "Distinct ids handled per batch, summed",
            metrics.ids_distinct.clone(),
        );
        registry.register(
            "rows_read",
            "Rows re-read from the database",
            metrics.rows_read.clone(),
        );
        registry.register(
            "docs_indexed",
            "Documents written",
            metrics.docs_indexed.clone(),
        );
        registry.register(
            "docs_deleted",
            "Documents deleted",
            metrics.docs_deleted.clone(),
        );
        registry.register(
            "version_conflicts",
            "Writes skipped because the index held this or a newer version",
            metrics.version_conflicts.clone(),
        );
        registry.register(
            "dual_writes",
            "Writes to indexes being rebuilt, per outcome",
            metrics.dual_writes.clone(),
        );
        registry.register(
            "dual_write_pending",
            "Ids waiting to be written again to an index being rebuilt",
            metrics.dual_write_pending.clone(),
        );
        registry.register(
            "retries",
            "Retried items or requests, per stage and reason",
            metrics.retries.clone(),
        );
        registry.register(
            "dead_lettered",
            "Messages or ids dead-lettered, per reason",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "dead_letters_truncated",
            "Dead letters produced truncated because the broker refused them whole",
            metrics.dead_letters_truncated.clone(),
        );
        registry.register_with_unit(
            "batch_duration",
            "Time to handle one batch",
            prometheus_client::registry::Unit::Seconds,
            metrics.batch_duration.clone(),
        );
        registry.register(
            "batch_ids",
            "Distinct ids per batch",
            metrics.batch_size.clone(),
        );
        registry.register(
            "consumer_lag_messages",
            "Consumer lag per partition",
            metrics.consumer_lag.clone(),
        );
        registry.register_with_unit(
            "end_to_end_lag",
            "Time from the row's lag_column timestamp to indexed",
            prometheus_client::registry::Unit::Seconds,
            metrics.end_to_end_lag.clone(),
        );
        registry.register(
            "commit_failures",
            "Offset commits that failed",
            metrics.commit_failures.clone(),
        );
        Arc::new(metrics)
    }

    /// Metrics registered nowhere, for tools and tests that do not serve them.
    pub fn unregistered() -> Arc<Metrics> {
        Metrics::register(&mut Registry::default())
    }

    /// Shorthand for a mapping label.
    pub fn mapping(name: &str) -> MappingLabel {
        MappingLabel {
            mapping: name.to_owned(),
        }
    }
}
