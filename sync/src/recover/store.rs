//! Where checkpoints and control records (`esync-recover ctl`) are kept: a
//! JSON file (default) or a row in a table of the source database, the same
//! mechanism for both.
//!
//! A file is replaced atomically: the new content goes to a temporary file in
//! the same directory, is flushed to disk (fsync), renamed over the old one,
//! and the directory is synced, so a crash leaves the old or the new
//! checkpoint, never half of one. A table row is replaced in one statement.

use crate::db::exec::{self, Param};
use crate::db::{Database, Dialect, is_undefined_table, quote_identifier};
use crate::durable_file::write_atomically;
use crate::recover::checkpoint::Checkpoint;
use crate::recover::control::ControlRecord;
use std::path::{Path, PathBuf};

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
    /// The stored text is not a control record.
    #[error("{location} is unusable: {reason}; fix it or set it again with esync-recover ctl")]
    BadControl {
        /// Where it is.
        location: String,
        /// Why.
        reason: String,
    },
    /// A table without a database connection to reach it.
    #[error("{location}: no database connection to reach it")]
    NoDatabase {
        /// Where it is.
        location: String,
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

    fn text(&self) -> TextPlace<'_> {
        match self {
            CheckpointStore::File(path) => TextPlace::File(path),
            CheckpointStore::Table {
                database,
                table,
                run_name,
            } => TextPlace::Row {
                database,
                table,
                run_name,
            },
        }
    }

    /// Creates the table when it is missing (files need nothing).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.text().prepare().await
    }

    /// The stored checkpoint, if any.
    pub async fn load(&self) -> Result<Option<Checkpoint>, StoreError> {
        let text = self.text().load().await?;
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
        self.text().save(checkpoint.to_json()).await
    }
}

/// Where a run's control record (`esync-recover ctl`) is kept: beside its
/// checkpoint, or in the database for runs whose state is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlPlace {
    /// A JSON file, by default `<checkpoint file>.ctl`.
    File(PathBuf),
    /// A row `(run_name, body)` in this table of the source database.
    Table(String),
}

impl ControlPlace {
    /// The control file beside a checkpoint file: `<checkpoint>.ctl`.
    pub fn beside(checkpoint: &Path) -> ControlPlace {
        let mut name = checkpoint.as_os_str().to_owned();
        name.push(".ctl");
        ControlPlace::File(PathBuf::from(name))
    }
}

/// The control record of one run.
#[derive(Debug, Clone)]
pub struct ControlStore {
    place: ControlPlace,
    database: Option<Database>,
    run_name: String,
}

impl ControlStore {
    /// The record of `run_name` at `place`; a table needs the database.
    pub fn new(place: ControlPlace, database: Option<Database>, run_name: &str) -> ControlStore {
        ControlStore {
            place,
            database,
            run_name: run_name.to_owned(),
        }
    }

    /// Where the record is, for messages.
    pub fn location(&self) -> String {
        match &self.place {
            ControlPlace::File(path) => format!("control file {}", path.display()),
            ControlPlace::Table(table) => {
                format!("control table {table}, run {:?}", self.run_name)
            }
        }
    }

    fn text(&self) -> Result<TextPlace<'_>, StoreError> {
        match (&self.place, &self.database) {
            (ControlPlace::File(path), _) => Ok(TextPlace::File(path)),
            (ControlPlace::Table(table), Some(database)) => Ok(TextPlace::Row {
                database,
                table,
                run_name: &self.run_name,
            }),
            (ControlPlace::Table(_), None) => Err(StoreError::NoDatabase {
                location: self.location(),
            }),
        }
    }

    /// Creates the table when it is missing (files need nothing).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.text()?.prepare().await
    }

    /// The stored record, if any (a missing table holds none).
    pub async fn load(&self) -> Result<Option<ControlRecord>, StoreError> {
        let text = match self.text()?.load().await {
            Err(StoreError::Table { source, .. }) if is_undefined_table(&source) => None,
            other => other?,
        };
        text.map(|text| {
            ControlRecord::from_json(&text).map_err(|reason| StoreError::BadControl {
                location: self.location(),
                reason: reason.to_string(),
            })
        })
        .transpose()
    }

    /// Replaces the stored record (atomically, as checkpoints).
    pub async fn save(&self, record: &ControlRecord) -> Result<(), StoreError> {
        self.text()?.save(record.to_json()).await
    }

    /// Removes the record (a fresh start of the run).
    pub async fn clear(&self) -> Result<(), StoreError> {
        self.text()?.remove().await
    }
}

