//! Shutdown signals, listened for the same way by every binary: SIGTERM
//! (service managers, `kill`) and SIGINT (Ctrl-C) both ask for a clean stop.
//!
//! Listening starts when [`ShutdownSignals::listen`] is called, not at the
//! first `recv`, so a signal that arrives in between is not lost.

use std::fmt;
use tokio_util::sync::CancellationToken;

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownSignal {
    /// SIGTERM.
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

impl fmt::Display for ShutdownSignal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            ShutdownSignal::Terminate => "SIGTERM",
            ShutdownSignal::Interrupt => "SIGINT",
        })
    }
}

/// The signal handlers could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {signal}: {source}")]
pub struct SignalError {
    /// The signal.
    pub signal: ShutdownSignal,
    /// The cause.
    pub source: std::io::Error,
}

/// Listens for SIGTERM and SIGINT; [`ShutdownSignals::recv`] may be called
/// again for a second signal.
#[derive(Debug)]
pub struct ShutdownSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Starts listening (needs a Tokio runtime).
    pub fn listen() -> Result<ShutdownSignals, SignalError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind, name| {
                signal(kind).map_err(|source| SignalError {
                    signal: name,
                    source,
                })
            };
            Ok(ShutdownSignals {
                terminate: listen(SignalKind::terminate(), ShutdownSignal::Terminate)?,
                interrupt: listen(SignalKind::interrupt(), ShutdownSignal::Interrupt)?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// Waits for the next SIGTERM or SIGINT.
    pub async fn recv(&mut self) -> ShutdownSignal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => ShutdownSignal::Terminate,
                _ = self.interrupt.recv() => ShutdownSignal::Interrupt,
            }
        }
        #[cfg(not(unix))]
        {
            // Ctrl-C is the only stop request there; if it cannot be
            // listened for, never resolving is the safe answer.
            match tokio::signal::ctrl_c().await {
                Ok(()) => ShutdownSignal::Interrupt,
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// Cancels `shutdown` at the first SIGTERM or SIGINT (logged at info).
pub fn cancel_on_signal(shutdown: CancellationToken) -> Result<(), SignalError> {
    let mut signals = ShutdownSignals::listen()?;
    tokio::spawn(async move {
        let signal = signals.recv().await;
        tracing::info!("{signal} received");
        shutdown.cancel();
    });
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_cancels_the_token() {
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone()).expect("handlers installed");
        // Our own handler is installed, so SIGTERM no longer kills the
        // test process; it only wakes the listener.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(std::time::Duration::from_secs(5), shutdown.cancelled())
            .await
            .expect("cancelled after SIGTERM");
    }
}
