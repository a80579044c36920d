//! One polled mapping's loop: read a page through the [`Poller`], let the
//! [`Window`] decide what to publish, produce the ids, checkpoint the
//! watermark once Kafka acknowledged them, pace, sleep, repeat until
//! shutdown.

use super::PublishError;
use super::checkpoint::CheckpointStore;
use super::config::{PublishConfig, StartPosition};
use super::metrics::PublishMetrics;
use super::poller::Poller;
use super::watermark::{Cursor, Position, Window, lag_seconds, pacing_delay_us};
use crate::cancel::sleep_or_abort;
use crate::kafka::IdProducer;
use crate::metrics::{MappingLabel, Metrics};
use crate::retry::RetryPolicy;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Settings of the poll loop, from `publish:`.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Rows per page.
    pub page_size: usize,
    /// Pause when caught up.
    pub poll_interval: Duration,
    /// Look-back window.
    pub look_back: Duration,
    /// Rows/s cap.
    pub max_rows_per_second: Option<u32>,
    /// Where to start without a checkpoint.
    pub start: StartPosition,
    /// NULL-timestamp report interval (zero: never).
    pub null_check_interval: Duration,
    /// Backoff of retried queries and sends.
    pub retry: RetryPolicy,
}

impl PollSettings {
    /// From the configuration.
    pub fn from_config(publish: &PublishConfig, retry: RetryPolicy) -> PollSettings {
        PollSettings {
            page_size: publish.page_size,
            poll_interval: publish.poll_interval,
            look_back: publish.look_back,
            max_rows_per_second: publish.max_rows_per_second,
            start: publish.start,
            null_check_interval: publish.null_check_interval,
            retry,
        }
    }
}

/// Everything one mapping's loop uses.
pub struct PollLoop {
    /// The reader.
    pub poller: Poller,
    /// Producer of ids.
    pub producer: Arc<IdProducer>,
    /// Watermark store.
    pub checkpoint: Arc<CheckpointStore>,
    /// Metrics.
    pub metrics: Arc<PublishMetrics>,
    /// Settings.
    pub settings: PollSettings,
}

/// Checkpoints are written at most this often during a long catch-up (and at
/// the end of every poll); a restart re-publishes at most this much more.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

