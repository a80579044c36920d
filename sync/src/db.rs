//! Database adapter: re-reads rows by id (sqlx) and converts them to
//! [`SqlValue`]s.
//!
//! One query per batch and mapping: Postgres binds one array (`= ANY($1)`),
//! MySQL/MariaDB and SQLite bind `IN (?, ...)` in chunks of
//! `source.read_chunk_size`. Column types are looked up once per result, not
//! per value. A value that cannot be converted becomes
//! [`SqlValue::Undecodable`], so one odd row is dead-lettered instead of
//! failing its whole batch.

use crate::config::MappingConfig;
use crate::document::{Row, SqlValue};
use crate::id::{Id, IdType};
use crate::pg_ids::{BASE_TYPE_SQL, PgIdMatch};
use crate::secret::{Secret, redact_url};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rust_decimal::Decimal;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Column as _, Row as _, TypeInfo as _, ValueRef as _};
use std::sync::Arc;
use std::time::Duration;

/// Errors talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL scheme is none of postgres, mysql, mariadb, sqlite.
    #[error("unsupported database URL {0}: use postgres://, mysql:// or sqlite://")]
    UnsupportedUrl(String),
    /// Connecting failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL without its password.
        url: String,
        /// The driver error.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("query on {mapping} failed: {source}")]
    Query {
        /// The mapping.
        mapping: String,
        /// The driver error.
        source: sqlx::Error,
    },
}

impl DbError {
    /// Connection problems and server-side time-outs pass; a broken query does
    /// not, but the daemon retries both (rows must not be lost) and a broken
    /// query is reported at error level.
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::UnsupportedUrl(_) => false,
            DbError::Connect { .. } => true,
            DbError::Query { source, .. } => matches!(
                source,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::Tls(_)
            ),
        }
    }
}

/// The SQL dialect of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
    /// SQLite.
    Sqlite,
}

/// Evaluates `$body` with `$pool` bound to whichever pool `$database` holds,
/// so one piece of query code serves the three drivers:
/// `on_pool!(database, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))`.
#[macro_export]
macro_rules! on_pool {
    ($database:expr, $pool:ident => $body:expr) => {
        match $database {
            $crate::db::Database::Postgres($pool) => $body,
            $crate::db::Database::MySql($pool) => $body,
            $crate::db::Database::Sqlite($pool) => $body,
        }
    };
}

impl Dialect {
    /// The bind placeholder for parameter `number` (1-based): `$1` on
    /// Postgres, `?` (positional) on MySQL/MariaDB and SQLite.
    pub fn placeholder(self, number: usize) -> String {
        match self {
            Dialect::Postgres => format!("${number}"),
            Dialect::MySql | Dialect::Sqlite => "?".to_owned(),
        }
    }
}

