//! `esync run`: the Kafka consumer loop, the workers and the commit loop.
//!
//! ```text
//! consumer loop: recv -> decode -> register in OffsetTracker -> id to worker hash(id) % N
//! worker i:      batch (max ids / max wait, deduped) -> Writer -> dead-letter failures -> acknowledge
//! commit loop:   every commit_interval, commit what the tracker allows
//! ```
//! Queues are bounded; when a worker's queue is full the consumer pauses its
//! partitions but keeps polling (rebalances and `max.poll.interval.ms` stay
//! served) until there is room again.
//!
//! Shutdown: stop fetching, let workers finish what they hold within the grace
//! period, abandon the rest (it is not acknowledged, so it is replayed after a
//! restart), commit what is finished, leave the group.

use crate::batch::Batch;
use crate::config::{Config, LoadedConfig};
use crate::db::Database;
use crate::es::EsClient;
use crate::id::Id;
use crate::kafka::{self, DeadLetter, EsyncConsumer};
use crate::metrics::{Metrics, ReasonLabel, RetryLabel, TopicLabel};
use crate::offsets::{OffsetTracker, Receipt};
use crate::writer::{Abandoned, Mapping, Writer, sleep_or_abort};
use prometheus_client::metrics::counter::Counter;
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The database is unreachable or the URL is wrong.
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    /// The Elasticsearch client could not be built.
    #[error(transparent)]
    Elasticsearch(#[from] crate::es::EsError),
    /// The Kafka client could not be created or subscribed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The metrics endpoint could not listen.
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        /// The configured address.
        address: std::net::SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

/// Connected adapters shared by the daemon's tasks and the health endpoint.
#[derive(Clone)]
pub struct Services {
    /// The re-read and write engine.
    pub writer: Writer,
    /// The consumer.
    pub consumer: Arc<EsyncConsumer>,
    /// The dead-letter producer and topic, when configured.
    pub dead_letter: Option<(FutureProducer, String)>,
    /// Offsets in flight.
    pub tracker: Arc<Mutex<OffsetTracker>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Backoff for retried work (dead letters).
    pub retry: crate::retry::RetryPolicy,
}

impl Services {
    /// Connects everything the daemon needs, failing fast with the resource's name.
    pub async fn connect(
        loaded: &LoadedConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Services, DaemonError> {
        let config = &loaded.config;
        let database = Database::connect(
            &loaded.secrets.database_url,
            config.source.max_connections,
            config.source.connect_timeout,
        )
        .await?;
        let es = EsClient::new(&config.elasticsearch, &loaded.secrets)?;
        let mappings = Arc::new(Mapping::all_from_config(config, database.dialect()));
        let writer = Writer::new(
            database,
            es,
            mappings,
            config.retry,
            &config.elasticsearch,
            metrics.clone(),
        );
        let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
        let consumer = kafka::build_consumer(&config.kafka, tracker.clone(), metrics.clone())?;
        let dead_letter = match &config.dead_letter {
            Some(dead_letter) => Some((
                kafka::build_producer(&config.kafka)?,
                dead_letter.topic.clone(),
            )),
            None => None,
        };
        Ok(Services {
            writer,
            consumer: Arc::new(consumer),
            dead_letter,
            tracker,
            metrics,
            retry: config.retry,
        })
    }

    /// Checks that Kafka, the database and Elasticsearch answer; the error
    /// names the failing system.
    pub async fn health(&self) -> Result<(), String> {
        let timeout = Duration::from_secs(3);
        let consumer = self.consumer.clone();
        let kafka =
            tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, timeout).map(drop));
        let database = tokio::time::timeout(timeout, self.writer.database().ping());
        let es = self.writer.es().ping(timeout);
        let (kafka, database, es) = tokio::join!(kafka, database, es);
        let mut problems = Vec::new();
        match kafka {
            Ok(Ok(())) => {}
            Ok(Err(error)) => problems.push(format!("kafka: {error}")),
            Err(error) => problems.push(format!("kafka: {error}")),
        }
        match database {
            Ok(Ok(())) => {}
            Ok(Err(error)) => problems.push(format!("database: {error}")),
            Err(_) => problems.push("database: time-out".into()),
        }
        if let Err(error) = es {
            problems.push(format!("elasticsearch: {error}"));
        }
        if let Some(stalled) = self.writer.health_problem() {
            problems.push(stalled);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Where a topic's messages go, and its message counter.
struct TopicRoute {
    mapping: usize,
    name: Arc<str>,
    messages: Counter,
}

/// One id on its way to a worker.
#[derive(Debug)]
struct WorkItem {
    mapping: usize,
    id: Id,
    receipt: Receipt,
}

/// Runs until `shutdown` fires, then drains, commits and returns.
pub async fn run(
    config: &Config,
    services: Services,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let topics: Vec<&str> = config
        .mappings
        .iter()
        .flat_map(|mapping| mapping.topics.iter().map(String::as_str))
        .collect();
    services.consumer.subscribe(&topics)?;
    tracing::info!(topics = ?topics, group = %config.kafka.group_id, workers = config.workers, "consuming");

    // Fires when the grace period is over: in-flight work is abandoned.
    let abort = CancellationToken::new();
    let mut workers = JoinSet::new();
    let mut senders = Vec::with_capacity(config.workers);
    for worker_index in 0..config.workers {
        let (sender, receiver) = mpsc::channel(config.batch.queue_capacity);
        senders.push(sender);
        workers.spawn(worker_loop(
            worker_index,
            receiver,
            services.clone(),
            config.batch,
            abort.clone(),
        ));
    }
    let commit_loop = tokio::spawn(commit_loop(
        services.clone(),
        config.kafka.commit_interval,
        shutdown.clone(),
    ));

    ConsumerLoop::new(config, &services, senders)
        .run(&shutdown)
        .await;

    // Senders are dropped: workers flush what they hold and exit.
    tracing::info!(grace = ?config.shutdown_grace, "stopping: finishing in-flight batches");
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "grace period over: abandoning unfinished batches; they will be replayed after restart"
        );
        abort.cancel();
        while workers.join_next().await.is_some() {}
    }
    let _ = commit_loop.await;
    match kafka::commit_finished_sync(&services.consumer, &services.tracker) {
        Ok(partitions) => tracing::info!(partitions, "committed finished offsets"),
        Err(error) => {
            tracing::warn!(error = %error, "final commit failed; unfinished messages will be replayed")
        }
    }
    let consumer = services.consumer.clone();
    drop(services);
    // Closing leaves the group (and runs the revoke callback); it blocks.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    tracing::info!("stopped");
    Ok(())
}

struct ConsumerLoop<'a> {
    services: &'a Services,
    senders: Vec<mpsc::Sender<WorkItem>>,
    topics: HashMap<String, TopicRoute>,
    /// `esync_ids_received_total` per mapping, resolved once.
    ids_received: Vec<Counter>,
    /// Messages received while paused, with the assignment epoch they came in.
    overflow: VecDeque<(u64, OwnedMessage)>,
    queue_capacity: usize,
    retry: crate::retry::RetryPolicy,
}

