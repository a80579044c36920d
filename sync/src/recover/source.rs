//! Database adapter for walking a table by primary key: range bounds, row
//! counts, chunk boundaries for string ids, and keyset pages of ids.
//!
//! Every page is `WHERE id > $last AND id <= $end ORDER BY id LIMIT n`: the
//! database seeks on the primary key index, whatever the page number, and
//! rows inserted or deleted meanwhile never shift a page (no OFFSET). Only ids
//! are read here; full rows are re-read by the esync writer, exactly as the
//! daemon does. The SQL text is built by pure functions, tested per dialect.

use crate::db::exec::{self, Param};
use crate::db::{Database, Dialect, quote_identifier};
use crate::document::Row;
use crate::id::{Id, IdType};
use crate::recover::range::{Cursor, IdBound};

/// Errors of the keyset queries.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A query failed.
    #[error("{what} on table {table} failed: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// The table.
        table: String,
        /// The driver error.
        source: sqlx::Error,
    },
}

impl SourceError {
    /// Connection problems pass; a broken query does not.
    pub fn is_retryable(&self) -> bool {
        let SourceError::Query { source, .. } = self;
        crate::db::is_transient(source)
    }
}

/// The SQL of one table's keyset walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysetSql {
    dialect: Dialect,
    id_type: IdType,
    table: String,
    id: String,
}

impl KeysetSql {
    /// SQL for `table` (may be `schema.table`) keyed by `id_column`.
    pub fn new(dialect: Dialect, table: &str, id_column: &str, id_type: IdType) -> KeysetSql {
        KeysetSql {
            dialect,
            id_type,
            table: quote_identifier(dialect, table),
            id: quote_identifier(dialect, id_column),
        }
    }

    /// `expression` cast to the type ids are read as (i64 or text), so that
    /// `INT`, `SMALLINT` or `VARCHAR` columns decode alike.
    fn cast(&self, expression: &str) -> String {
        match (self.dialect, self.id_type) {
            (Dialect::Postgres, IdType::Integer) => format!("CAST({expression} AS BIGINT)"),
            (Dialect::Postgres, IdType::String) => format!("CAST({expression} AS TEXT)"),
            (Dialect::MySql, IdType::Integer) => format!("CAST({expression} AS SIGNED)"),
            (Dialect::MySql, IdType::String) => format!("CAST({expression} AS CHAR)"),
            (Dialect::Sqlite, _) => expression.to_owned(),
        }
    }

    /// `SELECT min, max` of the id column.
    pub fn bounds(&self) -> String {
        format!(
            "SELECT {}, {} FROM {}",
            self.cast(&format!("MIN({})", self.id)),
            self.cast(&format!("MAX({})", self.id)),
            self.table
        )
    }

    /// Rows with `$1 <= id <= $2`.
    pub fn count(&self) -> String {
        format!(
            "SELECT COUNT(*) FROM {} WHERE {id} >= {} AND {id} <= {}",
            self.table,
            self.dialect.placeholder(1),
            self.dialect.placeholder(2),
            id = self.id
        )
    }

    /// One keyset page of ids after (or from, when `inclusive`) `$1` up to
    /// `$2`, at most `limit`.
    pub fn page(&self, inclusive: bool, limit: usize) -> String {
        let lower = if inclusive { ">=" } else { ">" };
        format!(
            "SELECT {} FROM {} WHERE {id} {lower} {} AND {id} <= {} ORDER BY {id} LIMIT {limit}",
            self.cast(&self.id),
            self.table,
            self.dialect.placeholder(1),
            self.dialect.placeholder(2),
            id = self.id
        )
    }

    /// The number of rows and the last id of the keyset page after `$1` up to
    /// `$2` of at most `limit` rows: one row back instead of the page.
    pub fn page_end(&self, inclusive: bool, limit: usize) -> String {
        let lower = if inclusive { ">=" } else { ">" };
        format!(
            "SELECT COUNT(*), {} FROM (SELECT {id} AS page_id FROM {} WHERE {id} {lower} {} AND {id} <= {} ORDER BY {id} LIMIT {limit}) page",
            self.cast("MAX(page_id)"),
            self.table,
            self.dialect.placeholder(1),
            self.dialect.placeholder(2),
            id = self.id
        )
    }
}

/// Keyset queries on one table of a connected database.
#[derive(Debug, Clone)]
pub struct Source {
    database: Database,
    sql: KeysetSql,
    table: String,
    id_type: IdType,
}

/// An id bound as the parameter of a keyset query.
fn param(bound: &IdBound) -> Param {
    match bound {
        IdBound::Int(int) => Param::Int(*int),
        IdBound::Str(text) => Param::Text(text.clone()),
    }
}

/// Column `index` of a keyset result as a bound of `id_type`.
fn bound(row: &Row, index: usize, id_type: IdType) -> Result<Option<IdBound>, sqlx::Error> {
    Ok(match id_type {
        IdType::Integer => exec::optional_int(row, index)?.map(IdBound::Int),
        IdType::String => exec::optional_text(row, index)?.map(IdBound::Str),
    })
}

impl Source {
    /// Keyset queries on `table` by `id_column`.
    pub fn new(database: Database, table: &str, id_column: &str, id_type: IdType) -> Source {
        let sql = KeysetSql::new(database.dialect(), table, id_column, id_type);
        Source {
            database,
            sql,
            table: table.to_owned(),
            id_type,
        }
    }

