//! `esync-recover run`: walks the planned chunks with keyset pagination and
//! writes every row through the esync writer, in parallel, at a bounded and
//! adaptive rate, recording each finished chunk.
//!
//! Data path per chunk: keyset page of ids -> token bucket -> `Writer::
//! write_batch` (re-read rows by id, versioned `_bulk`, retries) -> next page.
//! A chunk counts as done only after all its pages are written; it is then
//! recorded in the checkpoint (or marked done in the lease table) before the
//! next one is taken. Shutdown: the first signal stops new pages, in-flight
//! pages get `shutdown_grace` to finish, then they are abandoned; unfinished
//! chunks stay pending for `--resume`.
//!
//! Online control (`esync-recover ctl`): the run polls its control record
//! twice a second and applies it to its [`Throttle`]; workers see the result
//! through a watch channel, so a new limit or a pause reaches a worker that
//! is waiting for tokens at once. A paused worker claims nothing and holds
//! its next page (one in flight may finish); its leases are still renewed.

use crate::dead_letter::DeadLetterSink;
use crate::lock::lock;
use crate::recover::checkpoint::{
    Checkpoint, Request, StartDecision, Totals, check_resume, decide_start,
};
use crate::recover::connect::Connected;
use crate::recover::control::{Direction, Throttle, ThrottleChange, ThrottleView};
use crate::recover::lease::{LeaseBoard, LeaseSettings, LeasedChunk};
use crate::recover::metrics::RunMetrics;
use crate::recover::plan::{RangeRequest, make_plan, sources};
use crate::recover::progress::{ProgressMode, Reporter, Snapshot};
use crate::recover::range::{Chunk, Cursor};
use crate::recover::rate::{TokenBucket, Window, rescale_wait};
use crate::recover::source::Source;
use crate::recover::store::{CheckpointStore, ControlPlace, ControlStore};
use crate::writer::{Abandoned, sleep_or_abort};
use anyhow::Context as _;
use esync_common::shutdown::{ShutdownSignals, SignalError};
use serde_json::json;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the control record is read: twice a second, so every process
/// obeys a `ctl` command within a second.
const CONTROL_POLL: Duration = Duration::from_millis(500);

/// How long a run's end may retry copies that failed to reach an index
/// being rebuilt before it exits without them (they are counted, and the
/// rebuild's verification writes them).
const DUAL_WRITE_DRAIN: Duration = Duration::from_secs(30);

/// Where the checkpoint goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointPlace {
    /// A JSON file.
    File(PathBuf),
    /// A table in the source database.
    Table(String),
}

/// Everything `run` needs besides the connections.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The run's name (checkpoint row, lease rows, default file name).
    pub run_name: String,
    /// What to cover.
    pub range: RangeRequest,
    /// Rows per keyset page and `_bulk` batch.
    pub batch_size: usize,
    /// Chunks walked at once.
    pub parallel: usize,
    /// Ceiling in rows per second (`None`: unlimited).
    pub max_rate: Option<f64>,
    /// Keyset query latency above which the database counts as strained.
    pub db_latency_threshold: Duration,
    /// Where finished chunks are recorded (without coordination).
    pub checkpoint: CheckpointPlace,
    /// Continue an unfinished run.
    pub resume: bool,
    /// Start over even if a run exists or finished.
    pub force: bool,
    /// Chunk leases in the database instead of a checkpoint.
    pub coordinate: Option<LeaseSettings>,
    /// How progress is shown.
    pub progress: ProgressMode,
    /// How often JSON progress lines are written.
    pub progress_interval: Duration,
    /// Where `esync-recover ctl` leaves its control record for this run
    /// (see [`crate::recover::ctl::RunLocation::control_place`]); `None`: the
    /// run cannot be controlled while it runs.
    pub control: Option<ControlPlace>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunOutcome {
    /// Every chunk is done.
    Finished(Snapshot),
    /// Stopped by a signal; `--resume` continues.
    Interrupted(Snapshot),
}

/// Live counters shared by the workers.
#[derive(Debug, Default)]
struct LiveStats {
    rows: AtomicU64,
    indexed: AtomicU64,
    deleted: AtomicU64,
    conflicts: AtomicU64,
    failed: AtomicU64,
    chunks_done: AtomicU64,
    db_latency_micros: AtomicU64,
    db_queries: AtomicU64,
    /// Elasticsearch items the writer sent again: the adaptive rate's signal.
    es_retries: AtomicU64,
}

