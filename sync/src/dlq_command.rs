//! `esync dlq list` and `esync dlq replay`: read the dead-letter topic to
//! its end offsets, summarise it or re-publish the ids of unwritable rows to
//! their mapping's topic.
//!
//! The I/O side of [`crate::dlq`]: it only reads Kafka, hands each letter to
//! the pure builders and produces what they planned. It commits no offset
//! and touches neither the database nor Elasticsearch. A replay is harmless:
//! the daemon re-reads each replayed id's row, and external versions make a
//! write of an unchanged row a no-op.

use crate::config::Config;
use crate::dlq::{Filter, Letter, Mappings, ReplayPlan, ReplayPlanner, Summary, SummaryBuilder};
use crate::kafka::{self, IdProducer, TopicReadError};
use rdkafka::Message as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _};
use std::time::Duration;

/// How long reading may wait for the next message before giving up.
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Ids produced per round, so progress shows on large replays.
const REPLAY_CHUNK: usize = 10_000;

/// Why a dead-letter command failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The config has no `dead_letter` section.
    #[error("no dead_letter topic is configured (dead_letter.topic in the config file)")]
    NoTopic,
    /// The dead-letter topic could not be read.
    #[error(transparent)]
    Read(#[from] TopicReadError),
    /// The producer could not be created.
    #[error("cannot create a Kafka producer for brokers {brokers}: {source}")]
    Producer {
        /// `kafka.brokers`.
        brokers: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// Replayed ids were not acknowledged.
    #[error(
        "replaying to topic {topic} on Kafka brokers {brokers} failed after {done} id(s) were acknowledged: {source}"
    )]
    Produce {
        /// `kafka.brokers`.
        brokers: String,
        /// The source topic.
        topic: String,
        /// Ids acknowledged on that topic before the failure (replaying again is harmless).
        done: usize,
        /// librdkafka's error (boxed: it is large and this path is cold).
        source: Box<KafkaError>,
    },
}

fn dead_letter_topic(config: &Config) -> Result<&str, DlqError> {
    config
        .dead_letter
        .as_ref()
        .map(|dead_letter| dead_letter.topic.as_str())
        .ok_or(DlqError::NoTopic)
}

/// Counts the letters `filter` selects by kind, reason and mapping.
pub async fn list(config: &Config, filter: Filter) -> Result<Summary, DlqError> {
    let topic = dead_letter_topic(config)?;
    let mut summary = SummaryBuilder::new(topic, filter, Mappings::new(&config.mappings));
    kafka::read_to_end(&config.kafka, topic, READ_IDLE_TIMEOUT, |message| {
        summary.add(&to_letter(message));
    })
    .await?;
    Ok(summary.finish())
}

/// Plans the replay of the letters `filter` selects and, unless `dry_run`,
/// produces the ids to their mapping's first topic, waiting for every
/// acknowledgement.
pub async fn replay(
    config: &Config,
    filter: Filter,
    dry_run: bool,
) -> Result<ReplayPlan, DlqError> {
    let topic = dead_letter_topic(config)?;
    let mut planner = ReplayPlanner::new(filter, Mappings::new(&config.mappings));
    kafka::read_to_end(&config.kafka, topic, READ_IDLE_TIMEOUT, |message| {
        planner.add(&to_letter(message));
    })
    .await?;
    let plan = planner.finish();
    if dry_run {
        return Ok(plan);
    }
    let brokers = &config.kafka.brokers;
    let producer = IdProducer::new(&config.kafka).map_err(|source| DlqError::Producer {
        brokers: brokers.clone(),
        source,
    })?;
    for (target, replays) in &plan.by_topic {
        let mut done = 0;
        for chunk in replays.chunks(REPLAY_CHUNK) {
            let messages: Vec<_> = chunk.iter().map(|replay| replay.message.clone()).collect();
            done += producer
                .send_messages(target, &messages)
                .await
                .map_err(|source| DlqError::Produce {
                    brokers: brokers.clone(),
                    topic: target.clone(),
                    done,
                    source: Box::new(source),
                })?;
            tracing::info!(topic = %target, done, total = replays.len(), "replayed ids");
        }
    }
    Ok(plan)
}

fn to_letter(message: &BorrowedMessage<'_>) -> Letter {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    (
                        header.key.to_owned(),
                        String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Letter {
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        headers,
    }
}
