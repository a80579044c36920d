//! The one command path of both front ends: a [`Command`] in, an
//! [`Outcome`] out. The bot (`crate::bot`) and the CLI (`src/cli.rs`) build
//! the same commands and run them here; they differ only in how they render
//! the outcome (chat replies or stdout) and in where a claimed roll runs (a
//! background task for a chat, the foreground for a shell).
//!
//! Authorization and confirmations are the chat's business and happen
//! before a command gets here.

use crate::cluster::{ClusterHealth, ClusterNode, PlannedNode, ShardRow};
use crate::command::{Command, PlanRequest, SlowlogRequest, plan_error, plan_input};
use crate::metrics::{CommandOutcome, OpsbotMetrics};
use crate::ops::{Operations, OpsError};
use crate::roll::RollState;
use crate::slowlog::digest::{DigestFilter, DigestReport};
use chrono::{DateTime, Utc};
use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the command path.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// Window of a slow-log report that names neither a window nor a start
    /// (the chat's default; the CLI reads everything).
    pub default_window: Option<Duration>,
    /// Fingerprints shown when the request does not say.
    pub slowlog_top: usize,
    /// Whether rolls accept yellow where green is required unless asked
    /// (`restart.allow_yellow`), for the plan of a dry run.
    pub allow_yellow: bool,
}

/// A roll claimed by a restart or resume, to be driven by the front end
/// (in the background or the foreground).
#[derive(Debug)]
pub struct PendingRoll<C> {
    /// The claim (the roll and the lock that makes it the only one).
    pub claim: C,
    /// Whether it continues a stopped roll.
    pub resumed: bool,
}

impl<C: Borrow<RollState>> PendingRoll<C> {
    /// The roll as claimed.
    pub fn state(&self) -> &RollState {
        self.claim.borrow()
    }
}

/// What a command produced.
#[derive(Debug)]
pub enum Outcome<C> {
    /// The command list.
    Help,
    /// The usage of `/plan`.
    PlanUsage,
    /// A shard plan and the input it was made from.
    Plan {
        /// The checked planning input.
        input: Box<shardplan::PlanInput>,
        /// The plan.
        plan: Box<shardplan::Plan>,
    },
    /// Cluster health.
    Health(ClusterHealth),
    /// Nodes of the cluster.
    Nodes(Vec<ClusterNode>),
    /// Shards.
    Shards(Vec<ShardRow>),
    /// The plan of a dry-run restart.
    RestartPlan {
        /// Nodes in restart order.
        nodes: Vec<PlannedNode>,
        /// Whether the roll would accept yellow where green is required.
        allow_yellow: bool,
    },
    /// A roll claimed and ready to be driven.
    Roll(PendingRoll<C>),
    /// The current or last roll.
    Status(Option<RollState>),
    /// The roll asked to stop before its next node.
    AbortRequested(RollState),
    /// A slow-log digest.
    Slowlog {
        /// The digest.
        report: DigestReport,
        /// Fingerprints asked for.
        top: usize,
    },
}

/// Why a command produced no outcome.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The input is wrong (a `/plan` key or value): a short message naming
    /// it, not a failure.
    #[error("{0}")]
    Rejected(String),
    /// The operation failed.
    #[error(transparent)]
    Failed(#[from] OpsError),
}

/// Runs commands against the operations.
pub struct Executor<O: Operations> {
    ops: Arc<O>,
    settings: ExecSettings,
    metrics: OpsbotMetrics,
}

impl<O: Operations> Executor<O> {
    /// An executor over `ops`.
    pub fn new(ops: Arc<O>, settings: ExecSettings) -> Self {
        Executor {
            ops,
            settings,
            metrics: OpsbotMetrics::default(),
        }
    }

    /// Counts commands in `metrics` (`opsbot_commands_total`,
    /// `opsbot_slowlog_reports_total`) instead of in unregistered ones.
    pub fn with_metrics(mut self, metrics: OpsbotMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The operations, to drive a claimed roll.
    pub fn ops(&self) -> &O {
        &self.ops
    }

    /// Runs one command at time `now` (the end of a slow-log window) and
    /// counts it: `ok` when it produced an outcome, `refused` when its input
    /// was rejected, `failed` when the operation failed.
    pub async fn execute(
        &self,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Outcome<O::Claim>, ExecError> {
        let name = command.name();
        let result = self.preview(command, now).await;
        let outcome = match &result {
            Ok(Outcome::Slowlog { .. }) => {
                self.metrics.slowlog_reports.inc();
                CommandOutcome::Ok
            }
            Ok(_) => CommandOutcome::Ok,
            Err(ExecError::Rejected(_)) => CommandOutcome::Refused,
            Err(ExecError::Failed(_)) => CommandOutcome::Failed,
        };
        self.metrics.command(name, outcome);
        result
    }

    /// Runs one command without counting it: what a confirmation question
    /// shows (the dry run of a restart, the roll a resume continues) is not
    /// a command of its own.
    pub async fn preview(
        &self,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Outcome<O::Claim>, ExecError> {
        let outcome = match command {
            Command::Help => Outcome::Help,
            Command::Plan {
                request: PlanRequest::Usage,
            } => Outcome::PlanUsage,
            Command::Plan {
                request: PlanRequest::Settings(settings),
            } => {
                let reject = |message: String| ExecError::Rejected(message);
                let input = plan_input(&settings).map_err(|error| reject(error.to_string()))?;
                let plan = shardplan::plan_shards(&input)
                    .map_err(|error| reject(plan_error(error).to_string()))?;
                Outcome::Plan {
                    input: Box::new(input),
                    plan: Box::new(plan),
                }
            }
            Command::Health => Outcome::Health(self.ops.health().await?),
            Command::Nodes => Outcome::Nodes(self.ops.nodes().await?),
            Command::Shards { index } => Outcome::Shards(self.ops.shards(index.as_deref()).await?),
            Command::Restart {
                target,
                allow_yellow,
                dry_run: true,
                ..
            } => Outcome::RestartPlan {
                nodes: self.ops.plan_restart(&target).await?,
                allow_yellow: allow_yellow || self.settings.allow_yellow,
            },
            Command::Restart {
                target,
                allow_yellow,
                force,
                ..
            } => Outcome::Roll(PendingRoll {
                claim: self.ops.new_roll(&target, allow_yellow, force).await?,
                resumed: false,
            }),
            Command::Resume => Outcome::Roll(PendingRoll {
                claim: self.ops.resumable_roll().await?,
                resumed: true,
            }),
            Command::RestartStatus => Outcome::Status(self.ops.restart_status().await?),
            Command::Abort => Outcome::AbortRequested(self.ops.abort_restart().await?),
            Command::Slowlog(request) => self.slowlog(request, now).await?,
        };
        Ok(outcome)
    }

    async fn slowlog(
        &self,
        request: SlowlogRequest,
        now: DateTime<Utc>,
    ) -> Result<Outcome<O::Claim>, OpsError> {
        let window = match request.since {
            Some(_) => request.window,
            None => request.window.or(self.settings.default_window),
        };
        let since = match window {
            Some(window) => chrono::Duration::from_std(window)
                .ok()
                .map(|window| now - window),
            None => request.since,
        };
        let filter = DigestFilter {
            since,
            until: request.until,
            index_patterns: request.index,
            kinds: request.kinds,
        };
        let top = request.top.unwrap_or(self.settings.slowlog_top);
        let report = self
            .ops
            .slowlog_report(request.files, filter, request.by, top)
            .await?;
        Ok(Outcome::Slowlog { report, top })
    }
}
