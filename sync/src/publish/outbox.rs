//! `esync publish --outbox`: relays rows of an outbox table to Kafka.
//!
//! One loop, one transaction per batch, on a connection of its own:
//! ```text
//! BEGIN
//! claim up to batch_size pending rows (FOR UPDATE SKIP LOCKED) and delete
//!   (or mark) them: one statement on PostgreSQL, SELECT then DELETE/UPDATE
//!   by seq on MySQL/MariaDB and SQLite (statements in [`super::outbox_sql`])
//! produce every row_id to its mappings' first topics, wait for acks=all
//! COMMIT
//! ```
//! The removal only becomes durable with the COMMIT after Kafka acknowledged
//! the ids; a failed produce rolls it back, and a crash between the
//! acknowledgement and the COMMIT relays the batch again (a harmless
//! duplicate). Removing before producing means lock conflicts (InnoDB
//! deadlocks with concurrent trigger inserts) surface before anything was
//! produced, so a retried batch is not a duplicate. `SKIP LOCKED` (Postgres,
//! MySQL 8, MariaDB 10.6+) lets several relays share one outbox without
//! relaying a row twice; MySQL/MariaDB relays use READ COMMITTED so they take
//! no gap locks that would stall the writers' inserts. SQLite has no row
//! locks: run one relay there.
//!
//! The relay keeps one connection out of the pool ([`Session`]) for its
//! whole life: a batch then costs BEGIN, the claim (and on MySQL the
//! removal) and COMMIT, without the pool's health-check ping per batch. Any
//! failed batch drops the connection; the next batch opens a fresh one.
//!
//! `table_name` is matched against each mapping's name, its `table`, and the
//! table without its schema; rows naming no mapping are left in place and
//! reported, never dropped.

use super::PublishError;
use super::config::OutboxConfig;
use super::metrics::PublishMetrics;
use super::outbox_sql::{ClaimStatements, OutboxRow, OutboxSql, Route, plan_messages, routes};
use crate::cancel::sleep_or_abort;
use crate::config::Config;
use crate::db::exec::{self, Param, Transaction};
use crate::db::{Database, Session};
use crate::document::Row;
use crate::kafka::IdProducer;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// The relay loop.
pub struct Relay {
    settings: OutboxConfig,
    sql: OutboxSql,
    routes: BTreeMap<String, Vec<Route>>,
    names: Vec<String>,
    database: Database,
    /// The relay's own connection, opened at the first batch and dropped
    /// after a failed one (its state is then unknown).
    session: Mutex<Option<Session>>,
    producer: Arc<IdProducer>,
    metrics: Arc<PublishMetrics>,
    retry: RetryPolicy,
}

impl Relay {
    /// Builds the relay from `publish.outbox`.
    pub fn new(
        config: &Config,
        database: Database,
        producer: Arc<IdProducer>,
        metrics: Arc<PublishMetrics>,
    ) -> Result<Relay, PublishError> {
        let settings = config
            .publish
            .as_ref()
            .and_then(|publish| publish.outbox.clone())
            .ok_or(PublishError::NotConfigured(
                "--outbox needs a publish.outbox section",
            ))?;
        let routes = routes(config);
        let names = routes.keys().cloned().collect();
        let sql = OutboxSql::new(
            database.dialect(),
            &settings.table,
            settings.after_relay,
            settings.batch_size,
        );
        Ok(Relay {
            settings,
            sql,
            routes,
            names,
            database,
            session: Mutex::new(None),
            producer,
            metrics,
            retry: config.retry,
        })
    }

