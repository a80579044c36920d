//! Kafka adapter: the consumer (with rebalance and commit handling), the
//! dead-letter and id producers, and a one-shot reader of a whole topic
//! (`esync dlq`).
//!
//! Offsets are never committed automatically: `enable.auto.commit` and
//! `enable.auto.offset.store` are off, and esync commits the positions the
//! [`OffsetTracker`] allows. On revoke, the finished part of each revoked
//! partition is committed synchronously inside the rebalance callback (a
//! commit after the group moved on would be rejected), and the partition is
//! forgotten so late acknowledgements cannot move the next owner's position.

use crate::catch_up::{Partition, backlog_end};
use crate::config::KafkaConfig;
use crate::kafka_log::KafkaLog;
use crate::lock::lock;
use crate::metrics::{Metrics, PartitionLabel};
use crate::offsets::{CommitPosition, OffsetTracker};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureProducer, FutureRecord, ProducerContext,
};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The consumer's context: rebalance hooks, commit results, statistics;
/// its log goes where every client's goes ([`KafkaLog`]).
pub struct EsyncContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    metrics: Arc<Metrics>,
    log: KafkaLog,
}

/// A producer whose log goes through [`KafkaLog`].
pub type Producer = FutureProducer<KafkaLog>;

impl ClientContext for EsyncContext {
    fn stats(&self, statistics: Statistics) {
        let tracker = lock(&self.tracker);
        for (topic, topic_stats) in &statistics.topics {
            for (partition, partition_stats) in &topic_stats.partitions {
                // -1 is librdkafka's "internal" partition and partitions not
                // assigned to us; statistics taken before a revoke may still
                // show a revoked one, whose lag is its new owner's to report
                if *partition < 0
                    || partition_stats.consumer_lag < 0
                    || tracker.generation(topic, *partition).is_none()
                {
                    continue;
                }
                let label = PartitionLabel {
                    topic: topic.clone(),
                    partition: partition.to_string(),
                };
                self.metrics
                    .consumer_lag
                    .get_or_create(&label)
                    .set(partition_stats.consumer_lag);
            }
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.write(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(&error, reason);
    }
}

impl ConsumerContext for EsyncContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let positions: Vec<CommitPosition> = {
                    let mut tracker = lock(&self.tracker);
                    partitions
                        .elements()
                        .iter()
                        .filter_map(|element| tracker.revoke(element.topic(), element.partition()))
                        .collect()
                };
                for element in partitions.elements() {
                    // a partition that is not ours has no lag here
                    self.metrics.consumer_lag.remove(&PartitionLabel {
                        topic: element.topic().to_owned(),
                        partition: element.partition().to_string(),
                    });
                }
                tracing::info!(
                    partitions = ?partition_numbers(partitions),
                    committing = positions.len(),
                    "partitions revoked"
                );
                if positions.is_empty() {
                    return;
                }
                match consumer.commit(&to_partition_list(&positions), CommitMode::Sync) {
                    Ok(()) => tracing::info!(
                        partitions = positions.len(),
                        "committed finished offsets of revoked partitions"
                    ),
                    Err(error) => {
                        self.metrics.commit_failures.inc();
                        tracing::warn!(error = %error, "commit on revoke failed; the next owner replays from the last commit");
                    }
                }
            }
            Rebalance::Assign(partitions) => {
                let mut tracker = lock(&self.tracker);
                for element in partitions.elements() {
                    tracker.assign(element.topic(), element.partition());
                }
                tracing::info!(partitions = ?partition_numbers(partitions), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(error = %error, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                let mut tracker = lock(&self.tracker);
                for element in offsets.elements() {
                    if let Offset::Offset(offset) = element.offset() {
                        tracker.mark_committed(&CommitPosition {
                            topic: Arc::from(element.topic()),
                            partition: element.partition(),
                            offset,
                        });
                    }
                }
            }
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                self.metrics.commit_failures.inc();
                tracing::warn!(error = %error, "offset commit failed; retrying at the next interval");
            }
        }
    }
}

