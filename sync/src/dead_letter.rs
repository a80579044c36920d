//! The dead-letter topic: what esync cannot handle goes there with the reason
//! in `esync.*` headers, so nothing is dropped silently.
//!
//! One sink for the daemon and `esync-recover`. A letter is retried until the
//! broker acknowledges it (or `stop` fires), but never forever in its first
//! form: a record too large for `message.max.bytes`, or one still refused
//! after [`ATTEMPTS_BEFORE_TRUNCATING`] tries, is cut down to its key, headers
//! and the start of its value, with `esync.truncated` saying how long the
//! value was. What still cannot be produced then (e.g. the topic is not
//! authorised) keeps being retried, counted and logged: an operator must act,
//! and the messages behind it are not committed meanwhile.

use crate::kafka::{self, DeadLetter};
use crate::metrics::{Metrics, ReasonLabel, RetryLabel};
use crate::retry::RetryPolicy;
use crate::writer::{Abandoned, FailedId, Mapping, sleep_or_abort};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Failed tries after which a letter is produced truncated.
pub const ATTEMPTS_BEFORE_TRUNCATING: u32 = 5;

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Bytes kept free for the record's framing (lengths, timestamps, header names).
const RECORD_OVERHEAD_BYTES: usize = 512;

/// Longest header value kept in a truncated letter.
const TRUNCATED_HEADER_CHARS: usize = 256;

/// Produces dead letters, or logs them when no topic is configured.
#[derive(Clone)]
pub struct DeadLetterSink {
    target: Option<(kafka::Producer, String)>,
    max_message_bytes: usize,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
}

impl DeadLetterSink {
    /// A sink for `config`'s `dead_letter` topic (logging only without one).
    pub fn from_config(
        config: &crate::config::Config,
        metrics: Arc<Metrics>,
    ) -> Result<DeadLetterSink, KafkaError> {
        let target = match &config.dead_letter {
            Some(dead_letter) => Some((
                kafka::build_producer(&config.kafka)?,
                dead_letter.topic.clone(),
            )),
            None => None,
        };
        let max_message_bytes = config
            .kafka
            .options
            .get("message.max.bytes")
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        Ok(DeadLetterSink {
            target,
            max_message_bytes,
            retry: config.retry,
            metrics,
        })
    }

