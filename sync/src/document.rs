//! Turning re-read database rows into Elasticsearch bulk actions.
//!
//! Pure: rows arrive as neutral [`SqlValue`]s (the database adapter converts
//! driver types), and the decisions live here: which ids become index or delete
//! actions, with which external version, routing and JSON body. No I/O, no clock
//! (the caller passes `now`).

use crate::id::{Id, IdType};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A database value, independent of the driver it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer of any width.
    Int(i64),
    /// An unsigned integer too large for `i64` (MySQL `BIGINT UNSIGNED`).
    UInt(u64),
    /// A floating point number.
    Float(f64),
    /// An exact decimal (`NUMERIC`, `DECIMAL`).
    Decimal(rust_decimal::Decimal),
    /// Text of any kind (also enums, uuids, intervals rendered as text).
    Text(String),
    /// Binary data; indexed as base64, as Elasticsearch's `binary` type expects.
    Bytes(Vec<u8>),
    /// A JSON document (`json`, `jsonb`, MySQL `JSON`).
    Json(Value),
    /// A timestamp with time zone, normalised to UTC.
    Timestamp(DateTime<Utc>),
    /// A timestamp without time zone; taken to be UTC.
    LocalTimestamp(NaiveDateTime),
    /// A calendar date.
    Date(NaiveDate),
    /// A time of day.
    Time(NaiveTime),
    /// An array (Postgres arrays).
    Array(Vec<SqlValue>),
    /// A value the database adapter could not convert; the row is dead-lettered
    /// with this reason instead of being indexed wrongly.
    Undecodable(String),
}

impl SqlValue {
    /// The JSON form indexed into Elasticsearch: numbers stay numbers (decimals
    /// become IEEE doubles, as Elasticsearch's `double`/`scaled_float` store
    /// them), timestamps become RFC 3339 in UTC with microseconds, binary
    /// becomes base64, JSON stays nested.
    pub fn to_json(&self) -> Value {
        use base64::Engine as _;
        match self {
            SqlValue::Null => Value::Null,
            SqlValue::Bool(flag) => Value::Bool(*flag),
            SqlValue::Int(int) => Value::from(*int),
            SqlValue::UInt(int) => Value::from(*int),
            // JSON has no NaN or infinity: index them as null rather than fail the row.
            SqlValue::Float(float) => {
                serde_json::Number::from_f64(*float).map_or(Value::Null, Value::Number)
            }
            SqlValue::Decimal(decimal) => {
                use rust_decimal::prelude::ToPrimitive as _;
                decimal
                    .to_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(decimal.to_string()), Value::Number)
            }
            SqlValue::Text(text) => Value::String(text.clone()),
            SqlValue::Bytes(bytes) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            SqlValue::Json(json) => json.clone(),
            SqlValue::Timestamp(at) => {
                Value::String(at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            SqlValue::LocalTimestamp(at) => {
                Value::String(at.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            SqlValue::Date(date) => Value::String(date.format("%Y-%m-%d").to_string()),
            SqlValue::Time(time) => Value::String(time.format("%H:%M:%S%.f").to_string()),
            SqlValue::Array(items) => Value::Array(items.iter().map(SqlValue::to_json).collect()),
            SqlValue::Undecodable(_) => Value::Null,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, SqlValue::Null)
    }

    /// Microseconds since the Unix epoch, for timestamp values.
    fn as_timestamp_micros(&self) -> Option<i64> {
        match self {
            SqlValue::Timestamp(at) => Some(at.timestamp_micros()),
            SqlValue::LocalTimestamp(at) => Some(at.and_utc().timestamp_micros()),
            _ => None,
        }
    }
}

/// One row as read from the database: column names shared by every row of a
/// result, values in the same order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Column names, as the query returned them.
    pub columns: Arc<[String]>,
    /// One value per column.
    pub values: Vec<SqlValue>,
}

impl Row {
    /// The value of `column`, if the row has it.
    pub fn get(&self, column: &str) -> Option<&SqlValue> {
        self.columns
            .iter()
            .position(|name| name == column)
            .map(|index| &self.values[index])
    }
}

/// What the version column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionKind {
    /// A non-negative integer that every change increments.
    Counter,
    /// A timestamp set on every change (`updated_at`), used in microseconds.
    Timestamp,
}

/// How deleted rows are recognised.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeleteStrategy {
    /// A row that is gone from the table is deleted from the index.
    Hard,
    /// A row whose `column` is set (not NULL, not false, not a numeric zero of
    /// any type, not empty or `"0"`/`"false"` text) is deleted from the index;
    /// rows gone from the table are deleted too.
    Soft {
        /// The soft-delete column, e.g. `deleted_at` or `is_deleted`.
        column: String,
    },
}

/// How one mapping's rows become documents.
#[derive(Debug, Clone)]
pub struct DocumentSpec {
    /// Target index or alias.
    pub index: Arc<str>,
    /// Column holding the row id.
    pub id_column: String,
    /// Declared id type.
    pub id_type: IdType,
    /// Column holding the version.
    pub version_column: String,
    /// What the version column holds.
    pub version_kind: VersionKind,
    /// Optional column whose value is the routing key.
    pub routing_column: Option<String>,
    /// How deletes are recognised.
    pub delete: DeleteStrategy,
    /// Column -> field renames.
    pub renames: HashMap<String, String>,
    /// Columns left out of the document.
    pub exclude: HashSet<String>,
    /// Text columns holding JSON (e.g. MariaDB `JSON`, which is `LONGTEXT`).
    pub json_columns: HashSet<String>,
    /// Optional timestamp column used to measure end-to-end lag.
    pub lag_column: Option<String>,
}

/// A write to Elasticsearch, always with an external version.
#[derive(Debug, Clone, PartialEq)]
pub enum BulkAction {
    /// Index (create or replace) a document.
    Index {
        /// Target index or alias.
        index: Arc<str>,
        /// Document id.
        id: String,
        /// External version (`version_type=external_gte`).
        version: u64,
        /// Routing key.
        routing: Option<String>,
        /// The document body.
        source: Map<String, Value>,
    },
    /// Delete a document.
    Delete {
        /// Target index or alias.
        index: Arc<str>,
        /// Document id.
        id: String,
        /// External version (`version_type=external_gte`).
        version: u64,
        /// Routing key.
        routing: Option<String>,
    },
}

