//! Waiting that a shutdown can cut short, shared by every loop (the writer,
//! the daemon, publish, `esync-recover`).

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The work (a batch, a wait) was given up because its cancellation token
/// fired; nothing of it may be acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("write abandoned")]
pub struct Abandoned;

/// Sleeps `delay`, or returns [`Abandoned`] as soon as `abort` fires.
pub async fn sleep_or_abort(delay: Duration, abort: &CancellationToken) -> Result<(), Abandoned> {
    tokio::select! {
        _ = abort.cancelled() => Err(Abandoned),
        _ = tokio::time::sleep(delay) => Ok(()),
    }
}
