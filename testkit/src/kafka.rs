//! The Kafka side: topics, producing ids the way applications do, and
//! reading topics back.

use crate::env::unique;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Creates `topics` with `partitions` each (an existing topic is fine).
pub async fn create_topics(brokers: &str, topics: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .unwrap_or_else(|error| panic!("create topics {topics:?} on {brokers}: {error}"));
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => panic!("create topic {topic} on {brokers}: {code}"),
        }
    }
}

/// A uniquely named topic (and a producer) on a broker.
pub struct Topic {
    pub name: String,
    pub brokers: String,
    producer: FutureProducer,
}

impl Topic {
    /// A topic named `<prefix>_<random>`.
    pub async fn create(brokers: &str, prefix: &str, partitions: i32) -> Topic {
        Topic::create_named(brokers, &unique(prefix), partitions).await
    }

    /// A topic named `name` (created unless it exists).
    pub async fn create_named(brokers: &str, name: &str, partitions: i32) -> Topic {
        let name = name.to_owned();
        create_topics(brokers, &[name.as_str()], partitions).await;
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("producer");
        Topic {
            name,
            brokers: brokers.to_owned(),
            producer,
        }
    }

    /// Produces ids in the plain format (the id as key and value) and waits
    /// until all are acknowledged.
    pub async fn send_ids(&self, ids: &[i64]) {
        let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let deliveries = texts
            .iter()
            .map(|text| self.send_raw(Some(text.as_bytes()), Some(text.as_bytes())));
        for delivery in futures::future::join_all(deliveries).await {
            delivery.expect("produce ids");
        }
    }

    /// Produces one raw message (malformed input, tombstones).
    pub async fn send_raw(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(), String> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.name);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(drop)
            .map_err(|(error, _)| format!("produce to {}: {error}", self.name))
    }
}

/// A message read back with a consumer group: its key and headers.
pub type KeyAndHeaders = (Option<Vec<u8>>, HashMap<String, String>);

/// Reads up to `expected` messages of `topic` from the earliest offset in a
/// new consumer group, for at most `timeout`.
pub async fn read_messages(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<KeyAndHeaders> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while found.len() < expected {
        let Ok(Ok(message)) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        let value = header.value.unwrap_or_default();
                        (
                            header.key.to_owned(),
                            String::from_utf8_lossy(value).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.push((message.key().map(<[u8]>::to_vec), headers));
    }
    found
}

/// One message read back: key, value and produce timestamp (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub key: String,
    pub value: String,
    pub timestamp_ms: i64,
}

/// A consumer without a group and the partitions of `topic`.
fn partitions(brokers: &str, topic: &str) -> (BaseConsumer, Vec<i32>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|partition| partition.id())
        .collect();
    (consumer, partitions)
}

/// Every message currently in `topic`, all partitions, from the beginning.
pub async fn read_topic(brokers: &str, topic: &str) -> Vec<Received> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let (consumer, partitions) = partitions(&brokers, &topic);
        let mut list = rdkafka::TopicPartitionList::new();
        let mut remaining = 0i64;
        let mut ends = BTreeMap::new();
        for partition in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, *partition, Duration::from_secs(10))
                .expect("watermarks");
            list.add_partition_offset(&topic, *partition, rdkafka::Offset::Beginning)
                .expect("partition");
            remaining += high - low;
            let _ = ends.insert(*partition, high);
        }
        consumer.assign(&list).expect("assign");
        let mut out = Vec::with_capacity(remaining as usize);
        let started = Instant::now();
        while (out.len() as i64) < remaining {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "reading {topic} timed out at {} of {remaining}",
                out.len()
            );
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message.expect("message");
            if message.offset() >= ends[&message.partition()] {
                continue;
            }
            let text = |bytes: Option<&[u8]>| {
                bytes
                    .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                    .unwrap_or_default()
            };
            out.push(Received {
                key: text(message.key()),
                value: text(message.payload()),
                timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
            });
        }
        out
    })
    .await
    .expect("reader task")
}

/// Messages in `topic` (sum of high watermarks minus low ones).
pub async fn topic_size(brokers: &str, topic: &str) -> i64 {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let (consumer, partitions) = partitions(&brokers, &topic);
        partitions
            .iter()
            .map(|partition| {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, *partition, Duration::from_secs(10))
                    .expect("watermarks");
                high - low
            })
            .sum()
    })
    .await
    .expect("size task")
}

/// The offsets a consumer group committed on a topic, read without joining
/// the group.
pub struct GroupCommits {
    consumer: std::sync::Arc<BaseConsumer>,
    topic: String,
}

impl GroupCommits {
    /// A reader of `group`'s commits on `topic`.
    pub fn new(brokers: &str, group: &str, topic: &str) -> Result<GroupCommits, String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|error| format!("consumer: {error}"))?;
        Ok(GroupCommits {
            consumer: std::sync::Arc::new(consumer),
            topic: topic.to_owned(),
        })
    }

    /// Messages of the topic below the committed offsets.
    pub async fn messages(&self) -> Result<i64, String> {
        let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(10);
            let failed = |what: &str, error: rdkafka::error::KafkaError| format!("{what}: {error}");
            let metadata = consumer
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|error| failed("metadata", error))?;
            let mut partitions = rdkafka::TopicPartitionList::new();
            for partition in metadata
                .topics()
                .first()
                .ok_or("no topic metadata")?
                .partitions()
            {
                partitions.add_partition(&topic, partition.id());
            }
            let committed = consumer
                .committed_offsets(partitions, timeout)
                .map_err(|error| failed("committed offsets", error))?;
            let mut messages = 0;
            for element in committed.elements() {
                if let rdkafka::Offset::Offset(committed) = element.offset() {
                    let (low, _) = consumer
                        .fetch_watermarks(&topic, element.partition(), timeout)
                        .map_err(|error| failed("watermarks", error))?;
                    messages += committed - low;
                }
            }
            Ok(messages)
        })
        .await
        .map_err(|error| format!("commits task: {error}"))?
    }
}

/// Messages per key of plain-format messages (the id as key and value).
pub fn counts(messages: &[Received]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for message in messages {
        let id: i64 = message
            .key
            .parse()
            .unwrap_or_else(|_| panic!("key {:?} is not an integer id", message.key));
        assert_eq!(
            message.key, message.value,
            "plain format: the id is key and value"
        );
        *counts.entry(id).or_default() += 1;
    }
    counts
}