impl PollLoop {
    /// Polls until `shutdown`; finishes the current page and checkpoints first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PublishError> {
        let target = &self.poller.target;
        let label = Metrics::mapping(&target.mapping);
        let Some(mut window) = self.initial_window(&label, &shutdown).await? else {
            return Ok(());
        };
        tracing::info!(mapping = %target.mapping, table = %target.table, topic = %target.topic, watermark = ?window.watermark(), "polling");
        let mut last_null_check: Option<Instant> = None;
        let mut saved = window.watermark().cloned();
        // what `finish` saves: the last poll's capped watermark
        let mut to_save = saved.clone();
        let mut last_save = Instant::now();
        while !shutdown.is_cancelled() {
            let poll_started = Instant::now();
            // the database's clock, not this host's: it stamps the rows
            let Some(database_now_us) = self
                .retry(&label, &shutdown, "read the database clock", || {
                    self.poller.database_now_us()
                })
                .await
            else {
                break;
            };
            let mut cursor = window.scan_start(database_now_us);
            let mut rows_this_poll: u64 = 0;
            // A page read ahead while the previous page was being acknowledged.
            let mut prefetched: Option<Result<Vec<Position>, sqlx::Error>> = None;
            loop {
                let rows = match prefetched.take() {
                    Some(Ok(rows)) => rows,
                    Some(Err(_)) | None => {
                        let Some(rows) = self
                            .retry(&label, &shutdown, "read a page", || {
                                self.poller.page(&cursor, self.settings.page_size)
                            })
                            .await
                        else {
                            return self.finish(&to_save, &saved, &window).await;
                        };
                        rows
                    }
                };
                let decision = window.decide(&rows);
                let full_page = rows.len() >= self.settings.page_size;
                let next_cursor = rows.last().map(|last| Cursor::After(last.clone()));
                // Reading ahead is side-effect free; it is skipped under a
                // rows/s cap so the cap keeps bounding reads.
                let read_ahead = full_page
                    && self.settings.max_rows_per_second.is_none()
                    && !shutdown.is_cancelled();
                let send = async {
                    if decision.publish.is_empty() {
                        return Some(0);
                    }
                    self.retry(&label, &shutdown, "produce ids", || {
                        self.producer.send_all(&target.topic, &decision.publish)
                    })
                    .await
                };
                let ahead = async {
                    match (&next_cursor, read_ahead) {
                        (Some(next), true) => {
                            Some(self.poller.page(next, self.settings.page_size).await)
                        }
                        _ => None,
                    }
                };
                let (sent, ahead) = tokio::join!(send, ahead);
                if sent.is_none() {
                    // abandoned before Kafka acknowledged: not checkpointed
                    return self.finish(&to_save, &saved, &window).await;
                }
                prefetched = ahead;
                if !decision.publish.is_empty() {
                    self.metrics
                        .ids_published
                        .get_or_create(&label)
                        .inc_by(decision.publish.len() as u64);
                }
                if decision.late > 0 {
                    self.metrics
                        .late_ids
                        .get_or_create(&label)
                        .inc_by(decision.late as u64);
                    tracing::info!(mapping = %target.mapping, late = decision.late, "published rows that committed behind the watermark");
                }
                self.metrics
                    .suppressed
                    .get_or_create(&label)
                    .inc_by(decision.suppressed as u64);
                self.metrics
                    .rows_scanned
                    .get_or_create(&label)
                    .inc_by(rows.len() as u64);
                window.acknowledge(&rows, database_now_us);
                to_save = window.checkpoint(database_now_us);
                if last_save.elapsed() >= CHECKPOINT_EVERY {
                    self.save(&label, &to_save, &mut saved).await;
                    last_save = Instant::now();
                }
                rows_this_poll += rows.len() as u64;
                let Some(next) = next_cursor else { break };
                cursor = next;
                if !full_page || shutdown.is_cancelled() {
                    break;
                }
                let delay = pacing_delay_us(
                    rows_this_poll,
                    poll_started.elapsed().as_micros() as u64,
                    self.settings.max_rows_per_second,
                );
                if delay > 0
                    && sleep_or_abort(Duration::from_micros(delay), &shutdown)
                        .await
                        .is_err()
                {
                    break;
                }
            }
            window.prune(database_now_us);
            to_save = window.checkpoint(database_now_us);
            self.save(&label, &to_save, &mut saved).await;
            last_save = Instant::now();
            self.metrics
                .poll_duration
                .observe(poll_started.elapsed().as_secs_f64());
            self.metrics
                .watermark_lag
                .get_or_create(&label)
                .set(lag_seconds(window.watermark(), database_now_us));
            if !self.settings.null_check_interval.is_zero()
                && last_null_check
                    .is_none_or(|checked| checked.elapsed() >= self.settings.null_check_interval)
            {
                last_null_check = Some(Instant::now());
                self.report_nulls(&label).await;
            }
            if shutdown.is_cancelled()
                || sleep_or_abort(self.settings.poll_interval, &shutdown)
                    .await
                    .is_err()
            {
                break;
            }
        }
        self.finish(&to_save, &saved, &window).await
    }

    async fn initial_window(
        &self,
        label: &MappingLabel,
        shutdown: &CancellationToken,
    ) -> Result<Option<Window>, PublishError> {
        let target = &self.poller.target;
        let look_back_us = i64::try_from(self.settings.look_back.as_micros()).unwrap_or(i64::MAX);
        if let Some(position) = self
            .checkpoint
            .load(&target.mapping, target.id_type)
            .await?
        {
            return Ok(Some(Window::new(
                Some(position),
                look_back_us,
                self.poller.resolution_us(),
            )));
        }
        let start = match self.settings.start {
            StartPosition::Earliest => None,
            StartPosition::Latest => {
                let Some(latest) = self
                    .retry(label, shutdown, "find the newest row", || {
                        self.poller.latest()
                    })
                    .await
                else {
                    return Ok(None);
                };
                latest
            }
        };
        Ok(Some(Window::new(
            start,
            look_back_us,
            self.poller.resolution_us(),
        )))
    }

    /// Saves `to_save` unless it is `saved` already, and logs the stop.
    async fn finish(
        &self,
        to_save: &Option<Position>,
        saved: &Option<Position>,
        window: &Window,
    ) -> Result<(), PublishError> {
        let target = &self.poller.target;
        if let Some(position) = to_save
            && saved != to_save
        {
            self.checkpoint.save(&target.mapping, position).await?;
        }
        tracing::info!(mapping = %target.mapping, watermark = ?window.watermark(), "poller stopped");
        Ok(())
    }

    /// Saves `to_save` (a [`Window::checkpoint`]) unless it is `saved` already.
    async fn save(
        &self,
        label: &MappingLabel,
        to_save: &Option<Position>,
        saved: &mut Option<Position>,
    ) {
        let Some(position) = to_save else {
            return;
        };
        if saved == to_save {
            return;
        }
        match self
            .checkpoint
            .save(&self.poller.target.mapping, position)
            .await
        {
            Ok(()) => *saved = Some(position.clone()),
            Err(error) => {
                // Not fatal: ids are in Kafka; an older checkpoint only means
                // more re-published ids after a restart.
                self.metrics.errors.get_or_create(label).inc();
                tracing::warn!(mapping = %self.poller.target.mapping, error = %error, "cannot save the checkpoint; retrying at the next page");
            }
        }
    }

    async fn report_nulls(&self, label: &MappingLabel) {
        let target = &self.poller.target;
        match self.poller.null_rows(10).await {
            Ok((count, sample)) => {
                self.metrics
                    .null_timestamp_rows
                    .get_or_create(label)
                    .set(count);
                if count > 0 {
                    let sample: Vec<String> = sample.iter().map(ToString::to_string).collect();
                    tracing::warn!(
                        mapping = %target.mapping,
                        table = %target.table,
                        column = %target.timestamp_column,
                        rows = count,
                        sample_ids = %sample.join(","),
                        "rows with a NULL timestamp are invisible to the poller; set the column or publish them with esync-recover"
                    );
                }
            }
            Err(error) => {
                self.metrics.errors.get_or_create(label).inc();
                tracing::warn!(mapping = %target.mapping, error = %error, "cannot count rows with a NULL timestamp");
            }
        }
    }

    /// Runs `attempt` until it succeeds, backing off between failures; `None`
    /// when `shutdown` fired while waiting.
    async fn retry<T, E, F, Fut>(
        &self,
        label: &MappingLabel,
        shutdown: &CancellationToken,
        what: &str,
        mut attempt: F,
    ) -> Option<T>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut failures = 0u32;
        loop {
            match attempt().await {
                Ok(value) => return Some(value),
                Err(error) => {
                    self.metrics.errors.get_or_create(label).inc();
                    let delay = self.settings.retry.random_delay(failures);
                    tracing::warn!(mapping = %self.poller.target.mapping, error = %error, retry_in = ?delay, "cannot {what}");
                    failures = failures.saturating_add(1);
                    if sleep_or_abort(delay, shutdown).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}
