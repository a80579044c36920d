//! The operations engine shared by both front ends: cluster status, rolling
//! restarts (planned, claimed, driven, resumed, aborted) and slow-log
//! reports. [`Operations`] is the one set of operations the command path
//! (`crate::execute`) calls; [`Engine`] is the real one, and the bot tests
//! implement it over a fake cluster.
//!
//! Errors carry their cause for the log; [`OpsError::chat_message`] is the
//! short text a chat may see (no bodies, paths or secrets).

use crate::action::RestartAction;
use crate::cluster::{
    ClusterHealth, ClusterNode, PlanError, PlannedNode, ShardRow, Target, plan_order,
};
use crate::config::{Config, Secrets};
use crate::driver::{ProgressSink, RollDriver};
use crate::es::{EsClient, EsError};
use crate::metrics::OpsbotMetrics;
use crate::roll::{RollControlError, RollState, RollStatus};
use crate::slowlog::digest::{Digest, DigestFilter, DigestReport, GroupBy, Grouping};
use crate::slowlog::parse::parse_document;
use crate::slowlog::source::{SourceError, read_files};
use crate::store::{RollLock, RollStore, StoreError};
use chrono::Utc;
use std::borrow::Borrow;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Talking to the cluster failed.
    #[error(transparent)]
    Cluster(#[from] EsError),
    /// No restart plan could be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Resume or abort was refused.
    #[error(transparent)]
    Control(#[from] RollControlError),
    /// The roll state file could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A slow-log file could not be read.
    #[error(transparent)]
    Slowlog(#[from] SourceError),
    /// A roll is running or stopped unfinished.
    #[error("a restart is already in progress or unfinished (status {0})")]
    RollInProgress(RollStatus),
    /// Another opsbot process (or task) is driving a roll right now.
    #[error("a restart is being driven by another opsbot process or task")]
    RollLocked,
    /// The saved roll is marked running but no process drives it (opsbot
    /// died); resume continues it.
    #[error("the recorded restart is not driven by any opsbot process; resume continues it")]
    RollOrphaned,
    /// No roll has been recorded.
    #[error("no restart recorded")]
    NoRoll,
    /// Something needed is not configured.
    #[error("{0} is not configured")]
    NotConfigured(&'static str),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl OpsError {
    /// A short text for a chat: no error bodies, file paths or secrets.
    pub fn chat_message(&self) -> String {
        match self {
            OpsError::Cluster(error) if error.is_unreachable() => {
                "cluster unreachable, try again later".to_string()
            }
            OpsError::Cluster(_) => {
                "the cluster returned an error (details in the opsbot log)".to_string()
            }
            OpsError::Plan(error) => error.to_string(),
            OpsError::Control(error) => error.to_string(),
            OpsError::Store(_) => {
                "could not use the restart state (details in the opsbot log)".to_string()
            }
            OpsError::Slowlog(_) => {
                "could not read the slow logs (details in the opsbot log)".to_string()
            }
            OpsError::RollInProgress(status) => {
                format!("a restart is already {status}; see /restart_status, /resume or /abort")
            }
            OpsError::RollLocked => {
                "a restart is running right now; see /restart_status or /abort".to_string()
            }
            OpsError::RollOrphaned => {
                "the recorded restart stopped with opsbot; /resume continues it (and restores allocation)"
                    .to_string()
            }
            OpsError::NoRoll => "no restart recorded".to_string(),
            OpsError::NotConfigured(what) => format!("{what} is not configured"),
            OpsError::Internal(_) => "internal error (details in the opsbot log)".to_string(),
        }
    }
}

/// The operations of both front ends.
pub trait Operations: Send + Sync + 'static {
    /// A roll made ready to be driven; the only one until it is driven or
    /// dropped.
    type Claim: Borrow<RollState> + Send + 'static;

    /// Cluster health.
    fn health(&self) -> impl Future<Output = Result<ClusterHealth, OpsError>> + Send;
    /// Nodes of the cluster.
    fn nodes(&self) -> impl Future<Output = Result<Vec<ClusterNode>, OpsError>> + Send;
    /// Shards, of one index or pattern or all.
    fn shards(
        &self,
        index: Option<&str>,
    ) -> impl Future<Output = Result<Vec<ShardRow>, OpsError>> + Send;
    /// The restart order for a target, with `{host}` from `restart.hosts`
    /// or the node's ip.
    fn plan_restart(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Vec<PlannedNode>, OpsError>> + Send;
    /// A new roll, refused while another is being driven (always) or an
    /// earlier one is unfinished (unless `force`). The roll is saved at once,
    /// so `status` shows it, and a stale abort marker is cleared.
    fn new_roll(
        &self,
        target: &Target,
        allow_yellow: bool,
        force: bool,
    ) -> impl Future<Output = Result<Self::Claim, OpsError>> + Send;
    /// The saved roll, made ready to continue. Refused while another
    /// process drives it; a roll still marked running whose lock is free was
    /// left by an opsbot that died, and continues at the step where it was
    /// (so allocation is put back even after a crash, see
    /// [`RollState::resume`]).
    fn resumable_roll(&self) -> impl Future<Output = Result<Self::Claim, OpsError>> + Send;
    /// Drives a claimed roll to its end in the foreground (the shell).
    fn run_roll(
        &self,
        claim: Self::Claim,
        progress: &ProgressSink,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<RollState, OpsError>> + Send;
    /// Drives a claimed roll in a background task (the chat); progress
    /// lines go to `progress`.
    fn spawn_roll(&self, claim: Self::Claim, progress: Arc<ProgressSink>) -> Result<(), OpsError>;
    /// The current or last roll.
    fn restart_status(&self) -> impl Future<Output = Result<Option<RollState>, OpsError>> + Send;
    /// Asks the running roll to stop before its next node.
    fn abort_restart(&self) -> impl Future<Output = Result<RollState, OpsError>> + Send;
    /// A slow-log digest of `files`, else `slowlog.paths`, else the slow-log
    /// index, counting requests or shard executions (`by`).
    fn slowlog_report(
        &self,
        files: Vec<PathBuf>,
        filter: DigestFilter,
        by: GroupBy,
        top: usize,
    ) -> impl Future<Output = Result<DigestReport, OpsError>> + Send;
}

/// A roll ready to be driven, with the lock that makes it the only one.
#[derive(Debug)]
pub struct ClaimedRoll {
    /// The roll.
    pub state: RollState,
    lock: RollLock,
}

impl Borrow<RollState> for ClaimedRoll {
    fn borrow(&self) -> &RollState {
        &self.state
    }
}

/// The real engine: a cluster adapter, a restart action and a state file.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    es: EsClient,
    driver: RollDriver,
    background: Mutex<Option<JoinHandle<()>>>,
    shutdown: CancellationToken,
    metrics: OpsbotMetrics,
}

impl Engine {
    /// Builds the adapters from the config; `shutdown` stops background rolls.
    pub fn new(
        config: Config,
        secrets: &Secrets,
        shutdown: CancellationToken,
    ) -> Result<Engine, OpsError> {
        let es = EsClient::new(&config.cluster, secrets)?;
        let driver = RollDriver::new(
            es.clone(),
            RestartAction::new(config.restart.action.clone()),
            RollStore::new(config.restart.state_path.clone()),
        );
        Ok(Engine {
            config,
            es,
            driver,
            background: Mutex::new(None),
            shutdown,
            metrics: OpsbotMetrics::default(),
        })
    }

    /// Records rolls (and, through [`Engine::metrics`], the front ends'
    /// commands) in `metrics`.
    pub fn with_metrics(mut self, metrics: OpsbotMetrics) -> Engine {
        self.driver = self.driver.with_metrics(metrics.clone());
        self.metrics = metrics;
        self
    }

    /// The metrics this engine records into.
    pub fn metrics(&self) -> &OpsbotMetrics {
        &self.metrics
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn store(&self) -> &RollStore {
        self.driver.store()
    }

    fn lock(&self) -> Result<RollLock, OpsError> {
        self.store().try_lock()?.ok_or(OpsError::RollLocked)
    }

    /// How slow-log entries are counted: `by`, with the configured request
    /// window.
    fn grouping(&self, by: GroupBy) -> Grouping {
        Grouping {
            by,
            request_window: self.config.slowlog.request_window,
        }
    }

    /// Digest of the slow-log index (`slowlog.index`).
    async fn index_report(
        &self,
        filter: DigestFilter,
        grouping: Grouping,
        top: usize,
    ) -> Result<DigestReport, OpsError> {
        let Some(index) = &self.config.slowlog.index else {
            return Err(OpsError::NotConfigured("slowlog.paths or slowlog.index"));
        };
        let documents = self
            .es
            .slowlog_documents(
                index,
                filter.since,
                filter.until,
                self.config.slowlog.index_max_docs,
            )
            .await?;
        let mut digest = Digest::with_grouping(filter, grouping);
        for document in documents {
            match parse_document(&document) {
                Ok(entry) => digest.add_entry(entry),
                Err(reason) => digest.add_malformed(reason, &|| format!("index {index}")),
            }
        }
        Ok(digest.finish(top))
    }

    /// Waits for a background roll (bot shutdown).
    pub async fn wait_background(&self) {
        let handle = self.background.lock().ok().and_then(|mut slot| slot.take());
        if let Some(handle) = handle
            && let Err(error) = handle.await
        {
            tracing::error!(error = %error, "background roll task failed");
        }
    }
}

impl Operations for Engine {
    type Claim = ClaimedRoll;

    async fn health(&self) -> Result<ClusterHealth, OpsError> {
        Ok(self.es.health().await?)
    }

    async fn nodes(&self) -> Result<Vec<ClusterNode>, OpsError> {
        Ok(self.es.nodes().await?)
    }

    async fn shards(&self, index: Option<&str>) -> Result<Vec<ShardRow>, OpsError> {
        Ok(self.es.shards(index).await?)
    }

    async fn plan_restart(&self, target: &Target) -> Result<Vec<PlannedNode>, OpsError> {
        let nodes = self.es.nodes().await?;
        let hosts = &self.config.restart.hosts;
        Ok(plan_order(&nodes, target, |node| {
            hosts
                .get(&node.name)
                .cloned()
                .unwrap_or_else(|| node.ip.clone())
        })?)
    }

    async fn new_roll(
        &self,
        target: &Target,
        allow_yellow: bool,
        force: bool,
    ) -> Result<ClaimedRoll, OpsError> {
        let lock = self.lock()?;
        if !force
            && let Some(existing) = self.store().load()?
            && !existing.status.is_finished()
        {
            return Err(OpsError::RollInProgress(existing.status));
        }
        let plan = self.plan_restart(target).await?;
        let state = RollState::new(
            plan,
            self.config.restart.roll_settings(allow_yellow),
            Utc::now(),
        );
        // An abort asked for just as the last roll ended must not stop this one.
        let _ = self.store().take_abort()?;
        self.store().save(&state)?;
        Ok(ClaimedRoll { state, lock })
    }

    async fn resumable_roll(&self) -> Result<ClaimedRoll, OpsError> {
        let lock = self.lock()?;
        let mut state = self.store().load()?.ok_or(OpsError::NoRoll)?;
        state.resume(Utc::now())?;
        // A stale abort marker must not stop the resumed roll at once.
        let _ = self.store().take_abort()?;
        self.store().save(&state)?;
        Ok(ClaimedRoll { state, lock })
    }

    async fn run_roll(
        &self,
        claim: ClaimedRoll,
        progress: &ProgressSink,
        cancel: &CancellationToken,
    ) -> Result<RollState, OpsError> {
        Ok(self
            .driver
            .drive(claim.state, claim.lock, progress, cancel)
            .await?)
    }

    fn spawn_roll(&self, claim: ClaimedRoll, progress: Arc<ProgressSink>) -> Result<(), OpsError> {
        let mut background = self
            .background
            .lock()
            .map_err(|_| OpsError::Internal("background lock poisoned".into()))?;
        if background
            .as_ref()
            .is_some_and(|handle| !handle.is_finished())
        {
            return Err(OpsError::RollLocked);
        }
        let driver = self.driver.clone();
        let shutdown = self.shutdown.clone();
        *background = Some(tokio::spawn(async move {
            match driver
                .drive(claim.state, claim.lock, progress.as_ref(), &shutdown)
                .await
            {
                Ok(state) => {
                    tracing::info!(roll = %state.id, status = %state.status, "roll finished")
                }
                Err(error) => {
                    tracing::error!(error = %error, "roll stopped: state file unusable");
                    progress(
                        "restart stopped: the state file could not be written (see the opsbot log)",
                    );
                }
            }
        }));
        Ok(())
    }

    async fn restart_status(&self) -> Result<Option<RollState>, OpsError> {
        Ok(self.store().load()?)
    }

    /// Asks the roll to stop before its next node, through an abort marker
    /// that the process driving it takes (and records in the state file; the
    /// file is not written here, which could overwrite newer progress). A
    /// roll marked running that no process drives cannot be aborted: it has
    /// already stopped, and `resume` is what puts allocation back.
    async fn abort_restart(&self) -> Result<RollState, OpsError> {
        let mut state = self.store().load()?.ok_or(OpsError::NoRoll)?;
        state.request_abort(Utc::now())?;
        if !self.store().is_locked()? {
            return Err(OpsError::RollOrphaned);
        }
        self.store().request_abort()?;
        Ok(state)
    }

    async fn slowlog_report(
        &self,
        files: Vec<PathBuf>,
        filter: DigestFilter,
        by: GroupBy,
        top: usize,
    ) -> Result<DigestReport, OpsError> {
        let files = if files.is_empty() {
            self.config.slowlog.paths.clone()
        } else {
            files
        };
        let grouping = self.grouping(by);
        if files.is_empty() {
            return self.index_report(filter, grouping, top).await;
        }
        let report = tokio::task::spawn_blocking(move || -> Result<DigestReport, SourceError> {
            let mut digest = Digest::with_grouping(filter, grouping);
            read_files(&files, &mut digest)?;
            Ok(digest.finish(top))
        })
        .await
        .map_err(|error| OpsError::Internal(error.to_string()))??;
        Ok(report)
    }
}
