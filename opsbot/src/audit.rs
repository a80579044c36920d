//! The audit log: one JSON line per command (who, what, when, outcome).
//!
//! [`AuditRecord`] is plain data; [`AuditLog`] appends records to a file and
//! is the only I/O here. A failure to write is logged and returned, never
//! shown in a chat. Records never contain secrets: only ids, the command as
//! typed back by the parser, and a short outcome.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Unlisted chat or user; no reply was sent.
    Ignored,
    /// Listed, but the role does not allow it.
    Forbidden,
    /// Not understood (usage or unknown command).
    Rejected,
    /// A confirmation was asked for.
    ConfirmationRequested,
    /// Confirmed and started.
    Confirmed,
    /// Cancelled by the user.
    Cancelled,
    /// Confirmation came too late or from someone else.
    ConfirmationRefused,
    /// Ran and succeeded.
    Ok,
    /// Ran and failed.
    Failed,
}

/// One audit line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// Front end: `telegram` or `cli`.
    pub via: String,
    /// Chat id (telegram).
    pub chat_id: Option<i64>,
    /// User id (telegram).
    pub user_id: Option<u64>,
    /// User name (telegram) or login (cli), for reading the log.
    pub user: Option<String>,
    /// The role the user had, if listed.
    pub role: Option<String>,
    /// The command, normalized (e.g. `/restart all yellow`).
    pub command: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// A short detail (node and step of a failure, ...).
    pub detail: Option<String>,
}

/// Writing the audit log failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to write audit log {path}")]
pub struct AuditError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Appends records to a JSON-lines file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl AuditLog {
    /// An audit log at `path` (created on first write).
    pub fn new(path: impl Into<PathBuf>) -> AuditLog {
        AuditLog {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line.
    pub fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let wrap = |source| AuditError {
            path: self.path.clone(),
            source,
        };
        // Serializing a struct of strings and numbers cannot fail.
        let mut line = serde_json::to_string(record).expect("audit record serializes");
        line.push('\n');
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(parent) = self.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(wrap)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(wrap)?;
        file.write_all(line.as_bytes()).map_err(wrap)
    }

    /// Appends, logging instead of failing: the command itself already ran.
    pub fn record(&self, record: &AuditRecord) {
        if let Err(error) = self.append(record) {
            tracing::error!(error = %error, "audit log write failed");
        }
    }

    /// Reads every record back (for tests and tools).
    pub fn read_all(&self) -> Result<Vec<AuditRecord>, AuditError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(AuditError {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_json_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::new(dir.path().join("sub/audit.jsonl"));
        let record = AuditRecord {
            at: Utc::now(),
            via: "telegram".into(),
            chat_id: Some(1),
            user_id: Some(2),
            user: Some("ann".into()),
            role: Some("operator".into()),
            command: "/restart all".into(),
            outcome: AuditOutcome::ConfirmationRequested,
            detail: None,
        };
        log.append(&record).expect("write");
        log.append(&record).expect("write");
        let text = std::fs::read_to_string(log.path()).expect("read");
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains(r#""outcome":"confirmation_requested""#));
        assert_eq!(log.read_all().expect("read").len(), 2);
    }
}