impl LiveStats {
    fn add(&self, totals: &Totals) {
        self.rows.fetch_add(totals.rows, Ordering::Relaxed);
        self.indexed.fetch_add(totals.indexed, Ordering::Relaxed);
        self.deleted.fetch_add(totals.deleted, Ordering::Relaxed);
        self.conflicts
            .fetch_add(totals.conflicts, Ordering::Relaxed);
        self.failed.fetch_add(totals.failed, Ordering::Relaxed);
    }

    fn totals(&self) -> Totals {
        Totals {
            rows: self.rows.load(Ordering::Relaxed),
            indexed: self.indexed.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// Who hands out chunks and records them done.
enum WorkQueue {
    /// This process alone, with a checkpoint.
    Local {
        queue: Mutex<VecDeque<(usize, u64)>>,
        checkpoint: tokio::sync::Mutex<Checkpoint>,
        store: CheckpointStore,
    },
    /// Leases in the source database, shared with other processes.
    Leased(LeaseBoard),
}

/// A chunk being worked on.
struct Claim {
    mapping: usize,
    chunk_number: u64,
    chunk: Chunk,
    attempt: u32,
    lease: Option<LeasedChunk>,
}

struct RunContext {
    connected: Connected,
    settings: RunSettings,
    plan_names: Vec<String>,
    /// Per plan entry: the writer's mapping index and the keyset source.
    sources: Vec<(usize, Source)>,
    layouts: Vec<crate::recover::checkpoint::ChunkLayout>,
    work: WorkQueue,
    limiter: Mutex<TokenBucket>,
    /// The limit, pause and reason; changed by the governor (adaptive) and
    /// by the control record.
    throttle: Mutex<Throttle>,
    /// The throttle as the workers see it.
    control: watch::Sender<ThrottleView>,
    clock: Instant,
    stats: LiveStats,
    /// The live counters as Prometheus metrics (`esync_recover_*`).
    metrics: RunMetrics,
    stop: CancellationToken,
    abort: CancellationToken,
    reporter: Reporter,
    dead_letter: DeadLetterSink,
}

enum ChunkError {
    Interrupted,
    LeaseLost,
    Fatal(anyhow::Error),
}

/// Runs (or resumes) a recovery until it finishes or `stop` fires; `abort`
/// abandons in-flight writes.
pub async fn run(
    connected: Connected,
    settings: RunSettings,
    stop: CancellationToken,
    abort: CancellationToken,
) -> anyhow::Result<RunOutcome> {
    let request = Request {
        mappings: {
            let indices = connected.select_mappings(&settings.range.mappings)?;
            indices
                .iter()
                .map(|index| {
                    connected.loaded.config.mappings[*index]
                        .display_name()
                        .to_owned()
                })
                .collect()
        },
        from: None,
        to: None,
        chunk_size: settings.range.chunk_size,
    };
    // whether this process planned the run afresh (its control record goes)
    let mut fresh = false;
    let (work, plan, done_before) = match &settings.coordinate {
        Some(lease_settings) => {
            let board = LeaseBoard::open(
                connected.database.clone(),
                lease_settings.clone(),
                &settings.run_name,
            )
            .await?;
            let plan = board
                .join_or_plan(
                    &connected,
                    &settings.range,
                    &request,
                    settings.resume,
                    settings.force,
                )
                .await?;
            let done = board.chunks_done().await?;
            (WorkQueue::Leased(board), plan, done)
        }
        None => {
            let store = match &settings.checkpoint {
                CheckpointPlace::File(path) => CheckpointStore::File(path.clone()),
                CheckpointPlace::Table(table) => CheckpointStore::Table {
                    database: connected.database.clone(),
                    table: table.clone(),
                    run_name: settings.run_name.clone(),
                },
            };
            store
                .prepare()
                .await
                .with_context(|| format!("cannot prepare checkpoint {}", store.location()))?;
            let existing = store
                .load()
                .await
                .with_context(|| format!("cannot read checkpoint {}", store.location()))?;
            let checkpoint = match decide_start(existing.as_ref(), settings.resume, settings.force)
            {
                StartDecision::Refuse(message) => {
                    anyhow::bail!("{message} (checkpoint {})", store.location())
                }
                StartDecision::Resume => {
                    let checkpoint = existing.expect("resume needs a checkpoint");
                    let mut request = request.clone();
                    (request.from, request.to) = (None, None);
                    let (from, to) = match checkpoint.plan.mappings.first() {
                        Some(first) => settings.range.bounds(first.id_type)?,
                        None => (None, None),
                    };
                    request.from = from;
                    request.to = to;
                    check_resume(&checkpoint.plan, &request).map_err(|problems| {
                        anyhow::anyhow!(
                            "the checkpoint at {} is for another recovery: {}; use another --checkpoint or --force",
                            store.location(),
                            problems.join("; ")
                        )
                    })?;
                    tracing::info!(
                        done = checkpoint.chunks_done(),
                        total = checkpoint.plan.chunk_count(),
                        "resuming"
                    );
                    checkpoint
                }
                StartDecision::Fresh => {
                    fresh = true;
                    let plan = make_plan(&connected, &settings.range).await?;
                    let checkpoint = Checkpoint::new(&settings.run_name, plan, chrono::Utc::now());
                    store
                        .save(&checkpoint)
                        .await
                        .with_context(|| format!("cannot write checkpoint {}", store.location()))?;
                    checkpoint
                }
            };
            let plan = checkpoint.plan.clone();
            let done = checkpoint.chunks_done();
            let queue = Mutex::new(checkpoint.pending().into_iter().collect());
            (
                WorkQueue::Local {
                    queue,
                    checkpoint: tokio::sync::Mutex::new(checkpoint),
                    store,
                },
                plan,
                done,
            )
        }
    };
    let sources = sources(&connected, &plan)?;
    let chunks_total = plan.chunk_count();
    // Rows still to walk, assuming done chunks held their share.
    let rows_expected = if chunks_total == 0 {
        0
    } else {
        (plan.rows_estimate() as f64 * (chunks_total - done_before.min(chunks_total)) as f64
            / chunks_total as f64) as u64
    };
    let reporter = Reporter::new(settings.progress, rows_expected);
    let dead_letter =
        DeadLetterSink::from_config(&connected.loaded.config, connected.metrics.clone())
            .context("cannot create the dead-letter producer")?;
    let control_store = match &settings.control {
        Some(place) => Some(open_control(place, &connected, &settings.run_name, fresh).await?),
        None => None,
    };
    let clock = Instant::now();
    let mut throttle = Throttle::new(
        settings.max_rate,
        settings.db_latency_threshold,
        Duration::ZERO,
    );
    // a stored record (an operator's pause or limit from before a resume, or
    // given to the workers already running) holds from the first page on
    let initial_change = match &control_store {
        Some(store) => store
            .load()
            .await
            .with_context(|| format!("cannot read {}", store.location()))?
            .filter(|record| record.run_name == settings.run_name)
            .and_then(|record| throttle.apply(&record, Duration::ZERO)),
        None => None,
    };
    let (control, _) = watch::channel(throttle.view());
    let metrics = connected.recover_metrics.run(&settings.run_name);
    metrics.start(done_before, chunks_total, &throttle.view());
    let context = Arc::new(RunContext {
        limiter: Mutex::new(TokenBucket::new(throttle.limit(), Duration::ZERO)),
        throttle: Mutex::new(throttle),
        control,
        plan_names: plan
            .mappings
            .iter()
            .map(|mapping| mapping.mapping.clone())
            .collect(),
        layouts: plan
            .mappings
            .iter()
            .map(|mapping| mapping.layout.clone())
            .collect(),
        connected,
        settings,
        sources,
        work,
        clock,
        stats: LiveStats::default(),
        metrics,
        stop: stop.clone(),
        abort,
        reporter,
        dead_letter,
    });
    context
        .stats
        .chunks_done
        .store(done_before, Ordering::Relaxed);
    let snapshot = move |context: &RunContext| {
        let view = lock(&context.throttle).view();
        Snapshot {
            elapsed: context.clock.elapsed(),
            totals: context.stats.totals(),
            chunks_done: context.stats.chunks_done.load(Ordering::Relaxed),
            chunks_total,
            rows_expected,
            limit: view.current_limit(),
            paused: view.paused,
            limit_reason: Some(view.reason),
        }
    };
    if let Some(change) = &initial_change {
        show_change(&context, change);
    }

    let workers_done = CancellationToken::new();
    let governor = tokio::spawn(govern(context.clone(), workers_done.clone()));
    let follower = control_store
        .map(|store| tokio::spawn(follow_control(context.clone(), store, workers_done.clone())));
    let progress = {
        let context = context.clone();
        let workers_done = workers_done.clone();
        tokio::spawn(async move {
            let interval = if context.reporter.is_json() {
                context.settings.progress_interval
            } else {
                Duration::from_millis(250)
            };
            loop {
                tokio::select! {
                    _ = workers_done.cancelled() => return,
                    _ = tokio::time::sleep(interval) => context.reporter.update(&snapshot(&context)),
                }
            }
        })
    };
    // rows whose copy to an index being rebuilt failed, retried beside the walk
    let dual_write_retries = {
        let (context, workers_done) = (context.clone(), workers_done.clone());
        tokio::spawn(async move {
            let writer = &context.connected.writer;
            writer.keep_retrying_dual_writes(&workers_done).await
        })
    };
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..context.settings.parallel.max(1) {
        workers.spawn(work_loop(context.clone(), worker));
    }
    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        let result =
            joined.unwrap_or_else(|error| Err(anyhow::anyhow!("worker task failed: {error}")));
        if let Err(error) = result
            && failure.is_none()
        {
            // stop the others at a page boundary; their chunks stay pending
            stop.cancel();
            failure = Some(error);
        }
    }
    workers_done.cancel();
    let _ = governor.await;
    if let Some(follower) = follower {
        let _ = follower.await;
    }
    let _ = progress.await;
    let _ = dual_write_retries.await;
    let writer = &context.connected.writer;
    let dual_pending = writer
        .drain_dual_writes(DUAL_WRITE_DRAIN, &context.abort)
        .await;
    if dual_pending > 0 {
        tracing::warn!(
            ids = dual_pending,
            "exiting with rows not yet copied to the index being rebuilt; the rebuild's verification writes them before the swap"
        );
    }
    context.reporter.finish();
    if let Some(error) = failure {
        return Err(error);
    }
    let final_snapshot = snapshot(&context);
    let finished = match &context.work {
        WorkQueue::Local { checkpoint, .. } => checkpoint.lock().await.finished_at.is_some(),
        WorkQueue::Leased(board) => board.is_finished().await?,
    };
    Ok(if finished {
        RunOutcome::Finished(final_snapshot)
    } else {
        RunOutcome::Interrupted(final_snapshot)
    })
}

/// Opens the run's control record: creates its table when missing, and
/// clears it when the run starts afresh (`clear`), so an earlier run's pause
/// or limit does not carry over. (Coordinated runs clear it in the same
/// transaction that stores the plan.)
async fn open_control(
    place: &ControlPlace,
    connected: &Connected,
    run_name: &str,
    clear: bool,
) -> anyhow::Result<ControlStore> {
    let store = ControlStore::new(place.clone(), Some(connected.database.clone()), run_name);
    store
        .prepare()
        .await
        .with_context(|| format!("cannot prepare {}", store.location()))?;
    if clear {
        store
            .clear()
            .await
            .with_context(|| format!("cannot clear {}", store.location()))?;
    }
    Ok(store)
}

/// Adjusts the rate once a second from what the last second looked like.
async fn govern(context: Arc<RunContext>, workers_done: CancellationToken) {
    let mut last_rows = 0;
    let mut last_retries = 0;
    let mut last_latency = 0;
    let mut last_queries = 0;
    let mut last_at = context.clock.elapsed();
    loop {
        tokio::select! {
            _ = workers_done.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = context.clock.elapsed();
        let rows = context.stats.rows.load(Ordering::Relaxed);
        let retries = context.stats.es_retries.load(Ordering::Relaxed);
        let latency = context.stats.db_latency_micros.load(Ordering::Relaxed);
        let queries = context.stats.db_queries.load(Ordering::Relaxed);
        let window = Window {
            rows: rows - last_rows,
            elapsed: now - last_at,
            es_retries: retries - last_retries,
            db_latency: (queries > last_queries).then(|| {
                Duration::from_micros((latency - last_latency) / (queries - last_queries))
            }),
        };
        (last_rows, last_retries, last_latency, last_queries, last_at) =
            (rows, retries, latency, queries, now);
        let change = lock(&context.throttle).observe(&window, now);
        if let Some(change) = change {
            apply_change(&context, &change);
        }
    }
}

/// Reads the control record twice a second and applies what changed.
async fn follow_control(
    context: Arc<RunContext>,
    store: ControlStore,
    workers_done: CancellationToken,
) {
    // a problem is logged when it starts, not twice a second
    let mut last_problem: Option<String> = None;
    loop {
        tokio::select! {
            _ = workers_done.cancelled() => return,
            _ = tokio::time::sleep(CONTROL_POLL) => {}
        }
        let problem = match store.load().await {
            Ok(Some(record)) if record.run_name != context.settings.run_name => Some(format!(
                "{} is for run {:?}, not {:?}; ignored",
                store.location(),
                record.run_name,
                context.settings.run_name
            )),
            Ok(Some(record)) => {
                let change = lock(&context.throttle).apply(&record, context.clock.elapsed());
                if let Some(change) = change {
                    apply_change(&context, &change);
                }
                None
            }
            Ok(None) => None,
            Err(error) => Some(format!("{error}; keeping the current limit")),
        };
        if problem.is_some() && problem != last_problem {
            tracing::warn!(
                problem = problem.as_deref().unwrap_or_default(),
                "cannot follow the control record"
            );
        }
        last_problem = problem;
    }
}

/// Puts a throttle change into effect: the token bucket's rate, the
/// workers' view, the log and the progress output.
fn apply_change(context: &RunContext, change: &ThrottleChange) {
    lock(&context.limiter).set_rate(change.view.limit, context.clock.elapsed());
    context.control.send_replace(change.view);
    context.metrics.set_throttle(&change.view);
    show_change(context, change);
}

fn show_change(context: &RunContext, change: &ThrottleChange) {
    let view = &change.view;
    let described = view.describe();
    let changed_by = change.changed_by.as_deref().unwrap_or_default();
    if view.paused || change.direction == Direction::Down {
        tracing::warn!(
            direction = change.direction.as_str(),
            changed_by,
            "throttle: {described}"
        );
    } else {
        tracing::info!(
            direction = change.direction.as_str(),
            changed_by,
            "throttle: {described}"
        );
    }
    context.reporter.change(&described, &change.to_event());
}

/// Waits while the run is paused; `Err` when `stop` fires meanwhile.
async fn wait_while_paused(
    context: &RunContext,
    control: &mut watch::Receiver<ThrottleView>,
) -> Result<(), Abandoned> {
    loop {
        if !control.borrow_and_update().paused {
            return Ok(());
        }
        tokio::select! {
            changed = control.changed() => {
                if changed.is_err() {
                    // the run is over; nothing will resume it
                    return Err(Abandoned);
                }
            }
            _ = context.stop.cancelled() => return Err(Abandoned),
        }
    }
}

/// Takes `rows` tokens and waits until they may be used. A new limit
/// rescales the wait at once, a pause holds it until resumed.
async fn pace(context: &RunContext, rows: u64) -> Result<(), Abandoned> {
    let mut control = context.control.subscribe();
    wait_while_paused(context, &mut control).await?;
    let (mut wait, mut rate) = {
        let mut limiter = lock(&context.limiter);
        (
            limiter.reserve(rows, context.clock.elapsed()),
            limiter.rate(),
        )
    };
    while !wait.is_zero() {
        let started = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(wait) => wait = Duration::ZERO,
            _ = context.stop.cancelled() => return Err(Abandoned),
            changed = control.changed() => {
                if changed.is_err() {
                    return Err(Abandoned);
                }
                let remaining = wait.saturating_sub(started.elapsed());
                wait_while_paused(context, &mut control).await?;
                let new_rate = lock(&context.limiter).rate();
                wait = rescale_wait(remaining, rate, new_rate);
                rate = new_rate;
            }
        }
    }
    // a pause that came while waiting still holds this page
    wait_while_paused(context, &mut control).await
}

async fn work_loop(context: Arc<RunContext>, worker: usize) -> anyhow::Result<()> {
    let mut control = context.control.subscribe();
    loop {
        if context.stop.is_cancelled() {
            return Ok(());
        }
        if wait_while_paused(&context, &mut control).await.is_err() {
            return Ok(());
        }
        let Some(claim) = claim(&context, worker).await? else {
            if context.control.borrow().paused && !context.stop.is_cancelled() {
                // the claim gave up for the pause; wait above
                continue;
            }
            return Ok(());
        };
        let lost = CancellationToken::new();
        let heartbeat = match (&context.work, &claim.lease) {
            (WorkQueue::Leased(board), Some(lease)) => {
                Some(board.spawn_heartbeat(lease.clone(), lost.clone()))
            }
            _ => None,
        };
        let result = walk_chunk(&context, &claim, &lost).await;
        if let Some(heartbeat) = heartbeat {
            heartbeat.abort();
        }
        match result {
            Ok(totals) => {
                complete(&context, &claim, &totals).await?;
                let chunks_done = context.stats.chunks_done.fetch_add(1, Ordering::Relaxed) + 1;
                context.metrics.set_chunks_done(chunks_done);
                context.reporter.event(&json!({
                    "event": "chunk_done",
                    "mapping": context.plan_names[claim.mapping],
                    "chunk": claim.chunk_number,
                    "range": claim.chunk.to_string(),
                    "attempt": claim.attempt,
                    "worker": worker,
                    "rows": totals.rows,
                    "docs": totals.docs(),
                    "conflicts": totals.conflicts,
                    "failed": totals.failed,
                }));
            }
            Err(ChunkError::Interrupted) => {
                release(&context, &claim).await;
                return Ok(());
            }
            Err(ChunkError::LeaseLost) => {
                tracing::warn!(mapping = %context.plan_names[claim.mapping], chunk = claim.chunk_number, "lease lost; another worker takes the chunk");
            }
            Err(ChunkError::Fatal(error)) => {
                release(&context, &claim).await;
                return Err(error);
            }
        }
    }
}

/// The next chunk for worker number `worker` of this process.
async fn claim(context: &RunContext, worker: usize) -> anyhow::Result<Option<Claim>> {
    match &context.work {
        WorkQueue::Local { queue, .. } => {
            let next = lock(queue).pop_front();
            Ok(next.and_then(|(mapping, chunk_number)| {
                let chunk = context.layouts[mapping].chunk(chunk_number)?;
                Some(Claim {
                    mapping,
                    chunk_number,
                    chunk,
                    attempt: 1,
                    lease: None,
                })
            }))
        }
        WorkQueue::Leased(board) => {
            // waiting for a claimable chunk ends at a pause too: a paused run
            // claims nothing
            let give_up = context.stop.child_token();
            let mut control = context.control.subscribe();
            let pause_watch = {
                let give_up = give_up.clone();
                tokio::spawn(async move {
                    if control.wait_for(|view| view.paused).await.is_ok() {
                        give_up.cancel();
                    }
                })
            };
            let claimed = board.claim(&board.owner(worker), &give_up).await;
            pause_watch.abort();
            let Some(lease) = claimed? else {
                return Ok(None);
            };
            let chunk = context
                .layouts
                .get(lease.mapping)
                .and_then(|layout| layout.chunk(lease.chunk))
                .with_context(|| {
                    format!(
                        "lease names chunk {} of mapping {}, which the plan does not have",
                        lease.chunk, lease.mapping
                    )
                })?;
            Ok(Some(Claim {
                mapping: lease.mapping,
                chunk_number: lease.chunk,
                chunk,
                attempt: lease.attempt,
                lease: Some(lease),
            }))
        }
    }
}

async fn complete(context: &RunContext, claim: &Claim, totals: &Totals) -> anyhow::Result<()> {
    match &context.work {
        WorkQueue::Local {
            checkpoint, store, ..
        } => {
            let mut checkpoint = checkpoint.lock().await;
            if checkpoint.complete(
                claim.mapping,
                claim.chunk_number,
                totals,
                chrono::Utc::now(),
            ) {
                store
                    .save(&checkpoint)
                    .await
                    .with_context(|| format!("cannot write checkpoint {}", store.location()))?;
            }
            Ok(())
        }
        WorkQueue::Leased(board) => {
            board
                .complete(
                    claim
                        .lease
                        .as_ref()
                        .expect("leased claims carry their lease"),
                    totals,
                )
                .await
        }
    }
}

async fn release(context: &RunContext, claim: &Claim) {
    if let (WorkQueue::Leased(board), Some(lease)) = (&context.work, &claim.lease)
        && let Err(error) = board.release(lease).await
    {
        tracing::warn!(error = %error, "cannot release a lease; it expires by itself");
    }
}

/// Walks one chunk page by page.
async fn walk_chunk(
    context: &RunContext,
    claim: &Claim,
    lost: &CancellationToken,
) -> Result<Totals, ChunkError> {
    let (writer_index, source) = &context.sources[claim.mapping];
    let batch_size = context.settings.batch_size.max(1);
    let mut cursor = claim.chunk.first_cursor();
    let mut totals = Totals::default();
    let mut control = context.control.subscribe();
    loop {
        // paused: the lease is still renewed by the heartbeat
        wait_while_paused(context, &mut control)
            .await
            .map_err(|Abandoned| ChunkError::Interrupted)?;
        if context.stop.is_cancelled() {
            return Err(ChunkError::Interrupted);
        }
        if lost.is_cancelled() {
            return Err(ChunkError::LeaseLost);
        }
        let ids = read_page(context, source, &cursor, &claim.chunk, batch_size).await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        pace(context, ids.len() as u64)
            .await
            .map_err(|Abandoned| ChunkError::Interrupted)?;
        let full_page = ids.len() == batch_size;
        let report = context
            .connected
            .writer
            .write_ids(*writer_index, &ids, &context.abort)
            .await
            .map_err(|Abandoned| ChunkError::Interrupted)?;
        context
            .stats
            .es_retries
            .fetch_add(report.es_retries, Ordering::Relaxed);
        let page = Totals {
            rows: ids.len() as u64,
            indexed: report.indexed as u64,
            deleted: report.deleted as u64,
            conflicts: report.conflicts as u64,
            failed: report.failed.len() as u64,
        };
        totals.add(&page);
        context.stats.add(&page);
        context.metrics.add_page(&page);
        for failed in &report.failed {
            // the chunk is done only once every unwritable id is dead-lettered
            dead_letter(context, failed)
                .await
                .map_err(|Abandoned| ChunkError::Interrupted)?;
        }
        if !full_page {
            break;
        }
        cursor = Cursor::advance(&last);
    }
    Ok(totals)
}

/// One keyset page, retrying connection problems.
async fn read_page(
    context: &RunContext,
    source: &Source,
    cursor: &Cursor,
    chunk: &Chunk,
    limit: usize,
) -> Result<Vec<crate::id::Id>, ChunkError> {
    let mut attempt = 0;
    loop {
        let started = Instant::now();
        match source.page(cursor, &chunk.end, limit).await {
            Ok(ids) => {
                context
                    .stats
                    .db_latency_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                context.stats.db_queries.fetch_add(1, Ordering::Relaxed);
                return Ok(ids);
            }
            Err(error) if error.is_retryable() => {
                tracing::warn!(error = %error, chunk = %chunk, attempt, "keyset page failed, retrying");
                let delay = context.connected.loaded.config.retry.random_delay(attempt);
                sleep_or_abort(delay, &context.abort)
                    .await
                    .map_err(|Abandoned| ChunkError::Interrupted)?;
                attempt += 1;
            }
            Err(error) => {
                return Err(ChunkError::Fatal(
                    anyhow::Error::new(error).context(format!("cannot walk chunk {chunk}")),
                ));
            }
        }
    }
}

/// Hands an unwritable id to the dead-letter topic (as the daemon does), or
/// logs it when none is configured; waits until it is produced or `abort`
/// fires: giving up would let the chunk be recorded as done with a row
/// neither written nor dead-lettered.
async fn dead_letter(
    context: &RunContext,
    failed: &crate::writer::FailedId,
) -> Result<(), Abandoned> {
    let mapping = &context.connected.writer.mappings()[failed.mapping];
    let letter = crate::dead_letter::unwritable_id(mapping, failed, "esync-recover");
    let origin = format!("{} id {}", mapping.name, failed.id);
    context
        .dead_letter
        .send(&letter, &origin, &context.abort)
        .await
}

/// Cancels `stop` on the first SIGINT/SIGTERM and `abort` after `grace` (or
/// at the second signal).
pub fn spawn_signal_handler(
    stop: CancellationToken,
    abort: CancellationToken,
    grace: Duration,
) -> Result<(), SignalError> {
    let mut signals = ShutdownSignals::listen()?;
    tokio::spawn(async move {
        let signal = signals.recv().await;
        tracing::info!("{signal} received, finishing in-flight pages");
        stop.cancel();
        tokio::select! {
            _ = signals.recv() => {}
            _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over, abandoning in-flight pages"),
        }
        abort.cancel();
    });
    Ok(())
}