/// `topic[partition]` of each element, for logs.
fn partition_numbers(partitions: &TopicPartitionList) -> Vec<String> {
    partitions
        .elements()
        .iter()
        .map(|element| format!("{}[{}]", element.topic(), element.partition()))
        .collect()
}

/// The consumer type of the daemon.
pub type EsyncConsumer = StreamConsumer<EsyncContext>;

/// Builds the consumer; it is subscribed by the caller.
pub fn build_consumer(
    config: &KafkaConfig,
    tracker: Arc<Mutex<OffsetTracker>>,
    metrics: Arc<Metrics>,
) -> KafkaResult<EsyncConsumer> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &config.auto_offset_reset)
        .set("statistics.interval.ms", "5000");
    for (key, value) in &config.options {
        client.set(key, value);
    }
    client.create_with_context(EsyncContext {
        tracker,
        metrics,
        log: KafkaLog::default(),
    })
}

/// Converts commit positions to the list rdkafka commits.
pub fn to_partition_list(positions: &[CommitPosition]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(positions.len());
    for position in positions {
        // add_partition_offset only fails for invalid offsets, which positions never are
        let _ = list.add_partition_offset(
            &position.topic,
            position.partition,
            Offset::Offset(position.offset),
        );
    }
    list
}

/// Commits every position the tracker allows, synchronously (shutdown).
pub fn commit_finished_sync(
    consumer: &EsyncConsumer,
    tracker: &Mutex<OffsetTracker>,
) -> KafkaResult<usize> {
    let positions = lock(tracker).committable();
    if positions.is_empty() {
        return Ok(0);
    }
    consumer.commit(&to_partition_list(&positions), CommitMode::Sync)?;
    let mut tracker = lock(tracker);
    for position in &positions {
        tracker.mark_committed(position);
    }
    Ok(positions.len())
}

/// The end offset of every assigned partition that still has messages to
/// read, as the broker sees it now (see [`crate::catch_up`]): blocking, one
/// committed-offsets request and two `ListOffsets` requests (earliest and
/// latest, each for every partition at once). A partition the broker
/// answers with an error is left out.
pub fn backlog_ends(
    consumer: &EsyncConsumer,
    reset_to_earliest: bool,
    timeout: Duration,
) -> KafkaResult<HashMap<Partition, i64>> {
    let assignment = consumer.assignment()?;
    let positions = consumer.position()?;
    let committed = consumer.committed(timeout)?;
    // ListOffsets with the timestamps -2 and -1: the log start and end offsets
    let at = |offset: Offset| -> KafkaResult<TopicPartitionList> {
        let mut list = assignment.clone();
        list.set_all_offsets(offset)?;
        consumer.offsets_for_times(list, timeout)
    };
    let (lows, highs) = (at(Offset::Beginning)?, at(Offset::End)?);
    let offset_of = |list: &TopicPartitionList, topic: &str, partition: i32| {
        let element = list.find_partition(topic, partition)?;
        match (element.error(), element.offset()) {
            (Ok(()), Offset::Offset(offset)) => Some(offset),
            _ => None,
        }
    };
    let mut ends = HashMap::new();
    for element in assignment.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (Some(low), Some(high)) = (
            offset_of(&lows, topic, partition),
            offset_of(&highs, topic, partition),
        ) else {
            continue;
        };
        let next = offset_of(&positions, topic, partition)
            .or_else(|| offset_of(&committed, topic, partition));
        if let Some(end) = backlog_end(next, low, high, reset_to_earliest) {
            ends.insert((Arc::from(topic), partition), end);
        }
    }
    Ok(ends)
}

/// Builds a producer with delivery guarantees suitable for dead letters and
/// published ids: idempotent, `acks=all`.
pub fn build_producer(config: &KafkaConfig) -> KafkaResult<Producer> {
    producer_config(config).create_with_context(KafkaLog::default())
}

