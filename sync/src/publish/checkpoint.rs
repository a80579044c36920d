//! Watermark checkpoints: saved only after Kafka acknowledged every id up to
//! the watermark, so a restart resumes without gaps.
//!
//! Two stores: a JSON file replaced atomically (write a temporary file, fsync,
//! rename, fsync the directory), or a table in the source database with one
//! row per mapping. The serialization is pure and unit-tested.

use super::watermark::Position;
use crate::db::exec::{self, Param};
use crate::db::{Database, Dialect, quote_identifier};
use crate::id::{Id, IdType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File I/O.
    #[error("checkpoint file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file exists but is not a checkpoint.
    #[error("checkpoint file {path} is not valid: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint table.
    #[error("checkpoint table {table}: {source}")]
    Table {
        /// The table.
        table: String,
        /// The driver error.
        source: sqlx::Error,
    },
}

/// The file format, version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointFile {
    /// Format version (1).
    pub format: u32,
    /// Watermark per mapping name.
    pub mappings: BTreeMap<String, SavedPosition>,
}

/// One mapping's watermark as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPosition {
    /// Microseconds since the Unix epoch; authoritative.
    pub timestamp_us: i64,
    /// The same instant in RFC 3339, for people reading the file.
    #[serde(default)]
    pub timestamp: String,
    /// The id: a JSON number for integer ids, a string for text ids.
    pub id: serde_json::Value,
}

impl SavedPosition {
    /// Converts a watermark for saving.
    pub fn from_position(position: &Position) -> SavedPosition {
        let timestamp = chrono::DateTime::from_timestamp_micros(position.timestamp_us)
            .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default();
        let id = match &position.id {
            Id::Int(int) => serde_json::Value::from(*int),
            Id::Str(text) => serde_json::Value::from(text.as_ref()),
        };
        SavedPosition {
            timestamp_us: position.timestamp_us,
            timestamp,
            id,
        }
    }

    /// The watermark, with the id read as `id_type`.
    pub fn to_position(&self, id_type: IdType) -> Result<Position, String> {
        let id = Id::from_json(&self.id, id_type).map_err(|error| error.to_string())?;
        Ok(Position {
            timestamp_us: self.timestamp_us,
            id,
        })
    }
}

impl CheckpointFile {
    /// Parses file contents.
    pub fn parse(text: &str) -> Result<CheckpointFile, String> {
        let file: CheckpointFile = serde_json::from_str(text).map_err(|error| error.to_string())?;
        if file.format != 1 {
            return Err(format!("unsupported format {}", file.format));
        }
        Ok(file)
    }

    /// Renders file contents (pretty JSON, newline-terminated).
    pub fn render(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("checkpoint serializes");
        text.push('\n');
        text
    }
}

/// Where watermarks are kept.
pub enum CheckpointStore {
    /// A JSON file.
    File {
        /// The file.
        path: PathBuf,
        /// Everything saved so far (the file holds all mappings).
        state: Mutex<CheckpointFile>,
    },
    /// A table in the source database.
    Table {
        /// The pool.
        database: Database,
        /// The table name as configured.
        table: String,
    },
}

