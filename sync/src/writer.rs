//! The versioned writer: re-reads ids and writes them to Elasticsearch until
//! every id is written, superseded, or permanently failed.
//!
//! Shared by the daemon and `esync-recover`. Transient failures (database
//! errors, 429/5xx, connection errors) are retried with backoff for as long as
//! it takes; only items still failing are sent again. The caller decides what
//! to do with permanent failures (dead-letter them) and when to give up
//! (`abort`, e.g. at the end of a shutdown grace period).

use crate::bulk::{ItemOutcome, classify_bulk, encode_action};
use crate::config::{Config, MappingConfig};
use crate::db::{Database, RowReader};
use crate::decode::Decoder;
use crate::document::{BulkAction, DocumentSpec, Planned, plan_actions};
use crate::es::EsClient;
use crate::id::Id;
use crate::metrics::{Metrics, StageLabel};
use crate::retry::RetryPolicy;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Everything esync knows about one mapping, built once from the config.
#[derive(Debug)]
pub struct Mapping {
    /// Name for logs and metrics.
    pub name: String,
    /// Topics carrying its ids.
    pub topics: Vec<String>,
    /// Message decoder.
    pub decoder: Decoder,
    /// Re-read query.
    pub reader: RowReader,
    /// Document rules.
    pub spec: DocumentSpec,
}

impl Mapping {
    /// Builds every mapping of a validated config for `database`'s dialect.
    pub fn all_from_config(config: &Config, dialect: crate::db::Dialect) -> Vec<Mapping> {
        config
            .mappings
            .iter()
            .map(|mapping| Mapping::from_config(mapping, dialect, config.source.read_chunk_size))
            .collect()
    }

    fn from_config(
        mapping: &MappingConfig,
        dialect: crate::db::Dialect,
        chunk_size: usize,
    ) -> Mapping {
        Mapping {
            name: mapping.display_name().to_owned(),
            topics: mapping.topics.clone(),
            decoder: Decoder::new(
                mapping.format.clone(),
                mapping.id.id_type,
                &mapping.id.column,
            ),
            reader: RowReader::new(mapping, dialect, chunk_size),
            spec: DocumentSpec {
                index: Arc::from(mapping.index.as_str()),
                id_column: mapping.id.column.clone(),
                id_type: mapping.id.id_type,
                version_column: mapping.version.column.clone(),
                version_kind: mapping.version.kind,
                routing_column: mapping.routing_column.clone(),
                delete: mapping.delete.clone(),
                renames: mapping.rename.clone(),
                exclude: mapping.exclude.iter().cloned().collect(),
                json_columns: mapping.json_columns.iter().cloned().collect(),
                lag_column: mapping.lag_column.clone(),
            },
        }
    }
}

/// An id that cannot be written; the caller dead-letters it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedId {
    /// Index into the mappings.
    pub mapping: usize,
    /// The id.
    pub id: Id,
    /// Stable code for headers and metrics.
    pub reason_code: &'static str,
    /// What went wrong.
    pub reason: String,
}

/// What a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// Rows found in the database.
    pub rows_read: usize,
    /// Documents written.
    pub indexed: usize,
    /// Documents deleted.
    pub deleted: usize,
    /// Writes skipped as older than the index.
    pub conflicts: usize,
    /// Ids that cannot be written.
    pub failed: Vec<FailedId>,
}

/// The batch was given up because `abort` fired; nothing of it may be
/// acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("write abandoned")]
pub struct Abandoned;

