//! The one place librdkafka's log lines and error callbacks go, for every
//! Kafka client esync and esync-recover create (consumer, producers, the
//! dead-letter producer, `esync dlq`'s reader, `esync check`'s probe).
//!
//! rdkafka's default context hands them to the `log` crate, which reaches
//! the tracing subscriber through its `log` bridge: one line per librdkafka
//! retry, so a broker outage printed a flood of identical errors. Here each
//! line goes through a [`RepeatFilter`] (a message repeated within
//! [`REPEAT_WINDOW`] is printed once, with the count of dropped repeats the
//! next time it is printed) and then to tracing under the target
//! `librdkafka`, whose subscriber decides about colours. A quiet context
//! (`esync check`, which prints its own one-line result per check) logs
//! everything at debug.

use crate::repeat_filter::{RepeatFilter, Verdict};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a repeated librdkafka line stays quiet.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(30);

/// A client context that only routes librdkafka's log; other contexts
/// (the daemon's consumer) delegate their logging to one.
pub struct KafkaLog {
    repeats: Mutex<RepeatFilter>,
    quiet: bool,
}

impl Default for KafkaLog {
    fn default() -> Self {
        KafkaLog::new(false)
    }
}

impl KafkaLog {
    /// A context logging at librdkafka's levels, or at debug when `quiet`.
    pub fn new(quiet: bool) -> KafkaLog {
        KafkaLog {
            repeats: Mutex::new(RepeatFilter::new(REPEAT_WINDOW)),
            quiet,
        }
    }

    /// Logs one librdkafka line, unless it repeats a recent one.
    pub fn write(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.write_keyed(level, facility, message, message);
    }

    /// Logs a client error (librdkafka's error callback). Keyed by its
    /// reason alone: the callback repeats the reason of a log line just
    /// written (`Connect to ... failed`) under a global error code.
    pub fn error(&self, error: &KafkaError, reason: &str) {
        let text = format!("{error}: {reason}");
        self.write_keyed(RDKafkaLogLevel::Error, "ERROR", reason, &text);
    }

    fn write_keyed(&self, level: RDKafkaLogLevel, facility: &str, key: &str, message: &str) {
        let verdict = self
            .repeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .check(key, Instant::now());
        let Verdict::Print { suppressed } = verdict else {
            return;
        };
        let level = if self.quiet {
            RDKafkaLogLevel::Debug
        } else {
            level
        };
        let text = if suppressed == 0 {
            message.to_owned()
        } else {
            format!("{message} (and {suppressed} more times since it was last logged)")
        };
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", facility, "{text}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{text}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{text}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{text}"),
        }
    }
}

impl ClientContext for KafkaLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.write(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        KafkaLog::error(self, &error, reason);
    }
}

impl ConsumerContext for KafkaLog {}
