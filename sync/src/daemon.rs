//! `esync run`: the Kafka consumer loop, the workers and the commit loop.
//!
//! ```text
//! consumer loop: recv -> decode -> register in OffsetTracker -> id to worker hash(id) % N
//! worker i:      batch (max ids / max wait, deduped) -> [after an assignment: wait for the
//!                consumer to read the backlog] -> Writer -> dead-letter failures -> acknowledge
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
use crate::catch_up::CatchUpGate;
use crate::coalesce::{Offer, Waiting};
use crate::config::{Config, LoadedConfig};
use crate::db::Database;
use crate::dead_letter::DeadLetterSink;
use crate::decode::Decoder;
use crate::es::EsClient;
use crate::id::Id;
use crate::kafka::{self, DeadLetter, EsyncConsumer};
use crate::lock::lock;
use crate::metrics::{Metrics, TopicLabel};
use crate::offsets::{OffsetTracker, Receipt};
use crate::writer::{Abandoned, Mapping, WriteReport, Writer, sleep_or_abort};
use prometheus_client::metrics::counter::Counter;
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::OwnedMessage;
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
    /// A task of the daemon panicked or ended before shutdown; the process
    /// exits non-zero so that its service manager restarts it.
    #[error("{0}")]
    TaskFailed(String),
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
    /// Where what cannot be handled goes.
    pub dead_letter: DeadLetterSink,
    /// Offsets in flight.
    pub tracker: Arc<Mutex<OffsetTracker>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
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
        let dead_letter = DeadLetterSink::from_config(config, metrics.clone())?;
        Ok(Services {
            writer,
            consumer: Arc::new(consumer),
            dead_letter,
            tracker,
            metrics,
        })
    }

    /// Checks that Kafka, the database and Elasticsearch answer; the error
    /// names the failing system.
    pub async fn health(&self) -> Result<(), String> {
        check_health(&self.consumer, &self.writer).await
    }
}

