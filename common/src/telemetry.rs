//! Logging set-up, done once per process the same way by every binary:
//! `tracing` events to stderr (stdout carries reports), filtered by
//! `RUST_LOG` or the binary's default, as text or JSON lines.
//!
//! Colours only when stderr is a terminal: redirected to a file or a
//! journal, escape codes would litter every line.
//!
//! Events of other libraries (e.g. librdkafka's log, bridged into `tracing`
//! by the tool that uses it) pass through the same filter and format; their
//! level and rate are the bridge's business, not this module's.

use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

/// Log output format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// What one binary logs when the user says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDefaults {
    /// `EnvFilter` directives used when `RUST_LOG` is unset or invalid,
    /// e.g. `info` or `warn,shardplan=info`.
    pub filter: &'static str,
    /// Whether each line names its module (useful in a daemon's log, noise
    /// in a command-line tool's).
    pub show_target: bool,
}

impl LogDefaults {
    /// `info` for everything, with module names: the daemons' default.
    pub const INFO: LogDefaults = LogDefaults {
        filter: "info",
        show_target: true,
    };
}

/// Installs the global subscriber; a second call keeps the first (tests).
pub fn init(format: LogFormat, defaults: LogDefaults) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(defaults.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(defaults.show_target);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already installed: keep the first one.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum as _;

    #[test]
    fn log_format_flag_values() {
        let parse = |text: &str| LogFormat::from_str(text, false);
        assert_eq!(parse("text"), Ok(LogFormat::Text));
        assert_eq!(parse("json"), Ok(LogFormat::Json));
        assert!(parse("yaml").is_err());
        assert_eq!(LogFormat::default(), LogFormat::Text);
    }
}