/// A connection pool to the source database.
#[derive(Debug, Clone)]
pub enum Database {
    /// PostgreSQL.
    Postgres(PgPool),
    /// MySQL or MariaDB.
    MySql(MySqlPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

impl Database {
    /// Connects a pool of `max_connections`.
    pub async fn connect(
        url: &Secret,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<Database, DbError> {
        let raw = url.expose();
        let scheme = raw.split(':').next().unwrap_or_default();
        let connect_error = |source| DbError::Connect {
            url: redact_url(raw),
            source,
        };
        match scheme {
            "postgres" | "postgresql" => PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(connect_timeout)
                .connect(raw)
                .await
                .map(Database::Postgres)
                .map_err(connect_error),
            "mysql" | "mariadb" => MySqlPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(connect_timeout)
                .connect(&raw.replacen("mariadb://", "mysql://", 1))
                .await
                .map(Database::MySql)
                .map_err(connect_error),
            "sqlite" => SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(connect_timeout)
                .connect(raw)
                .await
                .map(Database::Sqlite)
                .map_err(connect_error),
            _ => Err(DbError::UnsupportedUrl(redact_url(raw))),
        }
    }

    /// The pool's dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            Database::Postgres(_) => Dialect::Postgres,
            Database::MySql(_) => Dialect::MySql,
            Database::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// A trivial round trip, for health checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        crate::on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))
    }
}

/// The re-read query of one mapping.
#[derive(Debug, Clone)]
pub struct RowReader {
    mapping: String,
    dialect: Dialect,
    id_type: IdType,
    /// A custom query with `{ids}` where the id placeholders go, or for a
    /// table `SELECT <columns> FROM <table>` (the `WHERE` is added per dialect).
    template: String,
    /// For a table: the quoted table and id column.
    table: Option<(String, String)>,
    /// The id column's name, unquoted.
    id_column: String,
    chunk_size: usize,
    /// How a PostgreSQL table's id column is compared with the bound ids,
    /// learned from the catalog on first use and shared by clones.
    pg_id_match: Arc<tokio::sync::OnceCell<PgIdMatch>>,
}

/// Quotes an identifier (`schema.table` is quoted part by part).
pub fn quote_identifier(dialect: Dialect, name: &str) -> String {
    let quote = if dialect == Dialect::MySql { '`' } else { '"' };
    name.split('.')
        .map(|part| {
            let escaped = part.replace(quote, &format!("{quote}{quote}"));
            format!("{quote}{escaped}{quote}")
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl RowReader {
    /// Builds the reader for `mapping` (validated config: `table` or `query`).
    pub fn new(mapping: &MappingConfig, dialect: Dialect, chunk_size: usize) -> RowReader {
        let (template, table) = match (&mapping.table, &mapping.query) {
            (_, Some(query)) => (query.clone(), None),
            (Some(table), None) => {
                let columns = if mapping.columns.is_empty() {
                    "*".to_owned()
                } else {
                    mapping
                        .columns
                        .iter()
                        .map(|column| quote_identifier(dialect, column))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let id = quote_identifier(dialect, &mapping.id.column);
                let table = quote_identifier(dialect, table);
                (format!("SELECT {columns} FROM {table}"), Some((table, id)))
            }
            (None, None) => unreachable!("validated config has table or query"),
        };
        RowReader {
            mapping: mapping.display_name().to_owned(),
            dialect,
            id_type: mapping.id.id_type,
            template,
            table,
            id_column: mapping.id.column.clone(),
            chunk_size: chunk_size.max(1),
            pg_id_match: Arc::default(),
        }
    }

    /// The SQL sent for `count` ids. On PostgreSQL tables it compares the id
    /// column as learned by [`RowReader::prepare`] (plainly before that).
    pub fn sql_for(&self, count: usize) -> String {
        let pg_id_match = self.pg_id_match.get().copied().unwrap_or(PgIdMatch::Plain);
        let placeholders = || format!("({})", vec!["?"; count.max(1)].join(", "));
        match (&self.table, self.dialect) {
            (Some((_, id)), Dialect::Postgres) => format!(
                "{} WHERE {}",
                self.template,
                pg_id_match.condition(id, self.id_type)
            ),
            (Some((_, id)), _) => format!("{} WHERE {id} IN {}", self.template, placeholders()),
            (None, Dialect::Postgres) => {
                let array = match self.id_type {
                    IdType::Integer => "int8",
                    IdType::String => "text",
                };
                let unnest = format!("(SELECT unnest($1::{array}[]))");
                self.template.replace("{ids}", &unnest)
            }
            (None, _) => self.template.replace("{ids}", &placeholders()),
        }
    }

    /// Learns how a PostgreSQL table's id column compares with the bound ids
    /// (its type, a domain by its base type; see [`crate::pg_ids`]), once.
    /// [`RowReader::fetch`] calls it; call it before [`RowReader::sql_for`]
    /// to see the SQL that is sent. Nothing to learn for other databases and
    /// custom queries.
    pub async fn prepare(&self, database: &Database) -> Result<PgIdMatch, DbError> {
        let (Database::Postgres(pool), Some((table, _))) = (database, &self.table) else {
            return Ok(PgIdMatch::Plain);
        };
        let learned = self
            .pg_id_match
            .get_or_try_init(|| async {
                let column = &self.id_column;
                let base_type: Option<String> = sqlx::query_scalar(BASE_TYPE_SQL)
                    .bind(table)
                    .bind(column)
                    .fetch_optional(pool)
                    .await
                    .map_err(|source| DbError::Query {
                        mapping: self.mapping.clone(),
                        source,
                    })?;
                let learned = base_type.as_deref().map_or(PgIdMatch::Plain, |base_type| {
                    PgIdMatch::for_column(self.id_type, base_type)
                });
                if learned == PgIdMatch::ColumnAsText {
                    tracing::warn!(mapping = %self.mapping, column = %column, base_type = ?base_type,
                        "the id column's type cannot be compared with the ids directly; comparing it as text, which cannot use its index");
                }
                Ok::<_, DbError>(learned)
            })
            .await?;
        Ok(*learned)
    }

    /// Whether the reader reads a table (not a custom query).
    pub fn reads_table(&self) -> bool {
        self.table.is_some()
    }

    /// The id column's value of one real row (the one with the largest id),
    /// read as the re-read reads it, for `esync check` to prove that ids
    /// round-trip. `Ok(None)` for an empty table or a custom query (there is
    /// no table to take a row from).
    pub async fn sample_id(&self, database: &Database) -> Result<Option<SqlValue>, DbError> {
        let Some((table, id)) = &self.table else {
            return Ok(None);
        };
        let sql = format!("SELECT {id} FROM {table} ORDER BY {id} DESC LIMIT 1");
        let rows = crate::on_pool!(database, pool => {
            let rows = sqlx::query(AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .map_err(|source| DbError::Query { mapping: self.mapping.clone(), source })?;
            FromDriverRows::to_rows(&rows)
        });
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.values.into_iter().next()))
    }

    /// Reads the rows of `ids` (rows of deleted ids are simply absent).
    pub async fn fetch(&self, database: &Database, ids: &[Id]) -> Result<Vec<Row>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let query_error = |source| DbError::Query {
            mapping: self.mapping.clone(),
            source,
        };
        match database {
            Database::Postgres(pool) => {
                let id_match = self.prepare(database).await?;
                // an id the column's type cannot hold has no row; binding it
                // would fail the cast, and with it the whole batch
                let ids: Vec<&Id> = ids.iter().filter(|id| id_match.binds(id)).collect();
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = self.sql_for(ids.len());
                let query = sqlx::query(AssertSqlSafe(sql));
                let query = match self.id_type {
                    IdType::Integer => query.bind(
                        ids.iter()
                            .filter_map(|id| id_as_int(id))
                            .collect::<Vec<i64>>(),
                    ),
                    IdType::String => {
                        query.bind(ids.iter().map(ToString::to_string).collect::<Vec<String>>())
                    }
                };
                let rows = query.fetch_all(pool).await.map_err(query_error)?;
                Ok(PgRow::to_rows(&rows))
            }
            // One parameter per id, in chunks: MySQL and SQLite have no array binds.
            Database::MySql(_) | Database::Sqlite(_) => {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(self.chunk_size) {
                    let sql = self.sql_for(chunk.len());
                    out.extend(crate::on_pool!(database, pool => {
                        let mut query = sqlx::query(AssertSqlSafe(sql));
                        for id in chunk {
                            query = match id {
                                Id::Int(int) => query.bind(*int),
                                Id::Str(text) => query.bind(text.to_string()),
                            };
                        }
                        let rows = query.fetch_all(pool).await.map_err(query_error)?;
                        FromDriverRows::to_rows(&rows)
                    }));
                }
                Ok(out)
            }
        }
    }
}

/// Converts a driver's rows into [`Row`]s.
trait FromDriverRows: Sized {
    fn to_rows(rows: &[Self]) -> Vec<Row>;
}

impl FromDriverRows for PgRow {
    fn to_rows(rows: &[Self]) -> Vec<Row> {
        convert_rows(rows, pg_column_kind, pg_value)
    }
}

impl FromDriverRows for MySqlRow {
    fn to_rows(rows: &[Self]) -> Vec<Row> {
        convert_rows(rows, mysql_column_kind, mysql_value)
    }
}

impl FromDriverRows for SqliteRow {
    fn to_rows(rows: &[Self]) -> Vec<Row> {
        rows.iter().map(sqlite_row).collect()
    }
}

fn id_as_int(id: &Id) -> Option<i64> {
    match id {
        Id::Int(int) => Some(*int),
        Id::Str(_) => None,
    }
}

/// How a column's values are decoded, decided once per result set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Bool,
    I16,
    I32,
    I64,
    U64,
    F32,
    F64,
    Decimal,
    Text,
    Uuid,
    Json,
    TimestampTz,
    Timestamp,
    Date,
    Time,
    Bytes,
    Array(ArrayKind),
    /// Anything else: read as text when the driver allows it.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayKind {
    Bool,
    I16,
    I32,
    I64,
    F64,
    Decimal,
    Text,
    Uuid,
    Json,
    TimestampTz,
    Timestamp,
    Date,
}

fn convert_rows<R: sqlx::Row>(
    rows: &[R],
    column_kind: fn(&str) -> ColumnKind,
    value: fn(&R, usize, ColumnKind) -> SqlValue,
) -> Vec<Row> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let columns: Arc<[String]> = first
        .columns()
        .iter()
        .map(|column| column.name().to_owned())
        .collect();
    let kinds: Vec<ColumnKind> = first
        .columns()
        .iter()
        .map(|column| column_kind(column.type_info().name()))
        .collect();
    rows.iter()
        .map(|row| Row {
            columns: columns.clone(),
            values: kinds
                .iter()
                .enumerate()
                .map(|(index, kind)| value(row, index, *kind))
                .collect(),
        })
        .collect()
}

fn pg_column_kind(name: &str) -> ColumnKind {
    let array = |kind| ColumnKind::Array(kind);
    match name {
        "BOOL" => ColumnKind::Bool,
        "INT2" => ColumnKind::I16,
        "INT4" => ColumnKind::I32,
        "INT8" => ColumnKind::I64,
        "FLOAT4" => ColumnKind::F32,
        "FLOAT8" => ColumnKind::F64,
        "NUMERIC" => ColumnKind::Decimal,
        "TEXT" | "VARCHAR" | "CHAR" | "BPCHAR" | "NAME" | "CITEXT" => ColumnKind::Text,
        "UUID" => ColumnKind::Uuid,
        "JSON" | "JSONB" => ColumnKind::Json,
        "TIMESTAMPTZ" => ColumnKind::TimestampTz,
        "TIMESTAMP" => ColumnKind::Timestamp,
        "DATE" => ColumnKind::Date,
        "TIME" => ColumnKind::Time,
        "BYTEA" => ColumnKind::Bytes,
        "BOOL[]" => array(ArrayKind::Bool),
        "INT2[]" => array(ArrayKind::I16),
        "INT4[]" => array(ArrayKind::I32),
        "INT8[]" => array(ArrayKind::I64),
        "FLOAT8[]" => array(ArrayKind::F64),
        "NUMERIC[]" => array(ArrayKind::Decimal),
        "TEXT[]" | "VARCHAR[]" | "CHAR[]" | "BPCHAR[]" | "NAME[]" => array(ArrayKind::Text),
        "UUID[]" => array(ArrayKind::Uuid),
        "JSON[]" | "JSONB[]" => array(ArrayKind::Json),
        "TIMESTAMPTZ[]" => array(ArrayKind::TimestampTz),
        "TIMESTAMP[]" => array(ArrayKind::Timestamp),
        "DATE[]" => array(ArrayKind::Date),
        _ => ColumnKind::Other,
    }
}

fn mysql_column_kind(name: &str) -> ColumnKind {
    match name {
        "BOOLEAN" => ColumnKind::Bool,
        "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => ColumnKind::I64,
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED"
        | "BIGINT UNSIGNED" | "YEAR" | "BIT" => ColumnKind::U64,
        "FLOAT" => ColumnKind::F32,
        "DOUBLE" => ColumnKind::F64,
        "DECIMAL" => ColumnKind::Decimal,
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            ColumnKind::Text
        }
        "JSON" => ColumnKind::Json,
        "TIMESTAMP" => ColumnKind::TimestampTz,
        "DATETIME" => ColumnKind::Timestamp,
        "DATE" => ColumnKind::Date,
        "TIME" => ColumnKind::Time,
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY" => {
            ColumnKind::Bytes
        }
        _ => ColumnKind::Other,
    }
}

