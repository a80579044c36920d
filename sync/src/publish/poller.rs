//! The incremental-column poller: per mapping, page through
//! `(timestamp, id) > cursor` in index order, produce the ids, checkpoint the
//! watermark once Kafka acknowledged them.
//!
//! SQL is built per dialect by [`PollSql`] (pure, unit-tested):
//! - Postgres compares row values, `(ts, id) > ($1, $2)`, which its btree
//!   index on `(ts, id)` serves directly;
//! - MySQL/MariaDB and SQLite get `ts >= ? AND (ts > ? OR id > ?)`, which is
//!   the same condition in a form their range optimiser uses the index for.
//!
//! Only the id and timestamp are read, so an index on `(ts, id)` covers the
//! scan and the look-back re-scan costs index reads only.

use super::PublishError;
use super::checkpoint::CheckpointStore;
use super::config::{PublishConfig, PublishMappingConfig, StartPosition};
use super::metrics::PublishMetrics;
use super::watermark::{Cursor, Position, Window, lag_seconds, pacing_delay_us};
use crate::config::Config;
use crate::db::{Database, Dialect, quote_identifier};
use crate::id::{Id, IdType};
use crate::kafka::IdProducer;
use crate::metrics::{MappingLabel, Metrics};
use crate::retry::RetryPolicy;
use crate::writer::sleep_or_abort;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::{
    AssertSqlSafe, Column as _, Executor as _, Row as _, SqlSafeStr as _, Statement as _,
    TypeInfo as _,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What one polled mapping reads and where its ids go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollTarget {
    /// The mapping's name (checkpoint key, metric label).
    pub mapping: String,
    /// The polled table.
    pub table: String,
    /// The id column and its type.
    pub id_column: String,
    /// Integer or string ids.
    pub id_type: IdType,
    /// The change-time column.
    pub timestamp_column: String,
    /// The mapping's first topic.
    pub topic: String,
}

impl PollTarget {
    /// Resolves a `publish.mappings[]` entry against the (validated) config.
    pub fn resolve(config: &Config, entry: &PublishMappingConfig) -> Option<PollTarget> {
        let mapping = config
            .mappings
            .iter()
            .find(|mapping| mapping.display_name() == entry.name)?;
        Some(PollTarget {
            mapping: entry.name.clone(),
            table: entry.table.clone().or_else(|| mapping.table.clone())?,
            id_column: mapping.id.column.clone(),
            id_type: mapping.id.id_type,
            timestamp_column: entry.timestamp_column.clone(),
            topic: mapping.topics.first()?.clone(),
        })
    }
}

/// A bind parameter of a poll query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// A timestamp, microseconds since the epoch.
    Timestamp(i64),
    /// An id.
    Id(Id),
}

/// The SQL of one target in one dialect.
#[derive(Debug, Clone)]
pub struct PollSql {
    dialect: Dialect,
    table: String,
    ts: String,
    id: String,
    id_select: String,
}

/// Timestamps before this are treated as "from the beginning": MySQL cannot
/// even bind them, and no real change time is that old.
const EARLIEST_BINDABLE_US: i64 = -30_610_224_000_000_000; // 1000-01-01T00:00:00Z

impl PollSql {
    /// Builds the statements for `target` in `dialect`.
    pub fn new(dialect: Dialect, target: &PollTarget) -> PollSql {
        let id = quote_identifier(dialect, &target.id_column);
        let id_select = match (dialect, target.id_type) {
            (Dialect::Postgres, IdType::Integer) => format!("CAST({id} AS BIGINT)"),
            (Dialect::MySql, IdType::Integer) => format!("CAST({id} AS SIGNED)"),
            (Dialect::Sqlite, IdType::Integer) => id.clone(),
            (Dialect::MySql, IdType::String) => format!("CAST({id} AS CHAR)"),
            (_, IdType::String) => format!("CAST({id} AS TEXT)"),
        };
        PollSql {
            dialect,
            table: quote_identifier(dialect, &target.table),
            ts: quote_identifier(dialect, &target.timestamp_column),
            id,
            id_select,
        }
    }