impl BulkAction {
    /// The same action aimed at another index (a dual write).
    pub fn retargeted(&self, target: Arc<str>) -> BulkAction {
        let mut action = self.clone();
        match &mut action {
            BulkAction::Index { index, .. } | BulkAction::Delete { index, .. } => *index = target,
        }
        action
    }

    /// The document id the action writes.
    pub fn doc_id(&self) -> &str {
        match self {
            BulkAction::Index { id, .. } | BulkAction::Delete { id, .. } => id,
        }
    }

    /// True for deletes.
    pub fn is_delete(&self) -> bool {
        matches!(self, BulkAction::Delete { .. })
    }

    /// The target index or alias.
    pub fn index(&self) -> &str {
        match self {
            BulkAction::Index { index, .. } | BulkAction::Delete { index, .. } => index,
        }
    }

    /// The external version the action is sent with.
    pub fn version(&self) -> u64 {
        match self {
            BulkAction::Index { version, .. } | BulkAction::Delete { version, .. } => *version,
        }
    }

    /// The routing key, if any.
    pub fn routing(&self) -> Option<&str> {
        match self {
            BulkAction::Index { routing, .. } | BulkAction::Delete { routing, .. } => {
                routing.as_deref()
            }
        }
    }
}

/// Why a row cannot be written safely; such ids are dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Without a version an older state could overwrite a newer one.
    #[error("version column {0} is NULL")]
    NullVersion(String),
    /// The version column has a value esync cannot turn into a version.
    #[error("version column {column} holds {found}, expected {expected}")]
    BadVersion {
        /// The column.
        column: String,
        /// What was found.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The re-read query returned no id column.
    #[error("the re-read query returned no column {0}")]
    MissingColumn(String),
    /// A column value could not be read from the database.
    #[error("column {column}: {reason}")]
    Undecodable {
        /// The column.
        column: String,
        /// The adapter's reason.
        reason: String,
    },
    /// The re-read query returned several rows for one id (a join fanning out).
    #[error("the re-read query returned {0} rows for this id")]
    DuplicateRows(usize),
    /// No re-read row carries exactly this id, but the re-read returned rows
    /// whose id matches no requested id: this id's row may be among them, read
    /// back in a form that does not equal the id (a type, collation or
    /// padding the id does not round-trip through). Deleting it could delete
    /// a live row's document, so it is dead-lettered instead.
    #[error(
        "no re-read row has exactly this id, but the re-read returned row(s) with id(s) {found} that match no requested id; not deleted (run esync check: the id does not round-trip)"
    )]
    UnmatchedId {
        /// The unmatched rows' id values (a few, as JSON), for the message.
        found: String,
    },
}

impl DocumentError {
    /// Short, stable code for dead-letter headers and metric labels:
    /// `unmatched_id` for [`DocumentError::UnmatchedId`], `unwritable_row`
    /// for the rest.
    pub fn reason_code(&self) -> &'static str {
        match self {
            DocumentError::UnmatchedId { .. } => "unmatched_id",
            _ => "unwritable_row",
        }
    }
}

/// The decision for one requested id.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The id.
    pub id: Id,
    /// The action to send, or why the id cannot be written.
    pub action: Result<BulkAction, DocumentError>,
    /// The row's lag-column timestamp in microseconds, when configured and set.
    pub changed_at_micros: Option<i64>,
    /// True for the delete of a row that is gone (version = `now_micros`, not
    /// the row's): if the index holds a newer version, the writer re-sends it
    /// above that version ([`crate::bulk::decide_conflict`]).
    pub row_gone: bool,
}

/// Decides the action for every requested id from the rows re-read for them.
///
/// A requested id without a row is deleted with version `now_micros`: a delete
/// must be newer than any earlier write of the document, and rows carry
/// versions from their own past. Which row belongs to which id is decided by
/// [`match_rows`]; an id that cannot be matched safely is an error (dead
/// letter), never a delete.
pub fn plan_actions(
    spec: &DocumentSpec,
    ids: &[Id],
    rows: Vec<Row>,
    now_micros: u64,
) -> Vec<Planned> {
    let index = &spec.index;
    match_rows(spec, ids, rows)
        .into_iter()
        .map(|(id, matched)| match matched {
            Ok(Some(row)) => plan_row(spec, index, &id, row),
            Ok(None) => Planned {
                action: Ok(BulkAction::Delete {
                    index: index.clone(),
                    id: id.to_doc_id(),
                    version: now_micros,
                    // the row is gone, so its routing is unknown (see README, "Deletes")
                    routing: None,
                }),
                id,
                changed_at_micros: None,
                row_gone: true,
            },
            Err(error) => Planned {
                id,
                action: Err(error),
                changed_at_micros: None,
                row_gone: false,
            },
        })
        .collect()
}

/// The row of a requested id: `Ok(Some(row))`, `Ok(None)` when its row is
/// gone, or why that cannot be told safely.
pub type RowMatch = Result<Option<Row>, DocumentError>;