    /// Counts `letter` by its `esync.reason` (`esync_dead_lettered_total`),
    /// produces it (`origin` is for logs) and waits for the broker's
    /// acknowledgement; `Err(Abandoned)` only when `stop` fires first.
    pub async fn send(
        &self,
        letter: &DeadLetter,
        origin: &str,
        stop: &CancellationToken,
    ) -> Result<(), Abandoned> {
        self.metrics
            .dead_lettered
            .get_or_create(&ReasonLabel {
                reason: letter.header("esync.reason").to_owned(),
            })
            .inc();
        let Some((producer, topic)) = &self.target else {
            tracing::error!(
                origin,
                reason = letter.header("esync.error"),
                "cannot be handled and no dead_letter topic is configured; dropped"
            );
            return Ok(());
        };
        tracing::warn!(origin, reason = letter.header("esync.error"), topic = %topic, "dead-lettering");
        let mut truncated: Option<DeadLetter> = None;
        let mut attempt = 0;
        loop {
            let current = truncated.as_ref().unwrap_or(letter);
            let result = tokio::select! {
                _ = stop.cancelled() => return Err(Abandoned),
                result = kafka::produce_dead_letter(producer, topic, current) => result,
            };
            let error = match result {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            self.metrics
                .retries
                .get_or_create(&RetryLabel {
                    stage: "dead_letter",
                    reason: "produce_failed",
                })
                .inc();
            let too_large = matches!(
                error,
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
            );
            attempt += 1;
            if truncated.is_none() && (too_large || attempt >= ATTEMPTS_BEFORE_TRUNCATING) {
                tracing::warn!(origin, error = %error, topic = %topic, "dead letter refused as it is; producing it truncated");
                self.metrics.dead_letters_truncated.inc();
                truncated = Some(truncate(letter, self.max_message_bytes));
                continue;
            }
            tracing::error!(origin, error = %error, topic = %topic, attempt, "dead letter cannot be produced; retrying (its offsets are not committed meanwhile)");
            sleep_or_abort(self.retry.random_delay(attempt), stop).await?;
        }
    }
}

/// The dead letter of an id that cannot be written: the id as key, a JSON
/// description as value, the reason in headers. `tool` names the writer
/// (`esync`, `esync-recover`).
pub fn unwritable_id(mapping: &Mapping, failed: &FailedId, tool: &str) -> DeadLetter {
    let id_text = failed.id.to_string();
    let value = serde_json::json!({
        "mapping": mapping.name,
        "index": &*mapping.spec.index,
        "id": id_text,
        "reason": failed.reason_code,
        "error": failed.reason,
        "origin": tool,
    });
    DeadLetter {
        key: Some(id_text.into_bytes()),
        value: Some(value.to_string().into_bytes()),
        headers: vec![
            ("esync.reason", failed.reason_code.to_owned()),
            ("esync.error", failed.reason.clone()),
            ("esync.mapping", mapping.name.clone()),
        ],
    }
}

/// The dead letter of a message that cannot be decoded: its own key and
/// value, the reason and where it came from (`topic, partition, offset`) in
/// headers.
pub fn undecodable_message(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    error: &crate::decode::DecodeError,
    (topic, partition, offset): (&str, i32, i64),
) -> DeadLetter {
    DeadLetter {
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers: vec![
            ("esync.reason", error.reason_code().to_owned()),
            ("esync.error", error.to_string()),
            ("esync.topic", topic.to_owned()),
            ("esync.partition", partition.to_string()),
            ("esync.offset", offset.to_string()),
        ],
    }
}

/// `letter` cut down to fit in `max_message_bytes`: header values shortened,
/// the key kept when it fits, the value cut, and `esync.truncated` holding the
/// original value length. Pure.
pub fn truncate(letter: &DeadLetter, max_message_bytes: usize) -> DeadLetter {
    let mut headers: Vec<(&'static str, String)> = letter
        .headers
        .iter()
        .map(|(name, value)| {
            (
                *name,
                crate::id::truncate_chars(value, TRUNCATED_HEADER_CHARS),
            )
        })
        .collect();
    let original_length = letter.value.as_ref().map_or(0, Vec::len);
    headers.push(("esync.truncated", original_length.to_string()));
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    let mut room = max_message_bytes.saturating_sub(RECORD_OVERHEAD_BYTES + header_bytes);
    let key = letter.key.as_ref().filter(|key| key.len() <= room).cloned();
    room -= key.as_ref().map_or(0, Vec::len);
    let value = letter
        .value
        .as_ref()
        .map(|value| value[..value.len().min(room)].to_vec());
    DeadLetter {
        key,
        value,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(value_bytes: usize) -> DeadLetter {
        DeadLetter {
            key: Some(b"42".to_vec()),
            value: Some(vec![b'x'; value_bytes]),
            headers: vec![
                ("esync.reason", "bad_id".into()),
                ("esync.error", "e".repeat(5_000)),
            ],
        }
    }

    fn size(letter: &DeadLetter) -> usize {
        letter.key.as_ref().map_or(0, Vec::len)
            + letter.value.as_ref().map_or(0, Vec::len)
            + letter
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    }

    #[test]
    fn truncated_letters_fit_and_say_what_was_cut() {
        for limit in [1_000, 4_096, 1_000_000] {
            let cut = truncate(&letter(2_000_000), limit);
            assert!(size(&cut) + RECORD_OVERHEAD_BYTES <= limit, "{limit}");
            assert_eq!(cut.header("esync.truncated"), "2000000");
            assert_eq!(cut.header("esync.reason"), "bad_id");
            assert_eq!(cut.key.as_deref(), Some(&b"42"[..]), "the id survives");
            assert!(
                cut.value
                    .as_ref()
                    .is_some_and(|value| value.len() < 2_000_000)
            );
        }
    }

    #[test]
    fn small_letters_keep_their_whole_value() {
        let cut = truncate(&letter(100), 1_000_000);
        assert_eq!(cut.value.as_ref().map(Vec::len), Some(100));
        assert_eq!(cut.header("esync.truncated"), "100");
    }

    #[test]
    fn a_key_that_cannot_fit_is_dropped_not_the_reason() {
        let mut huge_key = letter(10);
        huge_key.key = Some(vec![b'k'; 10_000]);
        let cut = truncate(&huge_key, 1_000);
        assert_eq!(cut.key, None);
        assert_eq!(cut.header("esync.reason"), "bad_id");
    }
}
