//! The roll driver: performs what the pure state machine (`roll`) asks for,
//! against the cluster adapter (`es`) and the restart action (`action`),
//! persisting progress (`store`) after every change and reporting milestones.
//!
//! Policy (order, time-outs, restore on failure) stays in `roll`; this module
//! only does the I/O, reads the clock and maps errors to short, chat-safe
//! observations (the full error goes to the log).

use crate::action::RestartAction;
use crate::es::{EsClient, EsError};
use crate::metrics::{OpsbotMetrics, RollSnapshot};
use crate::roll::{Action, Next, Observation, RollState};
use crate::store::{RollLock, RollStore, StoreError};
use chrono::Utc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Receives progress lines (chat message, stdout line).
pub type ProgressSink = dyn Fn(&str) + Send + Sync;

/// Drives rolls.
#[derive(Debug, Clone)]
pub struct RollDriver {
    es: EsClient,
    action: RestartAction,
    store: RollStore,
    metrics: OpsbotMetrics,
}

/// A short reason for a chat; the whole error is logged.
fn chat_reason(error: &EsError) -> String {
    tracing::warn!(error = %error, "cluster call failed during roll");
    match error {
        // The state machine says "cluster unreachable" itself.
        EsError::Unreachable { endpoint, .. } => format!("no answer to {endpoint}"),
        EsError::Status {
            endpoint, status, ..
        } => format!("{endpoint} answered {status}"),
        EsError::Decode { endpoint, .. } => format!("unexpected answer from {endpoint}"),
        EsError::Setup(_) => "invalid cluster settings".to_string(),
    }
}

fn observe_es<T>(result: Result<T, EsError>, on_ok: impl FnOnce(T) -> Observation) -> Observation {
    match result {
        Ok(value) => on_ok(value),
        Err(error) if error.is_unreachable() => Observation::Unreachable(chat_reason(&error)),
        Err(error) => Observation::Failed(chat_reason(&error)),
    }
}

impl RollDriver {
    /// A driver over a cluster, an action and a state file.
    pub fn new(es: EsClient, action: RestartAction, store: RollStore) -> RollDriver {
        RollDriver {
            es,
            action,
            store,
            metrics: OpsbotMetrics::default(),
        }
    }

    /// Records rolls in `metrics` (nodes restarted, failures, waits).
    pub fn with_metrics(mut self, metrics: OpsbotMetrics) -> RollDriver {
        self.metrics = metrics;
        self
    }

    /// The state file.
    pub fn store(&self) -> &RollStore {
        &self.store
    }

    async fn perform(&self, action: Action, state: &RollState) -> Observation {
        match action {
            Action::CheckHealth => observe_es(self.es.health().await, |health| {
                Observation::Health(health.status)
            }),
            Action::ReadAllocation => {
                observe_es(self.es.allocation().await, Observation::Allocation)
            }
            Action::DisableAllocation(saved) => {
                observe_es(self.es.disable_allocation(&saved).await, |()| {
                    Observation::Done
                })
            }
            Action::Flush => observe_es(self.es.flush().await, |()| Observation::Done),
            Action::Restart { node, host } => {
                match self
                    .action
                    .run(&node, &host, state.settings.restart_timeout())
                    .await
                {
                    Ok(()) => Observation::Done,
                    Err(error) => Observation::Failed(error.to_string()),
                }
            }
            Action::ListNodes => observe_es(self.es.nodes().await, Observation::Nodes),
            Action::ListShards => observe_es(self.es.shards(None).await, Observation::Shards),
            Action::RestoreAllocation(saved) => {
                observe_es(self.es.restore_allocation(&saved).await, |()| {
                    Observation::Done
                })
            }
        }
    }

    /// Runs the roll until it is done, failed or aborted, holding `lock`
    /// (see [`RollStore::try_lock`]) all the while. An abort marker (see
    /// [`RollStore::request_abort`]) is honoured before the next node;
    /// `cancel` (shutdown) stops at once, restoring allocation first.
    pub async fn drive(
        &self,
        mut state: RollState,
        lock: RollLock,
        progress: &ProgressSink,
        cancel: &CancellationToken,
    ) -> Result<RollState, StoreError> {
        let _lock = lock;
        self.metrics.roll_started(&state, Utc::now());
        let result = self.drive_locked(&mut state, progress, cancel).await;
        self.metrics.roll_stopped(&state);
        result.map(|()| state)
    }

    async fn drive_locked(
        &self,
        state: &mut RollState,
        progress: &ProgressSink,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        self.store.save(state)?;
        loop {
            let now = Utc::now();
            if self.store.take_abort()? && state.request_abort(now).is_ok() {
                progress("abort requested: stopping before the next node");
            }
            if cancel.is_cancelled() {
                state.interrupt(now);
            }
            let before = state.position();
            let snapshot = RollSnapshot::of(state);
            match state.poll(now) {
                Next::Finished => {
                    self.metrics.roll_changed(&snapshot, state, now);
                    self.store.save(state)?;
                    if let Some(message) = state.milestone(before) {
                        progress(&message);
                    }
                    return Ok(());
                }
                Next::SleepUntil(at) => {
                    self.metrics.roll_changed(&snapshot, state, now);
                    if let Some(message) = state.milestone(before) {
                        self.store.save(state)?;
                        progress(&message);
                    }
                    let wait = (at - now)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(Duration::from_secs(1));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.cancelled(), if !cancel.is_cancelled() => {}
                    }
                }
                Next::Do(action) => {
                    tracing::debug!(?action, node = ?state.current_node().map(|n| &n.name), "roll action");
                    let observation = self.perform(action, state).await;
                    let observed_at = Utc::now();
                    state.observe(observation, observed_at);
                    self.metrics.roll_changed(&snapshot, state, observed_at);
                    self.store.save(state)?;
                    if let Some(message) = state.milestone(before) {
                        tracing::info!(roll = %state.id, "{message}");
                        progress(&message);
                    }
                }
            }
        }
    }
}
