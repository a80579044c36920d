//! Driver rows to [`Row`]s: the per-column type conversion of the re-read,
//! used for every result the [`super::exec`] layer returns.
//!
//! Column types are looked up once per result, not per value. A value that
//! cannot be converted becomes [`SqlValue::Undecodable`], so one odd row is
//! dead-lettered instead of failing its whole batch.

use crate::document::{Row, SqlValue};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rust_decimal::Decimal;
use sqlx::mysql::MySqlRow;
use sqlx::postgres::{PgRow, Postgres};
use sqlx::sqlite::SqliteRow;
use sqlx::{Column as _, Decode, Row as _, Type, TypeInfo as _, ValueRef as _};
use std::sync::Arc;

/// Converts a driver's rows into [`Row`]s.
pub(super) trait ToRows: Sized {
    /// The rows, converted column by column.
    fn to_rows(rows: &[Self]) -> Vec<Row>;
}

impl ToRows for PgRow {
    fn to_rows(rows: &[Self]) -> Vec<Row> {
        convert_rows(rows, pg_column_kind, pg_value)
    }
}

impl ToRows for MySqlRow {
    fn to_rows(rows: &[Self]) -> Vec<Row> {
        convert_rows(rows, mysql_column_kind, mysql_value)
    }
}

impl ToRows for SqliteRow {
    fn to_rows(rows: &[Self]) -> Vec<Row> {
        rows.iter().map(sqlite_row).collect()
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
fn read<'r, R, T>(row: &'r R, index: usize, map: impl FnOnce(T) -> SqlValue) -> SqlValue
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    match row.try_get::<Option<T>, _>(index) {
        Ok(Some(value)) => map(value),
        Ok(None) => SqlValue::Null,
        Err(error) => undecodable(error),
    }
}

/// Reads a PostgreSQL array whose elements may be NULL.
fn read_array<'r, T>(row: &'r PgRow, index: usize, map: impl Fn(T) -> SqlValue) -> SqlValue
where
    Vec<Option<T>>: Decode<'r, Postgres> + Type<Postgres>,
{
    read(row, index, |items: Vec<Option<T>>| {
        SqlValue::Array(
            items
                .into_iter()
                .map(|item| item.map_or(SqlValue::Null, &map))
                .collect(),
        )
    })
}