    /// One page from `cursor`, and the values to bind in order.
    pub fn page(&self, cursor: &Cursor, limit: usize) -> (String, Vec<Bind>) {
        let PollSql {
            ts,
            id,
            table,
            id_select,
            ..
        } = self;
        let cursor = match cursor {
            Cursor::From(start) if *start < EARLIEST_BINDABLE_US => &Cursor::Beginning,
            other => other,
        };
        let (condition, binds) = match cursor {
            Cursor::Beginning => (format!("{ts} IS NOT NULL"), vec![]),
            Cursor::From(start) => (
                format!("{ts} >= {}", self.dialect.placeholder(1)),
                vec![Bind::Timestamp(*start)],
            ),
            Cursor::After(position) if self.dialect == Dialect::Postgres => (
                format!("({ts}, {id}) > ($1, $2)"),
                vec![
                    Bind::Timestamp(position.timestamp_us),
                    Bind::Id(position.id.clone()),
                ],
            ),
            Cursor::After(position) => (
                format!("{ts} >= ? AND ({ts} > ? OR {id} > ?)"),
                vec![
                    Bind::Timestamp(position.timestamp_us),
                    Bind::Timestamp(position.timestamp_us),
                    Bind::Id(position.id.clone()),
                ],
            ),
        };
        (
            format!(
                "SELECT {ts}, {id_select} FROM {table} WHERE {condition} ORDER BY {ts}, {id} LIMIT {limit}"
            ),
            binds,
        )
    }

    /// The newest row (for `start: latest`).
    pub fn latest(&self) -> String {
        let PollSql {
            ts,
            id,
            table,
            id_select,
            ..
        } = self;
        format!(
            "SELECT {ts}, {id_select} FROM {table} WHERE {ts} IS NOT NULL ORDER BY {ts} DESC, {id} DESC LIMIT 1"
        )
    }

    /// Counts rows the poller cannot see.
    pub fn null_count(&self) -> String {
        format!(
            "SELECT COUNT(*) FROM {} WHERE {} IS NULL",
            self.table, self.ts
        )
    }

    /// A few ids of such rows, for the log.
    pub fn null_sample(&self, limit: usize) -> String {
        format!(
            "SELECT {} FROM {} WHERE {} IS NULL ORDER BY {} LIMIT {limit}",
            self.id_select, self.table, self.ts, self.id
        )
    }

    /// A statement that returns no row, to learn the timestamp column's type.
    pub fn describe(&self) -> String {
        format!(
            "SELECT {}, {} FROM {} WHERE 1 = 0",
            self.ts, self.id_select, self.table
        )
    }

    /// The database's current time in microseconds since the epoch (UTC),
    /// so the look-back window and the lag use the clock that stamps rows,
    /// not this host's.
    pub fn now_us(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
            }
            Dialect::MySql => "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)",
            Dialect::Sqlite => {
                "SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
            }
        }
    }

    /// The timestamp column's fractional-second digits (binds: schema or
    /// NULL for the current one, table, column); `None` for SQLite, whose
    /// text timestamps have no declared precision.
    pub fn precision(&self) -> Option<&'static str> {
        match self.dialect {
            Dialect::Postgres => Some(
                "SELECT CAST(datetime_precision AS INTEGER) FROM information_schema.columns \
                 WHERE table_schema = COALESCE($1, current_schema()) AND table_name = $2 AND column_name = $3",
            ),
            Dialect::MySql => Some(
                "SELECT CAST(DATETIME_PRECISION AS SIGNED) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND COLUMN_NAME = ?",
            ),
            Dialect::Sqlite => None,
        }
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// Microseconds one step of a column with `precision` fractional digits
/// spans (1 s for `TIMESTAMP(0)`); unknown precision counts as seconds, the
/// safe side (it only costs re-published ids).
pub fn resolution_us(precision: Option<i64>) -> i64 {
    match precision {
        Some(digits @ 0..=5) => 10_i64.pow(6 - digits as u32),
        Some(_) => 1,
        None => 1_000_000,
    }
}

/// How timestamps are bound and decoded, from the column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    /// Postgres `timestamptz`; MySQL/MariaDB `TIMESTAMP` and `DATETIME`
    /// (sqlx sets the session time zone to UTC).
    Zoned,
    /// Postgres `timestamp`, SQLite text: read and bound as UTC.
    Naive,
}

/// Maps a column type name to how it is handled; `None` when unsupported.
pub fn timestamp_kind(dialect: Dialect, type_name: &str) -> Option<TimestampKind> {
    match (dialect, type_name.to_ascii_uppercase().as_str()) {
        (Dialect::Postgres, "TIMESTAMPTZ") => Some(TimestampKind::Zoned),
        (Dialect::Postgres, "TIMESTAMP") => Some(TimestampKind::Naive),
        (Dialect::MySql, "TIMESTAMP" | "DATETIME") => Some(TimestampKind::Zoned),
        (Dialect::Sqlite, _) => Some(TimestampKind::Naive),
        _ => None,
    }
}

/// Reads pages of one target.
#[derive(Debug, Clone)]
pub struct Poller {
    /// The target.
    pub target: PollTarget,
    sql: PollSql,
    database: Database,
    kind: TimestampKind,
    resolution_us: i64,
}

