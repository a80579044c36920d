//! Logging setup, once per process: `tracing` with `RUST_LOG` (default
//! `info`), text to stderr, or JSON lines with `OPSBOT_LOG_FORMAT=json`.

use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call does nothing. Colours only
/// when stderr is a terminal, so log files carry no escape codes.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("OPSBOT_LOG_FORMAT").is_ok_and(|format| format == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // Already installed (tests): keep the first one.
    drop(result);
}