fn pg_value(row: &PgRow, index: usize, kind: ColumnKind) -> SqlValue {
    match kind {
        ColumnKind::Bool => read::<_, bool>(row, index, SqlValue::Bool),
        ColumnKind::I16 => read::<_, i16>(row, index, |v: i16| SqlValue::Int(v.into())),
        ColumnKind::I32 => read::<_, i32>(row, index, |v: i32| SqlValue::Int(v.into())),
        ColumnKind::I64 => read::<_, i64>(row, index, SqlValue::Int),
        ColumnKind::U64 => read::<_, i64>(row, index, SqlValue::Int),
        ColumnKind::F32 => read::<_, f32>(row, index, |v: f32| SqlValue::Float(v.into())),
        ColumnKind::F64 => read::<_, f64>(row, index, SqlValue::Float),
        ColumnKind::Decimal => read::<_, Decimal>(row, index, SqlValue::Decimal),
        ColumnKind::Text => read::<_, String>(row, index, SqlValue::Text),
        ColumnKind::Uuid => {
            read::<_, uuid::Uuid>(row, index, |v: uuid::Uuid| SqlValue::Text(v.to_string()))
        }
        ColumnKind::Json => read::<_, serde_json::Value>(row, index, SqlValue::Json),
        ColumnKind::TimestampTz => read::<_, DateTime<Utc>>(row, index, SqlValue::Timestamp),
        ColumnKind::Timestamp => read::<_, NaiveDateTime>(row, index, SqlValue::LocalTimestamp),
        ColumnKind::Date => read::<_, NaiveDate>(row, index, SqlValue::Date),
        ColumnKind::Time => read::<_, NaiveTime>(row, index, SqlValue::Time),
        ColumnKind::Bytes => read::<_, Vec<u8>>(row, index, SqlValue::Bytes),
        ColumnKind::Array(ArrayKind::Bool) => read_array::<bool>(row, index, SqlValue::Bool),
        ColumnKind::Array(ArrayKind::I16) => {
            read_array::<i16>(row, index, |v: i16| SqlValue::Int(v.into()))
        }
        ColumnKind::Array(ArrayKind::I32) => {
            read_array::<i32>(row, index, |v: i32| SqlValue::Int(v.into()))
        }
        ColumnKind::Array(ArrayKind::I64) => read_array::<i64>(row, index, SqlValue::Int),
        ColumnKind::Array(ArrayKind::F64) => read_array::<f64>(row, index, SqlValue::Float),
        ColumnKind::Array(ArrayKind::Decimal) => {
            read_array::<Decimal>(row, index, SqlValue::Decimal)
        }
        ColumnKind::Array(ArrayKind::Text) => read_array::<String>(row, index, SqlValue::Text),
        ColumnKind::Array(ArrayKind::Uuid) => {
            read_array::<uuid::Uuid>(row, index, |v: uuid::Uuid| SqlValue::Text(v.to_string()))
        }
        ColumnKind::Array(ArrayKind::Json) => {
            read_array::<serde_json::Value>(row, index, SqlValue::Json)
        }
        ColumnKind::Array(ArrayKind::TimestampTz) => {
            read_array::<DateTime<Utc>>(row, index, SqlValue::Timestamp)
        }
        ColumnKind::Array(ArrayKind::Timestamp) => {
            read_array::<NaiveDateTime>(row, index, SqlValue::LocalTimestamp)
        }
        ColumnKind::Array(ArrayKind::Date) => read_array::<NaiveDate>(row, index, SqlValue::Date),
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
        ColumnKind::Bool => read::<_, bool>(row, index, SqlValue::Bool),
        ColumnKind::I16 | ColumnKind::I32 | ColumnKind::I64 => {
            read::<_, i64>(row, index, SqlValue::Int)
        }
        ColumnKind::U64 => read::<_, u64>(row, index, |v: u64| {
            i64::try_from(v).map_or(SqlValue::UInt(v), SqlValue::Int)
        }),
        ColumnKind::F32 => read::<_, f32>(row, index, |v: f32| SqlValue::Float(v.into())),
        ColumnKind::F64 => read::<_, f64>(row, index, SqlValue::Float),
        ColumnKind::Decimal => read::<_, Decimal>(row, index, SqlValue::Decimal),
        ColumnKind::Json => read::<_, serde_json::Value>(row, index, SqlValue::Json),
        ColumnKind::TimestampTz => read::<_, DateTime<Utc>>(row, index, SqlValue::Timestamp),
        ColumnKind::Timestamp => read::<_, NaiveDateTime>(row, index, SqlValue::LocalTimestamp),
        ColumnKind::Date => read::<_, NaiveDate>(row, index, SqlValue::Date),
        ColumnKind::Time => read::<_, NaiveTime>(row, index, SqlValue::Time),
        // MySQL flags text with a `_bin` collation (and MariaDB's JSON) as
        // binary; the driver knows the real collation: text unless truly binary.
        ColumnKind::Bytes => match row.try_get::<Option<String>, _>(index) {
            Ok(Some(text)) => SqlValue::Text(text),
            Ok(None) => SqlValue::Null,
            Err(_) => read::<_, Vec<u8>>(row, index, SqlValue::Bytes),
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
                "INTEGER" if declared == "BOOLEAN" => read::<_, bool>(row, index, SqlValue::Bool),
                "INTEGER" => read::<_, i64>(row, index, SqlValue::Int),
                "REAL" => read::<_, f64>(row, index, SqlValue::Float),
                "BLOB" => read::<_, Vec<u8>>(row, index, SqlValue::Bytes),
                _ => read::<_, String>(row, index, SqlValue::Text),
            }
        })
        .collect();
    Row { columns, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_kinds() {
        assert_eq!(pg_column_kind("INT4[]"), ColumnKind::Array(ArrayKind::I32));
        assert_eq!(pg_column_kind("order_status"), ColumnKind::Other);
        assert_eq!(mysql_column_kind("BIGINT UNSIGNED"), ColumnKind::U64);
        assert_eq!(mysql_column_kind("BOOLEAN"), ColumnKind::Bool);
    }
}