fn undecodable(error: impl std::fmt::Display) -> SqlValue {
    SqlValue::Undecodable(error.to_string())
}

/// Reads `Option<T>` and maps it, turning NULL into [`SqlValue::Null`].
macro_rules! read {
    ($row:expr, $index:expr, $type:ty, $map:expr) => {
        match $row.try_get::<Option<$type>, _>($index) {
            Ok(Some(value)) => $map(value),
            Ok(None) => SqlValue::Null,
            Err(error) => undecodable(error),
        }
    };
}

/// Reads an array whose elements may be NULL.
macro_rules! read_array {
    ($row:expr, $index:expr, $type:ty, $map:expr) => {
        read!($row, $index, Vec<Option<$type>>, |items: Vec<
            Option<$type>,
        >| {
            SqlValue::Array(
                items
                    .into_iter()
                    .map(|item| item.map_or(SqlValue::Null, $map))
                    .collect(),
            )
        })
    };
}

fn pg_value(row: &PgRow, index: usize, kind: ColumnKind) -> SqlValue {
    match kind {
        ColumnKind::Bool => read!(row, index, bool, SqlValue::Bool),
        ColumnKind::I16 => read!(row, index, i16, |v: i16| SqlValue::Int(v.into())),
        ColumnKind::I32 => read!(row, index, i32, |v: i32| SqlValue::Int(v.into())),
        ColumnKind::I64 => read!(row, index, i64, SqlValue::Int),
        ColumnKind::U64 => read!(row, index, i64, SqlValue::Int),
        ColumnKind::F32 => read!(row, index, f32, |v: f32| SqlValue::Float(v.into())),
        ColumnKind::F64 => read!(row, index, f64, SqlValue::Float),
        ColumnKind::Decimal => read!(row, index, Decimal, SqlValue::Decimal),
        ColumnKind::Text => read!(row, index, String, SqlValue::Text),
        ColumnKind::Uuid => read!(row, index, uuid::Uuid, |v: uuid::Uuid| SqlValue::Text(
            v.to_string()
        )),
        ColumnKind::Json => read!(row, index, serde_json::Value, SqlValue::Json),
        ColumnKind::TimestampTz => read!(row, index, DateTime<Utc>, SqlValue::Timestamp),
        ColumnKind::Timestamp => read!(row, index, NaiveDateTime, SqlValue::LocalTimestamp),
        ColumnKind::Date => read!(row, index, NaiveDate, SqlValue::Date),
        ColumnKind::Time => read!(row, index, NaiveTime, SqlValue::Time),
        ColumnKind::Bytes => read!(row, index, Vec<u8>, SqlValue::Bytes),
        ColumnKind::Array(ArrayKind::Bool) => read_array!(row, index, bool, SqlValue::Bool),
        ColumnKind::Array(ArrayKind::I16) => {
            read_array!(row, index, i16, |v: i16| SqlValue::Int(v.into()))
        }
        ColumnKind::Array(ArrayKind::I32) => {
            read_array!(row, index, i32, |v: i32| SqlValue::Int(v.into()))
        }
        ColumnKind::Array(ArrayKind::I64) => read_array!(row, index, i64, SqlValue::Int),
        ColumnKind::Array(ArrayKind::F64) => read_array!(row, index, f64, SqlValue::Float),
        ColumnKind::Array(ArrayKind::Decimal) => {
            read_array!(row, index, Decimal, SqlValue::Decimal)
        }
        ColumnKind::Array(ArrayKind::Text) => read_array!(row, index, String, SqlValue::Text),
        ColumnKind::Array(ArrayKind::Uuid) => {
            read_array!(row, index, uuid::Uuid, |v: uuid::Uuid| SqlValue::Text(
                v.to_string()
            ))
        }
        ColumnKind::Array(ArrayKind::Json) => {
            read_array!(row, index, serde_json::Value, SqlValue::Json)
        }
        ColumnKind::Array(ArrayKind::TimestampTz) => {
            read_array!(row, index, DateTime<Utc>, SqlValue::Timestamp)
        }
        ColumnKind::Array(ArrayKind::Timestamp) => {
            read_array!(row, index, NaiveDateTime, SqlValue::LocalTimestamp)
        }
        ColumnKind::Array(ArrayKind::Date) => read_array!(row, index, NaiveDate, SqlValue::Date),
        // Enums travel as their label's text; other types' binary forms are
        // not text, so they are refused rather than indexed as garbage.
        ColumnKind::Other => {
            let type_info = row.column(index).type_info();
            if !matches!(type_info.kind(), sqlx::postgres::PgTypeKind::Enum(_)) {
                return match row.try_get_raw(index) {
                    Ok(raw) if raw.is_null() => SqlValue::Null,
                    _ => undecodable(format!(
                        "unsupported column type {}; cast it to text in a custom query",
                        type_info.name()
                    )),
                };
            }
            match row.try_get_unchecked::<Option<String>, _>(index) {
                Ok(Some(text)) => SqlValue::Text(text),
                Ok(None) => SqlValue::Null,
                Err(error) => undecodable(error),
            }
        }
    }
}