/// Re-reads and writes ids.
#[derive(Debug, Clone)]
pub struct Writer {
    database: Database,
    es: EsClient,
    mappings: Arc<Vec<Mapping>>,
    retry: RetryPolicy,
    max_bulk_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Writer {
    /// A writer over connected adapters.
    pub fn new(
        database: Database,
        es: EsClient,
        mappings: Arc<Vec<Mapping>>,
        retry: RetryPolicy,
        max_bulk_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Writer {
        Writer {
            database,
            es,
            mappings,
            retry,
            max_bulk_bytes,
            metrics,
        }
    }

    /// The mappings.
    pub fn mappings(&self) -> &Arc<Vec<Mapping>> {
        &self.mappings
    }

    /// The database pool.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The Elasticsearch client.
    pub fn es(&self) -> &EsClient {
        &self.es
    }

    /// Re-reads and writes `ids_by_mapping[m]` for every mapping `m`.
    ///
    /// Items that fail transiently are retried by re-reading their rows, never
    /// by resending the old write: after a long outage a resent write could be
    /// older than a delete that Elasticsearch no longer remembers
    /// (`index.gc_deletes`), while a fresh read always carries the latest state.
    pub async fn write_batch(
        &self,
        ids_by_mapping: &[Vec<Id>],
        abort: &CancellationToken,
    ) -> Result<WriteReport, Abandoned> {
        let mut report = WriteReport::default();
        for (mapping, ids) in self.mappings.iter().zip(ids_by_mapping) {
            self.metrics
                .ids_distinct
                .get_or_create(&Metrics::mapping(&mapping.name))
                .inc_by(ids.len() as u64);
        }
        let mut pending_ids = ids_by_mapping.to_vec();
        let mut attempt = 0;
        loop {
            let actions = self.plan_round(&pending_ids, &mut report, abort).await?;
            pending_ids = self.send_round(actions, &mut report).await;
            let retrying: usize = pending_ids.iter().map(Vec::len).sum();
            if retrying == 0 {
                return Ok(report);
            }
            self.metrics
                .retries
                .get_or_create(&StageLabel {
                    stage: "elasticsearch",
                })
                .inc_by(retrying as u64);
            tracing::debug!(
                items = retrying,
                attempt,
                "retrying bulk items after a fresh re-read"
            );
            self.pause(attempt, abort).await?;
            attempt += 1;
        }
    }

    /// Re-reads the rows of `ids_by_mapping` and plans their actions; ids that
    /// cannot be written go to `report.failed`.
    async fn plan_round(
        &self,
        ids_by_mapping: &[Vec<Id>],
        report: &mut WriteReport,
        abort: &CancellationToken,
    ) -> Result<Vec<PendingWrite>, Abandoned> {
        let now_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_micros() as u64);
        let mut actions = Vec::new();
        for (mapping_index, ids) in ids_by_mapping.iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let mapping = &self.mappings[mapping_index];
            let rows = self.read_rows(mapping, ids, abort).await?;
            report.rows_read += rows.len();
            self.metrics
                .rows_read
                .get_or_create(&Metrics::mapping(&mapping.name))
                .inc_by(rows.len() as u64);
            for Planned {
                id,
                action,
                changed_at_micros,
            } in plan_actions(&mapping.spec, ids, rows, now_micros)
            {
                if let Some(changed_at) = changed_at_micros {
                    let lag_seconds = (now_micros as i64 - changed_at) as f64 / 1e6;
                    self.metrics.end_to_end_lag.observe(lag_seconds.max(0.0));
                }
                match action {
                    Ok(action) => actions.push(PendingWrite {
                        mapping: mapping_index,
                        id,
                        action,
                    }),
                    Err(error) => report.failed.push(FailedId {
                        mapping: mapping_index,
                        id,
                        reason_code: error.reason_code(),
                        reason: error.to_string(),
                    }),
                }
            }
        }
        Ok(actions)
    }

    /// Re-reads rows, retrying database errors until they pass.
    async fn read_rows(
        &self,
        mapping: &Mapping,
        ids: &[Id],
        abort: &CancellationToken,
    ) -> Result<Vec<crate::document::Row>, Abandoned> {
        let mut attempt = 0;
        loop {
            match mapping.reader.fetch(&self.database, ids).await {
                Ok(rows) => return Ok(rows),
                Err(error) => {
                    self.metrics
                        .retries
                        .get_or_create(&StageLabel { stage: "database" })
                        .inc();
                    if error.is_retryable() {
                        tracing::warn!(mapping = %mapping.name, attempt, error = %error, "re-read failed, retrying");
                    } else {
                        // Nothing is lost by waiting: a human can fix the query or the schema.
                        tracing::error!(mapping = %mapping.name, attempt, error = %error, "re-read query fails, retrying until it works");
                    }
                    self.pause(attempt, abort).await?;
                    attempt += 1;
                }
            }
        }
    }