    fn error(&self, what: &'static str) -> impl FnOnce(sqlx::Error) -> SourceError + '_ {
        move |source| SourceError::Query {
            what,
            table: self.table.clone(),
            source,
        }
    }

    /// The smallest and largest id, `None` for an empty table.
    pub async fn bounds(&self) -> Result<Option<(IdBound, IdBound)>, SourceError> {
        let row = self
            .one_row(&self.sql.bounds(), &[])
            .await
            .and_then(|row| Ok(bound(&row, 0, self.id_type)?.zip(bound(&row, 1, self.id_type)?)))
            .map_err(self.error("reading the id range"))?;
        Ok(row)
    }

    /// Rows with `from <= id <= to`.
    pub async fn count(&self, from: &IdBound, to: &IdBound) -> Result<u64, SourceError> {
        let count = self
            .one_row(&self.sql.count(), &[param(from), param(to)])
            .await
            .and_then(|row| exec::int(&row, 0))
            .map_err(self.error("counting rows"))?;
        Ok(count.max(0) as u64)
    }

    /// One keyset page of at most `limit` ids after `cursor`, up to `end`.
    pub async fn page(
        &self,
        cursor: &Cursor,
        end: &IdBound,
        limit: usize,
    ) -> Result<Vec<Id>, SourceError> {
        let sql = self.sql.page(cursor.inclusive, limit);
        let rows = self
            .database
            .fetch_all(&sql, &[param(&cursor.after), param(end)])
            .await
            .and_then(|rows| {
                rows.iter()
                    .map(|row| exec::id(row, 0, self.id_type))
                    .collect::<Result<Vec<Id>, sqlx::Error>>()
            })
            .map_err(self.error("reading a page of ids"))?;
        Ok(rows)
    }

    /// The one row an aggregate query returns.
    async fn one_row(&self, sql: &str, params: &[Param]) -> Result<Row, sqlx::Error> {
        self.database
            .fetch_optional(sql, params)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// The chunk ends of `from..=to` in chunks of `rows_per_chunk` rows: the
    /// last id of every full keyset page (for string ids, which cannot be
    /// split arithmetically, and sparse integer ids), ascending in the
    /// database's order, each once, never `to`.
    pub async fn boundaries(
        &self,
        from: &IdBound,
        to: &IdBound,
        rows_per_chunk: usize,
    ) -> Result<Vec<IdBound>, SourceError> {
        let mut boundaries = Vec::new();
        let mut cursor = Cursor {
            after: from.clone(),
            inclusive: true,
        };
        loop {
            let sql = self.sql.page_end(cursor.inclusive, rows_per_chunk);
            let (count, last) = self
                .one_row(&sql, &[param(&cursor.after), param(to)])
                .await
                .and_then(|row| Ok((exec::int(&row, 0)?, bound(&row, 1, self.id_type)?)))
                .map_err(self.error("finding chunk boundaries"))?;
            let Some(last) = last else { break };
            if usize::try_from(count).unwrap_or(0) < rows_per_chunk || last == *to {
                break;
            }
            boundaries.push(last.clone());
            cursor = Cursor {
                after: last,
                inclusive: false,
            };
        }
        Ok(boundaries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_sql_per_dialect() {
        let pg = KeysetSql::new(Dialect::Postgres, "shop.orders", "id", IdType::Integer);
        assert_eq!(
            pg.page(false, 500),
            r#"SELECT CAST("id" AS BIGINT) FROM "shop"."orders" WHERE "id" > $1 AND "id" <= $2 ORDER BY "id" LIMIT 500"#
        );
        assert_eq!(
            pg.page(true, 5),
            r#"SELECT CAST("id" AS BIGINT) FROM "shop"."orders" WHERE "id" >= $1 AND "id" <= $2 ORDER BY "id" LIMIT 5"#
        );
        assert_eq!(
            pg.bounds(),
            r#"SELECT CAST(MIN("id") AS BIGINT), CAST(MAX("id") AS BIGINT) FROM "shop"."orders""#
        );
        assert_eq!(
            pg.count(),
            r#"SELECT COUNT(*) FROM "shop"."orders" WHERE "id" >= $1 AND "id" <= $2"#
        );
        let mysql = KeysetSql::new(Dialect::MySql, "items", "sku", IdType::String);
        assert_eq!(
            mysql.page(false, 10),
            "SELECT CAST(`sku` AS CHAR) FROM `items` WHERE `sku` > ? AND `sku` <= ? ORDER BY `sku` LIMIT 10"
        );
        assert_eq!(
            mysql.page_end(true, 10),
            "SELECT COUNT(*), CAST(MAX(page_id) AS CHAR) FROM (SELECT `sku` AS page_id FROM `items` WHERE `sku` >= ? AND `sku` <= ? ORDER BY `sku` LIMIT 10) page"
        );
        let sqlite = KeysetSql::new(Dialect::Sqlite, "t", "id", IdType::Integer);
        assert_eq!(sqlite.bounds(), r#"SELECT MIN("id"), MAX("id") FROM "t""#);
        for sql in [
            pg.page(false, 1),
            mysql.page(false, 1),
            sqlite.page(false, 1),
        ] {
            assert!(
                !sql.to_uppercase().contains("OFFSET"),
                "keyset pages never use OFFSET: {sql}"
            );
        }
    }
}