/// `CREATE TABLE IF NOT EXISTS` for a table of `(run_name, body,
/// updated_at)` rows: checkpoints and control records.
pub(crate) fn create_text_table(dialect: Dialect, quoted_table: &str) -> String {
    match dialect {
        Dialect::MySql => format!(
            "CREATE TABLE IF NOT EXISTS {quoted_table} (run_name VARCHAR(191) NOT NULL PRIMARY KEY, body LONGTEXT NOT NULL, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
        ),
        Dialect::Postgres | Dialect::Sqlite => format!(
            "CREATE TABLE IF NOT EXISTS {quoted_table} (run_name VARCHAR(191) NOT NULL PRIMARY KEY, body TEXT NOT NULL, updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        ),
    }
}

/// A text kept in a file (replaced atomically) or in a row of a table keyed
/// by run name: the one mechanism under checkpoints and control records.
enum TextPlace<'a> {
    File(&'a Path),
    Row {
        database: &'a Database,
        table: &'a str,
        run_name: &'a str,
    },
}

impl TextPlace<'_> {
    fn table_error(table: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Table {
            table: table.to_owned(),
            source,
        }
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        let TextPlace::Row {
            database, table, ..
        } = self
        else {
            return Ok(());
        };
        let sql = create_text_table(
            database.dialect(),
            &quote_identifier(database.dialect(), table),
        );
        crate::db::create_if_missing(database, &sql)
            .await
            .map_err(Self::table_error(table))
    }

    async fn load(&self) -> Result<Option<String>, StoreError> {
        match self {
            TextPlace::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Ok(Some(text)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(StoreError::File {
                    path: path.to_path_buf(),
                    source,
                }),
            },
            TextPlace::Row {
                database,
                table,
                run_name,
            } => {
                let quoted = quote_identifier(database.dialect(), table);
                let placeholder = database.dialect().placeholder(1);
                let sql = format!("SELECT body FROM {quoted} WHERE run_name = {placeholder}");
                database
                    .fetch_optional(&sql, &[Param::Text((*run_name).to_owned())])
                    .await
                    .and_then(|row| row.map(|row| exec::text(&row, 0)).transpose())
                    .map_err(Self::table_error(table))
            }
        }
    }

    async fn save(&self, body: String) -> Result<(), StoreError> {
        match self {
            TextPlace::File(path) => {
                let path = path.to_path_buf();
                tokio::task::spawn_blocking(move || {
                    write_atomically(&path, body.as_bytes())
                        .map_err(|source| StoreError::File { path, source })
                })
                .await
                .expect("the file writer does not panic")
            }
            TextPlace::Row {
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
                let params = [Param::Text((*run_name).to_owned()), Param::Text(body)];
                database
                    .execute(&sql, &params)
                    .await
                    .map(drop)
                    .map_err(Self::table_error(table))
            }
        }
    }

    async fn remove(&self) -> Result<(), StoreError> {
        match self {
            TextPlace::File(path) => match std::fs::remove_file(path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(StoreError::File {
                        path: path.to_path_buf(),
                        source: error,
                    })
                }
                _ => Ok(()),
            },
            TextPlace::Row {
                database,
                table,
                run_name,
            } => {
                let quoted = quote_identifier(database.dialect(), table);
                let placeholder = database.dialect().placeholder(1);
                let sql = format!("DELETE FROM {quoted} WHERE run_name = {placeholder}");
                match database
                    .execute(&sql, &[Param::Text((*run_name).to_owned())])
                    .await
                {
                    Err(source) if !is_undefined_table(&source) => {
                        Err(Self::table_error(table)(source))
                    }
                    _ => Ok(()),
                }
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

    #[tokio::test]
    async fn control_files_sit_beside_the_checkpoint_and_clear() {
        use crate::recover::control::Action;
        let directory = tempfile::tempdir().unwrap();
        let place = ControlPlace::beside(&directory.path().join("run.json"));
        assert_eq!(
            place,
            ControlPlace::File(directory.path().join("run.json.ctl"))
        );
        let store = ControlStore::new(place, None, "r");
        assert_eq!(store.load().await.unwrap(), None);
        store.clear().await.expect("clearing nothing is fine");
        let record = ControlRecord::after(None, "r", Action::Pause, "ops@db1", chrono::Utc::now());
        store.save(&record).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(record));
        store.clear().await.unwrap();
        assert_eq!(store.load().await.unwrap(), None);
        std::fs::write(directory.path().join("run.json.ctl"), "paused please").unwrap();
        let error = store.load().await.unwrap_err().to_string();
        assert!(
            error.starts_with("control file") && error.contains("run.json.ctl is unusable"),
            "{error}"
        );
        let table = ControlStore::new(ControlPlace::Table("t_control".into()), None, "r");
        assert!(
            table
                .load()
                .await
                .unwrap_err()
                .to_string()
                .contains("no database")
        );
    }
}
