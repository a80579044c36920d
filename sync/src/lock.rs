//! Locking a mutex of plain state.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, also after a panic in another holder: every mutex esync
/// holds guards plain state changed in single steps (maps, counters), which a
/// panic elsewhere cannot leave half-written.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