/// The health check of [`Services::health`], from its parts: the metrics
/// endpoint holds the consumer weakly, so that it never keeps it open (and
/// in the group) after shutdown.
pub async fn check_health(consumer: &Arc<EsyncConsumer>, writer: &Writer) -> Result<(), String> {
    let timeout = Duration::from_secs(3);
    let consumer = consumer.clone();
    let kafka =
        tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, timeout).map(drop));
    let database = tokio::time::timeout(timeout, writer.database().ping());
    let es = writer.es().ping(timeout);
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
    if let Some(stalled) = writer.health_problem() {
        problems.push(stalled);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Where a topic's messages go: how to decode them, which mapping's ids they
/// carry, and the topic's message counter.
struct TopicRoute {
    mapping: usize,
    name: Arc<str>,
    decoder: Decoder,
    messages: Counter,
}

/// What the consumer hands to a worker.
#[derive(Debug)]
enum WorkItem {
    /// One id to re-read and write; the receipts of the messages that
    /// announced it wait in the worker's [`Waiting`].
    Id { mapping: usize, id: Id },
    /// A message that cannot be decoded, for the dead-letter topic. Workers
    /// produce it, so the consumer keeps polling while the broker is slow.
    Undecodable {
        letter: Box<DeadLetter>,
        origin: String,
        receipt: Receipt,
    },
}

/// How long the final commit and leaving the group may take at shutdown;
/// what is not committed by then is replayed, which is harmless.
const KAFKA_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long workers get to notice an abort before they are cancelled.
const ABORT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long each request for an assignment's end offsets may take; without
/// an answer, re-reads wait until `batch.catch_up_wait` is over.
const BACKLOG_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Receipts one waiting id gathers before its further messages are queued
/// again (so a hot id still meets the queue's back-pressure).
const RECEIPTS_PER_WAITING_ID: usize = 100;

/// One worker's queue, and the ids in it (or in its batch) not yet re-read.
struct WorkerQueue {
    sender: mpsc::Sender<WorkItem>,
    waiting: Arc<Mutex<Waiting<Receipt>>>,
}

/// Runs until `shutdown` fires, then drains, commits and returns; returns an
/// error when one of its tasks fails. Shutdown takes at most
/// `shutdown_grace` plus a few seconds, whatever Kafka, the database or
/// Elasticsearch are doing.
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

    // `stop` ends consuming: at shutdown, or when a task fails.
    let stop = shutdown.child_token();
    // Fires when the grace period is over: in-flight work is abandoned.
    let abort = CancellationToken::new();
    let mut workers = JoinSet::new();
    let mut queues = Vec::with_capacity(config.workers);
    let catch_up = Arc::new(CatchUpGate::new(config.batch.catch_up_wait));
    for worker_index in 0..config.workers {
        let (sender, receiver) = mpsc::channel(config.batch.queue_capacity);
        let waiting = Arc::new(Mutex::new(Waiting::new(RECEIPTS_PER_WAITING_ID)));
        queues.push(WorkerQueue {
            sender,
            waiting: waiting.clone(),
        });
        workers.spawn(worker_loop(
            worker_index,
            receiver,
            waiting,
            catch_up.clone(),
            services.clone(),
            config.batch,
            abort.clone(),
        ));
    }
    // its own token: it must outlive consuming, so that it ending is a failure
    let stop_commits = CancellationToken::new();
    let mut commit_loop = tokio::spawn(commit_loop(
        services.clone(),
        config.kafka.commit_interval,
        stop_commits.clone(),
    ));

    // failed writes to indexes being rebuilt, retried apart from the batches
    let dual_write_retries = tokio::spawn({
        let writer = services.writer.clone();
        let stop = stop.clone();
        async move { writer.keep_retrying_dual_writes(&stop).await }
    });

    let consuming = ConsumerLoop::new(config, &services, queues, catch_up).run(&stop);
    let failure = supervise(consuming, &mut workers, &mut commit_loop, &shutdown).await;
    if let Some(failure) = &failure {
        tracing::error!(error = %failure, "a task of the daemon failed; stopping so that it is restarted");
    }
    stop.cancel();
    stop_commits.cancel();

    // Senders are dropped: workers flush what they hold and exit.
    tracing::info!(grace = ?config.shutdown_grace, "stopping: finishing in-flight batches");
    let stopping = tokio::time::Instant::now();
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "grace period over: abandoning unfinished batches; they will be replayed after restart"
        );
        abort.cancel();
        let finished = tokio::time::timeout(ABORT_TIMEOUT, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            workers.shutdown().await;
        }
    }
    if !commit_loop.is_finished() {
        commit_loop.abort();
    }
    // stopped by `stop`, it puts back what it had not retried
    if tokio::time::timeout(ABORT_TIMEOUT, dual_write_retries)
        .await
        .is_err()
    {
        tracing::warn!("the dual-write retry task did not stop in time");
    }
    // what failed to reach an index being rebuilt gets the rest of the grace
    let grace_left = config.shutdown_grace.saturating_sub(stopping.elapsed());
    let dual_pending = services.writer.drain_dual_writes(grace_left, &abort).await;
    if dual_pending > 0 {
        tracing::warn!(
            ids = dual_pending,
            "stopping with dual writes not yet done; the rebuild's verification rewrites them"
        );
    }
    close_consumer(services).await;
    tracing::info!("stopped");
    match failure {
        Some(failure) => Err(DaemonError::TaskFailed(failure)),
        None => Ok(()),
    }
}

/// Runs `consuming` (which returns at shutdown) while watching the tasks that
/// must live as long as it: any of them ending first, by a panic or
/// otherwise, is a failure, and so is `consuming` returning before shutdown.
async fn supervise(
    consuming: impl std::future::Future<Output = ()>,
    workers: &mut JoinSet<()>,
    commit_loop: &mut tokio::task::JoinHandle<()>,
    shutdown: &CancellationToken,
) -> Option<String> {
    tokio::select! {
        () = consuming => (!shutdown.is_cancelled())
            .then(|| "the consumer loop stopped: a worker is gone".to_owned()),
        Some(joined) = workers.join_next() => Some(task_failure("a worker", joined)),
        joined = commit_loop => Some(task_failure("the commit loop", joined)),
    }
}

/// Why a task that should have run until shutdown ended.
fn task_failure(task: &str, joined: Result<(), tokio::task::JoinError>) -> String {
    match joined {
        Ok(()) => format!("{task} ended unexpectedly"),
        Err(error) => match error.try_into_panic() {
            Ok(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-text panic".to_owned());
                format!("{task} panicked: {message}")
            }
            Err(error) => format!("{task} was cancelled: {error}"),
        },
    }
}