    /// Relays until `shutdown`; a batch in flight is finished first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PublishError> {
        tracing::info!(table = %self.settings.table, names = ?self.names, after_relay = ?self.settings.after_relay, "relaying the outbox");
        self.report_unrouted().await;
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match self.relay_once().await {
                Ok(relayed) => {
                    failures = 0;
                    if relayed < self.settings.batch_size
                        && sleep_or_abort(self.settings.poll_interval, &shutdown)
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
                Err(error) => {
                    self.metrics
                        .errors
                        .get_or_create(&Metrics::mapping("outbox"))
                        .inc();
                    let delay = self.retry.random_delay(failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(table = %self.settings.table, error = %error, retry_in = ?delay, "outbox relay failed; nothing was removed");
                    if sleep_or_abort(delay, &shutdown).await.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::info!(table = %self.settings.table, "outbox relay stopped");
        Ok(())
    }

    /// One transaction: claim and remove (or mark), produce, wait for acks,
    /// commit. Returns the number of outbox rows handled.
    pub async fn relay_once(&self) -> Result<usize, String> {
        let mut slot = self.session.lock().await;
        let session = match &mut *slot {
            Some(session) => session,
            None => slot.insert(
                self.database
                    .session(self.sql.session_setup())
                    .await
                    .map_err(|error| format!("connect: {error}"))?,
            ),
        };
        let outcome = self.relay_on(session).await;
        if outcome.is_err() {
            // closes the connection: after a failed commit or rollback its
            // transaction state is unknown
            *slot = None;
        }
        outcome
    }

    async fn relay_on(&self, session: &mut Session) -> Result<usize, String> {
        let mut transaction = session
            .begin()
            .await
            .map_err(|error| format!("begin: {error}"))?;
        match self.claim_and_produce(&mut transaction).await {
            Ok(relayed) => {
                transaction
                    .commit()
                    .await
                    .map_err(|error| format!("commit: {error}"))?;
                Ok(relayed)
            }
            Err(error) => {
                // Roll back now: until then the claimed rows stay locked
                // and hidden from every relay (SKIP LOCKED).
                if let Err(rollback) = transaction.rollback().await {
                    tracing::warn!(error = %rollback, "cannot roll back the outbox batch; the connection is discarded");
                }
                Err(error)
            }
        }
    }

    /// The body of [`Relay::relay_once`]'s transaction, up to the COMMIT.
    async fn claim_and_produce(&self, transaction: &mut Transaction<'_>) -> Result<usize, String> {
        // Remove (or mark) first, inside the transaction: a deadlock or lock
        // time-out surfaces here, before anything was produced. Only COMMIT,
        // which cannot conflict on rows we hold, follows Kafka's
        // acknowledgement; a failed produce rolls the removal back.
        let names = [Param::TextList(self.names.clone())];
        let rows = match self.sql.claim_statements(self.names.len()) {
            ClaimStatements::Returning(claim_and_remove) => {
                let rows = transaction
                    .fetch_all(&claim_and_remove, &names)
                    .await
                    .map_err(|error| format!("claim rows: {error}"))?;
                outbox_rows(&rows)?
            }
            ClaimStatements::SelectThenFinish { claim } => {
                let rows = transaction
                    .fetch_all(&claim, &names)
                    .await
                    .map_err(|error| format!("claim rows: {error}"))?;
                let rows = outbox_rows(&rows)?;
                if !rows.is_empty() {
                    let seqs = self.sql.pad(rows.iter().map(|row| row.seq).collect());
                    let _ = transaction
                        .execute(&self.sql.finish(rows.len()), &[Param::IntList(seqs)])
                        .await
                        .map_err(|error| format!("remove claimed rows: {error}"))?;
                }
                rows
            }
        };
        if rows.is_empty() {
            return Ok(0);
        }
        self.produce(&rows).await?;
        Ok(rows.len())
    }

    async fn produce(&self, rows: &[OutboxRow]) -> Result<(), String> {
        for (topic, (ids, per_mapping)) in plan_messages(rows, &self.routes) {
            let _ = self
                .producer
                .send_all(&topic, &ids)
                .await
                .map_err(|error| format!("produce to {topic}: {error}"))?;
            for (mapping, count) in per_mapping {
                self.metrics
                    .outbox_relayed
                    .get_or_create(&Metrics::mapping(&mapping))
                    .inc_by(count);
            }
        }
        Ok(())
    }

    async fn report_unrouted(&self) {
        let sql = self.sql.unrouted(self.names.len());
        let count = self
            .database
            .fetch_optional(&sql, &[Param::TextList(self.names.clone())])
            .await
            .and_then(|row| {
                row.ok_or(sqlx::Error::RowNotFound)
                    .and_then(|row| exec::int(&row, 0))
            });
        match count {
            Ok(0) => {}
            Ok(count) => tracing::warn!(
                table = %self.settings.table,
                rows = count,
                known = ?self.names,
                "outbox rows name a table no mapping reads; they are left in place"
            ),
            Err(error) => {
                tracing::warn!(table = %self.settings.table, error = %error, "cannot read the outbox; is sync/sql/*/outbox.sql installed?")
            }
        }
    }
}

/// Claimed rows as `seq, table_name, row_id`.
fn outbox_rows(rows: &[Row]) -> Result<Vec<OutboxRow>, String> {
    rows.iter()
        .map(|row| {
            Ok(OutboxRow {
                seq: exec::int(row, 0)?,
                table_name: exec::text(row, 1)?,
                row_id: exec::text(row, 2)?,
            })
        })
        .collect::<Result<Vec<OutboxRow>, sqlx::Error>>()
        .map_err(|error| format!("read claimed rows: {error}"))
}