impl<'a> ConsumerLoop<'a> {
    fn new(
        config: &Config,
        services: &'a Services,
        senders: Vec<mpsc::Sender<WorkItem>>,
    ) -> ConsumerLoop<'a> {
        let metrics = &services.metrics;
        let mut topics = HashMap::new();
        for (index, mapping) in config.mappings.iter().enumerate() {
            for topic in &mapping.topics {
                let messages = metrics
                    .messages
                    .get_or_create(&TopicLabel {
                        topic: topic.clone(),
                    })
                    .clone();
                topics.insert(
                    topic.clone(),
                    TopicRoute {
                        mapping: index,
                        name: Arc::from(topic.as_str()),
                        messages,
                    },
                );
            }
        }
        let ids_received = config
            .mappings
            .iter()
            .map(|mapping| {
                metrics
                    .ids_received
                    .get_or_create(&Metrics::mapping(mapping.display_name()))
                    .clone()
            })
            .collect();
        ConsumerLoop {
            services,
            senders,
            topics,
            ids_received,
            overflow: VecDeque::new(),
            queue_capacity: config.batch.queue_capacity,
            retry: config.retry,
        }
    }

    async fn run(mut self, shutdown: &CancellationToken) {
        let mut consecutive_errors = 0u32;
        loop {
            let message = match self.overflow.pop_front() {
                Some((epoch, message)) => {
                    if epoch != kafka::lock(&self.services.tracker).assignment_epoch() {
                        // the assignment changed since: Kafka delivers these again if still ours
                        tracing::debug!(
                            dropped = self.overflow.len() + 1,
                            "buffered messages dropped after a rebalance"
                        );
                        self.overflow.clear();
                        continue;
                    }
                    message
                }
                None => tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    received = self.services.consumer.recv() => match received {
                        Ok(message) => {
                            consecutive_errors = 0;
                            message.detach()
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, "kafka consumer error");
                            consecutive_errors += 1;
                            if sleep_or_abort(self.retry.random_delay(consecutive_errors.min(8)), shutdown).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    },
                },
            };
            if self.dispatch(message, shutdown).await.is_err() {
                return;
            }
        }
    }

    /// Decodes a message and hands its ids to the workers (or dead-letters it).
    async fn dispatch(
        &mut self,
        message: OwnedMessage,
        shutdown: &CancellationToken,
    ) -> Result<(), Abandoned> {
        let Some(route) = self.topics.get(message.topic()) else {
            tracing::warn!(
                topic = message.topic(),
                "message from a topic no mapping reads; skipped"
            );
            return Ok(());
        };
        let (mapping, topic) = (route.mapping, route.name.clone());
        route.messages.inc();
        let mappings = self.services.writer.mappings().clone();
        let decoded = mappings[mapping]
            .decoder
            .decode(message.key(), message.payload());
        let ids = match decoded {
            Ok(ids) => ids,
            Err(error) => {
                self.dead_letter_message(&message, &error, shutdown).await?;
                let _ = kafka::lock(&self.services.tracker).register(
                    &topic,
                    message.partition(),
                    message.offset(),
                    0,
                );
                return Ok(());
            }
        };
        self.ids_received[mapping].inc_by(ids.len() as u64);
        let registered = kafka::lock(&self.services.tracker).register(
            &topic,
            message.partition(),
            message.offset(),
            ids.len() as u32,
        );
        let Some(receipt) = registered else {
            tracing::debug!(topic = %topic, partition = message.partition(), "message of a revoked partition skipped");
            return Ok(());
        };
        for id in ids {
            let worker = id.worker_index(self.senders.len());
            self.send(
                worker,
                WorkItem {
                    mapping,
                    id,
                    receipt: receipt.clone(),
                },
                shutdown,
            )
            .await?;
        }
        Ok(())
    }

    /// Queues an item; when the worker's queue is full, pauses fetching and
    /// keeps polling (buffering what still arrives) until there is room.
    async fn send(
        &mut self,
        worker: usize,
        item: WorkItem,
        shutdown: &CancellationToken,
    ) -> Result<(), Abandoned> {
        let item = match self.senders[worker].try_send(item) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Abandoned),
            Err(mpsc::error::TrySendError::Full(item)) => item,
        };
        let consumer = &self.services.consumer;
        let pause = || match consumer.assignment() {
            Ok(assignment) => {
                let _ = consumer.pause(&assignment);
            }
            Err(error) => tracing::warn!(error = %error, "cannot read the assignment to pause it"),
        };
        pause();
        let sender = self.senders[worker].clone();
        let result = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Err(Abandoned),
                permit = sender.reserve() => match permit {
                    Ok(permit) => {
                        permit.send(item);
                        break Ok(());
                    }
                    Err(_) => break Err(Abandoned),
                },
                received = consumer.recv() => match received {
                    Ok(message) => {
                        let epoch = kafka::lock(&self.services.tracker).assignment_epoch();
                        self.overflow.push_back((epoch, message.detach()));
                        // partitions assigned during the pause are not paused yet
                        if self.overflow.len().is_multiple_of(self.queue_capacity.max(1)) {
                            pause();
                        }
                    }
                    Err(error) => tracing::warn!(error = %error, "kafka consumer error while paused"),
                },
            }
        };
        if let Ok(assignment) = consumer.assignment() {
            let _ = consumer.resume(&assignment);
        }
        result
    }

    async fn dead_letter_message(
        &self,
        message: &OwnedMessage,
        error: &crate::decode::DecodeError,
        shutdown: &CancellationToken,
    ) -> Result<(), Abandoned> {
        let reason = error.reason_code();
        self.services
            .metrics
            .dead_lettered
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
        let letter = DeadLetter {
            key: message.key(),
            value: message.payload(),
            headers: vec![
                ("esync.reason", reason.to_owned()),
                ("esync.error", error.to_string()),
                ("esync.topic", message.topic().to_owned()),
                ("esync.partition", message.partition().to_string()),
                ("esync.offset", message.offset().to_string()),
            ],
        };
        let origin = format!(
            "{}/{}@{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        dead_letter(self.services, &letter, &origin, &self.retry, shutdown).await
    }
}

