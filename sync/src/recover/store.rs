//! Where checkpoints are kept: a JSON file (default) or a row in a table of
//! the source database.
//!
//! A file is replaced atomically: the new content goes to a temporary file in
//! the same directory, is flushed to disk (fsync), renamed over the old one,
//! and the directory is synced, so a crash leaves the old or the new
//! checkpoint, never half of one. A table row is replaced in one statement.

use crate::db::exec::{self, Param};
use crate::db::{Database, Dialect, quote_identifier};
use crate::durable_file::write_atomically;
use crate::recover::checkpoint::Checkpoint;
use std::path::PathBuf;

/// Errors reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File I/O failed.
    #[error("checkpoint file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A query on the checkpoint table failed.
    #[error("checkpoint table {table}: {source}")]
    Table {
        /// The table.
        table: String,
        /// The driver error.
        source: sqlx::Error,
    },
    /// The stored text is not a checkpoint.
    #[error("checkpoint {location} is unusable: {reason}")]
    Corrupt {
        /// Where it is.
        location: String,
        /// Why.
        reason: String,
    },
}

/// A place for one run's checkpoint.
#[derive(Debug, Clone)]
pub enum CheckpointStore {
    /// A JSON file.
    File(PathBuf),
    /// A row `(run_name, body)` in `table` of the source database.
    Table {
        /// The database.
        database: Database,
        /// The table (created when missing).
        table: String,
        /// The row's key.
        run_name: String,
    },
}

impl CheckpointStore {
    /// Where the checkpoint is, for messages.
    pub fn location(&self) -> String {
        match self {
            CheckpointStore::File(path) => path.display().to_string(),
            CheckpointStore::Table {
                table, run_name, ..
            } => format!("table {table}, run {run_name:?}"),
        }
    }

    /// Creates the table when it is missing (files need nothing).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        let CheckpointStore::Table {
            database, table, ..
        } = self
        else {
            return Ok(());
        };
        let quoted = quote_identifier(database.dialect(), table);
        let sql = match database.dialect() {
            Dialect::MySql => format!(
                "CREATE TABLE IF NOT EXISTS {quoted} (run_name VARCHAR(191) NOT NULL PRIMARY KEY, body LONGTEXT NOT NULL, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
            ),
            Dialect::Postgres | Dialect::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {quoted} (run_name VARCHAR(191) NOT NULL PRIMARY KEY, body TEXT NOT NULL, updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
            ),
        };
        database
            .execute(&sql, &[])
            .await
            .map(drop)
            .map_err(|source| StoreError::Table {
                table: table.clone(),
                source,
            })
    }

    /// The stored checkpoint, if any.
    pub async fn load(&self) -> Result<Option<Checkpoint>, StoreError> {
        let text = match self {
            CheckpointStore::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Some(text),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(StoreError::File {
                        path: path.clone(),
                        source,
                    });
                }
            },
            CheckpointStore::Table {
                database,
                table,
                run_name,
            } => {
                let quoted = quote_identifier(database.dialect(), table);
                let placeholder = database.dialect().placeholder(1);
                let sql = format!("SELECT body FROM {quoted} WHERE run_name = {placeholder}");
                database
                    .fetch_optional(&sql, &[Param::Text(run_name.clone())])
                    .await
                    .and_then(|row| row.map(|row| exec::text(&row, 0)).transpose())
                    .map_err(|source| StoreError::Table {
                        table: table.clone(),
                        source,
                    })?
            }
        };
        text.map(|text| {
            Checkpoint::from_json(&text).map_err(|reason| StoreError::Corrupt {
                location: self.location(),
                reason,
            })
        })
        .transpose()
    }

    /// Replaces the stored checkpoint.
    pub async fn save(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let body = checkpoint.to_json();
        match self {
            CheckpointStore::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    write_atomically(&path, body.as_bytes())
                        .map_err(|source| StoreError::File { path, source })
                })
                .await
                .expect("the checkpoint writer does not panic")
            }
            CheckpointStore::Table {
                database,
                table,
                run_name,
            } => {
                let quoted = quote_identifier(database.dialect(), table);
                let sql = match database.dialect() {
                    Dialect::Postgres => format!(
                        "INSERT INTO {quoted} (run_name, body, updated_at) VALUES ($1, $2, CURRENT_TIMESTAMP) \
                         ON CONFLICT (run_name) DO UPDATE SET body = EXCLUDED.body, updated_at = EXCLUDED.updated_at"
                    ),
                    Dialect::Sqlite => format!(
                        "INSERT INTO {quoted} (run_name, body, updated_at) VALUES (?, ?, CURRENT_TIMESTAMP) \
                         ON CONFLICT (run_name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at"
                    ),
                    Dialect::MySql => format!(
                        "INSERT INTO {quoted} (run_name, body, updated_at) VALUES (?, ?, CURRENT_TIMESTAMP(6)) \
                         ON DUPLICATE KEY UPDATE body = VALUES(body), updated_at = VALUES(updated_at)"
                    ),
                };
                let params = [Param::Text(run_name.clone()), Param::Text(body)];
                database
                    .execute(&sql, &params)
                    .await
                    .map(drop)
                    .map_err(|source| StoreError::Table {
                        table: table.clone(),
                        source,
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recover::checkpoint::{Plan, Totals};

    #[tokio::test]
    async fn file_checkpoints_round_trip_and_replace() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("run.json");
        let store = CheckpointStore::File(path.clone());
        assert_eq!(store.load().await.unwrap(), None);
        let mut checkpoint = Checkpoint::new("r", Plan { mappings: vec![] }, chrono::Utc::now());
        store.save(&checkpoint).await.unwrap();
        checkpoint.totals = Totals {
            rows: 7,
            ..Totals::default()
        };
        store.save(&checkpoint).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(checkpoint));
        let leftovers: Vec<_> = std::fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("run.json")],
            "no temporary files left"
        );
        std::fs::write(&path, "{not json").unwrap();
        let error = store.load().await.unwrap_err().to_string();
        assert!(error.contains("is unusable"), "{error}");
    }
}
