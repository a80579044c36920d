//! The versioned writer: re-reads ids and writes them to Elasticsearch until
//! every id is written, superseded, or permanently failed.
//!
//! Shared by the daemon and `esync-recover`. Failures that are not about one
//! document (database errors; index-, cluster-, auth- and load-level
//! Elasticsearch errors, see [`crate::bulk::retry_reason`]; connection errors)
//! are retried with backoff for as long as it takes, counted per reason and
//! reported to `/healthz` ([`Writer::health_problem`]); only items still
//! failing are re-read and sent again. Version conflicts are checked: a hard
//! delete behind a newer document is re-sent above its version, a write
//! refused by a delete tombstone is retried after `gc_deletes`. A request
//! refused as too large is split. The caller decides what to do with
//! document-level failures (dead-letter them) and when to give up (`abort`,
//! e.g. at the end of a shutdown grace period).

use crate::bulk::{
    Bisection, ConflictDecision, ConflictKind, ItemOutcome, RequestFailure, RetryReason,
    classify_bulk, classify_request_failure, decide_conflict, encode_action, encode_mget,
    parse_mget,
};
use crate::config::{Config, ElasticsearchConfig, MappingConfig};
use crate::db::{Database, RowReader};
use crate::document::{BulkAction, DocumentSpec, Planned, plan_actions};
use crate::es::EsClient;
use crate::id::Id;
use crate::lifecycle::targets::{DualWriteTargets, NextIndexes};
use crate::lock::lock;
use crate::metrics::{DualWriteLabel, Metrics, RetryLabel};
use crate::retry::RetryPolicy;
use crate::write_health::WriteHealth;
use elasticsearch::http::Method;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Everything esync knows about one mapping, built once from the config.
#[derive(Debug)]
pub struct Mapping {
    /// Name for logs and metrics.
    pub name: String,
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
    /// Elasticsearch items sent again (any reason, as counted in
    /// `esync_retries_total{stage="elasticsearch"}`): the cluster's push-back,
    /// which esync-recover's adaptive rate slows down for.
    pub es_retries: u64,
    /// Ids that cannot be written.
    pub failed: Vec<FailedId>,
}

// moved to the `cancel` leaf (publish and recover wait the same way);
// re-exported so that existing paths keep working
pub use crate::cancel::{Abandoned, sleep_or_abort};

/// Re-reads and writes ids.
#[derive(Debug, Clone)]
pub struct Writer {
    database: Database,
    es: EsClient,
    mappings: Arc<Vec<Mapping>>,
    retry: RetryPolicy,
    max_bulk_bytes: usize,
    gc_deletes: Duration,
    metrics: Arc<Metrics>,
    health: Arc<Mutex<WriteHealth>>,
    /// Indexes being rebuilt, written too (see [`crate::lifecycle`]).
    dual_writes: Arc<DualWriteTargets>,
    /// Dual writes that failed, retried apart so that live writes never wait.
    dual_backlog: Arc<Mutex<DualBacklog>>,
}

/// Ids to write again to an index being rebuilt: per (mapping, index), each
/// id with the lowest version for its next hard delete.
type DualBacklog = BTreeMap<(usize, Arc<str>), BTreeMap<Id, u64>>;