fn mysql_value(row: &MySqlRow, index: usize, kind: ColumnKind) -> SqlValue {
    match kind {
        ColumnKind::Bool => read!(row, index, bool, SqlValue::Bool),
        ColumnKind::I16 | ColumnKind::I32 | ColumnKind::I64 => {
            read!(row, index, i64, SqlValue::Int)
        }
        ColumnKind::U64 => read!(row, index, u64, |v: u64| i64::try_from(v)
            .map_or(SqlValue::UInt(v), SqlValue::Int)),
        ColumnKind::F32 => read!(row, index, f32, |v: f32| SqlValue::Float(v.into())),
        ColumnKind::F64 => read!(row, index, f64, SqlValue::Float),
        ColumnKind::Decimal => read!(row, index, Decimal, SqlValue::Decimal),
        ColumnKind::Json => read!(row, index, serde_json::Value, SqlValue::Json),
        ColumnKind::TimestampTz => read!(row, index, DateTime<Utc>, SqlValue::Timestamp),
        ColumnKind::Timestamp => read!(row, index, NaiveDateTime, SqlValue::LocalTimestamp),
        ColumnKind::Date => read!(row, index, NaiveDate, SqlValue::Date),
        ColumnKind::Time => read!(row, index, NaiveTime, SqlValue::Time),
        // MySQL flags text with a `_bin` collation (and MariaDB's JSON) as
        // binary; the driver knows the real collation: text unless truly binary.
        ColumnKind::Bytes => match row.try_get::<Option<String>, _>(index) {
            Ok(Some(text)) => SqlValue::Text(text),
            Ok(None) => SqlValue::Null,
            Err(_) => read!(row, index, Vec<u8>, SqlValue::Bytes),
        },
        ColumnKind::Text | ColumnKind::Uuid | ColumnKind::Other | ColumnKind::Array(_) => {
            match row.try_get_unchecked::<Option<String>, _>(index) {
                Ok(Some(text)) => SqlValue::Text(text),
                Ok(None) => SqlValue::Null,
                Err(error) => undecodable(error),
            }
        }
    }
}