/// Produces a dead letter, retrying until the broker acknowledges it (or
/// `stop` fires); without a dead-letter topic the problem is logged only.
async fn dead_letter(
    services: &Services,
    letter: &DeadLetter<'_>,
    origin: &str,
    retry: &crate::retry::RetryPolicy,
    stop: &CancellationToken,
) -> Result<(), Abandoned> {
    let reason = letter
        .headers
        .iter()
        .find(|(key, _)| *key == "esync.error")
        .map_or("", |(_, value)| value.as_str());
    let Some((producer, topic)) = &services.dead_letter else {
        tracing::error!(
            origin,
            reason,
            "cannot be handled and no dead_letter topic is configured; dropped"
        );
        return Ok(());
    };
    tracing::warn!(origin, reason, topic = %topic, "dead-lettering");
    let mut attempt = 0;
    loop {
        match kafka::produce_dead_letter(producer, topic, letter).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                services
                    .metrics
                    .retries
                    .get_or_create(&RetryLabel {
                        stage: "dead_letter",
                        reason: "produce_failed",
                    })
                    .inc();
                tracing::warn!(error = %error, topic = %topic, "dead-letter produce failed, retrying");
                sleep_or_abort(retry.random_delay(attempt), stop).await?;
                attempt += 1;
            }
        }
    }
}