impl Writer {
    /// A writer over connected adapters, with the limits of the
    /// `elasticsearch` section (`max_bulk_bytes`, `gc_deletes`).
    pub fn new(
        database: Database,
        es: EsClient,
        mappings: Arc<Vec<Mapping>>,
        retry: RetryPolicy,
        elasticsearch: &ElasticsearchConfig,
        metrics: Arc<Metrics>,
    ) -> Writer {
        let dual_writes = Arc::new(DualWriteTargets::new(
            mappings.iter().map(|mapping| &*mapping.spec.index),
        ));
        Writer {
            database,
            es,
            mappings,
            retry,
            max_bulk_bytes: elasticsearch.max_bulk_bytes,
            gc_deletes: elasticsearch.gc_deletes,
            metrics,
            health: Arc::default(),
            dual_writes,
            dual_backlog: Arc::default(),
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

    /// Why writes are held up (an index blocked or missing, credentials
    /// refused, or push-back lasting a minute), for `/healthz`; `None` when
    /// they flow.
    pub fn health_problem(&self) -> Option<String> {
        lock(&self.health).problem(SystemTime::now(), crate::write_health::DEFAULT_PATIENCE)
    }

    /// Re-reads and writes the `ids` of mapping number `mapping`; see
    /// [`Writer::write_batch`].
    pub async fn write_ids(
        &self,
        mapping: usize,
        ids: &[Id],
        abort: &CancellationToken,
    ) -> Result<WriteReport, Abandoned> {
        let mut ids_by_mapping = vec![Vec::new(); self.mappings.len()];
        ids_by_mapping[mapping] = ids.to_vec();
        self.write_batch(&ids_by_mapping, abort).await
    }

    /// Re-reads and writes `ids_by_mapping[m]` for every mapping `m`.
    ///
    /// Items that fail transiently are retried by re-reading their rows, never
    /// by resending the old write: after a long outage a resent write could be
    /// older than a delete that Elasticsearch no longer remembers
    /// (`index.gc_deletes`), while a fresh read always carries the latest state.
    /// Items refused by a delete tombstone are retried once `gc_deletes` has
    /// passed. Only document-level errors end in `failed`.
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
        // lowest version for the next hard delete of an id, above the document's
        let mut delete_versions: HashMap<(usize, Id), u64> = HashMap::new();
        // ids refused by a delete tombstone, and when to try them again
        let mut after_gc_deletes: Vec<(tokio::time::Instant, usize, Id)> = Vec::new();
        let mut attempt = 0;
        loop {
            let actions = self
                .plan_round(&pending_ids, &delete_versions, &mut report, abort)
                .await?;
            // asked after the re-read: see `lifecycle::targets` for why
            let next = self.next_indexes(&actions, abort).await?;
            let actions = with_dual_writes(actions, &next);
            let mut round = self.send_round(actions, &mut report).await;
            self.defer_dual_writes(std::mem::take(&mut round.dual_retry));
            for (key, version) in round.delete_versions {
                let entry = delete_versions.entry(key).or_default();
                *entry = (*entry).max(version);
            }
            let due = tokio::time::Instant::now() + self.gc_deletes;
            after_gc_deletes.extend(
                round
                    .after_gc_deletes
                    .into_iter()
                    .map(|(mapping, id)| (due, mapping, id)),
            );
            pending_ids = vec![Vec::new(); self.mappings.len()];
            for (mapping, id) in round.retry_now {
                pending_ids[mapping].push(id);
            }
            if pending_ids.iter().any(|ids| !ids.is_empty()) {
                tracing::debug!(attempt, "retrying bulk items after a fresh re-read");
                self.pause(attempt, abort).await?;
                attempt += 1;
            } else if let Some(next) = after_gc_deletes.iter().map(|(due, ..)| *due).min() {
                tracing::info!(
                    ids = after_gc_deletes.len(),
                    "waiting for index.gc_deletes before writing re-inserted rows again"
                );
                sleep_or_abort(next - tokio::time::Instant::now().min(next), abort).await?;
            } else {
                return Ok(report);
            }
            let now = tokio::time::Instant::now();
            after_gc_deletes.retain(|(due, mapping, id)| {
                let keep = *due > now;
                if !keep {
                    pending_ids[*mapping].push(id.clone());
                }
                keep
            });
        }
    }

    /// Writes again, to the indexes being rebuilt only, the ids whose dual
    /// write failed (one attempt each; failures stay in the backlog, and so
    /// does what an abort leaves unattempted). Returns how many ids are
    /// still waiting.
    pub async fn retry_dual_writes(&self, abort: &CancellationToken) -> Result<usize, Abandoned> {
        let backlog = std::mem::take(&mut *lock(&self.dual_backlog));
        let mut entries = backlog.into_iter();
        while let Some(((mapping, index), ids)) = entries.next() {
            let mut ids_by_mapping = vec![Vec::new(); self.mappings.len()];
            ids_by_mapping[mapping] = ids.keys().cloned().collect();
            let floors = ids
                .iter()
                .map(|(id, floor)| ((mapping, id.clone()), *floor))
                .collect();
            let mut report = WriteReport::default();
            let planned = self
                .plan_round(&ids_by_mapping, &floors, &mut report, abort)
                .await;
            let Ok(actions) = planned else {
                self.keep_dual_writes(std::iter::once(((mapping, index), ids)).chain(entries));
                return Err(Abandoned);
            };
            let actions = actions
                .into_iter()
                .map(|write| write.dual_to(index.clone()))
                .collect();
            let round = self.send_round(actions, &mut report).await;
            self.defer_dual_writes(round.dual_retry);
        }
        // the backlog only shrinks here: the gauge follows
        self.count_dual_pending(&lock(&self.dual_backlog));
        Ok(self.dual_writes_pending())
    }

    /// Retries the dual-write backlog until it is empty, `within` has passed
    /// or `abort` fires, backing off while nothing gets through (shutdown,
    /// the end of a recovery run). Returns how many ids are still waiting:
    /// those reach the index being rebuilt through its verification.
    pub async fn drain_dual_writes(&self, within: Duration, abort: &CancellationToken) -> usize {
        let pending = self.dual_writes_pending();
        if pending == 0 {
            return 0;
        }
        tracing::info!(
            ids = pending,
            within = ?within,
            "writing what failed to reach the index being rebuilt before stopping"
        );
        let limit = abort.child_token();
        let timer = tokio::spawn({
            let limit = limit.clone();
            async move {
                tokio::time::sleep(within).await;
                limit.cancel();
            }
        });
        let mut attempt = 0;
        loop {
            let before = self.dual_writes_pending();
            if before == 0 {
                break;
            }
            let Ok(after) = self.retry_dual_writes(&limit).await else {
                break;
            };
            attempt = if after < before { 0 } else { attempt + 1 };
            if after == 0
                || sleep_or_abort(self.retry.random_delay(attempt), &limit)
                    .await
                    .is_err()
            {
                break;
            }
        }
        timer.abort();
        self.dual_writes_pending()
    }

    /// Retries the dual-write backlog until `stop` fires: every second while
    /// it drains, backing off while nothing gets through.
    pub async fn keep_retrying_dual_writes(&self, stop: &CancellationToken) {
        let mut attempt = 0;
        loop {
            let wait = match attempt {
                0 => Duration::from_secs(1),
                _ => self.retry.random_delay(attempt),
            };
            if sleep_or_abort(wait, stop).await.is_err() {
                return;
            }
            let before = self.dual_writes_pending();
            if before == 0 {
                attempt = 0;
                continue;
            }
            let Ok(after) = self.retry_dual_writes(stop).await else {
                return;
            };
            attempt = if after < before { 0 } else { attempt + 1 };
            if after > 0 {
                tracing::info!(
                    ids = after,
                    attempt,
                    "dual writes still waiting for the index being rebuilt"
                );
            }
        }
    }

    /// Ids waiting in the dual-write backlog.
    pub fn dual_writes_pending(&self) -> usize {
        lock(&self.dual_backlog).values().map(BTreeMap::len).sum()
    }

    /// The indexes being rebuilt, asking Elasticsearch when what is known is
    /// too old; while it cannot be asked, nothing is written (the answer
    /// decides where the rows just read must go).
    async fn next_indexes(
        &self,
        actions: &[PendingWrite],
        abort: &CancellationToken,
    ) -> Result<NextIndexes, Abandoned> {
        if actions.is_empty() {
            return Ok(Arc::default());
        }
        let mut attempt = 0;
        loop {
            match self.dual_writes.current(&self.es).await {
                Ok(next) => return Ok(next),
                Err(
                    error @ crate::es::EsError::Status {
                        status: 401 | 403, ..
                    },
                ) => {
                    // a least-privilege user without view_index_metadata on
                    // `<index>.next`: writing without knowing could miss a rebuild
                    self.count_retry(RetryReason::Unauthorized, 1);
                    tracing::error!(attempt, error = %error, "cannot read the <index>.next aliases that announce index rebuilds: grant view_index_metadata on them (README \"Index lifecycle\"); writes wait until then");
                    let indexes: BTreeSet<&str> =
                        actions.iter().map(|write| write.action.index()).collect();
                    let (now, detail) = (SystemTime::now(), error.to_string());
                    let mut health = lock(&self.health);
                    for index in indexes {
                        health.failed(index, RetryReason::Unauthorized, &detail, now);
                    }
                }
                Err(error) => {
                    self.count_retry(RetryReason::Unavailable, 1);
                    tracing::warn!(attempt, error = %error, "cannot learn which indexes are being rebuilt; retrying before writing");
                }
            }
            self.pause(attempt, abort).await?;
            attempt += 1;
        }
    }

    /// Puts failed dual writes into the backlog and updates the gauge.
    /// Puts backlog entries taken for a retry that did not happen back.
    fn keep_dual_writes(
        &self,
        entries: impl Iterator<Item = ((usize, Arc<str>), BTreeMap<Id, u64>)>,
    ) {
        let mut backlog = lock(&self.dual_backlog);
        for (target, ids) in entries {
            let kept = backlog.entry(target).or_default();
            for (id, floor) in ids {
                let kept_floor = kept.entry(id).or_default();
                *kept_floor = (*kept_floor).max(floor);
            }
        }
        self.count_dual_pending(&backlog);
    }

    fn defer_dual_writes(&self, failed: Vec<DualRetry>) {
        // every round passes here: nothing to do without a failed dual write
        if failed.is_empty() {
            return;
        }
        let mut backlog = lock(&self.dual_backlog);
        for DualRetry {
            mapping,
            index,
            id,
            delete_floor,
        } in failed
        {
            let floor = backlog
                .entry((mapping, index))
                .or_default()
                .entry(id)
                .or_default();
            *floor = (*floor).max(delete_floor);
        }
        self.count_dual_pending(&backlog);
    }

    /// Sets `esync_dual_write_pending` from the backlog.
    fn count_dual_pending(&self, backlog: &DualBacklog) {
        let mut pending = vec![0; self.mappings.len()];
        for ((mapping, _), ids) in backlog.iter() {
            pending[*mapping] += ids.len() as i64;
        }
        for (mapping, count) in self.mappings.iter().zip(pending) {
            self.metrics
                .dual_write_pending
                .get_or_create(&Metrics::mapping(&mapping.name))
                .set(count);
        }
    }

    /// Re-reads the rows of `ids_by_mapping` and plans their actions; ids that
    /// cannot be written go to `report.failed`. A hard delete gets at least
    /// its entry in `delete_versions`.
    async fn plan_round(
        &self,
        ids_by_mapping: &[Vec<Id>],
        delete_versions: &HashMap<(usize, Id), u64>,
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
                row_gone,
            } in plan_actions(&mapping.spec, ids, rows, now_micros)
            {
                if let Some(changed_at) = changed_at_micros {
                    let lag_seconds = (now_micros as i64 - changed_at) as f64 / 1e6;
                    self.metrics.end_to_end_lag.observe(lag_seconds.max(0.0));
                }
                match action {
                    Ok(mut action) => {
                        if let (true, BulkAction::Delete { version, .. }) = (row_gone, &mut action)
                            && let Some(floor) = delete_versions.get(&(mapping_index, id.clone()))
                        {
                            *version = (*version).max(*floor);
                        }
                        actions.push(PendingWrite {
                            mapping: mapping_index,
                            id,
                            action,
                            row_gone,
                            dual: false,
                        })
                    }
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
                        .get_or_create(&RetryLabel {
                            stage: "database",
                            reason: "query_failed",
                        })
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

    /// Sends the actions in `_bulk` requests of at most `max_bulk_bytes`
    /// (split further when the cluster answers 413), settles version
    /// conflicts, and returns what to send again.
    async fn send_round(&self, pending: Vec<PendingWrite>, report: &mut WriteReport) -> Round {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; pending.len()];
        let mut too_large = Vec::new();
        let mut round = Round::default();
        for (range, body) in encode_chunks(&pending, self.max_bulk_bytes) {
            self.send_splitting(
                &pending,
                range,
                body,
                &mut outcomes,
                &mut too_large,
                &mut round,
            )
            .await;
        }
        let mut tally = Tally::new(self.mappings.len());
        let mut look_ups = Vec::new();
        for (position, outcome) in outcomes.into_iter().enumerate() {
            let write = &pending[position];
            match outcome {
                // a document too large alone: `too_large` holds it
                None => {}
                Some(ItemOutcome::Written) if write.dual => round.dual_done(write, "written"),
                Some(ItemOutcome::Permanent { status, reason }) if write.dual => {
                    round.dual_rejected(write, &format!("status {status}: {reason}"))
                }
                Some(ItemOutcome::Written) => tally.written(write),
                Some(ItemOutcome::VersionConflict {
                    current_version,
                    concrete_index,
                }) => {
                    match decide_conflict(
                        write.conflict_kind(),
                        write.version(),
                        current_version,
                        None,
                    ) {
                        ConflictDecision::LookUp => look_ups.push(LookUp {
                            position,
                            current_version,
                            concrete_index,
                        }),
                        decision => round.apply(decision, write, &mut tally),
                    }
                }
                Some(ItemOutcome::Retryable {
                    status,
                    reason,
                    cause,
                }) => {
                    tally.failed(write, cause, format!("status {status}: {reason}"));
                    round.retry(write, cause);
                }
                Some(ItemOutcome::Permanent { status, reason }) => report.failed.push(FailedId {
                    mapping: write.mapping,
                    id: write.id.clone(),
                    reason_code: "rejected_by_elasticsearch",
                    reason: format!("status {status}: {reason}"),
                }),
            }
        }
        for position in too_large {
            let write = &pending[position];
            if write.dual {
                round.dual_rejected(
                    write,
                    "413 Request Entity Too Large for this document alone",
                );
                continue;
            }
            report.failed.push(FailedId {
                mapping: write.mapping,
                id: write.id.clone(),
                reason_code: "document_too_large",
                reason: "the cluster answers 413 Request Entity Too Large to this document alone (http.max_content_length)".into(),
            });
        }
        if !look_ups.is_empty() {
            self.settle_conflicts(&pending, &look_ups, &mut round, &mut tally)
                .await;
        }
        self.record(tally, &round, report);
        round
    }

    /// Sends `range` of `pending` (encoded as `body`); a 413 halves the range
    /// until each piece passes (each split counted in `round`), and an action
    /// refused alone lands in `too_large`.
    async fn send_splitting(
        &self,
        pending: &[PendingWrite],
        range: Range<usize>,
        body: Vec<u8>,
        outcomes: &mut [Option<ItemOutcome>],
        too_large: &mut Vec<usize>,
        round: &mut Round,
    ) {
        let mut bisection = Bisection::new(range.clone());
        let mut first_body = Some(body);
        while let Some(part) = bisection.next_range() {
            let body = match first_body.take() {
                Some(body) => body,
                None => {
                    let mut body = Vec::new();
                    for write in &pending[part.clone()] {
                        encode_action(&write.action, &mut body);
                    }
                    body
                }
            };
            let actions: Vec<&BulkAction> = pending[part.clone()]
                .iter()
                .map(|write| &write.action)
                .collect();
            match self.send_bulk(body, &actions).await {
                BulkAnswer::Items(items) => {
                    for (slot, outcome) in outcomes[part].iter_mut().zip(items) {
                        *slot = Some(outcome);
                    }
                }
                BulkAnswer::TooLarge => {
                    let size = part.len();
                    match bisection.refused(part) {
                        Some(alone) => too_large.push(alone),
                        None => {
                            tracing::warn!(
                                actions = size,
                                "{}",
                                RetryReason::RequestTooLarge.operator_hint()
                            );
                            *round
                                .reasons
                                .entry(RetryReason::RequestTooLarge)
                                .or_default() += size as u64;
                        }
                    }
                }
            }
        }
    }

    /// Looks up the documents of conflicts that need it (`_mget`, in the
    /// concrete index that answered, so a rollover alias works) and decides
    /// them; when the look-up fails they are retried, counted under the
    /// look-up's failure (a user without `read` on the index is `unauthorized`).
    async fn settle_conflicts(
        &self,
        pending: &[PendingWrite],
        look_ups: &[LookUp],
        round: &mut Round,
        tally: &mut Tally,
    ) {
        for chunk in look_ups.chunks(1000) {
            let docs: Vec<(&str, &str, Option<&str>)> = chunk
                .iter()
                .map(|look_up| {
                    let action = &pending[look_up.position].action;
                    let index = look_up.concrete_index.as_deref().unwrap_or(action.index());
                    (index, action.doc_id(), action.routing())
                })
                .collect();
            let stored = match self
                .es
                .request(
                    Method::Post,
                    "/_mget?_source=false",
                    Some(&encode_mget(&docs)),
                )
                .await
            {
                Ok(response) if response.status == 200 => parse_mget(&response.json(), docs.len())
                    .map_err(|error| (RetryReason::ConflictUnchecked, error.to_string())),
                Ok(response) => {
                    let cause = match classify_request_failure(response.status, &response.body) {
                        RequestFailure::Retry(cause) => cause,
                        RequestFailure::TooLarge => RetryReason::ConflictUnchecked,
                    };
                    let body =
                        crate::id::truncate_for_message(&String::from_utf8_lossy(&response.body));
                    Err((cause, format!("_mget status {}: {body}", response.status)))
                }
                Err(error) => Err((RetryReason::Unavailable, error.to_string())),
            };
            match stored {
                Ok(stored) => {
                    for (look_up, stored) in chunk.iter().zip(stored) {
                        let write = &pending[look_up.position];
                        let decision = decide_conflict(
                            write.conflict_kind(),
                            write.version(),
                            look_up.current_version,
                            Some(stored),
                        );
                        round.apply(decision, write, tally);
                    }
                }
                Err((cause, error)) => {
                    for look_up in chunk {
                        let write = &pending[look_up.position];
                        tally.failed(
                            write,
                            cause,
                            format!("checking a version conflict: {error}"),
                        );
                        round.retry(write, cause);
                    }
                }
            }
        }
    }

    /// Updates the report, the metrics, the health state and the log after a round.
    fn record(&self, tally: Tally, round: &Round, report: &mut WriteReport) {
        for (mapping, [indexed, deleted, conflicts]) in self.mappings.iter().zip(tally.counts) {
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
        for ((mapping, outcome), count) in &round.dual_counts {
            self.metrics
                .dual_writes
                .get_or_create(&DualWriteLabel {
                    mapping: self.mappings[*mapping].name.clone(),
                    outcome,
                })
                .inc_by(*count);
        }
        for (reason, count) in &round.reasons {
            self.count_retry(*reason, *count);
            report.es_retries += count;
            if matches!(reason, RetryReason::Tombstone | RetryReason::DeleteBehind) {
                tracing::warn!(reason = %reason, items = count, "{}", reason.operator_hint());
            }
        }
        {
            let now = SystemTime::now();
            let mut health = lock(&self.health);
            for index in &tally.took_writes {
                if !tally.failures.contains_key(index) {
                    health.written(index);
                }
            }
            for (index, (cause, detail, _)) in &tally.failures {
                health.failed(index, *cause, detail, now);
            }
        }
        for (index, (cause, detail, items)) in tally.failures {
            if cause.needs_operator() {
                tracing::error!(index = %index, reason = %cause, items, error = %detail, "{}", cause.operator_hint());
            } else {
                tracing::warn!(index = %index, reason = %cause, items, error = %detail, "{}", cause.operator_hint());
            }
        }
    }

    fn count_retry(&self, reason: RetryReason, items: u64) {
        self.metrics
            .retries
            .get_or_create(&RetryLabel {
                stage: "elasticsearch",
                reason: reason.as_str(),
            })
            .inc_by(items);
    }

    /// One `_bulk` request; a failure of the whole request makes every item
    /// retryable (nothing is dropped: a human can fix credentials or limits),
    /// except a 413, which the caller splits.
    async fn send_bulk(&self, body: Vec<u8>, actions: &[&BulkAction]) -> BulkAnswer {
        let all_retryable = |status: u16, reason: String, cause: RetryReason| {
            BulkAnswer::Items(vec![
                ItemOutcome::Retryable {
                    status,
                    reason,
                    cause
                };
                actions.len()
            ])
        };
        match self.es.bulk(body).await {
            Ok(response) if response.status == 200 => {
                match classify_bulk(&response.body, actions) {
                    Ok(outcomes) => BulkAnswer::Items(outcomes),
                    Err(error) => all_retryable(200, error.to_string(), RetryReason::BadResponse),
                }
            }
            Ok(response) => match classify_request_failure(response.status, &response.body) {
                RequestFailure::TooLarge => BulkAnswer::TooLarge,
                RequestFailure::Retry(cause) => {
                    let body =
                        crate::id::truncate_for_message(&String::from_utf8_lossy(&response.body));
                    all_retryable(response.status, body, cause)
                }
            },
            Err(error) => all_retryable(0, error.to_string(), RetryReason::Unavailable),
        }
    }

    async fn pause(&self, attempt: u32, abort: &CancellationToken) -> Result<(), Abandoned> {
        sleep_or_abort(self.retry.random_delay(attempt), abort).await
    }
}

/// A version conflict to check with `_mget`.
struct LookUp {
    /// Position in the round's writes.
    position: usize,
    /// The version the 409 reported.
    current_version: Option<u64>,
    /// The index that answered.
    concrete_index: Option<String>,
}

/// The answer to one `_bulk` request.
enum BulkAnswer {
    /// Per-item outcomes, in request order.
    Items(Vec<ItemOutcome>),
    /// `413`: split the request.
    TooLarge,
}

/// A planned write and the id it came from.
#[derive(Debug, Clone)]
struct PendingWrite {
    mapping: usize,
    id: Id,
    action: BulkAction,
    /// A hard delete of a gone row (version = esync's clock).
    row_gone: bool,
    /// A copy for an index being rebuilt: its failures go to the dual-write
    /// backlog, never hold up the batch, and say nothing about health.
    dual: bool,
}

/// Adds, for every write of a mapping whose index is being rebuilt, the same
/// write to the new index.
fn with_dual_writes(mut actions: Vec<PendingWrite>, next: &NextIndexes) -> Vec<PendingWrite> {
    let copies: Vec<PendingWrite> = actions
        .iter()
        .filter_map(|write| {
            let index = next.get(write.mapping)?.as_ref()?;
            Some(write.clone().dual_to(index.clone()))
        })
        .collect();
    actions.extend(copies);
    actions
}

/// A dual write to do again.
#[derive(Debug)]
struct DualRetry {
    mapping: usize,
    index: Arc<str>,
    id: Id,
    /// Lowest version of the next hard delete (0: none known).
    delete_floor: u64,
}

impl PendingWrite {
    fn dual_to(self, index: Arc<str>) -> PendingWrite {
        PendingWrite {
            action: self.action.retargeted(index),
            dual: true,
            ..self
        }
    }

    fn conflict_kind(&self) -> ConflictKind {
        ConflictKind::of(&self.action, self.row_gone)
    }

    fn version(&self) -> u64 {
        self.action.version()
    }
}

/// Per-round counts: per mapping indexed, deleted, conflicts; per index the
/// last failure (reason, detail, items) and whether it took writes.
struct Tally {
    counts: Vec<[u64; 3]>,
    failures: HashMap<String, (RetryReason, String, u64)>,
    took_writes: HashSet<String>,
}

impl Tally {
    fn new(mappings: usize) -> Tally {
        Tally {
            counts: vec![[0; 3]; mappings],
            failures: HashMap::new(),
            took_writes: HashSet::new(),
        }
    }

    fn written(&mut self, write: &PendingWrite) {
        debug_assert!(!write.dual, "dual writes are counted by the round");
        let kind = if write.action.is_delete() { 1 } else { 0 };
        self.counts[write.mapping][kind] += 1;
        self.took_writes.insert(write.action.index().to_owned());
    }

    /// A 409 is an answer of the index itself: it is reachable and not blocked.
    fn superseded(&mut self, write: &PendingWrite) {
        debug_assert!(!write.dual, "dual writes are counted by the round");
        self.counts[write.mapping][2] += 1;
        self.took_writes.insert(write.action.index().to_owned());
    }

    fn failed(&mut self, write: &PendingWrite, cause: RetryReason, detail: String) {
        if write.dual {
            return;
        }
        let entry = self
            .failures
            .entry(write.action.index().to_owned())
            .or_insert((cause, String::new(), 0));
        // an operator-level reason is the one to report
        if cause.needs_operator() || !entry.0.needs_operator() {
            entry.0 = cause;
            entry.1 = detail;
        }
        entry.2 += 1;
    }
}

/// What one round leaves to do.
#[derive(Debug, Default)]
struct Round {
    /// Re-read and send again after a backoff.
    retry_now: Vec<(usize, Id)>,
    /// Re-read and send again once `index.gc_deletes` has passed.
    after_gc_deletes: Vec<(usize, Id)>,
    /// Lowest versions for the next hard delete of these ids.
    delete_versions: Vec<((usize, Id), u64)>,
    /// Items retried, per reason (for the metric).
    reasons: BTreeMap<RetryReason, u64>,
    /// Dual writes to do again later, apart from the batch.
    dual_retry: Vec<DualRetry>,
    /// Dual writes per (mapping, outcome), for the metric.
    dual_counts: BTreeMap<(usize, &'static str), u64>,
}

impl Round {
    fn retry(&mut self, write: &PendingWrite, reason: RetryReason) {
        match (write.dual, reason) {
            // the rebuild was abandoned and its index deleted: nothing to keep in step
            (true, RetryReason::IndexMissing) => self.dual_done(write, "index_gone"),
            (true, _) => self.dual_later(write, 0),
            (false, _) => {
                self.retry_now.push((write.mapping, write.id.clone()));
                *self.reasons.entry(reason).or_default() += 1;
            }
        }
    }

    fn dual_done(&mut self, write: &PendingWrite, outcome: &'static str) {
        *self
            .dual_counts
            .entry((write.mapping, outcome))
            .or_default() += 1;
    }

    fn dual_later(&mut self, write: &PendingWrite, delete_floor: u64) {
        self.dual_done(write, "failed");
        self.dual_retry.push(DualRetry {
            mapping: write.mapping,
            index: Arc::from(write.action.index()),
            id: write.id.clone(),
            delete_floor,
        });
    }

    /// The new index refuses the document: the rebuild's verification finds
    /// it missing and will not swap; retrying cannot help until the mapping
    /// or the row changes.
    fn dual_rejected(&mut self, write: &PendingWrite, reason: &str) {
        self.dual_done(write, "rejected");
        tracing::error!(
            index = write.action.index(),
            id = write.action.doc_id(),
            reason,
            "the index being rebuilt refuses this document; fix the new mapping (the rebuild will not swap while documents are missing)"
        );
    }

    fn apply(&mut self, decision: ConflictDecision, write: &PendingWrite, tally: &mut Tally) {
        if write.dual {
            match decision {
                ConflictDecision::Superseded => self.dual_done(write, "superseded"),
                ConflictDecision::RetryNow { delete_version } => {
                    self.dual_later(write, delete_version.unwrap_or(0))
                }
                ConflictDecision::RetryAfterGcDeletes | ConflictDecision::LookUp => {
                    self.dual_later(write, 0)
                }
            }
            return;
        }
        match decision {
            ConflictDecision::Superseded => tally.superseded(write),
            ConflictDecision::RetryNow { delete_version } => {
                if let Some(version) = delete_version {
                    self.delete_versions
                        .push(((write.mapping, write.id.clone()), version));
                }
                let reason = if write.action.is_delete() {
                    RetryReason::DeleteBehind
                } else {
                    RetryReason::ConflictUnchecked
                };
                tracing::debug!(
                    index = write.action.index(),
                    id = write.action.doc_id(),
                    "{}",
                    reason.operator_hint()
                );
                self.retry(write, reason);
            }
            ConflictDecision::RetryAfterGcDeletes => {
                tracing::debug!(
                    index = write.action.index(),
                    id = write.action.doc_id(),
                    "{}",
                    RetryReason::Tombstone.operator_hint()
                );
                self.after_gc_deletes
                    .push((write.mapping, write.id.clone()));
                *self.reasons.entry(RetryReason::Tombstone).or_default() += 1;
            }
            // decided with the look-up done: nothing more to learn, read again
            ConflictDecision::LookUp => self.retry(write, RetryReason::ConflictUnchecked),
        }
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

    /// A writer whose every re-read fails (its table does not exist); no
    /// request ever reaches the Elasticsearch URL.
    async fn failing_writer() -> Writer {
        let yaml = r#"source: {url: "sqlite::memory:"}
kafka: {brokers: "127.0.0.1:9"}
elasticsearch: {urls: ["http://127.0.0.1:9"]}
mappings:
  - name: orders
    topics: [orders]
    table: missing
    columns: [id, version]
    index: orders
    version: {column: version, kind: counter}
"#;
        let loaded = crate::config::LoadedConfig::from_yaml(yaml, &|_| None).expect("config");
        let config = &loaded.config;
        let database = Database::connect(&loaded.secrets.database_url, 1, Duration::from_secs(5))
            .await
            .expect("sqlite");
        let es = EsClient::new(&config.elasticsearch, &loaded.secrets).expect("client");
        let mappings = Arc::new(Mapping::all_from_config(config, database.dialect()));
        Writer::new(
            database,
            es,
            mappings,
            config.retry,
            &config.elasticsearch,
            Metrics::unregistered(),
        )
    }

    #[tokio::test]
    async fn a_retry_cut_short_keeps_the_dual_writes_it_did_not_attempt() {
        let writer = failing_writer().await;
        writer.defer_dual_writes(
            [1, 2]
                .map(|id| DualRetry {
                    mapping: 0,
                    index: Arc::from("orders-v2"),
                    id: Id::Int(id),
                    delete_floor: 0,
                })
                .into(),
        );
        assert_eq!(writer.dual_writes_pending(), 2);
        let stopped = CancellationToken::new();
        stopped.cancel();
        assert!(writer.retry_dual_writes(&stopped).await.is_err());
        assert_eq!(writer.dual_writes_pending(), 2, "still waiting");
        assert_eq!(
            writer
                .drain_dual_writes(Duration::from_secs(60), &stopped)
                .await,
            2
        );
    }

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
            row_gone: true,
            dual: false,
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