macro_rules! bind_all {
    ($query:expr, $binds:expr, $kind:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                Bind::Timestamp(micros) => {
                    let time = DateTime::<Utc>::from_timestamp_micros(*micros)
                        .unwrap_or(DateTime::<Utc>::MIN_UTC);
                    match $kind {
                        TimestampKind::Zoned => query.bind(time),
                        TimestampKind::Naive => query.bind(time.naive_utc()),
                    }
                }
                Bind::Id(Id::Int(int)) => query.bind(*int),
                Bind::Id(Id::Str(text)) => query.bind(text.to_string()),
            };
        }
        query
    }};
}

macro_rules! decode_position {
    ($row:expr, $kind:expr, $id_type:expr) => {{
        let row = $row;
        let timestamp_us = match $kind {
            TimestampKind::Zoned => row.try_get::<DateTime<Utc>, _>(0)?.timestamp_micros(),
            TimestampKind::Naive => row
                .try_get::<NaiveDateTime, _>(0)?
                .and_utc()
                .timestamp_micros(),
        };
        let id = match $id_type {
            IdType::Integer => Id::Int(row.try_get::<i64, _>(1)?),
            IdType::String => Id::Str(row.try_get::<String, _>(1)?.into()),
        };
        Ok::<Position, sqlx::Error>(Position { timestamp_us, id })
    }};
}

impl Poller {
    /// Learns the timestamp column's type; fails with a readable message
    /// when the table or column is missing or the type is unsupported.
    pub async fn connect(database: Database, target: PollTarget) -> Result<Poller, PublishError> {
        let sql = PollSql::new(database.dialect(), &target);
        let statement = AssertSqlSafe(sql.describe()).into_sql_str();
        let query_error = |source| PublishError::Database {
            mapping: target.mapping.clone(),
            source,
        };
        let type_name = crate::on_pool!(&database, pool => pool
                .prepare(statement)
                .await
                .map(|s| s.columns()[0].type_info().name().to_owned()))
        .map_err(query_error)?;
        let kind = timestamp_kind(database.dialect(), &type_name).ok_or_else(|| {
            PublishError::UnsupportedTimestamp {
                mapping: target.mapping.clone(),
                column: target.timestamp_column.clone(),
                type_name,
            }
        })?;
        let precision = Self::column_precision(&database, &sql, &target)
            .await
            .map_err(query_error)?;
        let resolution_us = resolution_us(precision);
        if resolution_us > 1 {
            tracing::warn!(
                mapping = %target.mapping,
                table = %target.table,
                column = %target.timestamp_column,
                fractional_digits = ?precision,
                "the timestamp column is coarser than microseconds: two changes of a row within one step carry the same timestamp, so rows of the newest step are published on every poll until it is over; use TIMESTAMP(6)/DATETIME(6)"
            );
        }
        Ok(Poller {
            target,
            sql,
            database,
            kind,
            resolution_us,
        })
    }

    /// The column's declared fractional-second digits, if the database
    /// declares them and the column is found.
    async fn column_precision(
        database: &Database,
        sql: &PollSql,
        target: &PollTarget,
    ) -> Result<Option<i64>, sqlx::Error> {
        let Some(statement) = sql.precision() else {
            return Ok(None);
        };
        let (schema, table) = match target.table.rsplit_once('.') {
            Some((schema, table)) => (Some(schema.to_owned()), table.to_owned()),
            None => (None, target.table.clone()),
        };
        let column = target.timestamp_column.clone();
        let precision: Option<Option<i64>> = match database {
            Database::Postgres(pool) => sqlx::query_scalar::<_, Option<i32>>(statement)
                .bind(schema)
                .bind(table)
                .bind(column)
                .fetch_optional(pool)
                .await?
                .map(|digits| digits.map(i64::from)),
            Database::MySql(pool) => {
                sqlx::query_scalar::<_, Option<i64>>(statement)
                    .bind(schema)
                    .bind(table)
                    .bind(column)
                    .fetch_optional(pool)
                    .await?
            }
            Database::Sqlite(_) => None,
        };
        Ok(precision.flatten())
    }

    /// Microseconds one step of the timestamp column spans (1: microseconds).
    pub fn resolution_us(&self) -> i64 {
        self.resolution_us
    }

    /// The database's clock, microseconds since the epoch (UTC).
    pub async fn database_now_us(&self) -> Result<i64, sqlx::Error> {
        let statement = self.sql.now_us();
        crate::on_pool!(&self.database, pool => sqlx::query_scalar(statement).fetch_one(pool).await)
    }

    /// The statements used.
    pub fn sql(&self) -> &PollSql {
        &self.sql
    }

    /// The pool.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Reads one page in `(timestamp, id)` order.
    pub async fn page(&self, cursor: &Cursor, limit: usize) -> Result<Vec<Position>, sqlx::Error> {
        let (sql, binds) = self.sql.page(cursor, limit);
        self.positions(sql, &binds).await
    }

    /// The newest row, if any.
    pub async fn latest(&self) -> Result<Option<Position>, sqlx::Error> {
        Ok(self.positions(self.sql.latest(), &[]).await?.pop())
    }