async fn worker_loop(
    worker_index: usize,
    mut receiver: mpsc::Receiver<WorkItem>,
    services: Services,
    batch_config: crate::config::BatchConfig,
    abort: CancellationToken,
) {
    let mappings = services.writer.mappings().clone();
    let mut batch: Batch<Receipt> = Batch::new(mappings.len());
    let mut closed = false;
    while !closed {
        let Some(first) = receiver.recv().await else {
            break;
        };
        batch.push(first.mapping, first.id, first.receipt);
        let deadline = tokio::time::Instant::now() + batch_config.max_wait;
        while batch.distinct_ids() < batch_config.max_ids {
            tokio::select! {
                item = receiver.recv() => match item {
                    Some(item) => batch.push(item.mapping, item.id, item.receipt),
                    None => {
                        closed = true;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if handle_batch(worker_index, &mut batch, &services, &abort)
            .await
            .is_err()
        {
            tracing::warn!(
                worker = worker_index,
                "batch abandoned; it will be replayed"
            );
            return;
        }
    }
}

async fn handle_batch(
    worker_index: usize,
    batch: &mut Batch<Receipt>,
    services: &Services,
    abort: &CancellationToken,
) -> Result<(), Abandoned> {
    let started = std::time::Instant::now();
    let distinct = batch.distinct_ids();
    let received = batch.received_ids();
    let (ids_by_mapping, receipts) = batch.take();
    let report = services.writer.write_batch(&ids_by_mapping, abort).await?;
    let mappings = services.writer.mappings();
    for failed in &report.failed {
        let mapping = &mappings[failed.mapping];
        services
            .metrics
            .dead_lettered
            .get_or_create(&ReasonLabel {
                reason: failed.reason_code.to_owned(),
            })
            .inc();
        let id_text = failed.id.to_string();
        let value = serde_json::json!({
            "mapping": mapping.name,
            "index": &*mapping.spec.index,
            "id": id_text,
            "reason": failed.reason_code,
            "error": failed.reason,
        })
        .to_string();
        let letter = DeadLetter {
            key: Some(id_text.as_bytes()),
            value: Some(value.as_bytes()),
            headers: vec![
                ("esync.reason", failed.reason_code.to_owned()),
                ("esync.error", failed.reason.clone()),
                ("esync.mapping", mapping.name.clone()),
            ],
        };
        let origin = format!("{} id {}", mapping.name, id_text);
        dead_letter(services, &letter, &origin, &services.retry, abort).await?;
    }
    {
        let mut tracker = kafka::lock(&services.tracker);
        for receipt in &receipts {
            tracker.acknowledge(receipt);
        }
    }
    let elapsed = started.elapsed();
    services
        .metrics
        .batch_duration
        .observe(elapsed.as_secs_f64());
    services.metrics.batch_size.observe(distinct as f64);
    tracing::info!(
        worker = worker_index,
        ids = received,
        distinct,
        rows = report.rows_read,
        indexed = report.indexed,
        deleted = report.deleted,
        conflicts = report.conflicts,
        dead_lettered = report.failed.len(),
        took_ms = elapsed.as_millis() as u64,
        "batch written"
    );
    Ok(())
}

async fn commit_loop(services: Services, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let positions = kafka::lock(&services.tracker).committable();
        if positions.is_empty() {
            continue;
        }
        // The result arrives in the context's commit callback, which records it.
        if let Err(error) = services
            .consumer
            .commit(&kafka::to_partition_list(&positions), CommitMode::Async)
        {
            services.metrics.commit_failures.inc();
            tracing::warn!(error = %error, "offset commit failed; retrying at the next interval");
        }
    }
}