/// The settings of every producer: idempotent, `acks=all`, 30 s to deliver.
fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000");
    for (key, value) in &config.options {
        // consumer-only options would make the producer warn; pass the shared ones
        if is_connection_option(key) || key == "message.max.bytes" {
            client.set(key, value);
        }
    }
    client
}

/// A consumer for one-off metadata requests (`esync check`): no group
/// membership, and its librdkafka lines at debug, since the caller reports
/// the outcome itself.
pub fn probe_consumer(config: &KafkaConfig) -> KafkaResult<BaseConsumer<KafkaLog>> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id);
    for (key, value) in &config.options {
        client.set(key, value);
    }
    client.create_with_context(KafkaLog::new(true))
}

/// One dead letter: what failed and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Key to produce (the original key, or the id).
    pub key: Option<Vec<u8>>,
    /// Value to produce (the original value, or a JSON description).
    pub value: Option<Vec<u8>>,
    /// Headers `esync.*`: reason code, error text, origin.
    pub headers: Vec<(&'static str, String)>,
}

impl DeadLetter {
    /// The value of header `name`, empty when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map_or("", |(_, value)| value.as_str())
    }
}

/// Produces `letter` to `topic`, waiting for the broker's acknowledgement.
pub async fn produce_dead_letter(
    producer: &Producer,
    topic: &str,
    letter: &DeadLetter,
) -> KafkaResult<()> {
    let mut headers = OwnedHeaders::new_with_capacity(letter.headers.len());
    for (key, value) in &letter.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(key) = &letter.key {
        record = record.key(key);
    }
    if let Some(value) = &letter.value {
        record = record.payload(value);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(drop)
        .map_err(|(error, _)| error)
}

/// Creates `topics` with `partitions` partitions each (replication factor 1
/// unless the cluster decides), ignoring topics that already exist.
pub async fn create_topics(
    config: &KafkaConfig,
    topics: &[&str],
    partitions: i32,
    replication: i32,
) -> KafkaResult<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in &config.options {
        if key.starts_with("security.") || key.starts_with("sasl.") || key.starts_with("ssl.") {
            client.set(key, value);
        }
    }
    let admin: AdminClient<KafkaLog> = client.create_with_context(KafkaLog::default())?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(topic, error = %code, "create topic failed");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}

/// Produces ids in the plain format the daemon reads (the id as key and
/// value, so one id always lands in one partition), waiting for `acks=all`.
///
/// A `BaseProducer` with a polling thread of its own rather than a
/// `FutureProducer`: rdkafka's `poll` (0.38 and later) rounds the time left
/// down to whole milliseconds and spins through the last one of every call,
/// and `FutureProducer`'s thread calls it every 100 ms, which cost about 1%
/// of a core even when idle (most of an outbox relay's CPU when rows
/// trickle in). This thread calls it once per [`POLL_CALL`]; a delivery
/// report is still handled as soon as it arrives. Each send counts its
/// acknowledgements in one [`Acks`] instead of a channel and a future per
/// message.
pub struct IdProducer {
    producer: Arc<BaseProducer<AckContext>>,
    /// Tells the polling thread to stop (it does within [`POLL_CALL`],
    /// dropping the producer last).
    stop: Arc<AtomicBool>,
}

/// How long one `poll` call of the [`IdProducer`]'s thread lasts.
const POLL_CALL: Duration = Duration::from_secs(1);

/// How long a send waits for room in librdkafka's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

impl IdProducer {
    /// A producer for `config`'s brokers.
    pub fn new(config: &KafkaConfig) -> KafkaResult<IdProducer> {
        let producer: Arc<BaseProducer<AckContext>> =
            Arc::new(producer_config(config).create_with_context(AckContext {
                log: KafkaLog::default(),
            })?);
        let stop = Arc::new(AtomicBool::new(false));
        let polled = (producer.clone(), stop.clone());
        let _detached = std::thread::Builder::new()
            .name("esync-producer-poll".into())
            .spawn(move || {
                let (producer, stop) = polled;
                while !stop.load(Ordering::Relaxed) {
                    producer.poll(POLL_CALL);
                }
            })
            .map_err(|_| {
                KafkaError::ClientCreation("cannot start the producer's polling thread".into())
            })?;
        Ok(IdProducer { producer, stop })
    }