/// Which re-read row belongs to each requested id, in the order of `ids`.
///
/// A row belongs to the id it carries ([`row_id`]), compared exactly: byte
/// for byte for string ids. One tolerance: `CHAR(n)` padding. CHAR columns
/// compare without their trailing spaces (PostgreSQL returns the pad, MySQL
/// strips it), so a row the database returned whose string id differs from
/// a requested id only in trailing spaces, and that no requested id matches
/// exactly, belongs to that requested id; the id as announced stays the
/// document id. A requested id without a row is gone only when every
/// returned row was attributed; a row left over may be its row in a form
/// that does not round-trip, so the id becomes [`DocumentError::UnmatchedId`].
pub fn match_rows(spec: &DocumentSpec, ids: &[Id], rows: Vec<Row>) -> Vec<(Id, RowMatch)> {
    let requested: HashSet<&Id> = ids.iter().collect();
    let mut exact: HashMap<Id, Vec<Row>> = HashMap::with_capacity(rows.len());
    // rows whose id is no requested id, or no id of the declared type at all
    let mut stray: Vec<(Option<Id>, Row)> = Vec::new();
    let mut id_column_missing = false;
    for row in rows {
        let Some(value) = row.get(&spec.id_column) else {
            id_column_missing = true;
            continue;
        };
        match row_id(value, spec.id_type) {
            Some(id) if requested.contains(&id) => exact.entry(id).or_default().push(row),
            id => stray.push((id, row)),
        }
    }
    // padded candidates first, so that a row attributed to one id does not
    // make another id unmatched
    let padded: Vec<Vec<usize>> = ids
        .iter()
        .map(|id| match id {
            Id::Str(text) if !exact.contains_key(id) => padded_rows(text, &stray),
            _ => Vec::new(),
        })
        .collect();
    let mut attributed = vec![false; stray.len()];
    for position in padded.iter().flatten() {
        attributed[*position] = true;
    }
    let unmatched: Vec<String> = stray
        .iter()
        .zip(&attributed)
        .filter(|(_, attributed)| !**attributed)
        .map(|((_, row), _)| {
            let value = row
                .get(&spec.id_column)
                .map_or(Value::Null, SqlValue::to_json);
            crate::id::truncate_for_message(&value.to_string())
        })
        .collect();
    ids.iter()
        .zip(padded)
        .map(|(id, padded)| {
            let matched = match (exact.remove(id), padded.as_slice()) {
                (Some(mut rows), _) if rows.len() == 1 => Ok(rows.pop()),
                (Some(rows), _) => Err(DocumentError::DuplicateRows(rows.len())),
                (None, _) if id_column_missing => {
                    Err(DocumentError::MissingColumn(spec.id_column.clone()))
                }
                (None, [position]) => Ok(Some(stray[*position].1.clone())),
                (None, [_, _, ..]) => Err(DocumentError::DuplicateRows(padded.len())),
                (None, []) if !unmatched.is_empty() => Err(DocumentError::UnmatchedId {
                    found: unmatched
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
                (None, []) => Ok(None),
            };
            (id.clone(), matched)
        })
        .collect()
}

/// Positions of the `stray` rows whose string id equals `requested` but for
/// trailing spaces (CHAR padding).
fn padded_rows(requested: &str, stray: &[(Option<Id>, Row)]) -> Vec<usize> {
    let unpadded = requested.trim_end_matches(' ');
    stray
        .iter()
        .enumerate()
        .filter(|(_, (found, _))| {
            matches!(found, Some(Id::Str(found)) if found.trim_end_matches(' ') == unpadded)
        })
        .map(|(position, _)| position)
        .collect()
}

fn plan_row(spec: &DocumentSpec, index: &Arc<str>, id: &Id, row: Row) -> Planned {
    let changed_at_micros = spec
        .lag_column
        .as_deref()
        .and_then(|column| row.get(column))
        .and_then(SqlValue::as_timestamp_micros);
    let undecodable = row
        .columns
        .iter()
        .zip(&row.values)
        .find_map(|(column, value)| match value {
            SqlValue::Undecodable(reason) => Some(DocumentError::Undecodable {
                column: column.clone(),
                reason: reason.clone(),
            }),
            _ => None,
        });
    if let Some(error) = undecodable {
        return Planned {
            id: id.clone(),
            action: Err(error),
            changed_at_micros,
            row_gone: false,
        };
    }
    let action = version_of(spec, &row).map(|version| {
        let routing = spec
            .routing_column
            .as_deref()
            .and_then(|column| row.get(column))
            .filter(|value| !value.is_null())
            .map(routing_text);
        if is_soft_deleted(spec, &row) {
            BulkAction::Delete {
                index: index.clone(),
                id: id.to_doc_id(),
                version,
                routing,
            }
        } else {
            BulkAction::Index {
                index: index.clone(),
                id: id.to_doc_id(),
                version,
                routing,
                source: to_source(spec, row),
            }
        }
    });
    Planned {
        id: id.clone(),
        action,
        changed_at_micros,
        row_gone: false,
    }
}

/// The id a re-read row carries in its id column, as an id of `id_type`, or
/// None when the value cannot be one: a decimal with a fraction, an unsigned
/// integer above 2^63-1 or text that is no integer for an integer id; NULL,
/// binary, floats and undecodable values for any id.
///
/// Integral `NUMERIC`/`DECIMAL` values are integer ids; for string ids,
/// numbers become their decimal text (an integral decimal without a
/// fraction: `NUMERIC(20,0)` 5 is `"5"`), text stays exact (uuids arrive as
/// their canonical lowercase text).
pub fn row_id(value: &SqlValue, id_type: IdType) -> Option<Id> {
    use rust_decimal::prelude::ToPrimitive as _;
    match (value, id_type) {
        (SqlValue::Int(int), IdType::Integer) => Some(Id::Int(*int)),
        (SqlValue::UInt(int), IdType::Integer) => i64::try_from(*int).ok().map(Id::Int),
        (SqlValue::Decimal(decimal), IdType::Integer) if decimal.fract().is_zero() => {
            decimal.to_i64().map(Id::Int)
        }
        (SqlValue::Text(text), id_type) => Id::parse(text, id_type).ok(),
        (SqlValue::Int(int), IdType::String) => Some(Id::Str(int.to_string().into())),
        (SqlValue::UInt(int), IdType::String) => Some(Id::Str(int.to_string().into())),
        (SqlValue::Decimal(decimal), IdType::String) if decimal.fract().is_zero() => {
            Some(Id::Str(decimal.trunc().normalize().to_string().into()))
        }
        (SqlValue::Decimal(decimal), IdType::String) => Some(Id::Str(decimal.to_string().into())),
        _ => None,
    }
}

fn version_of(spec: &DocumentSpec, row: &Row) -> Result<u64, DocumentError> {
    let column = &spec.version_column;
    let value = row
        .get(column)
        .ok_or_else(|| DocumentError::MissingColumn(column.clone()))?;
    let bad = |expected: &'static str| DocumentError::BadVersion {
        column: column.clone(),
        found: crate::id::truncate_for_message(&value.to_json().to_string()),
        expected,
    };
    match (spec.version_kind, value) {
        (_, SqlValue::Null) => Err(DocumentError::NullVersion(column.clone())),
        (VersionKind::Counter, SqlValue::Int(int)) => {
            u64::try_from(*int).map_err(|_| bad("a non-negative integer"))
        }
        (VersionKind::Counter, SqlValue::UInt(int)) => Ok(*int),
        (VersionKind::Counter, _) => Err(bad("a non-negative integer")),
        (VersionKind::Timestamp, value) => value
            .as_timestamp_micros()
            .and_then(|micros| u64::try_from(micros).ok())
            .ok_or_else(|| bad("a timestamp after 1970")),
    }
}

fn is_soft_deleted(spec: &DocumentSpec, row: &Row) -> bool {
    let DeleteStrategy::Soft { column } = &spec.delete else {
        return false;
    };
    match row.get(column) {
        None
        | Some(SqlValue::Null)
        | Some(SqlValue::Bool(false))
        | Some(SqlValue::Int(0))
        | Some(SqlValue::UInt(0)) => false,
        // a numeric zero of any type is "not deleted", like the integer 0
        Some(SqlValue::Decimal(decimal)) => !decimal.is_zero(),
        Some(SqlValue::Float(float)) => *float != 0.0,
        Some(SqlValue::Text(text)) => {
            !(text.is_empty() || text == "0" || text.eq_ignore_ascii_case("false"))
        }
        Some(_) => true,
    }
}

fn routing_text(value: &SqlValue) -> String {
    match value {
        SqlValue::Text(text) => text.clone(),
        other => match other.to_json() {
            Value::String(text) => text,
            json => json.to_string(),
        },
    }
}

fn to_source(spec: &DocumentSpec, row: Row) -> Map<String, Value> {
    let mut source = Map::with_capacity(row.values.len());
    for (column, value) in row.columns.iter().zip(row.values) {
        if spec.exclude.contains(column) {
            continue;
        }
        let json = match value {
            SqlValue::Text(text) if spec.json_columns.contains(column) => {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            }
            value => value.to_json(),
        };
        let field = spec.renames.get(column).unwrap_or(column);
        source.insert(field.clone(), json);
    }
    source
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> DocumentSpec {
        DocumentSpec {
            index: index(),
            id_column: "id".into(),
            id_type: IdType::Integer,
            version_column: "version".into(),
            version_kind: VersionKind::Counter,
            routing_column: None,
            delete: DeleteStrategy::Hard,
            renames: HashMap::new(),
            exclude: HashSet::new(),
            json_columns: HashSet::new(),
            lag_column: None,
        }
    }

    fn row(pairs: &[(&str, SqlValue)]) -> Row {
        Row {
            columns: pairs
                .iter()
                .map(|(name, _)| name.to_string())
                .collect::<Vec<_>>()
                .into(),
            values: pairs.iter().map(|(_, value)| value.clone()).collect(),
        }
    }

    fn index() -> Arc<str> {
        Arc::from("orders")
    }

    #[test]
    fn every_value_type_to_json() {
        let at = DateTime::parse_from_rfc3339("2024-03-01T10:20:30.123456+02:00")
            .unwrap()
            .with_timezone(&Utc);
        let cases = vec![
            (SqlValue::Null, json!(null)),
            (SqlValue::Bool(true), json!(true)),
            (SqlValue::Int(-5), json!(-5)),
            (SqlValue::UInt(u64::MAX), json!(u64::MAX)),
            (SqlValue::Float(1.5), json!(1.5)),
            (SqlValue::Float(f64::NAN), json!(null)),
            (SqlValue::Decimal("12.34".parse().unwrap()), json!(12.34)),
            (SqlValue::Text("héllo".into()), json!("héllo")),
            (SqlValue::Bytes(vec![0, 1, 255]), json!("AAH/")),
            (
                SqlValue::Json(json!({"a": [1, {"b": null}]})),
                json!({"a": [1, {"b": null}]}),
            ),
            (
                SqlValue::Timestamp(at),
                json!("2024-03-01T08:20:30.123456Z"),
            ),
            (
                SqlValue::LocalTimestamp(
                    NaiveDateTime::parse_from_str("2024-03-01 08:20:30", "%Y-%m-%d %H:%M:%S")
                        .unwrap(),
                ),
                json!("2024-03-01T08:20:30Z"),
            ),
            (
                SqlValue::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
                json!("2024-02-29"),
            ),
            (
                SqlValue::Time(NaiveTime::from_hms_micro_opt(23, 59, 1, 500).unwrap()),
                json!("23:59:01.000500"),
            ),
            (
                SqlValue::Array(vec![SqlValue::Int(1), SqlValue::Null, SqlValue::Int(3)]),
                json!([1, null, 3]),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(value.to_json(), expected, "{value:?}");
        }
    }

    #[test]
    fn found_rows_are_indexed_with_their_version() {
        let mut spec = spec();
        spec.renames.insert("total".into(), "amount".into());
        spec.exclude.insert("secret".into());
        spec.routing_column = Some("customer".into());
        let rows = vec![row(&[
            ("id", SqlValue::Int(1)),
            ("version", SqlValue::Int(7)),
            ("total", SqlValue::Decimal("9.5".parse().unwrap())),
            ("secret", SqlValue::Text("x".into())),
            ("customer", SqlValue::Int(33)),
        ])];
        let planned = plan_actions(&spec, &[Id::Int(1)], rows, 1_000);
        let Ok(BulkAction::Index {
            id,
            version,
            routing,
            source,
            ..
        }) = &planned[0].action
        else {
            panic!("expected index, got {planned:?}");
        };
        assert_eq!(
            (id.as_str(), *version, routing.as_deref()),
            ("1", 7, Some("33"))
        );
        assert_eq!(
            Value::Object(source.clone()),
            json!({"id": 1, "version": 7, "amount": 9.5, "customer": 33})
        );
    }

    #[test]
    fn missing_rows_become_deletes_newer_than_any_row() {
        let planned = plan_actions(
            &spec(),
            &[Id::Int(1), Id::Int(2)],
            vec![],
            1_700_000_000_000_000,
        );
        for planned in planned {
            assert_eq!(
                planned.action,
                Ok(BulkAction::Delete {
                    index: index(),
                    id: planned.id.to_string(),
                    version: 1_700_000_000_000_000,
                    routing: None
                })
            );
        }
    }

    #[test]
    fn soft_deleted_rows_become_deletes_with_the_row_version() {
        let mut spec = spec();
        spec.delete = DeleteStrategy::Soft {
            column: "deleted_at".into(),
        };
        let at = Utc::now();
        let cases = [
            (SqlValue::Null, false),
            (SqlValue::Bool(false), false),
            (SqlValue::Int(0), false),
            (SqlValue::Text("".into()), false),
            // issue 9, item 11: a numeric zero is not set
            (SqlValue::Decimal("0".parse().unwrap()), false),
            (SqlValue::Decimal("0.00".parse().unwrap()), false),
            (SqlValue::Float(0.0), false),
            (SqlValue::Float(-0.0), false),
            (SqlValue::Text("0".into()), false),
            (SqlValue::Bool(true), true),
            (SqlValue::Int(1), true),
            (SqlValue::UInt(1), true),
            (SqlValue::Decimal("0.01".parse().unwrap()), true),
            (SqlValue::Float(1.0), true),
            (SqlValue::Text("yes".into()), true),
            (SqlValue::Timestamp(at), true),
        ];
        for (flag, deleted) in cases {
            let rows = vec![row(&[
                ("id", SqlValue::Int(4)),
                ("version", SqlValue::Int(9)),
                ("deleted_at", flag.clone()),
            ])];
            let planned = plan_actions(&spec, &[Id::Int(4)], rows, 1);
            let action = planned[0].action.as_ref().unwrap();
            assert_eq!(action.is_delete(), deleted, "{flag:?}");
            if let BulkAction::Delete { version, .. } = action {
                assert_eq!(*version, 9);
            }
        }
    }

    #[test]
    fn timestamp_versions_are_microseconds() {
        let mut spec = spec();
        spec.version_kind = VersionKind::Timestamp;
        spec.lag_column = Some("version".into());
        let at = DateTime::parse_from_rfc3339("2024-01-01T00:00:00.000001Z")
            .unwrap()
            .with_timezone(&Utc);
        let rows = vec![row(&[
            ("id", SqlValue::Int(1)),
            ("version", SqlValue::Timestamp(at)),
        ])];
        let planned = plan_actions(&spec, &[Id::Int(1)], rows, 1);
        let Ok(BulkAction::Index { version, .. }) = planned[0].action else {
            panic!()
        };
        assert_eq!(version, 1_704_067_200_000_001);
        assert_eq!(planned[0].changed_at_micros, Some(1_704_067_200_000_001));
    }

    #[test]
    fn unusable_versions_are_errors_not_guesses() {
        let cases = [
            (VersionKind::Counter, SqlValue::Null, "NullVersion"),
            (VersionKind::Counter, SqlValue::Int(-1), "BadVersion"),
            (
                VersionKind::Counter,
                SqlValue::Text("7".into()),
                "BadVersion",
            ),
            (VersionKind::Timestamp, SqlValue::Int(5), "BadVersion"),
        ];
        for (kind, value, expected) in cases {
            let mut spec = spec();
            spec.version_kind = kind;
            let rows = vec![row(&[("id", SqlValue::Int(1)), ("version", value.clone())])];
            let planned = plan_actions(&spec, &[Id::Int(1)], rows, 1);
            let error = planned[0].action.clone().unwrap_err();
            assert!(
                format!("{error:?}").starts_with(expected),
                "{value:?}: {error:?}"
            );
        }
    }

    #[test]
    fn duplicate_rows_and_missing_id_column_are_errors() {
        let rows = vec![
            row(&[("id", SqlValue::Int(1)), ("version", SqlValue::Int(1))]),
            row(&[("id", SqlValue::Int(1)), ("version", SqlValue::Int(2))]),
        ];
        let planned = plan_actions(&spec(), &[Id::Int(1)], rows, 1);
        assert_eq!(planned[0].action, Err(DocumentError::DuplicateRows(2)));
        let rows = vec![row(&[
            ("key", SqlValue::Int(1)),
            ("version", SqlValue::Int(1)),
        ])];
        let planned = plan_actions(&spec(), &[Id::Int(1)], rows, 1);
        assert_eq!(
            planned[0].action,
            Err(DocumentError::MissingColumn("id".into()))
        );
    }

    /// Issue 9, item 1: a row whose id cannot be matched to the requested id
    /// must never turn the requested id into a delete.
    #[test]
    fn unmatched_rows_dead_letter_the_missing_ids_instead_of_deleting() {
        let cases = [
            (
                IdType::Integer,
                Id::Int(5),
                SqlValue::Decimal("5.5".parse().unwrap()),
            ),
            (IdType::Integer, Id::Int(5), SqlValue::Float(5.0)),
            (IdType::Integer, Id::Int(5), SqlValue::UInt(u64::MAX)),
            (IdType::Integer, Id::Int(5), SqlValue::Null),
            (
                IdType::Integer,
                Id::Int(5),
                SqlValue::Undecodable("odd".into()),
            ),
            (
                IdType::String,
                Id::Str("abc".into()),
                SqlValue::Text("ABC".into()),
            ),
            (
                IdType::String,
                Id::Str("abc".into()),
                SqlValue::Bytes(b"abc".to_vec()),
            ),
        ];
        for (id_type, requested, row_id) in cases {
            let mut spec = spec();
            spec.id_type = id_type;
            let rows = vec![row(&[
                ("id", row_id.clone()),
                ("version", SqlValue::Int(1)),
            ])];
            let planned = plan_actions(&spec, std::slice::from_ref(&requested), rows, 1);
            let Err(error) = &planned[0].action else {
                panic!("{row_id:?} for {requested:?}: expected a dead letter, got {planned:?}");
            };
            assert_eq!(error.reason_code(), "unmatched_id", "{row_id:?}: {error}");
        }
        // a row that is simply absent is still a delete, and one that matches
        // is indexed, in the same batch as an unmatched row of another id
        let rows = vec![
            row(&[("id", SqlValue::Int(1)), ("version", SqlValue::Int(1))]),
            row(&[
                ("id", SqlValue::Text("x".into())),
                ("version", SqlValue::Int(1)),
            ]),
        ];
        let planned = plan_actions(&spec(), &[Id::Int(1), Id::Int(2)], rows, 1);
        assert!(matches!(planned[0].action, Ok(BulkAction::Index { .. })));
        assert_eq!(
            planned[1]
                .action
                .as_ref()
                .map_err(DocumentError::reason_code),
            Err("unmatched_id"),
            "id 2 may be the unmatched row: not deleted"
        );
        let planned = plan_actions(&spec(), &[Id::Int(2)], vec![], 1);
        assert!(planned[0].action.as_ref().is_ok_and(BulkAction::is_delete));
    }

    /// Issue 9, item 1: integral NUMERIC/DECIMAL and unsigned ids match
    /// integer ids; uuids, numbers and decimals match string ids by their text.
    #[test]
    fn every_id_column_type_matches_its_requested_id() {
        let cases = [
            (
                IdType::Integer,
                Id::Int(5),
                SqlValue::Decimal("5".parse().unwrap()),
            ),
            (
                IdType::Integer,
                Id::Int(5),
                SqlValue::Decimal("5.00".parse().unwrap()),
            ),
            (
                IdType::Integer,
                Id::Int(i64::MAX),
                SqlValue::Decimal(i64::MAX.into()),
            ),
            (IdType::Integer, Id::Int(7), SqlValue::UInt(7)),
            (IdType::Integer, Id::Int(-7), SqlValue::Int(-7)),
            (IdType::Integer, Id::Int(7), SqlValue::Text("7".into())),
            (
                IdType::String,
                Id::Str("18446744073709551615".into()),
                SqlValue::UInt(u64::MAX),
            ),
            (
                IdType::String,
                Id::Str("12345678901234567890".into()),
                SqlValue::Decimal("12345678901234567890".parse().unwrap()),
            ),
            (IdType::String, Id::Str("42".into()), SqlValue::Int(42)),
            (
                IdType::String,
                Id::Str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
                SqlValue::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
            ),
        ];
        for (id_type, requested, row_id) in cases {
            let mut spec = spec();
            spec.id_type = id_type;
            let rows = vec![row(&[
                ("id", row_id.clone()),
                ("version", SqlValue::Int(1)),
            ])];
            let planned = plan_actions(&spec, std::slice::from_ref(&requested), rows, 1);
            match &planned[0].action {
                Ok(BulkAction::Index { id, .. }) => assert_eq!(id, &requested.to_doc_id()),
                other => panic!("{row_id:?} for {requested:?}: expected index, got {other:?}"),
            }
        }
    }

    /// Issue 9, item 2: string ids are matched byte for byte (leading and
    /// trailing spaces and tabs are part of the id) and are the document id.
    #[test]
    fn string_ids_are_matched_byte_for_byte() {
        let mut spec = spec();
        spec.id_type = IdType::String;
        let texts = [" a", "a ", "\ta\t", " a ", "a"];
        let rows: Vec<Row> = texts
            .iter()
            .enumerate()
            .map(|(version, text)| {
                row(&[
                    ("id", SqlValue::Text((*text).into())),
                    ("version", SqlValue::Int(version as i64)),
                ])
            })
            .collect();
        let requested: Vec<Id> = texts.iter().map(|text| Id::Str((*text).into())).collect();
        let planned = plan_actions(&spec, &requested, rows, 1);
        for (version, (planned, text)) in planned.iter().zip(texts).enumerate() {
            match &planned.action {
                Ok(BulkAction::Index { id, version: v, .. }) => {
                    assert_eq!((id.as_str(), *v), (text, version as u64))
                }
                other => panic!("{text:?}: expected index, got {other:?}"),
            }
        }
        // "\ta" requested while only "a" exists: no row of that id, a delete
        let rows = vec![row(&[
            ("id", SqlValue::Text("a".into())),
            ("version", SqlValue::Int(1)),
        ])];
        let planned = plan_actions(
            &spec,
            &[Id::Str("a".into()), Id::Str("\ta".into())],
            rows,
            1,
        );
        assert!(matches!(planned[0].action, Ok(BulkAction::Index { .. })));
        assert!(planned[1].action.as_ref().is_ok_and(BulkAction::is_delete));
    }

    /// Issue 9, item 1: CHAR(n) pads with spaces (PostgreSQL returns the pad,
    /// MySQL strips it, both compare without it): the database found the row
    /// for the requested id, so it is indexed under the id as announced.
    #[test]
    fn char_padded_ids_are_indexed_under_the_announced_id() {
        let mut spec = spec();
        spec.id_type = IdType::String;
        let cases = [("ab", "ab      "), ("ab  ", "ab"), ("ab ", "ab  ")];
        for (announced, returned) in cases {
            let rows = vec![row(&[
                ("id", SqlValue::Text(returned.into())),
                ("version", SqlValue::Int(3)),
            ])];
            let planned = plan_actions(&spec, &[Id::Str(announced.into())], rows, 1);
            match &planned[0].action {
                Ok(BulkAction::Index { id, version: 3, .. }) => assert_eq!(id, announced),
                other => panic!("{announced:?}/{returned:?}: expected index, got {other:?}"),
            }
        }
        // padding is trailing spaces only: a tab or a leading space is not a pad
        for (announced, returned) in [("ab", "ab\t"), ("ab", " ab")] {
            let rows = vec![row(&[
                ("id", SqlValue::Text(returned.into())),
                ("version", SqlValue::Int(3)),
            ])];
            let planned = plan_actions(&spec, &[Id::Str(announced.into())], rows, 1);
            assert_eq!(
                planned[0]
                    .action
                    .as_ref()
                    .map_err(DocumentError::reason_code),
                Err("unmatched_id"),
                "{announced:?}/{returned:?}"
            );
        }
    }

    #[test]
    fn string_ids_match_rows_and_json_columns_are_parsed() {
        let mut spec = spec();
        spec.id_type = IdType::String;
        spec.json_columns.insert("attrs".into());
        let rows = vec![
            row(&[
                ("id", SqlValue::Text("a-1".into())),
                ("version", SqlValue::Int(1)),
                ("attrs", SqlValue::Text(r#"{"k":[1]}"#.into())),
            ]),
            row(&[
                ("id", SqlValue::Text("not-asked".into())),
                ("version", SqlValue::Int(1)),
                ("attrs", SqlValue::Null),
            ]),
        ];
        let planned = plan_actions(&spec, &[Id::Str("a-1".into())], rows, 1);
        assert_eq!(planned.len(), 1);
        let Ok(BulkAction::Index { source, .. }) = &planned[0].action else {
            panic!()
        };
        assert_eq!(source["attrs"], json!({"k": [1]}));
    }
}

/// Delete ordering, shown on a model of Elasticsearch's external versioning
/// (the local test server keeps no delete tombstones, so this cannot be shown
/// against it): `version_type=external_gte` accepts a write when its version
/// is >= the stored one, and a delete leaves a tombstone with its version for
/// `index.gc_deletes`.
#[cfg(test)]
mod ordering_tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Stored {
        Document {
            version: u64,
            name: String,
        },
        Tombstone {
            version: u64,
            deleted_at_seconds: u64,
        },
    }

    /// One document's slot in the index.
    #[derive(Debug, Default)]
    struct ModelIndex {
        stored: Option<Stored>,
    }

    const GC_DELETES_SECONDS: u64 = 60;

    impl ModelIndex {
        fn current_version(&self, now_seconds: u64) -> Option<u64> {
            match &self.stored {
                Some(Stored::Document { version, .. }) => Some(*version),
                Some(Stored::Tombstone {
                    version,
                    deleted_at_seconds,
                }) if now_seconds < deleted_at_seconds + GC_DELETES_SECONDS => Some(*version),
                _ => None,
            }
        }

        /// Applies one action; false for a 409.
        fn apply(&mut self, action: &BulkAction, now_seconds: u64) -> bool {
            let version = action.version();
            if self
                .current_version(now_seconds)
                .is_some_and(|current| version < current)
            {
                return false;
            }
            self.stored = Some(match action {
                BulkAction::Index { source, .. } => Stored::Document {
                    version,
                    name: source["name"].as_str().unwrap_or_default().to_owned(),
                },
                BulkAction::Delete { .. } => Stored::Tombstone {
                    version,
                    deleted_at_seconds: now_seconds,
                },
            });
            true
        }

        /// What `_mget` reports: the version of a live document (a tombstone
        /// is not found).
        fn stored_version(&self) -> Option<u64> {
            match &self.stored {
                Some(Stored::Document { version, .. }) => Some(*version),
                _ => None,
            }
        }

        fn visible_name(&self) -> Option<&str> {
            match &self.stored {
                Some(Stored::Document { name, .. }) => Some(name),
                _ => None,
            }
        }
    }

    fn spec(kind: VersionKind, delete: DeleteStrategy) -> DocumentSpec {
        DocumentSpec {
            index: Arc::from("orders"),
            id_column: "id".into(),
            id_type: IdType::Integer,
            version_column: "v".into(),
            version_kind: kind,
            routing_column: None,
            delete,
            renames: HashMap::new(),
            exclude: HashSet::new(),
            json_columns: HashSet::new(),
            lag_column: None,
        }
    }

    /// The re-read of row 1: `(name, version, deleted)`, or none when it is gone.
    fn model_rows(row: Option<(&str, SqlValue, bool)>) -> Vec<Row> {
        row.map(|(name, version, deleted)| Row {
            columns: vec![
                "id".to_owned(),
                "v".to_owned(),
                "name".to_owned(),
                "deleted".to_owned(),
            ]
            .into(),
            values: vec![
                SqlValue::Int(1),
                version,
                SqlValue::Text(name.into()),
                SqlValue::Bool(deleted),
            ],
        })
        .into_iter()
        .collect()
    }

    /// The action esync sends when it re-reads the row as `row` at `now_micros`.
    fn action_for(
        spec: &DocumentSpec,
        row: Option<(&str, SqlValue, bool)>,
        now_micros: u64,
    ) -> BulkAction {
        plan_actions(spec, &[Id::Int(1)], model_rows(row), now_micros)
            .remove(0)
            .action
            .expect("writable")
    }

    fn permutations(items: &[BulkAction]) -> Vec<Vec<BulkAction>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut all = Vec::new();
        for first in 0..items.len() {
            let mut rest = items.to_vec();
            let head = rest.remove(first);
            for mut tail in permutations(&rest) {
                tail.insert(0, head.clone());
                all.push(tail);
            }
        }
        all
    }

    fn micros(seconds: u64) -> u64 {
        seconds * 1_000_000
    }

    fn at(seconds: i64) -> SqlValue {
        SqlValue::Timestamp(DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("valid"))
    }

    /// Insert, update, hard delete: whatever order the three writes arrive in
    /// (within gc_deletes), the document ends deleted.
    #[test]
    fn hard_delete_wins_in_every_order_with_counter_versions() {
        let spec = spec(VersionKind::Counter, DeleteStrategy::Hard);
        let now = micros(1_700_000_100);
        let writes = [
            action_for(&spec, Some(("v1", SqlValue::Int(1), false)), now),
            action_for(&spec, Some(("v2", SqlValue::Int(2), false)), now),
            action_for(&spec, None, now),
        ];
        for order in permutations(&writes) {
            let mut index = ModelIndex::default();
            for action in &order {
                index.apply(action, 1_700_000_100);
            }
            assert_eq!(index.visible_name(), None, "order {order:?}");
        }
    }

    /// With timestamp versions, a row deleted and re-inserted later (a newer
    /// updated_at) ends visible with its newest state in every order.
    #[test]
    fn reinsert_after_delete_wins_with_timestamp_versions() {
        let spec = spec(VersionKind::Timestamp, DeleteStrategy::Hard);
        let writes = [
            action_for(&spec, Some(("first", at(0), false)), micros(1_700_000_001)),
            action_for(&spec, None, micros(1_700_000_010)),
            action_for(&spec, Some(("again", at(20), false)), micros(1_700_000_021)),
        ];
        for order in permutations(&writes) {
            let mut index = ModelIndex::default();
            for action in &order {
                index.apply(action, 1_700_000_030);
            }
            assert_eq!(index.visible_name(), Some("again"), "order {order:?}");
        }
    }

    /// Soft deletes carry the row's own version, so ordering is exact even
    /// without tombstones: the last state wins in every order.
    #[test]
    fn soft_delete_and_undelete_are_exact_in_every_order() {
        let spec = spec(
            VersionKind::Counter,
            DeleteStrategy::Soft {
                column: "deleted".into(),
            },
        );
        let writes = [
            action_for(&spec, Some(("live", SqlValue::Int(1), false)), 5),
            action_for(&spec, Some(("gone", SqlValue::Int(2), true)), 5),
            action_for(&spec, Some(("back", SqlValue::Int(3), false)), 5),
        ];
        for order in permutations(&writes) {
            let mut index = ModelIndex::default();
            for action in &order {
                index.apply(action, 0);
            }
            assert_eq!(index.visible_name(), Some("back"), "order {order:?}");
        }
    }

    /// Why retries re-read rows instead of resending writes: a write computed
    /// before a delete and delivered after gc_deletes forgot the delete brings
    /// the document back. esync's own retries never resend such a write (they
    /// re-read first), and any later replay of the id re-reads the row, finds
    /// it gone, and deletes again.
    #[test]
    fn replays_after_gc_deletes_converge_because_rows_are_re_read() {
        let spec = spec(VersionKind::Counter, DeleteStrategy::Hard);
        let mut index = ModelIndex::default();
        index.apply(
            &action_for(&spec, Some(("v1", SqlValue::Int(1), false)), 0),
            0,
        );
        index.apply(&action_for(&spec, None, micros(100)), 100);
        // a write computed before the delete, delivered 2 minutes later
        let stale = action_for(&spec, Some(("v1", SqlValue::Int(1), false)), 0);
        assert!(
            index.apply(&stale, 220),
            "after gc_deletes the tombstone is gone"
        );
        assert_eq!(index.visible_name(), Some("v1"));
        // the replayed id is re-read: the row is gone, so it is deleted again
        index.apply(&action_for(&spec, None, micros(221)), 221);
        assert_eq!(index.visible_name(), None);
    }

    /// esync's writer on the model: re-read the row (`row`), plan, send, and
    /// settle a 409 as the writer does ([`crate::bulk::decide_conflict`]):
    /// the 409 reports the current version, `_mget` what is stored, and
    /// waiting for `gc_deletes` moves the clock. Returns the time it finished.
    fn esync_writes(
        index: &mut ModelIndex,
        spec: &DocumentSpec,
        row: Option<(&str, SqlValue, bool)>,
        mut now_seconds: u64,
    ) -> u64 {
        use crate::bulk::{ConflictDecision, ConflictKind, decide_conflict};
        let mut delete_version = None;
        for _ in 0..10 {
            let planned = plan_actions(
                spec,
                &[Id::Int(1)],
                model_rows(row.clone()),
                micros(now_seconds),
            )
            .remove(0);
            let mut action = planned.action.expect("writable");
            let kind = ConflictKind::of(&action, planned.row_gone);
            if let (ConflictKind::HardDelete, BulkAction::Delete { version, .. }) =
                (kind, &mut action)
            {
                *version = (*version).max(delete_version.unwrap_or(0));
            }
            let sent = action.version();
            if index.apply(&action, now_seconds) {
                return now_seconds;
            }
            let reported = index.current_version(now_seconds);
            let mut decision = decide_conflict(kind, sent, reported, None);
            if decision == ConflictDecision::LookUp {
                decision = decide_conflict(kind, sent, reported, Some(index.stored_version()));
            }
            match decision {
                ConflictDecision::Superseded => return now_seconds,
                ConflictDecision::RetryNow {
                    delete_version: floor,
                } => delete_version = floor,
                ConflictDecision::RetryAfterGcDeletes => now_seconds += GC_DELETES_SECONDS,
                ConflictDecision::LookUp => unreachable!("decided after the look-up"),
            }
        }
        panic!("esync did not settle the write");
    }

    /// Issue 9 item 7: with counter versions, an id re-inserted within
    /// `gc_deletes` of its hard delete is refused by the tombstone (version =
    /// the delete's time). Counting that 409 as success left the row missing;
    /// the writer sees no document behind the 409 and writes again once the
    /// tombstone is forgotten.
    #[test]
    fn reinsert_within_gc_deletes_ends_indexed_with_counter_versions() {
        let spec = spec(VersionKind::Counter, DeleteStrategy::Hard);
        let mut index = ModelIndex::default();
        esync_writes(
            &mut index,
            &spec,
            Some(("first", SqlValue::Int(3), false)),
            0,
        );
        esync_writes(&mut index, &spec, None, 100);
        assert_eq!(index.visible_name(), None);
        // re-inserted 10 s later: a new row, its counter starts again
        let again = Some(("again", SqlValue::Int(1), false));
        let mut refused = ModelIndex {
            stored: index.stored.clone(),
        };
        assert!(
            !refused.apply(&action_for(&spec, again.clone(), micros(110)), 110),
            "the tombstone refuses the re-insert (what used to count as done)"
        );
        let finished = esync_writes(&mut index, &spec, again, 110);
        assert_eq!(index.visible_name(), Some("again"));
        assert!(finished >= 100 + GC_DELETES_SECONDS, "{finished}");
        // later changes of the re-inserted row flow as usual
        esync_writes(
            &mut index,
            &spec,
            Some(("changed", SqlValue::Int(2), false)),
            finished + 1,
        );
        assert_eq!(index.visible_name(), Some("changed"));
    }

    /// A 409 on an index action with a live, newer document stays a plain
    /// "superseded": no waiting, the newer document stays.
    #[test]
    fn stale_write_behind_a_live_document_is_superseded_at_once() {
        let spec = spec(VersionKind::Counter, DeleteStrategy::Hard);
        let mut index = ModelIndex::default();
        esync_writes(&mut index, &spec, Some(("new", SqlValue::Int(5), false)), 0);
        let finished = esync_writes(&mut index, &spec, Some(("old", SqlValue::Int(4), false)), 1);
        assert_eq!((finished, index.visible_name()), (1, Some("new")));
    }

    /// Issue 9 item 6: a document whose timestamp version is ahead of esync's
    /// clock (database clock ahead, `DATETIME(0)` rounding up, a local-time
    /// column) refused the hard delete (version = now), which counted as
    /// done: a ghost document. The delete is re-sent above the document's
    /// version, and the id stays deleted against stale writes.
    #[test]
    fn hard_delete_of_a_document_ahead_of_the_clock_wins() {
        let spec = spec(VersionKind::Timestamp, DeleteStrategy::Hard);
        let mut index = ModelIndex::default();
        // the row says one hour after the daemon's clock
        esync_writes(
            &mut index,
            &spec,
            Some(("ahead", at(3_600), false)),
            1_700_000_000,
        );
        assert_eq!(index.visible_name(), Some("ahead"));
        esync_writes(&mut index, &spec, None, 1_700_000_010);
        assert_eq!(index.visible_name(), None, "no ghost document");
        let stale = action_for(&spec, Some(("ahead", at(3_600), false)), 0);
        assert!(
            !index.apply(&stale, 1_700_000_011),
            "a replayed stale write is refused"
        );
    }
}