    /// Sends the actions in `_bulk` requests of at most `max_bulk_bytes` and
    /// returns, per mapping, the ids to retry.
    async fn send_round(
        &self,
        pending: Vec<PendingWrite>,
        report: &mut WriteReport,
    ) -> Vec<Vec<Id>> {
        let mut retry_ids = vec![Vec::new(); self.mappings.len()];
        // per mapping: indexed, deleted, conflicts; metrics are updated once per round
        let mut tally = vec![[0u64; 3]; self.mappings.len()];
        for (range, body) in encode_chunks(&pending, self.max_bulk_bytes) {
            let chunk = &pending[range];
            let actions: Vec<&BulkAction> = chunk.iter().map(|write| &write.action).collect();
            let outcomes = self.send_bulk(body, &actions).await;
            for (write, outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    ItemOutcome::Written if write.action.is_delete() => {
                        tally[write.mapping][1] += 1
                    }
                    ItemOutcome::Written => tally[write.mapping][0] += 1,
                    ItemOutcome::VersionConflict => tally[write.mapping][2] += 1,
                    ItemOutcome::Retryable { .. } => {
                        retry_ids[write.mapping].push(write.id.clone())
                    }
                    ItemOutcome::Permanent { status, reason } => report.failed.push(FailedId {
                        mapping: write.mapping,
                        id: write.id.clone(),
                        reason_code: "rejected_by_elasticsearch",
                        reason: format!("status {status}: {reason}"),
                    }),
                }
            }
        }
        for (mapping, [indexed, deleted, conflicts]) in self.mappings.iter().zip(tally) {
            if indexed + deleted + conflicts == 0 {
                continue;
            }
            report.indexed += indexed as usize;
            report.deleted += deleted as usize;
            report.conflicts += conflicts as usize;
            let label = Metrics::mapping(&mapping.name);
            self.metrics
                .docs_indexed
                .get_or_create(&label)
                .inc_by(indexed);
            self.metrics
                .docs_deleted
                .get_or_create(&label)
                .inc_by(deleted);
            self.metrics
                .version_conflicts
                .get_or_create(&label)
                .inc_by(conflicts);
        }
        retry_ids
    }

    /// One `_bulk` request; a failure of the whole request makes every item
    /// retryable (nothing is dropped: a human can fix credentials or limits).
    async fn send_bulk(&self, body: Vec<u8>, actions: &[&BulkAction]) -> Vec<ItemOutcome> {
        let all_retryable = |status: u16, reason: String| {
            vec![ItemOutcome::Retryable { status, reason }; actions.len()]
        };
        match self.es.bulk(body).await {
            Ok(response) if response.status == 200 => {
                match classify_bulk(&response.body, actions) {
                    Ok(outcomes) => outcomes,
                    Err(error) => {
                        tracing::warn!(error = %error, "unusable bulk response, retrying the batch");
                        all_retryable(200, error.to_string())
                    }
                }
            }
            Ok(response) => {
                let body =
                    crate::id::truncate_for_message(&String::from_utf8_lossy(&response.body));
                if crate::bulk::request_status_is_retryable(response.status) {
                    tracing::warn!(status = response.status, body = %body, "bulk request rejected, retrying");
                } else {
                    tracing::error!(status = response.status, body = %body, "bulk request refused, retrying until it is accepted");
                }
                all_retryable(response.status, body)
            }
            Err(error) => {
                tracing::warn!(error = %error, "bulk request failed, retrying");
                all_retryable(0, error.to_string())
            }
        }
    }

    async fn pause(&self, attempt: u32, abort: &CancellationToken) -> Result<(), Abandoned> {
        sleep_or_abort(self.retry.random_delay(attempt), abort).await
    }
}

/// A planned write and the id it came from.
#[derive(Debug, Clone)]
struct PendingWrite {
    mapping: usize,
    id: Id,
    action: BulkAction,
}

/// Sleeps for `delay` unless `abort` fires first.
pub async fn sleep_or_abort(delay: Duration, abort: &CancellationToken) -> Result<(), Abandoned> {
    tokio::select! {
        _ = abort.cancelled() => Err(Abandoned),
        _ = tokio::time::sleep(delay) => Ok(()),
    }
}

/// Encodes actions into `_bulk` bodies of at most `max_bytes` each (a single
/// oversized action still goes alone), each with the range of actions it holds.
fn encode_chunks(
    actions: &[PendingWrite],
    max_bytes: usize,
) -> Vec<(std::ops::Range<usize>, Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut body = Vec::new();
    for (index, PendingWrite { action, .. }) in actions.iter().enumerate() {
        let before = body.len();
        encode_action(action, &mut body);
        if index > start && body.len() > max_bytes {
            let tail = body.split_off(before);
            chunks.push((start..index, std::mem::replace(&mut body, tail)));
            start = index;
        }
    }
    if start < actions.len() {
        chunks.push((start..actions.len(), body));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_bulk_bodies_by_size() {
        let action = |n: i64| PendingWrite {
            mapping: 0,
            id: Id::Int(n),
            action: BulkAction::Delete {
                index: Arc::from("i"),
                id: n.to_string(),
                version: 1,
                routing: None,
            },
        };
        let actions: Vec<_> = (0..10).map(action).collect();
        let mut one = Vec::new();
        encode_action(&actions[0].action, &mut one);
        let chunks = encode_chunks(&actions, one.len() * 3);
        assert_eq!(
            chunks
                .iter()
                .map(|(range, _)| range.clone())
                .collect::<Vec<_>>(),
            vec![0..3, 3..6, 6..9, 9..10]
        );
        let mut all = Vec::new();
        for (_, body) in &chunks {
            assert!(body.len() <= one.len() * 3);
            all.extend_from_slice(body);
        }
        let mut expected = Vec::new();
        for write in &actions {
            encode_action(&write.action, &mut expected);
        }
        assert_eq!(all, expected, "nothing lost or repeated at the cuts");
        assert_eq!(
            encode_chunks(&actions, 1).len(),
            10,
            "oversized actions go one by one"
        );
        assert_eq!(encode_chunks(&actions, usize::MAX).len(), 1);
        assert!(encode_chunks(&[], 100).is_empty());
    }
}