impl CheckpointStore {
    /// Opens the file store, reading an existing file.
    pub async fn file(path: &Path) -> Result<CheckpointStore, CheckpointError> {
        let state = match tokio::fs::read_to_string(path).await {
            Ok(text) => {
                CheckpointFile::parse(&text).map_err(|message| CheckpointError::Corrupt {
                    path: path.to_owned(),
                    message,
                })?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => CheckpointFile {
                format: 1,
                mappings: BTreeMap::new(),
            },
            Err(source) => {
                return Err(CheckpointError::File {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(CheckpointStore::File {
            path: path.to_owned(),
            state: Mutex::new(state),
        })
    }

    /// Opens the table store, creating the table if it does not exist.
    pub async fn table(
        database: Database,
        table: &str,
    ) -> Result<CheckpointStore, CheckpointError> {
        let sql = create_table_sql(database.dialect(), table);
        crate::db::create_if_missing(&database, &sql)
            .await
            .map_err(|source| CheckpointError::Table {
                table: table.to_owned(),
                source,
            })?;
        Ok(CheckpointStore::Table {
            database,
            table: table.to_owned(),
        })
    }

    /// The saved watermark of `mapping`, if any.
    pub async fn load(
        &self,
        mapping: &str,
        id_type: IdType,
    ) -> Result<Option<Position>, CheckpointError> {
        match self {
            CheckpointStore::File { path, state } => match state.lock().await.mappings.get(mapping)
            {
                None => Ok(None),
                Some(saved) => saved.to_position(id_type).map(Some).map_err(|message| {
                    CheckpointError::Corrupt {
                        path: path.clone(),
                        message: format!("mapping {mapping}: {message}"),
                    }
                }),
            },
            CheckpointStore::Table { database, table } => {
                let sql = select_sql(database.dialect(), table);
                let table_error = |source| CheckpointError::Table {
                    table: table.clone(),
                    source,
                };
                let row = database
                    .fetch_optional(&sql, &[Param::from(mapping)])
                    .await
                    .and_then(|row| {
                        row.map(|row| Ok((exec::int(&row, 0)?, exec::text(&row, 1)?)))
                            .transpose()
                    })
                    .map_err(table_error)?;
                match row {
                    None => Ok(None),
                    Some((timestamp_us, id)) => {
                        let id =
                            Id::parse(&id, id_type).map_err(|error| CheckpointError::Table {
                                table: table.clone(),
                                source: exec::decode_error(format!("mapping {mapping}: {error}")),
                            })?;
                        Ok(Some(Position { timestamp_us, id }))
                    }
                }
            }
        }
    }

    /// Saves `mapping`'s watermark, durably, before returning.
    pub async fn save(&self, mapping: &str, position: &Position) -> Result<(), CheckpointError> {
        match self {
            CheckpointStore::File { path, state } => {
                let mut state = state.lock().await;
                let _ = state
                    .mappings
                    .insert(mapping.to_owned(), SavedPosition::from_position(position));
                write_atomically(path, state.render().as_bytes())
                    .await
                    .map_err(|source| CheckpointError::File {
                        path: path.clone(),
                        source,
                    })
            }
            CheckpointStore::Table { database, table } => {
                let sql = upsert_sql(database.dialect(), table);
                let params = [
                    Param::from(mapping),
                    Param::Int(position.timestamp_us),
                    Param::Text(position.id.to_string()),
                ];
                database
                    .execute(&sql, &params)
                    .await
                    .map(drop)
                    .map_err(|source| CheckpointError::Table {
                        table: table.clone(),
                        source,
                    })
            }
        }
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new
/// file, never a torn one.
pub async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let path = path.to_owned();
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || crate::durable_file::write_atomically(&path, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

/// `CREATE TABLE IF NOT EXISTS` for the checkpoint table.
pub fn create_table_sql(dialect: Dialect, table: &str) -> String {
    let table = quote_identifier(dialect, table);
    match dialect {
        Dialect::Postgres => format!(
            "CREATE TABLE IF NOT EXISTS {table} (mapping TEXT PRIMARY KEY, timestamp_us BIGINT NOT NULL, \
             last_id TEXT NOT NULL, saved_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ),
        Dialect::MySql => format!(
            "CREATE TABLE IF NOT EXISTS {table} (mapping VARCHAR(255) NOT NULL PRIMARY KEY, timestamp_us BIGINT NOT NULL, \
             last_id VARCHAR(255) NOT NULL, saved_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
        ),
        Dialect::Sqlite => format!(
            "CREATE TABLE IF NOT EXISTS {table} (mapping TEXT PRIMARY KEY, timestamp_us INTEGER NOT NULL, \
             last_id TEXT NOT NULL, saved_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        ),
    }
}

/// Reads one mapping's watermark.
pub fn select_sql(dialect: Dialect, table: &str) -> String {
    let placeholder = dialect.placeholder(1);
    format!(
        "SELECT timestamp_us, last_id FROM {} WHERE mapping = {placeholder}",
        quote_identifier(dialect, table)
    )
}

/// Inserts or replaces one mapping's watermark (mapping, timestamp_us, last_id).
pub fn upsert_sql(dialect: Dialect, table: &str) -> String {
    let quoted = quote_identifier(dialect, table);
    match dialect {
        Dialect::Postgres => format!(
            "INSERT INTO {quoted} (mapping, timestamp_us, last_id) VALUES ($1, $2, $3) ON CONFLICT (mapping) DO UPDATE \
             SET timestamp_us = EXCLUDED.timestamp_us, last_id = EXCLUDED.last_id, saved_at = now()"
        ),
        Dialect::MySql => format!(
            "INSERT INTO {quoted} (mapping, timestamp_us, last_id) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE \
             timestamp_us = VALUES(timestamp_us), last_id = VALUES(last_id), saved_at = CURRENT_TIMESTAMP(6)"
        ),
        Dialect::Sqlite => format!(
            "INSERT INTO {quoted} (mapping, timestamp_us, last_id) VALUES (?, ?, ?) ON CONFLICT (mapping) DO UPDATE \
             SET timestamp_us = excluded.timestamp_us, last_id = excluded.last_id, saved_at = CURRENT_TIMESTAMP"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_the_file_format() {
        let cases = [
            (
                Position {
                    timestamp_us: 1_700_000_000_123_456,
                    id: Id::Int(42),
                },
                IdType::Integer,
                "2023-11-14T22:13:20.123456Z",
                "42",
            ),
            (
                Position {
                    timestamp_us: 0,
                    id: Id::Str("order-7".into()),
                },
                IdType::String,
                "1970-01-01T00:00:00.000000Z",
                "\"order-7\"",
            ),
            (
                Position {
                    timestamp_us: -1,
                    id: Id::Int(-3),
                },
                IdType::Integer,
                "1969-12-31T23:59:59.999999Z",
                "-3",
            ),
        ];
        for (position, id_type, timestamp, id_json) in cases {
            let saved = SavedPosition::from_position(&position);
            assert_eq!(saved.timestamp, timestamp);
            assert_eq!(saved.id.to_string(), id_json);
            let file = CheckpointFile {
                format: 1,
                mappings: BTreeMap::from([("orders".to_owned(), saved)]),
            };
            let parsed = CheckpointFile::parse(&file.render()).unwrap();
            assert_eq!(parsed, file);
            assert_eq!(
                parsed.mappings["orders"].to_position(id_type).unwrap(),
                position
            );
        }
    }

    #[test]
    fn bad_files_are_rejected_with_a_reason() {
        let cases = [
            ("", "EOF"),
            ("{\"format\": 2, \"mappings\": {}}", "unsupported format 2"),
            (
                "{\"format\": 1, \"mappings\": {}, \"extra\": 1}",
                "unknown field",
            ),
            (
                "{\"format\": 1, \"mappings\": {\"o\": {\"timestamp_us\": \"x\", \"id\": 1}}}",
                "invalid type",
            ),
        ];
        for (text, wanted) in cases {
            let error = CheckpointFile::parse(text).unwrap_err();
            assert!(error.contains(wanted), "{text:?}: {error}");
        }
        let saved = SavedPosition {
            timestamp_us: 1,
            timestamp: String::new(),
            id: serde_json::json!("abc"),
        };
        assert!(
            saved
                .to_position(IdType::Integer)
                .unwrap_err()
                .contains("not an integer")
        );
    }

    #[test]
    fn sql_per_dialect() {
        let cases = [
            (
                Dialect::Postgres,
                "SELECT timestamp_us, last_id FROM \"cp\" WHERE mapping = $1",
                "ON CONFLICT (mapping) DO UPDATE",
            ),
            (
                Dialect::MySql,
                "SELECT timestamp_us, last_id FROM `cp` WHERE mapping = ?",
                "ON DUPLICATE KEY UPDATE",
            ),
            (
                Dialect::Sqlite,
                "SELECT timestamp_us, last_id FROM \"cp\" WHERE mapping = ?",
                "ON CONFLICT (mapping) DO UPDATE",
            ),
        ];
        for (dialect, select, upsert) in cases {
            assert_eq!(select_sql(dialect, "cp"), select);
            assert!(upsert_sql(dialect, "cp").contains(upsert), "{dialect:?}");
            assert!(
                create_table_sql(dialect, "cp").starts_with("CREATE TABLE IF NOT EXISTS"),
                "{dialect:?}"
            );
        }
    }

    #[tokio::test]
    async fn file_store_saves_atomically_and_reloads() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("publish.json");
        let store = CheckpointStore::file(&path).await.unwrap();
        assert_eq!(store.load("orders", IdType::Integer).await.unwrap(), None);
        let position = Position {
            timestamp_us: 5,
            id: Id::Int(9),
        };
        store.save("orders", &position).await.unwrap();
        store
            .save(
                "items",
                &Position {
                    timestamp_us: 6,
                    id: Id::Str("x".into()),
                },
            )
            .await
            .unwrap();
        let reopened = CheckpointStore::file(&path).await.unwrap();
        assert_eq!(
            reopened.load("orders", IdType::Integer).await.unwrap(),
            Some(position)
        );
        assert_eq!(
            reopened
                .load("items", IdType::String)
                .await
                .unwrap()
                .map(|p| p.id),
            Some(Id::Str("x".into()))
        );
        let leftovers: Vec<_> = std::fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("publish.json")],
            "no temporary file is left behind"
        );
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            CheckpointStore::file(&path).await,
            Err(CheckpointError::Corrupt { .. })
        ));
    }
}