    async fn positions(&self, sql: String, binds: &[Bind]) -> Result<Vec<Position>, sqlx::Error> {
        let (kind, id_type) = (self.kind, self.target.id_type);
        crate::on_pool!(&self.database, pool => {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), binds, kind)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| decode_position!(row, kind, id_type))
                .collect()
        })
    }

    /// Rows with a NULL timestamp: how many, and up to `sample` of their ids.
    pub async fn null_rows(&self, sample: usize) -> Result<(i64, Vec<Id>), sqlx::Error> {
        let count_sql = AssertSqlSafe(self.sql.null_count());
        let sample_sql = AssertSqlSafe(self.sql.null_sample(sample));
        let id_type = self.target.id_type;
        macro_rules! fetch {
            ($pool:expr) => {{
                let count: i64 = sqlx::query_scalar(count_sql).fetch_one($pool).await?;
                if count == 0 {
                    return Ok((0, Vec::new()));
                }
                let rows = sqlx::query(sample_sql).fetch_all($pool).await?;
                let ids = rows
                    .iter()
                    .map(|row| match id_type {
                        IdType::Integer => row.try_get::<i64, _>(0).map(Id::Int),
                        IdType::String => {
                            row.try_get::<String, _>(0).map(|text| Id::Str(text.into()))
                        }
                    })
                    .collect::<Result<Vec<Id>, sqlx::Error>>()?;
                Ok((count, ids))
            }};
        }
        crate::on_pool!(&self.database, pool => fetch!(pool))
    }

    /// The plan of a next-page query, one line per plan row (`esync check`).
    pub async fn explain_page(&self, page_size: usize) -> Result<Vec<String>, sqlx::Error> {
        let some_id = match self.target.id_type {
            IdType::Integer => Id::Int(0),
            IdType::String => Id::Str("".into()),
        };
        let cursor = Cursor::After(Position {
            timestamp_us: Utc::now().timestamp_micros(),
            id: some_id,
        });
        let (sql, binds) = self.sql.page(&cursor, page_size);
        let kind = self.kind;
        match &self.database {
            Database::Postgres(pool) => {
                // With sequential scans and sorts priced out, a plan that still
                // has one has no index able to serve the query.
                let mut transaction = pool.begin().await?;
                for setting in [
                    "SET LOCAL enable_seqscan = off",
                    "SET LOCAL enable_sort = off",
                    "SET LOCAL enable_incremental_sort = off",
                ] {
                    let _ = sqlx::query(setting).execute(&mut *transaction).await?;
                }
                let explain = AssertSqlSafe(format!("EXPLAIN {sql}"));
                let rows = bind_all!(sqlx::query(explain), &binds, kind)
                    .fetch_all(&mut *transaction)
                    .await?;
                transaction.rollback().await?;
                rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
            }
            Database::MySql(pool) => {
                let explain = AssertSqlSafe(format!("EXPLAIN {sql}"));
                let rows = bind_all!(sqlx::query(explain), &binds, kind)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        let key: Option<String> = row.try_get("key")?;
                        let extra: Option<String> = row.try_get("Extra")?;
                        Ok(format!(
                            "key={} extra={}",
                            key.unwrap_or_else(|| "NULL".into()),
                            extra.unwrap_or_default()
                        ))
                    })
                    .collect()
            }
            Database::Sqlite(pool) => {
                let explain = AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"));
                let rows = bind_all!(sqlx::query(explain), &binds, kind)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|row| row.try_get::<String, _>(3)).collect()
            }
        }
    }
}

/// Whether a plan (from [`Poller::explain_page`]) walks an index in order.
pub fn plan_uses_index(dialect: Dialect, plan: &[String]) -> bool {
    let text = plan.join("\n");
    match dialect {
        Dialect::Postgres => {
            text.contains("Index") && !text.contains("Seq Scan") && !text.contains("Sort")
        }
        Dialect::MySql => !text.contains("key=NULL") && !text.contains("filesort"),
        Dialect::Sqlite => text.contains("INDEX") && !text.contains("TEMP B-TREE"),
    }
}

/// Settings of the poll loop, from `publish:`.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Rows per page.
    pub page_size: usize,
    /// Pause when caught up.
    pub poll_interval: Duration,
    /// Look-back window.
    pub look_back: Duration,
    /// Rows/s cap.
    pub max_rows_per_second: Option<u32>,
    /// Where to start without a checkpoint.
    pub start: StartPosition,
    /// NULL-timestamp report interval (zero: never).
    pub null_check_interval: Duration,
    /// Backoff of retried queries and sends.
    pub retry: RetryPolicy,
}