    /// Produces every id to `topic` and waits until all are acknowledged.
    pub async fn send_all<'a>(
        &self,
        topic: &str,
        ids: impl IntoIterator<Item = &'a crate::id::Id>,
    ) -> KafkaResult<usize> {
        let texts: Vec<String> = ids.into_iter().map(ToString::to_string).collect();
        self.send_each(
            topic,
            texts
                .iter()
                .map(|text| (Some(text.as_bytes()), Some(text.as_bytes()))),
        )
        .await
    }

    /// Checks that the brokers answer a metadata request within `timeout`.
    pub async fn check_reachable(&self, timeout: Duration) -> KafkaResult<()> {
        use rdkafka::producer::Producer as _;
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(drop)
        })
        .await
        .map_err(|_| KafkaError::Canceled)?
    }

    /// Produces `messages` to `topic` and waits until all are acknowledged.
    pub async fn send_messages(
        &self,
        topic: &str,
        messages: &[crate::decode::EncodedMessage],
    ) -> KafkaResult<usize> {
        self.send_each(
            topic,
            messages
                .iter()
                .map(|message| (message.key.as_deref(), message.value.as_deref())),
        )
        .await
    }

    /// Produces a raw message (tests and tools that need malformed input).
    pub async fn send_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> KafkaResult<()> {
        self.send_each(topic, std::iter::once((key, value)))
            .await
            .map(drop)
    }

    /// Enqueues every `(key, value)`, then waits until librdkafka reported
    /// each delivered or failed; the first failure is the result. A full
    /// queue is waited out (up to [`QUEUE_TIMEOUT`]); any other refusal
    /// stops enqueueing and is reported once the enqueued ones are settled.
    async fn send_each<'m>(
        &self,
        topic: &str,
        messages: impl ExactSizeIterator<Item = (Option<&'m [u8]>, Option<&'m [u8]>)>,
    ) -> KafkaResult<usize> {
        let count = messages.len();
        let acks = Arc::new(Acks::new(count));
        let started = std::time::Instant::now();
        for (index, (key, value)) in messages.enumerate() {
            let mut record: BaseRecord<'_, [u8], [u8], Arc<Acks>> =
                BaseRecord::with_opaque_to(topic, acks.clone());
            record.key = key;
            record.payload = value;
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                        if started.elapsed() < QUEUE_TIMEOUT =>
                    {
                        record = returned;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err((error, _)) => {
                        // this one and the rest will never be reported
                        acks.settle(count - index, Err(error));
                        return acks.wait().await.map(|()| count);
                    }
                }
            }
        }
        acks.wait().await.map(|()| count)
    }
}

impl Drop for IdProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The [`IdProducer`]'s context: librdkafka's log goes through
/// [`KafkaLog`]; each delivery report settles its send's [`Acks`].
struct AckContext {
    log: KafkaLog,
}

impl ClientContext for AckContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.write(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(&error, reason);
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Arc<Acks>;

    fn delivery(&self, result: &DeliveryResult<'_>, acks: Arc<Acks>) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.clone()),
        };
        acks.settle(1, outcome);
    }
}

/// The acknowledgements one send still waits for, and its first failure.
struct Acks {
    state: Mutex<AckState>,
    settled: tokio::sync::Notify,
}

struct AckState {
    pending: usize,
    first_error: Option<KafkaError>,
}

impl Acks {
    fn new(pending: usize) -> Acks {
        Acks {
            state: Mutex::new(AckState {
                pending,
                first_error: None,
            }),
            settled: tokio::sync::Notify::new(),
        }
    }