/// SQLite is dynamically typed: decode by each value's own storage class.
fn sqlite_row(row: &SqliteRow) -> Row {
    let columns: Arc<[String]> = row
        .columns()
        .iter()
        .map(|column| column.name().to_owned())
        .collect();
    let values = (0..columns.len())
        .map(|index| {
            let storage = match row.try_get_raw(index) {
                Ok(raw) if raw.is_null() => return SqlValue::Null,
                Ok(raw) => raw.type_info().name().to_owned(),
                Err(error) => return undecodable(error),
            };
            let declared = row.column(index).type_info().name().to_ascii_uppercase();
            match storage.as_str() {
                "INTEGER" if declared == "BOOLEAN" => read!(row, index, bool, SqlValue::Bool),
                "INTEGER" => read!(row, index, i64, SqlValue::Int),
                "REAL" => read!(row, index, f64, SqlValue::Float),
                "BLOB" => read!(row, index, Vec<u8>, SqlValue::Bytes),
                _ => read!(row, index, String, SqlValue::Text),
            }
        })
        .collect();
    Row { columns, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> MappingConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn table_queries_per_dialect() {
        let table = mapping(
            "topics: [t]\ntable: shop.orders\ncolumns: [id, version]\nindex: orders\nversion: {column: version, kind: counter}",
        );
        assert_eq!(
            RowReader::new(&table, Dialect::Postgres, 1000).sql_for(3),
            r#"SELECT "id", "version" FROM "shop"."orders" WHERE "id" = ANY($1::int8[])"#
        );
        assert_eq!(
            RowReader::new(&table, Dialect::MySql, 1000).sql_for(3),
            "SELECT `id`, `version` FROM `shop`.`orders` WHERE `id` IN (?, ?, ?)"
        );
        let all = mapping(
            "topics: [t]\ntable: items\nid: {column: sku, type: string}\nindex: items\nversion: {column: v, kind: counter}",
        );
        assert_eq!(
            RowReader::new(&all, Dialect::Postgres, 1000).sql_for(1),
            r#"SELECT * FROM "items" WHERE "sku" = ANY($1::text[])"#
        );
        assert_eq!(
            RowReader::new(&all, Dialect::Sqlite, 1000).sql_for(2),
            r#"SELECT * FROM "items" WHERE "sku" IN (?, ?)"#
        );
    }

    #[test]
    fn custom_queries_get_placeholders() {
        let custom = mapping(
            "topics: [t]\nquery: SELECT o.id, c.name FROM o JOIN c ON c.id = o.cid WHERE o.id IN {ids}\nindex: o\nversion: {column: v, kind: counter}",
        );
        assert_eq!(
            RowReader::new(&custom, Dialect::Postgres, 10).sql_for(5),
            "SELECT o.id, c.name FROM o JOIN c ON c.id = o.cid WHERE o.id IN (SELECT unnest($1::int8[]))"
        );
        assert!(
            RowReader::new(&custom, Dialect::MySql, 10)
                .sql_for(2)
                .ends_with("WHERE o.id IN (?, ?)")
        );
    }

    /// SQLite needs no server: the chunked re-read path, end to end.
    #[tokio::test]
    async fn sqlite_rows_are_read_in_chunks_by_value_type() {
        let database =
            Database::connect(&Secret::new("sqlite::memory:"), 1, Duration::from_secs(5))
                .await
                .unwrap();
        let Database::Sqlite(pool) = &database else {
            panic!("sqlite")
        };
        sqlx::raw_sql(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB, active BOOLEAN, version INTEGER);
             INSERT INTO items VALUES (1, 'a', 1.5, x'00ff', 1, 3), (2, NULL, 2.0, NULL, 0, 4), (5, 'e', 0.5, NULL, 1, 1);",
        )
        .execute(pool)
        .await
        .unwrap();
        let items = mapping(
            "topics: [t]\ntable: items\nindex: items\nversion: {column: version, kind: counter}",
        );
        let reader = RowReader::new(&items, Dialect::Sqlite, 2);
        let ids: Vec<Id> = [1, 2, 3, 5].into_iter().map(Id::Int).collect();
        let rows = reader.fetch(&database, &ids).await.unwrap();
        assert_eq!(rows.len(), 3, "id 3 has no row; two chunks of two ids");
        let first = rows
            .iter()
            .find(|row| row.get("id") == Some(&SqlValue::Int(1)))
            .unwrap();
        assert_eq!(first.get("name"), Some(&SqlValue::Text("a".into())));
        assert_eq!(first.get("price"), Some(&SqlValue::Float(1.5)));
        assert_eq!(first.get("data"), Some(&SqlValue::Bytes(vec![0, 255])));
        assert_eq!(first.get("active"), Some(&SqlValue::Bool(true)));
        let second = rows
            .iter()
            .find(|row| row.get("id") == Some(&SqlValue::Int(2)))
            .unwrap();
        assert_eq!(second.get("name"), Some(&SqlValue::Null));
    }

    #[test]
    fn identifiers_are_quoted_safely() {
        assert_eq!(
            quote_identifier(Dialect::Postgres, r#"we"ird"#),
            r#""we""ird""#
        );
        assert_eq!(quote_identifier(Dialect::MySql, "a`b"), "`a``b`");
    }

    #[test]
    fn column_kinds() {
        assert_eq!(pg_column_kind("INT4[]"), ColumnKind::Array(ArrayKind::I32));
        assert_eq!(pg_column_kind("order_status"), ColumnKind::Other);
        assert_eq!(mysql_column_kind("BIGINT UNSIGNED"), ColumnKind::U64);
        assert_eq!(mysql_column_kind("BOOLEAN"), ColumnKind::Bool);
    }
}