impl PollSettings {
    /// From the configuration.
    pub fn from_config(publish: &PublishConfig, retry: RetryPolicy) -> PollSettings {
        PollSettings {
            page_size: publish.page_size,
            poll_interval: publish.poll_interval,
            look_back: publish.look_back,
            max_rows_per_second: publish.max_rows_per_second,
            start: publish.start,
            null_check_interval: publish.null_check_interval,
            retry,
        }
    }
}

/// Everything one mapping's loop uses.
pub struct PollLoop {
    /// The reader.
    pub poller: Poller,
    /// Producer of ids.
    pub producer: Arc<IdProducer>,
    /// Watermark store.
    pub checkpoint: Arc<CheckpointStore>,
    /// Metrics.
    pub metrics: Arc<PublishMetrics>,
    /// Settings.
    pub settings: PollSettings,
}

/// Checkpoints are written at most this often during a long catch-up (and at
/// the end of every poll); a restart re-publishes at most this much more.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

impl PollLoop {
    /// Polls until `shutdown`; finishes the current page and checkpoints first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PublishError> {
        let target = &self.poller.target;
        let label = Metrics::mapping(&target.mapping);
        let Some(mut window) = self.initial_window(&label, &shutdown).await? else {
            return Ok(());
        };
        tracing::info!(mapping = %target.mapping, table = %target.table, topic = %target.topic, watermark = ?window.watermark(), "polling");
        let mut last_null_check: Option<Instant> = None;
        let mut saved = window.watermark().cloned();
        // what `finish` saves: the last poll's capped watermark
        let mut to_save = saved.clone();
        let mut last_save = Instant::now();
        while !shutdown.is_cancelled() {
            let poll_started = Instant::now();
            // the database's clock, not this host's: it stamps the rows
            let Some(database_now_us) = self
                .retry(&label, &shutdown, "read the database clock", || {
                    self.poller.database_now_us()
                })
                .await
            else {
                break;
            };
            let mut cursor = window.scan_start(database_now_us);
            let mut rows_this_poll: u64 = 0;
            // A page read ahead while the previous page was being acknowledged.
            let mut prefetched: Option<Result<Vec<Position>, sqlx::Error>> = None;
            loop {
                let rows = match prefetched.take() {
                    Some(Ok(rows)) => rows,
                    Some(Err(_)) | None => {
                        let Some(rows) = self
                            .retry(&label, &shutdown, "read a page", || {
                                self.poller.page(&cursor, self.settings.page_size)
                            })
                            .await
                        else {
                            return self.finish(&to_save, &saved, &window).await;
                        };
                        rows
                    }
                };
                let decision = window.decide(&rows);
                let full_page = rows.len() >= self.settings.page_size;
                let next_cursor = rows.last().map(|last| Cursor::After(last.clone()));
                // Reading ahead is side-effect free; it is skipped under a
                // rows/s cap so the cap keeps bounding reads.
                let read_ahead = full_page
                    && self.settings.max_rows_per_second.is_none()
                    && !shutdown.is_cancelled();
                let send = async {
                    if decision.publish.is_empty() {
                        return Some(0);
                    }
                    self.retry(&label, &shutdown, "produce ids", || {
                        self.producer.send_all(&target.topic, &decision.publish)
                    })
                    .await
                };
                let ahead = async {
                    match (&next_cursor, read_ahead) {
                        (Some(next), true) => {
                            Some(self.poller.page(next, self.settings.page_size).await)
                        }
                        _ => None,
                    }
                };
                let (sent, ahead) = tokio::join!(send, ahead);
                if sent.is_none() {
                    // abandoned before Kafka acknowledged: not checkpointed
                    return self.finish(&to_save, &saved, &window).await;
                }
                prefetched = ahead;
                if !decision.publish.is_empty() {
                    self.metrics
                        .ids_published
                        .get_or_create(&label)
                        .inc_by(decision.publish.len() as u64);
                }
                if decision.late > 0 {
                    self.metrics
                        .late_ids
                        .get_or_create(&label)
                        .inc_by(decision.late as u64);
                    tracing::info!(mapping = %target.mapping, late = decision.late, "published rows that committed behind the watermark");
                }
                self.metrics
                    .suppressed
                    .get_or_create(&label)
                    .inc_by(decision.suppressed as u64);
                self.metrics
                    .rows_scanned
                    .get_or_create(&label)
                    .inc_by(rows.len() as u64);
                window.acknowledge(&rows, database_now_us);
                to_save = window.checkpoint(database_now_us);
                if last_save.elapsed() >= CHECKPOINT_EVERY {
                    self.save(&label, &to_save, &mut saved).await;
                    last_save = Instant::now();
                }
                rows_this_poll += rows.len() as u64;
                let Some(next) = next_cursor else { break };
                cursor = next;
                if !full_page || shutdown.is_cancelled() {
                    break;
                }
                let delay = pacing_delay_us(
                    rows_this_poll,
                    poll_started.elapsed().as_micros() as u64,
                    self.settings.max_rows_per_second,
                );
                if delay > 0
                    && sleep_or_abort(Duration::from_micros(delay), &shutdown)
                        .await
                        .is_err()
                {
                    break;
                }
            }
            window.prune(database_now_us);
            to_save = window.checkpoint(database_now_us);
            self.save(&label, &to_save, &mut saved).await;
            last_save = Instant::now();
            self.metrics
                .poll_duration
                .observe(poll_started.elapsed().as_secs_f64());
            self.metrics
                .watermark_lag
                .get_or_create(&label)
                .set(lag_seconds(window.watermark(), database_now_us));
            if !self.settings.null_check_interval.is_zero()
                && last_null_check
                    .is_none_or(|checked| checked.elapsed() >= self.settings.null_check_interval)
            {
                last_null_check = Some(Instant::now());
                self.report_nulls(&label).await;
            }
            if shutdown.is_cancelled()
                || sleep_or_abort(self.settings.poll_interval, &shutdown)
                    .await
                    .is_err()
            {
                break;
            }
        }
        self.finish(&to_save, &saved, &window).await
    }

    async fn initial_window(
        &self,
        label: &MappingLabel,
        shutdown: &CancellationToken,
    ) -> Result<Option<Window>, PublishError> {
        let target = &self.poller.target;
        let look_back_us = i64::try_from(self.settings.look_back.as_micros()).unwrap_or(i64::MAX);
        if let Some(position) = self
            .checkpoint
            .load(&target.mapping, target.id_type)
            .await?
        {
            return Ok(Some(Window::new(
                Some(position),
                look_back_us,
                self.poller.resolution_us(),
            )));
        }
        let start = match self.settings.start {
            StartPosition::Earliest => None,
            StartPosition::Latest => {
                let Some(latest) = self
                    .retry(label, shutdown, "find the newest row", || {
                        self.poller.latest()
                    })
                    .await
                else {
                    return Ok(None);
                };
                latest
            }
        };
        Ok(Some(Window::new(
            start,
            look_back_us,
            self.poller.resolution_us(),
        )))
    }

    /// Saves `to_save` unless it is `saved` already, and logs the stop.
    async fn finish(
        &self,
        to_save: &Option<Position>,
        saved: &Option<Position>,
        window: &Window,
    ) -> Result<(), PublishError> {
        let target = &self.poller.target;
        if let Some(position) = to_save
            && saved != to_save
        {
            self.checkpoint.save(&target.mapping, position).await?;
        }
        tracing::info!(mapping = %target.mapping, watermark = ?window.watermark(), "poller stopped");
        Ok(())
    }

    /// Saves `to_save` (a [`Window::checkpoint`]) unless it is `saved` already.
    async fn save(
        &self,
        label: &MappingLabel,
        to_save: &Option<Position>,
        saved: &mut Option<Position>,
    ) {
        let Some(position) = to_save else {
            return;
        };
        if saved == to_save {
            return;
        }
        match self
            .checkpoint
            .save(&self.poller.target.mapping, position)
            .await
        {
            Ok(()) => *saved = Some(position.clone()),
            Err(error) => {
                // Not fatal: ids are in Kafka; an older checkpoint only means
                // more re-published ids after a restart.
                self.metrics.errors.get_or_create(label).inc();
                tracing::warn!(mapping = %self.poller.target.mapping, error = %error, "cannot save the checkpoint; retrying at the next page");
            }
        }
    }

    async fn report_nulls(&self, label: &MappingLabel) {
        let target = &self.poller.target;
        match self.poller.null_rows(10).await {
            Ok((count, sample)) => {
                self.metrics
                    .null_timestamp_rows
                    .get_or_create(label)
                    .set(count);
                if count > 0 {
                    let sample: Vec<String> = sample.iter().map(ToString::to_string).collect();
                    tracing::warn!(
                        mapping = %target.mapping,
                        table = %target.table,
                        column = %target.timestamp_column,
                        rows = count,
                        sample_ids = %sample.join(","),
                        "rows with a NULL timestamp are invisible to the poller; set the column or publish them with esync-recover"
                    );
                }
            }
            Err(error) => {
                self.metrics.errors.get_or_create(label).inc();
                tracing::warn!(mapping = %target.mapping, error = %error, "cannot count rows with a NULL timestamp");
            }
        }
    }

    /// Runs `attempt` until it succeeds, backing off between failures; `None`
    /// when `shutdown` fired while waiting.
    async fn retry<T, E, F, Fut>(
        &self,
        label: &MappingLabel,
        shutdown: &CancellationToken,
        what: &str,
        mut attempt: F,
    ) -> Option<T>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut failures = 0u32;
        loop {
            match attempt().await {
                Ok(value) => return Some(value),
                Err(error) => {
                    self.metrics.errors.get_or_create(label).inc();
                    let delay = self.settings.retry.random_delay(failures);
                    tracing::warn!(mapping = %self.poller.target.mapping, error = %error, retry_in = ?delay, "cannot {what}");
                    failures = failures.saturating_add(1);
                    if sleep_or_abort(delay, shutdown).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

/// Every polled target of the configuration.
pub fn targets(config: &Config) -> Vec<PollTarget> {
    let Some(publish) = &config.publish else {
        return Vec::new();
    };
    publish
        .mappings
        .iter()
        .filter_map(|entry| PollTarget::resolve(config, entry))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id_type: IdType) -> PollTarget {
        PollTarget {
            mapping: "orders".into(),
            table: "shop.orders".into(),
            id_column: "id".into(),
            id_type,
            timestamp_column: "updated_at".into(),
            topic: "t".into(),
        }
    }

    #[test]
    fn page_sql_per_dialect_and_cursor() {
        let after = Cursor::After(Position {
            timestamp_us: 7,
            id: Id::Int(3),
        });
        let cases = [
            (
                Dialect::Postgres,
                Cursor::Beginning,
                r#"SELECT "updated_at", CAST("id" AS BIGINT) FROM "shop"."orders" WHERE "updated_at" IS NOT NULL ORDER BY "updated_at", "id" LIMIT 100"#,
                vec![],
            ),
            (
                Dialect::Postgres,
                Cursor::From(5),
                r#"SELECT "updated_at", CAST("id" AS BIGINT) FROM "shop"."orders" WHERE "updated_at" >= $1 ORDER BY "updated_at", "id" LIMIT 100"#,
                vec![Bind::Timestamp(5)],
            ),
            (
                Dialect::Postgres,
                after.clone(),
                r#"SELECT "updated_at", CAST("id" AS BIGINT) FROM "shop"."orders" WHERE ("updated_at", "id") > ($1, $2) ORDER BY "updated_at", "id" LIMIT 100"#,
                vec![Bind::Timestamp(7), Bind::Id(Id::Int(3))],
            ),
            (
                Dialect::MySql,
                Cursor::From(5),
                "SELECT `updated_at`, CAST(`id` AS SIGNED) FROM `shop`.`orders` WHERE `updated_at` >= ? ORDER BY `updated_at`, `id` LIMIT 100",
                vec![Bind::Timestamp(5)],
            ),
            (
                Dialect::MySql,
                after.clone(),
                "SELECT `updated_at`, CAST(`id` AS SIGNED) FROM `shop`.`orders` WHERE `updated_at` >= ? AND (`updated_at` > ? OR `id` > ?) ORDER BY `updated_at`, `id` LIMIT 100",
                vec![Bind::Timestamp(7), Bind::Timestamp(7), Bind::Id(Id::Int(3))],
            ),
            (
                Dialect::Sqlite,
                after,
                r#"SELECT "updated_at", "id" FROM "shop"."orders" WHERE "updated_at" >= ? AND ("updated_at" > ? OR "id" > ?) ORDER BY "updated_at", "id" LIMIT 100"#,
                vec![Bind::Timestamp(7), Bind::Timestamp(7), Bind::Id(Id::Int(3))],
            ),
            (
                Dialect::MySql,
                Cursor::From(i64::MIN),
                "SELECT `updated_at`, CAST(`id` AS SIGNED) FROM `shop`.`orders` WHERE `updated_at` IS NOT NULL ORDER BY `updated_at`, `id` LIMIT 100",
                vec![],
            ),
        ];
        for (dialect, cursor, sql, binds) in cases {
            assert_eq!(
                PollSql::new(dialect, &target(IdType::Integer)).page(&cursor, 100),
                (sql.to_owned(), binds),
                "{dialect:?} {cursor:?}"
            );
        }
    }

    #[test]
    fn string_ids_are_read_as_text() {
        let cases = [
            (Dialect::Postgres, r#"CAST("id" AS TEXT)"#),
            (Dialect::MySql, "CAST(`id` AS CHAR)"),
            (Dialect::Sqlite, r#"CAST("id" AS TEXT)"#),
        ];
        for (dialect, select) in cases {
            let sql = PollSql::new(dialect, &target(IdType::String));
            assert!(
                sql.latest().contains(select),
                "{dialect:?}: {}",
                sql.latest()
            );
            assert!(sql.latest().ends_with("DESC LIMIT 1"));
            assert!(
                sql.null_sample(10).contains("IS NULL ORDER BY"),
                "{}",
                sql.null_sample(10)
            );
        }
        assert_eq!(
            PollSql::new(Dialect::MySql, &target(IdType::Integer)).null_count(),
            "SELECT COUNT(*) FROM `shop`.`orders` WHERE `updated_at` IS NULL"
        );
    }

    #[test]
    fn timestamp_types() {
        let cases = [
            (Dialect::Postgres, "TIMESTAMPTZ", Some(TimestampKind::Zoned)),
            (Dialect::Postgres, "TIMESTAMP", Some(TimestampKind::Naive)),
            (Dialect::Postgres, "INT8", None),
            (Dialect::Postgres, "DATE", None),
            (Dialect::MySql, "TIMESTAMP", Some(TimestampKind::Zoned)),
            (Dialect::MySql, "DATETIME", Some(TimestampKind::Zoned)),
            (Dialect::MySql, "BIGINT", None),
            (Dialect::Sqlite, "DATETIME", Some(TimestampKind::Naive)),
        ];
        for (dialect, name, expected) in cases {
            assert_eq!(
                timestamp_kind(dialect, name),
                expected,
                "{dialect:?} {name}"
            );
        }
    }

    #[test]
    fn plans() {
        let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
        let cases = [
            (
                Dialect::Postgres,
                "Limit\n  ->  Index Only Scan using o_ts_id on o",
                true,
            ),
            (
                Dialect::Postgres,
                "Limit\n  ->  Sort\n        ->  Seq Scan on o",
                false,
            ),
            (
                Dialect::Postgres,
                "Limit\n  ->  Incremental Sort\n        ->  Index Scan using o_ts on o",
                false,
            ),
            (
                Dialect::MySql,
                "key=o_ts_id extra=Using where; Using index",
                true,
            ),
            (
                Dialect::MySql,
                "key=NULL extra=Using where; Using filesort",
                false,
            ),
            (
                Dialect::MySql,
                "key=o_ts extra=Using index condition; Using filesort",
                false,
            ),
            (
                Dialect::Sqlite,
                "SEARCH o USING COVERING INDEX o_ts_id (updated_at>?)",
                true,
            ),
            (
                Dialect::Sqlite,
                "SCAN o\nUSE TEMP B-TREE FOR ORDER BY",
                false,
            ),
        ];
        for (dialect, plan, expected) in cases {
            assert_eq!(
                plan_uses_index(dialect, &lines(plan)),
                expected,
                "{dialect:?}: {plan}"
            );
        }
    }

    /// The real statements against SQLite: keyset order with ties on the
    /// timestamp, the look-back start, NULL rows, the newest row, EXPLAIN.
    #[tokio::test]
    async fn sqlite_pages_in_keyset_order() {
        let url = crate::secret::Secret::new("sqlite::memory:".to_owned());
        let database = Database::connect(&url, 1, Duration::from_secs(5))
            .await
            .expect("sqlite");
        let Database::Sqlite(pool) = &database else {
            unreachable!("sqlite url")
        };
        sqlx::raw_sql(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, updated_at TEXT); \
             INSERT INTO t VALUES (1, '2024-01-01 00:00:01'), (2, '2024-01-01 00:00:01'), \
             (3, '2024-01-01 00:00:00.500'), (4, NULL), (5, '2024-01-01 00:00:02'), (6, NULL);",
        )
        .execute(pool)
        .await
        .expect("fixture");
        let target = PollTarget {
            table: "t".into(),
            ..target(IdType::Integer)
        };
        let poller = Poller::connect(database.clone(), target)
            .await
            .expect("poller");
        let ids = |positions: &[Position]| {
            positions
                .iter()
                .map(|position| position.id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };

        let first = poller.page(&Cursor::Beginning, 2).await.expect("page");
        assert_eq!(ids(&first), "3,1");
        let second = poller
            .page(&Cursor::After(first[1].clone()), 2)
            .await
            .expect("page");
        assert_eq!(
            ids(&second),
            "2,5",
            "the tie at 00:00:01 continues with the next id"
        );
        assert_eq!(
            ids(&poller
                .page(&Cursor::After(second[1].clone()), 2)
                .await
                .expect("page")),
            ""
        );
        assert_eq!(
            ids(&poller
                .page(&Cursor::From(first[1].timestamp_us), 10)
                .await
                .expect("page")),
            "1,2,5"
        );
        assert_eq!(first[0].timestamp_us, 1_704_067_200_500_000);
        assert_eq!(
            poller
                .latest()
                .await
                .expect("latest")
                .map(|position| position.id),
            Some(Id::Int(5))
        );
        assert_eq!(
            poller.null_rows(1).await.expect("nulls"),
            (2, vec![Id::Int(4)])
        );

        assert!(!plan_uses_index(
            Dialect::Sqlite,
            &poller.explain_page(100).await.expect("explain")
        ));
        sqlx::raw_sql("CREATE INDEX t_poll ON t (updated_at, id)")
            .execute(pool)
            .await
            .expect("index");
        let plan = poller.explain_page(100).await.expect("explain");
        assert!(plan_uses_index(Dialect::Sqlite, &plan), "{plan:?}");
    }
}