/// Commits what is finished and leaves the group, each bounded by
/// [`KAFKA_CLOSE_TIMEOUT`]: with the broker gone, librdkafka would wait for
/// it indefinitely.
async fn close_consumer(services: Services) {
    let (consumer, tracker) = (services.consumer.clone(), services.tracker.clone());
    let commit =
        tokio::task::spawn_blocking(move || kafka::commit_finished_sync(&consumer, &tracker));
    match tokio::time::timeout(KAFKA_CLOSE_TIMEOUT, commit).await {
        Ok(Ok(Ok(partitions))) => tracing::info!(partitions, "committed finished offsets"),
        Ok(Ok(Err(error))) => {
            tracing::warn!(error = %error, "final commit failed; unfinished messages will be replayed")
        }
        Ok(Err(_)) | Err(_) => {
            tracing::warn!("final commit timed out; unfinished messages will be replayed")
        }
    }
    let consumer = services.consumer.clone();
    drop(services);
    // Closing leaves the group (and runs the revoke callback); it blocks.
    let close = tokio::task::spawn_blocking(move || drop(consumer));
    if tokio::time::timeout(KAFKA_CLOSE_TIMEOUT, close)
        .await
        .is_err()
    {
        tracing::warn!(
            "leaving the consumer group timed out; the group rebalances after session.timeout.ms"
        );
    }
}

struct ConsumerLoop<'a> {
    services: &'a Services,
    queues: Vec<WorkerQueue>,
    topics: HashMap<String, TopicRoute>,
    /// `esync_ids_received_total` per mapping, resolved once.
    ids_received: Vec<Counter>,
    /// Messages received while paused, with their partition's generation.
    overflow: VecDeque<(Option<u64>, OwnedMessage)>,
    retry: crate::retry::RetryPolicy,
    /// Holds re-reads after an assignment until the backlog is read.
    catch_up: Arc<CatchUpGate>,
    /// The tracker's assignment changes when the last message was received.
    assignment_seen: u64,
    reset_to_earliest: bool,
}

