//! Persistence of roll progress: one JSON file (written atomically through a
//! temporary file and a rename), an abort marker file next to it, so a CLI
//! `abort` in another process reaches a running roll, and a lock file: the
//! process driving a roll holds an exclusive lock on it (`flock`), so two
//! rolls never run at once (bot and CLI, or two bot commands) and a roll still
//! marked running whose lock is free was left behind by a process that died.
//!
//! File I/O only; what the state means is in `roll`.

use crate::roll::RollState;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Reading or writing the state file failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O on the file.
    #[error("failed to {action} roll state {path}")]
    Io {
        /// read, write, open, lock or remove.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a roll state.
    #[error("roll state {path} is not valid: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
}

/// The state file and its abort marker.
#[derive(Debug, Clone)]
pub struct RollStore {
    path: PathBuf,
}

/// The exclusive right to drive the roll of a state file; released when
/// dropped, and by the OS when the process dies.
#[derive(Debug)]
pub struct RollLock {
    _file: File,
}

impl RollStore {
    /// A store at `path` (the abort marker is `path` + `.abort`).
    pub fn new(path: impl Into<PathBuf>) -> RollStore {
        RollStore { path: path.into() }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn abort_marker(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".abort");
        PathBuf::from(name)
    }

    fn lock_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the roll lock without waiting; `None` when another driver (in
    /// this or another process) holds it.
    pub fn try_lock(&self) -> Result<Option<RollLock>, StoreError> {
        let path = self.lock_path();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|source| self.io_error("write", parent, source))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| self.io_error("open", &path, source))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(RollLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(source)) => Err(self.io_error("lock", &path, source)),
        }
    }

    /// Whether a live driver holds the roll lock right now.
    pub fn is_locked(&self) -> Result<bool, StoreError> {
        Ok(self.try_lock()?.is_none())
    }

    fn io_error(&self, action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The last saved state, if any.
    pub fn load(&self) -> Result<Option<RollState>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.io_error("read", &self.path, source)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| StoreError::Corrupt {
                path: self.path.clone(),
                message: error.to_string(),
            })
    }

    /// Saves the state atomically.
    pub fn save(&self, state: &RollState) -> Result<(), StoreError> {
        if let Some(parent) = self.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|source| self.io_error("write", parent, source))?;
        }
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        // Plain data with string keys always serializes.
        let text = serde_json::to_string_pretty(state).expect("roll state serializes");
        std::fs::write(&temporary, text)
            .map_err(|source| self.io_error("write", &temporary, source))?;
        std::fs::rename(&temporary, &self.path)
            .map_err(|source| self.io_error("write", &self.path, source))
    }

    /// Asks a running roll (in any process) to stop before its next node.
    pub fn request_abort(&self) -> Result<(), StoreError> {
        let marker = self.abort_marker();
        std::fs::write(&marker, b"abort\n")
            .map_err(|source| self.io_error("write", &marker, source))
    }

    /// Whether an abort was asked for; the marker is removed when taken.
    pub fn take_abort(&self) -> Result<bool, StoreError> {
        let marker = self.abort_marker();
        match std::fs::remove_file(&marker) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(self.io_error("remove", &marker, source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PlannedNode;
    use crate::roll::RollSettings;
    use chrono::Utc;

    #[test]
    fn saves_loads_and_carries_abort() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RollStore::new(dir.path().join("state/roll.json"));
        assert_eq!(store.load().expect("load"), None);
        let node = PlannedNode {
            name: "n1".into(),
            host: "h1".into(),
            roles: "d".into(),
            elected_master: false,
        };
        let state = RollState::new(vec![node], RollSettings::default(), Utc::now());
        store.save(&state).expect("save");
        assert_eq!(store.load().expect("load"), Some(state));
        assert!(!store.take_abort().expect("take"));
        store.request_abort().expect("abort");
        assert!(store.take_abort().expect("take"));
        assert!(!store.take_abort().expect("take"), "taken once");
        let lock = store.try_lock().expect("lock").expect("free");
        assert!(store.try_lock().expect("lock").is_none(), "held once");
        assert!(store.is_locked().expect("lock"));
        drop(lock);
        assert!(!store.is_locked().expect("lock"), "released on drop");
        std::fs::write(store.path(), "{").expect("write");
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
    }
}