    /// `count` messages are settled with `outcome`.
    fn settle(&self, count: usize, outcome: KafkaResult<()>) {
        let mut state = lock(&self.state);
        state.pending = state.pending.saturating_sub(count);
        if let Err(error) = outcome {
            let _ = state.first_error.get_or_insert(error);
        }
        if state.pending == 0 {
            // stores a permit when the sender is not waiting yet
            self.settled.notify_one();
        }
    }

    /// Waits until every message is settled; the first failure, if any.
    async fn wait(&self) -> KafkaResult<()> {
        let pending = lock(&self.state).pending;
        if pending > 0 {
            self.settled.notified().await;
        }
        match lock(&self.state).first_error.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Why a topic could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum TopicReadError {
    /// The brokers did not answer a metadata request.
    #[error("cannot reach Kafka brokers {brokers} to read topic {topic}: {source}")]
    Unreachable {
        /// `kafka.brokers`.
        brokers: String,
        /// The topic.
        topic: String,
        /// librdkafka's error (boxed: it is large and this path is cold).
        source: Box<KafkaError>,
    },
    /// The topic does not exist.
    #[error("topic {topic} does not exist on Kafka brokers {brokers}")]
    Missing {
        /// `kafka.brokers`.
        brokers: String,
        /// The topic.
        topic: String,
    },
    /// The consumer could not be created or assigned, or failed fatally.
    #[error("cannot read topic {topic} from Kafka brokers {brokers}: {source}")]
    Consumer {
        /// `kafka.brokers`.
        brokers: String,
        /// The topic.
        topic: String,
        /// librdkafka's error (boxed: it is large and this path is cold).
        source: Box<KafkaError>,
    },
    /// No message arrived for `idle` while partitions still had some to read.
    #[error("reading topic {topic} from Kafka brokers {brokers} stalled: nothing received for {} with partitions {partitions:?} unfinished", humantime::format_duration(*.idle))]
    Stalled {
        /// `kafka.brokers`.
        brokers: String,
        /// The topic.
        topic: String,
        /// The time waited.
        idle: Duration,
        /// Partitions not read to their end.
        partitions: Vec<i32>,
    },
}

/// Quiet time after which [`read_to_end`] checks its positions.
const QUIET_CHECK: Duration = Duration::from_secs(1);

/// How long a one-shot tool waits for the brokers to answer a metadata request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads every message of `topic` from the beginning up to the end offsets
/// it has when the call starts, and hands each to `each`; messages produced
/// meanwhile are left out, so the read ends. Partitions are assigned
/// directly (no group membership) and no offset is committed, so reading
/// changes nothing for anybody. Fails when nothing arrives for `idle`.
pub async fn read_to_end(
    config: &KafkaConfig,
    topic: &str,
    idle: Duration,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<u64, TopicReadError> {
    use rdkafka::Message as _;
    use std::collections::BTreeMap;
    let brokers = config.brokers.clone();
    let consumer_error = |source| TopicReadError::Consumer {
        brokers: brokers.clone(),
        topic: topic.to_owned(),
        source: Box::new(source),
    };
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        // librdkafka wants a group id; with assign() and no commits it is never used
        .set(
            "group.id",
            format!("esync-dlq-{:016x}", rand::random::<u64>()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    for (key, value) in &config.options {
        if is_connection_option(key) {
            client.set(key, value);
        }
    }
    let consumer: StreamConsumer<KafkaLog> = client
        .create_with_context(KafkaLog::default())
        .map_err(consumer_error)?;
    // Blocking metadata calls: fine for a one-shot command.
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|source| TopicReadError::Unreachable {
            brokers: brokers.clone(),
            topic: topic.to_owned(),
            source: Box::new(source),
        })?;
    let missing = || TopicReadError::Missing {
        brokers: brokers.clone(),
        topic: topic.to_owned(),
    };
    let partitions: Vec<i32> = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(found) if found.error().is_none() && !found.partitions().is_empty() => {
            found.partitions().iter().map(|p| p.id()).collect()
        }
        _ => return Err(missing()),
    };
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut expected = 0;
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            .map_err(consumer_error)?;
        if high > low {
            expected += high - low;
            ends.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(consumer_error)?;
        }
    }
    tracing::info!(
        topic,
        partitions = ends.len(),
        messages = expected,
        "reading to the end offsets"
    );
    if ends.is_empty() {
        return Ok(0);
    }
    consumer.assign(&assignment).map_err(consumer_error)?;
    let mut read = 0;
    let mut last_progress = tokio::time::Instant::now();
    while !ends.is_empty() {
        match tokio::time::timeout(QUIET_CHECK, consumer.recv()).await {
            Ok(Ok(message)) => {
                let partition = message.partition();
                // messages of finished partitions are not progress
                let Some(&end) = ends.get(&partition) else {
                    continue;
                };
                if message.offset() < end {
                    last_progress = tokio::time::Instant::now();
                    each(&message);
                    read += 1;
                }
                if message.offset() + 1 >= end {
                    ends.remove(&partition);
                }
            }
            Ok(Err(error)) => {
                // librdkafka retries transport errors itself; a stall ends in `Stalled`
                tracing::warn!(topic, error = %error, "kafka consumer error while reading");
            }
            Err(_quiet) => {
                // The last offsets before the end can hold no message
                // (transaction markers, compaction): the position says so.
                if let Ok(positions) = consumer.position() {
                    for element in positions.elements_for_topic(topic) {
                        if let (Offset::Offset(position), Some(&end)) =
                            (element.offset(), ends.get(&element.partition()))
                            && position >= end
                        {
                            ends.remove(&element.partition());
                        }
                    }
                }
                if !ends.is_empty() && last_progress.elapsed() >= idle {
                    return Err(TopicReadError::Stalled {
                        brokers,
                        topic: topic.to_owned(),
                        idle,
                        partitions: ends.into_keys().collect(),
                    });
                }
            }
        }
    }
    Ok(read)
}

/// Options every client needs to reach the brokers (security, client id),
/// as opposed to consumer- or producer-only ones.
fn is_connection_option(key: &str) -> bool {
    key.starts_with("security.")
        || key.starts_with("sasl.")
        || key.starts_with("ssl.")
        || key.starts_with("client.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acks_wake_the_sender_once_all_are_settled_and_keep_the_first_failure() {
        // settled before the sender waits
        let acks = Acks::new(2);
        acks.settle(1, Ok(()));
        acks.settle(1, Ok(()));
        assert!(acks.wait().await.is_ok());

        // settled by another thread while the sender waits
        let acks = Arc::new(Acks::new(3));
        let settler = {
            let acks = acks.clone();
            std::thread::spawn(move || {
                acks.settle(1, Ok(()));
                acks.settle(1, Err(KafkaError::Canceled));
                acks.settle(1, Err(KafkaError::NoMessageReceived));
            })
        };
        let outcome = acks.wait().await;
        settler.join().expect("settler");
        assert_eq!(
            outcome.err(),
            Some(KafkaError::Canceled),
            "the first failure"
        );

        // nothing to wait for
        assert!(Acks::new(0).wait().await.is_ok());
    }

    #[tokio::test]
    async fn a_message_librdkafka_refuses_fails_the_send_at_once() {
        // nothing listens on port 9; the refusal happens before any broker is asked
        let config: KafkaConfig =
            serde_yaml::from_str("brokers: \"127.0.0.1:9\"").expect("kafka config");
        let producer = IdProducer::new(&config).expect("producer");
        let too_large = vec![b'x'; 2_000_000];
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            producer.send_each(
                "esync_unit_refused",
                [
                    (None, Some(too_large.as_slice())),
                    (None, Some(b"1".as_slice())),
                ]
                .into_iter(),
            ),
        )
        .await
        .expect("a refused send returns without waiting for deliveries");
        assert_eq!(
            outcome.err(),
            Some(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge
            ))
        );
    }
}
