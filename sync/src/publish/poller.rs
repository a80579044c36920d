//! The poller's database adapter: runs [`PollSql`]'s statements for one
//! target and reads back [`Position`]s, the clock of the database, the rows
//! the poller cannot see and the plan of a page. No loop, no Kafka: that is
//! [`super::poll_loop`].

use super::PublishError;
use super::poll_sql::{
    PollSql, PollTarget, TimestampKind, resolution_us, timestamp_kind, timestamp_us,
};
use super::watermark::{Cursor, Position};
use crate::db::exec::{self, Param};
use crate::db::{Database, Dialect, catalog};
use crate::document::SqlValue;
use crate::id::{Id, IdType};
use chrono::Utc;

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

impl Poller {
    /// Learns the timestamp column's type; fails with a readable message
    /// when the table or column is missing or the type is unsupported.
    pub async fn connect(database: Database, target: PollTarget) -> Result<Poller, PublishError> {
        let sql = PollSql::new(database.dialect(), &target);
        let query_error = |source| PublishError::Database {
            mapping: target.mapping.clone(),
            source,
        };
        let type_name = database
            .describe(&sql.describe())
            .await
            .map_err(query_error)?
            .into_iter()
            .next()
            .map(|column| column.type_name)
            .unwrap_or_default();
        let kind = timestamp_kind(database.dialect(), &type_name).ok_or_else(|| {
            PublishError::UnsupportedTimestamp {
                mapping: target.mapping.clone(),
                column: target.timestamp_column.clone(),
                type_name,
            }
        })?;
        let precision =
            catalog::datetime_precision(&database, &target.table, &target.timestamp_column)
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

    /// Microseconds one step of the timestamp column spans (1: microseconds).
    pub fn resolution_us(&self) -> i64 {
        self.resolution_us
    }

    /// The database's clock, microseconds since the epoch (UTC).
    pub async fn database_now_us(&self) -> Result<i64, sqlx::Error> {
        let row = self.database.fetch_optional(self.sql.now_us(), &[]).await?;
        exec::int(&row.ok_or(sqlx::Error::RowNotFound)?, 0)
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
        let (sql, params) = self.sql.page(cursor, limit, self.kind);
        self.positions(&sql, &params).await
    }

    /// The newest row, if any.
    pub async fn latest(&self) -> Result<Option<Position>, sqlx::Error> {
        Ok(self.positions(&self.sql.latest(), &[]).await?.pop())
    }

    async fn positions(&self, sql: &str, params: &[Param]) -> Result<Vec<Position>, sqlx::Error> {
        let rows = self.database.fetch_all(sql, params).await?;
        rows.iter()
            .map(|row| {
                let timestamp = exec::value(row, 0)?;
                let timestamp_us = timestamp_us(timestamp).ok_or_else(|| {
                    exec::decode_error(format!(
                        "column 0: expected a timestamp, found {timestamp:?}"
                    ))
                })?;
                let id = exec::id(row, 1, self.target.id_type)?;
                Ok(Position { timestamp_us, id })
            })
            .collect()
    }

    /// Rows with a NULL timestamp: how many, and up to `sample` of their ids.
    pub async fn null_rows(&self, sample: usize) -> Result<(i64, Vec<Id>), sqlx::Error> {
        let count = self
            .database
            .fetch_optional(&self.sql.null_count(), &[])
            .await?;
        let count = exec::int(&count.ok_or(sqlx::Error::RowNotFound)?, 0)?;
        if count == 0 {
            return Ok((0, Vec::new()));
        }
        let rows = self
            .database
            .fetch_all(&self.sql.null_sample(sample), &[])
            .await?;
        let ids = rows
            .iter()
            .map(|row| exec::id(row, 0, self.target.id_type))
            .collect::<Result<Vec<Id>, sqlx::Error>>()?;
        Ok((count, ids))
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
        let (sql, params) = self.sql.page(&cursor, page_size, self.kind);
        match self.database.dialect() {
            Dialect::Postgres => {
                // With sequential scans and sorts priced out, a plan that still
                // has one has no index able to serve the query.
                let mut transaction = self.database.begin().await?;
                for setting in [
                    "SET LOCAL enable_seqscan = off",
                    "SET LOCAL enable_sort = off",
                    "SET LOCAL enable_incremental_sort = off",
                ] {
                    let _ = transaction.execute(setting, &[]).await?;
                }
                let rows = transaction
                    .fetch_all(&format!("EXPLAIN {sql}"), &params)
                    .await?;
                transaction.rollback().await?;
                rows.iter().map(|row| exec::text(row, 0)).collect()
            }
            Dialect::MySql => {
                let rows = self
                    .database
                    .fetch_all(&format!("EXPLAIN {sql}"), &params)
                    .await?;
                rows.iter()
                    .map(|row| {
                        let text = |column| match row.get(column) {
                            Some(SqlValue::Text(text)) => Ok(Some(text.clone())),
                            Some(SqlValue::Null) => Ok(None),
                            other => Err(exec::decode_error(format!(
                                "EXPLAIN column {column}: expected text, found {other:?}"
                            ))),
                        };
                        Ok(format!(
                            "key={} extra={}",
                            text("key")?.unwrap_or_else(|| "NULL".into()),
                            text("Extra")?.unwrap_or_default()
                        ))
                    })
                    .collect()
            }
            Dialect::Sqlite => {
                let rows = self
                    .database
                    .fetch_all(&format!("EXPLAIN QUERY PLAN {sql}"), &params)
                    .await?;
                rows.iter().map(|row| exec::text(row, 3)).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::poll_sql::plan_uses_index;
    use std::time::Duration;

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
            mapping: "orders".into(),
            table: "t".into(),
            id_column: "id".into(),
            id_type: IdType::Integer,
            timestamp_column: "updated_at".into(),
            topic: "t".into(),
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