impl<'a> ConsumerLoop<'a> {
    fn new(
        config: &Config,
        services: &'a Services,
        queues: Vec<WorkerQueue>,
        catch_up: Arc<CatchUpGate>,
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
                        decoder: mapping.decoder(),
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
            queues,
            topics,
            ids_received,
            overflow: VecDeque::new(),
            retry: config.retry,
            catch_up,
            assignment_seen: 0,
            reset_to_earliest: config.kafka.auto_offset_reset == "earliest",
        }
    }

    async fn run(mut self, shutdown: &CancellationToken) {
        self.consume(shutdown).await;
        // nothing more will be read: held re-reads go on
        self.catch_up.blocked();
    }

    async fn consume(&mut self, shutdown: &CancellationToken) {
        let mut consecutive_errors = 0u32;
        loop {
            let (generation, message) = match self.overflow.pop_front() {
                Some(buffered) => buffered,
                None => tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    received = self.services.consumer.recv() => match received {
                        Ok(message) => {
                            consecutive_errors = 0;
                            self.tag(message.detach())
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
            if self.dispatch(&message, generation, shutdown).await.is_err() {
                return;
            }
            // after its ids were offered: a read the gate releases sees them
            self.catch_up
                .received(message.topic(), message.partition(), message.offset());
        }
    }

    /// Tags a message with its partition's assignment generation as it is
    /// received: rebalance callbacks run inside `recv`, so this is the
    /// assignment the message was fetched under. Also tells the catch-up
    /// gate when the assignment changed.
    fn tag(&mut self, message: OwnedMessage) -> (Option<u64>, OwnedMessage) {
        let (generation, assignment) = {
            let tracker = lock(&self.services.tracker);
            let generation = tracker.generation(message.topic(), message.partition());
            (generation, tracker.assignment_changes())
        };
        if assignment != self.assignment_seen {
            self.assignment_seen = assignment;
            self.hold_reads_until_caught_up();
        }
        (generation, message)
    }

    /// The assignment changed: re-reads wait until what was waiting in the
    /// assigned partitions is read; their end offsets are asked for apart,
    /// while consuming goes on.
    fn hold_reads_until_caught_up(&self) {
        let Some(epoch) = self.catch_up.assigned() else {
            return;
        };
        // weak: a slow answer must not keep the consumer open after shutdown
        let consumer = Arc::downgrade(&self.services.consumer);
        let (catch_up, reset_to_earliest) = (self.catch_up.clone(), self.reset_to_earliest);
        tokio::task::spawn_blocking(move || {
            let Some(consumer) = consumer.upgrade() else {
                return;
            };
            match kafka::backlog_ends(&consumer, reset_to_earliest, BACKLOG_QUERY_TIMEOUT) {
                Ok(ends) => catch_up.ends_known(epoch, ends),
                Err(error) => tracing::warn!(
                    error = %error,
                    "cannot read the assigned partitions' end offsets; re-reads wait for batch.catch_up_wait at most"
                ),
            }
        });
    }

    /// Decodes a message and hands its ids to the workers (or dead-letters it).
    async fn dispatch(
        &mut self,
        message: &OwnedMessage,
        generation: Option<u64>,
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
        let decoded = route.decoder.decode(message.key(), message.payload());
        // an undecodable message is pending until a worker produced its dead letter
        let pending = decoded.as_ref().map_or(1, |ids| ids.len() as u32);
        let registered = lock(&self.services.tracker).register(
            &topic,
            message.partition(),
            generation,
            message.offset(),
            pending,
        );
        let Some(receipt) = registered else {
            // revoked (or revoked and assigned again) since it was received:
            // Kafka delivers it again to whoever owns the partition now
            tracing::debug!(
                topic = %topic,
                partition = message.partition(),
                offset = message.offset(),
                "message of an earlier assignment skipped"
            );
            return Ok(());
        };
        let ids = match decoded {
            Ok(ids) => ids,
            Err(error) => {
                let item = undecodable(message, &error, receipt);
                let worker = message.partition().unsigned_abs() as usize % self.queues.len();
                return self.send(worker, item, shutdown).await;
            }
        };
        self.ids_received[mapping].inc_by(ids.len() as u64);
        for id in ids {
            let worker = id.worker_index(self.queues.len());
            let offer = lock(&self.queues[worker].waiting).offer(mapping, &id, receipt.clone());
            if offer == Offer::Queue {
                self.send(worker, WorkItem::Id { mapping, id }, shutdown)
                    .await?;
            }
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
        let item = match self.queues[worker].sender.try_send(item) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Abandoned),
            Err(mpsc::error::TrySendError::Full(item)) => item,
        };
        // the consumer reads no further until there is room
        self.catch_up.blocked();
        let consumer = &self.services.consumer;
        let pause = || match consumer.assignment() {
            Ok(assignment) => {
                let _ = consumer.pause(&assignment);
            }
            Err(error) => tracing::warn!(error = %error, "cannot read the assignment to pause it"),
        };
        pause();
        let mut paused_assignment = lock(&self.services.tracker).assignment_changes();
        let sender = self.queues[worker].sender.clone();
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
                        let tagged = self.tag(message.detach());
                        self.overflow.push_back(tagged);
                        // partitions assigned during the pause start unpaused
                        let changes = lock(&self.services.tracker).assignment_changes();
                        if changes != paused_assignment {
                            paused_assignment = changes;
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
        self.catch_up.unblocked();
        result
    }
}

/// The dead letter of a message that cannot be decoded: its own key and value,
/// the reason and where it came from in headers.
fn undecodable(
    message: &OwnedMessage,
    error: &crate::decode::DecodeError,
    receipt: Receipt,
) -> WorkItem {
    let letter = crate::dead_letter::undecodable_message(
        message.key(),
        message.payload(),
        error,
        (message.topic(), message.partition(), message.offset()),
    );
    WorkItem::Undecodable {
        letter: Box::new(letter),
        origin: format!(
            "{}/{}@{}",
            message.topic(),
            message.partition(),
            message.offset()
        ),
        receipt,
    }
}

/// A batch of ids and the dead letters of undecodable messages that arrived
/// with it.
struct WorkerBatch {
    ids: Batch,
    letters: Vec<(Box<DeadLetter>, String, Receipt)>,
}

impl WorkerBatch {
    fn push(&mut self, item: WorkItem) {
        match item {
            WorkItem::Id { mapping, id } => self.ids.push(mapping, id),
            WorkItem::Undecodable {
                letter,
                origin,
                receipt,
            } => self.letters.push((letter, origin, receipt)),
        }
    }

    fn len(&self) -> usize {
        self.ids.distinct_ids() + self.letters.len()
    }
}

async fn worker_loop(
    worker_index: usize,
    mut receiver: mpsc::Receiver<WorkItem>,
    waiting: Arc<Mutex<Waiting<Receipt>>>,
    catch_up: Arc<CatchUpGate>,
    services: Services,
    batch_config: crate::config::BatchConfig,
    abort: CancellationToken,
) {
    let mappings = services.writer.mappings().clone();
    let mut batch = WorkerBatch {
        ids: Batch::new(mappings.len()),
        letters: Vec::new(),
    };
    let mut closed = false;
    while !closed {
        let Some(first) = receiver.recv().await else {
            break;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + batch_config.max_wait;
        while batch.len() < batch_config.max_ids {
            tokio::select! {
                item = receiver.recv() => match item {
                    Some(item) => batch.push(item),
                    None => {
                        closed = true;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        catch_up.wait().await;
        if handle_batch(worker_index, &mut batch, &waiting, &services, &abort)
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
    batch: &mut WorkerBatch,
    waiting: &Mutex<Waiting<Receipt>>,
    services: &Services,
    abort: &CancellationToken,
) -> Result<(), Abandoned> {
    let started = std::time::Instant::now();
    let queued = batch.ids.take();
    let mut receipts = Vec::new();
    // taken right before the re-read: every message that joined an id
    // arrived before the read that answers it
    let ids_by_mapping: Vec<Vec<Id>> = {
        let mut waiting = lock(waiting);
        queued
            .into_iter()
            .enumerate()
            .map(|(mapping, ids)| {
                ids.into_iter()
                    .filter(|id| {
                        let taken = waiting.take(mapping, id);
                        let answered_already = taken.is_empty();
                        receipts.extend(taken);
                        !answered_already
                    })
                    .collect()
            })
            .collect()
    };
    let distinct: usize = ids_by_mapping.iter().map(Vec::len).sum();
    let received = receipts.len();
    for (letter, origin, receipt) in std::mem::take(&mut batch.letters) {
        services.dead_letter.send(&letter, &origin, abort).await?;
        receipts.push(receipt);
    }
    let report = if distinct == 0 {
        WriteReport::default()
    } else {
        services.writer.write_batch(&ids_by_mapping, abort).await?
    };
    let mappings = services.writer.mappings();
    for failed in &report.failed {
        let mapping = &mappings[failed.mapping];
        let letter = crate::dead_letter::unwritable_id(mapping, failed, "esync");
        let origin = format!("{} id {}", mapping.name, failed.id);
        services.dead_letter.send(&letter, &origin, abort).await?;
    }
    {
        let mut tracker = lock(&services.tracker);
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
        let positions = lock(&services.tracker).committable();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn forever() -> tokio::task::JoinHandle<()> {
        tokio::spawn(std::future::pending())
    }

    #[tokio::test]
    async fn a_panicking_worker_stops_the_daemon_with_its_message() {
        let mut workers = JoinSet::new();
        workers.spawn(std::future::pending());
        workers.spawn(async { panic!("row 42 broke the worker") });
        let shutdown = CancellationToken::new();
        let failure = supervise(
            std::future::pending(),
            &mut workers,
            &mut forever(),
            &shutdown,
        )
        .await;
        assert_eq!(
            failure.as_deref(),
            Some("a worker panicked: row 42 broke the worker")
        );
    }

    #[tokio::test]
    async fn a_commit_loop_that_ends_early_is_a_failure() {
        let mut workers = JoinSet::new();
        workers.spawn(std::future::pending());
        let failure = supervise(
            std::future::pending(),
            &mut workers,
            &mut tokio::spawn(async {}),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(
            failure.as_deref(),
            Some("the commit loop ended unexpectedly")
        );
    }

    #[tokio::test]
    async fn consuming_ends_cleanly_only_at_shutdown() {
        let shutdown = CancellationToken::new();
        let mut workers = JoinSet::new();
        workers.spawn(std::future::pending());
        // a closed worker queue ends consuming before any shutdown
        let early = supervise(async {}, &mut workers, &mut forever(), &shutdown).await;
        assert!(early.is_some_and(|failure| failure.contains("worker is gone")));
        shutdown.cancel();
        let clean = supervise(async {}, &mut workers, &mut forever(), &shutdown).await;
        assert_eq!(clean, None);
    }
}
