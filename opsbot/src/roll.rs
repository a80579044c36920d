//! Rolling restart as a pure state machine.
//!
//! The machine decides *what* to do next ([`RollState::poll`]) and learns what
//! happened ([`RollState::observe`]); the driver (`crate::driver`) performs the
//! actions against a cluster and a restart action. This module must not do
//! I/O, read a clock or the environment: `now` is always passed in, so the
//! whole sequence, its time-outs and its failure handling are tested on a
//! simulated cluster.
//!
//! Per node: check health (green, or a settled yellow when allowed),
//! remember the allocation setting (once per roll), set
//! `cluster.routing.allocation.enable` to `primaries`, flush, restart, wait
//! for the node to leave and rejoin, put allocation back, wait for green (or
//! a settled yellow), then the next node. Data nodes go first, the elected
//! master last. Any failure or time-out stops the roll and puts allocation
//! back before it reports the node and step.
//!
//! Yellow, when allowed, is accepted only once it has settled, as ECK does:
//! no shard initializing or relocating for `settled_polls` polls in a row
//! (any movement starts the count again), and a node holding the only
//! started copy of a shard is never stopped: the roll waits instead. Green
//! is accepted at once, as it always was. Every wait says what it waits for
//! ([`RollState::milestone`] reports it when it changes).

use crate::cluster::{
    AllocationSetting, ClusterNode, HealthStatus, PlannedNode, ShardActivity, ShardRow,
    only_started_copies,
};
use crate::format::humanize_ms;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// One step of the per-node sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Require green (or yellow when allowed) before touching the node.
    CheckHealth,
    /// Remember the allocation setting (first node only).
    ReadAllocation,
    /// Set allocation to `primaries`.
    DisableAllocation,
    /// `POST _flush`.
    Flush,
    /// Run the restart action.
    Restart,
    /// Wait until the node has left (or shows a fresh uptime).
    WaitLeave,
    /// Wait until the node is back in `_cat/nodes`.
    WaitRejoin,
    /// Put allocation back to its previous value.
    RestoreAllocation,
    /// Wait for green (or yellow when allowed) with a time-out.
    WaitGreen,
}

impl Step {
    /// Every step in order, for tests and documentation.
    pub const ALL: [Step; 9] = [
        Step::CheckHealth,
        Step::ReadAllocation,
        Step::DisableAllocation,
        Step::Flush,
        Step::Restart,
        Step::WaitLeave,
        Step::WaitRejoin,
        Step::RestoreAllocation,
        Step::WaitGreen,
    ];
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::CheckHealth => "check health",
            Step::ReadAllocation => "read allocation",
            Step::DisableAllocation => "set allocation to primaries",
            Step::Flush => "flush",
            Step::Restart => "restart",
            Step::WaitLeave => "wait for node to leave",
            Step::WaitRejoin => "wait for node to rejoin",
            Step::RestoreAllocation => "restore allocation",
            Step::WaitGreen => "wait for green",
        })
    }
}

/// Time-outs and options of a roll. Durations are kept in milliseconds so the
/// persisted state stays plain JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollSettings {
    /// Accept a settled yellow where green is required.
    pub allow_yellow: bool,
    /// Polls in a row without a shard initializing or relocating before a
    /// yellow cluster counts as settled.
    #[serde(default = "default_settled_polls")]
    pub settled_polls: u32,
    /// Pause between two polls of a waiting step.
    pub poll_interval_ms: u64,
    /// How long to wait for green before touching a node.
    pub health_timeout_ms: u64,
    /// Time-out of one API call step (read/set/restore allocation, flush).
    pub api_timeout_ms: u64,
    /// Time-out of the restart action.
    pub restart_timeout_ms: u64,
    /// How long the node may take to leave.
    pub leave_timeout_ms: u64,
    /// How long the node may take to rejoin.
    pub rejoin_timeout_ms: u64,
    /// How long the cluster may take to be green again.
    pub green_timeout_ms: u64,
    /// How often restoring allocation is tried after a failure.
    pub restore_attempts: u32,
}

/// Default of [`RollSettings::settled_polls`] (`restart.settled_polls`).
pub const DEFAULT_SETTLED_POLLS: u32 = 3;

fn default_settled_polls() -> u32 {
    DEFAULT_SETTLED_POLLS
}

impl Default for RollSettings {
    fn default() -> Self {
        RollSettings {
            allow_yellow: false,
            settled_polls: DEFAULT_SETTLED_POLLS,
            poll_interval_ms: 5_000,
            health_timeout_ms: 300_000,
            api_timeout_ms: 60_000,
            restart_timeout_ms: 600_000,
            leave_timeout_ms: 300_000,
            rejoin_timeout_ms: 600_000,
            green_timeout_ms: 1_800_000,
            restore_attempts: 5,
        }
    }
}

impl RollSettings {
    fn timeout_of(&self, step: Step) -> u64 {
        match step {
            Step::CheckHealth => self.health_timeout_ms,
            Step::ReadAllocation | Step::DisableAllocation | Step::Flush => self.api_timeout_ms,
            Step::RestoreAllocation => self.api_timeout_ms,
            Step::Restart => self.restart_timeout_ms,
            Step::WaitLeave => self.leave_timeout_ms,
            Step::WaitRejoin => self.rejoin_timeout_ms,
            Step::WaitGreen => self.green_timeout_ms,
        }
    }

    /// Time-out of the restart action, for the driver.
    pub fn restart_timeout(&self) -> Duration {
        Duration::from_millis(self.restart_timeout_ms)
    }
}

/// Where a roll is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollStatus {
    /// Working through the nodes.
    Running,
    /// A step failed; putting allocation back before stopping.
    Restoring,
    /// Every node was restarted.
    Done,
    /// Stopped at a node and step; see [`RollState::failure`].
    Failed,
    /// Stopped on request between two nodes.
    Aborted,
}

impl RollStatus {
    /// Whether the roll has stopped (done, failed or aborted).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RollStatus::Done | RollStatus::Failed | RollStatus::Aborted
        )
    }
}

impl fmt::Display for RollStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RollStatus::Running => "running",
            RollStatus::Restoring => "restoring allocation",
            RollStatus::Done => "done",
            RollStatus::Failed => "failed",
            RollStatus::Aborted => "aborted",
        })
    }
}

/// Where and why a roll stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Node being restarted.
    pub node: String,
    /// Step that failed or timed out.
    pub step: Step,
    /// Short reason, safe to show in a chat.
    pub reason: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Status, node, step and what it waits for: what progress messages are
/// about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollPosition {
    /// Status.
    pub status: RollStatus,
    /// Index of the current node.
    pub current: usize,
    /// Step of the current node.
    pub step: Step,
    /// What the step waits for, if it waits.
    pub wait: Option<WaitKind>,
}

/// What a waiting step waits for. Progress reports a wait when its kind
/// changes, not at every poll (counts change all the time); `status` shows
/// the latest details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// Health is not acceptable yet: red, yellow where green is required, or
    /// yellow with shards initializing or relocating.
    Health,
    /// Yellow and quiet, counting the polls until it counts as settled.
    Settling,
    /// The node holds the only started copy of some shard.
    OnlyStartedCopy,
    /// The node has not left the cluster yet.
    NodeLeaving,
    /// The node has not rejoined yet.
    NodeRejoining,
    /// The cluster API cannot be reached.
    Unreachable,
}

/// Something the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `GET _cluster/health`; answer with [`Observation::Health`].
    CheckHealth,
    /// `GET _cluster/settings`; answer with [`Observation::Allocation`].
    ReadAllocation,
    /// Set allocation to `primaries` (persistent, and transient when the saved
    /// transient value is set); answer with [`Observation::Done`].
    DisableAllocation(AllocationSetting),
    /// `POST _flush`; answer with [`Observation::Done`].
    Flush,
    /// Run the restart action for a node; answer with [`Observation::Done`].
    Restart {
        /// Node name (`{node}`).
        node: String,
        /// Host (`{host}`).
        host: String,
    },
    /// `GET _cat/nodes`; answer with [`Observation::Nodes`].
    ListNodes,
    /// `GET _cat/shards` (a cluster that is not green: what moves, and whose
    /// copies are the only started ones); answer with
    /// [`Observation::Shards`].
    ListShards,
    /// Put allocation back to the saved setting; answer with [`Observation::Done`].
    RestoreAllocation(AllocationSetting),
}

/// What the machine wants from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Perform this action, then call [`RollState::observe`].
    Do(Action),
    /// Nothing to do before this time; call [`RollState::poll`] again then.
    SleepUntil(DateTime<Utc>),
    /// The roll has stopped.
    Finished,
}

/// The result of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Cluster health.
    Health(HealthStatus),
    /// Current allocation setting.
    Allocation(AllocationSetting),
    /// The action succeeded.
    Done,
    /// Nodes currently in the cluster.
    Nodes(Vec<ClusterNode>),
    /// Every shard copy (`_cat/shards`).
    Shards(Vec<ShardRow>),
    /// The cluster API could not be reached (expected while a node is down).
    Unreachable(String),
    /// The action failed.
    Failed(String),
}

/// Why a resume or abort was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollControlError {
    /// Nothing left to do.
    #[error("the roll is already done")]
    AlreadyDone,
    /// The roll is not running.
    #[error("the roll is not running")]
    NotRunning,
}

/// The whole progress of a roll; persisted after every change so `status`,
/// `resume` and `abort` work across restarts of opsbot itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollState {
    /// Identifier of this roll (the start time, by default).
    pub id: String,
    /// When the roll started.
    pub started_at: DateTime<Utc>,
    /// When the state last changed.
    pub updated_at: DateTime<Utc>,
    /// Options and time-outs.
    pub settings: RollSettings,
    /// Nodes in restart order.
    pub nodes: Vec<PlannedNode>,
    /// Index into `nodes` of the node being restarted.
    pub current: usize,
    /// Step of the current node.
    pub step: Step,
    /// When the current step started (its time-out counts from here).
    pub step_started_at: DateTime<Utc>,
    /// When a waiting step polls next.
    pub next_poll_at: Option<DateTime<Utc>>,
    /// When the restart action of the current node was started.
    pub restart_started_at: Option<DateTime<Utc>>,
    /// Allocation setting from before the roll.
    pub saved_allocation: Option<AllocationSetting>,
    /// Whether allocation may currently differ from `saved_allocation`.
    pub allocation_changed: bool,
    /// Overall status.
    pub status: RollStatus,
    /// Where and why it stopped, when it failed.
    pub failure: Option<Failure>,
    /// An abort was asked for; honoured before the next node.
    pub abort_requested: bool,
    /// Names of nodes restarted successfully.
    pub completed: Vec<String>,
    /// Restore tries left while `Restoring`.
    pub restore_attempts_left: u32,
    /// Last observation that did not satisfy a waiting step, for `status`.
    pub last_note: Option<String>,
    /// A resume is waiting for allocation to be restored first; once it is,
    /// the roll continues instead of stopping.
    #[serde(default)]
    pub resume_after_restore: bool,
    /// What the current step waits for (with `last_note` saying it in
    /// words).
    #[serde(default)]
    pub wait: Option<WaitKind>,
    /// A health check answered this colour (not green); the shard table
    /// comes next, to say what moves and to judge a yellow.
    #[serde(default)]
    pub pending_health: Option<HealthStatus>,
    /// Polls in a row that found the yellow cluster quiet (no shard
    /// initializing or relocating); kept from "wait for green" to the next
    /// node's health check, which follow each other without a change.
    #[serde(default)]
    pub quiet_polls: u32,
    /// Health the last restarted node was finished on, for its progress
    /// line.
    #[serde(default)]
    pub finished_on: Option<HealthStatus>,
}

impl RollState {
    /// Starts a roll over `nodes` (already in order, see [`plan_order`]).
    pub fn new(nodes: Vec<PlannedNode>, settings: RollSettings, now: DateTime<Utc>) -> RollState {
        let status = if nodes.is_empty() {
            RollStatus::Done
        } else {
            RollStatus::Running
        };
        RollState {
            id: now.format("%Y%m%dT%H%M%SZ").to_string(),
            started_at: now,
            updated_at: now,
            restore_attempts_left: settings.restore_attempts,
            settings,
            nodes,
            current: 0,
            step: Step::CheckHealth,
            step_started_at: now,
            next_poll_at: None,
            restart_started_at: None,
            saved_allocation: None,
            allocation_changed: false,
            status,
            failure: None,
            abort_requested: false,
            completed: Vec::new(),
            last_note: None,
            resume_after_restore: false,
            wait: None,
            pending_health: None,
            quiet_polls: 0,
            finished_on: None,
        }
    }

    /// The node being restarted, if any.
    pub fn current_node(&self) -> Option<&PlannedNode> {
        self.nodes.get(self.current)
    }

    /// What to do next at time `now`.
    pub fn poll(&mut self, now: DateTime<Utc>) -> Next {
        match self.status {
            RollStatus::Done | RollStatus::Failed | RollStatus::Aborted => Next::Finished,
            RollStatus::Restoring => {
                if let Some(at) = self.next_poll_at
                    && at > now
                {
                    return Next::SleepUntil(at);
                }
                Next::Do(Action::RestoreAllocation(
                    self.saved_allocation.clone().unwrap_or_default(),
                ))
            }
            RollStatus::Running => self.poll_running(now),
        }
    }

    fn poll_running(&mut self, now: DateTime<Utc>) -> Next {
        if self.abort_requested && self.step == Step::CheckHealth && !self.allocation_changed {
            self.status = RollStatus::Aborted;
            self.updated_at = now;
            return Next::Finished;
        }
        let deadline = self.deadline();
        if now >= deadline {
            let waited = humanize_ms(self.settings.timeout_of(self.step));
            let reason = match &self.last_note {
                Some(note) => format!("timed out after {waited} ({note})"),
                None => format!("timed out after {waited}"),
            };
            self.fail(reason, now);
            return self.poll(now);
        }
        if let Some(at) = self.next_poll_at
            && at > now
        {
            return Next::SleepUntil(at.min(deadline));
        }
        let Some(node) = self.current_node() else {
            self.status = RollStatus::Done;
            return Next::Finished;
        };
        let action = match self.step {
            Step::CheckHealth | Step::WaitGreen if self.pending_health.is_some() => {
                Action::ListShards
            }
            Step::CheckHealth | Step::WaitGreen => Action::CheckHealth,
            Step::ReadAllocation => Action::ReadAllocation,
            Step::DisableAllocation => {
                Action::DisableAllocation(self.saved_allocation.clone().unwrap_or_default())
            }
            Step::Flush => Action::Flush,
            Step::Restart => {
                let action = Action::Restart {
                    node: node.name.clone(),
                    host: node.host.clone(),
                };
                self.restart_started_at = Some(now);
                action
            }
            Step::WaitLeave | Step::WaitRejoin => Action::ListNodes,
            Step::RestoreAllocation => {
                Action::RestoreAllocation(self.saved_allocation.clone().unwrap_or_default())
            }
        };
        Next::Do(action)
    }

    /// When the current step times out.
    pub fn deadline(&self) -> DateTime<Utc> {
        let millis = self.settings.timeout_of(self.step);
        self.step_started_at
            + ChronoDuration::milliseconds(i64::try_from(millis).unwrap_or(i64::MAX / 2))
    }

    /// Records the result of the last action.
    pub fn observe(&mut self, observation: Observation, now: DateTime<Utc>) {
        self.updated_at = now;
        match self.status {
            RollStatus::Restoring => self.observe_restoring(observation, now),
            RollStatus::Running => self.observe_running(observation, now),
            RollStatus::Done | RollStatus::Failed | RollStatus::Aborted => {}
        }
    }

    fn observe_restoring(&mut self, observation: Observation, now: DateTime<Utc>) {
        match observation {
            Observation::Done => {
                self.allocation_changed = false;
                self.next_poll_at = None;
                if self.resume_after_restore {
                    self.resume_after_restore = false;
                    self.failure = None;
                    self.status = RollStatus::Running;
                    self.advance(Step::CheckHealth, now);
                } else {
                    self.status = RollStatus::Failed;
                }
            }
            other => {
                self.restore_attempts_left = self.restore_attempts_left.saturating_sub(1);
                self.last_note = Some(format!("restoring allocation failed: {}", describe(&other)));
                if self.restore_attempts_left == 0 {
                    self.status = RollStatus::Failed;
                    self.next_poll_at = None;
                    if self.resume_after_restore {
                        self.resume_after_restore = false;
                        if self.failure.is_none() {
                            self.failure = Some(Failure {
                                node: self
                                    .current_node()
                                    .map(|node| node.name.clone())
                                    .unwrap_or_default(),
                                step: Step::RestoreAllocation,
                                reason: "could not restore allocation before resuming".to_string(),
                                at: now,
                            });
                        }
                    }
                } else {
                    self.next_poll_at = Some(now + self.poll_interval());
                }
            }
        }
    }

    fn observe_running(&mut self, observation: Observation, now: DateTime<Utc>) {
        let Some(node_name) = self.current_node().map(|node| node.name.clone()) else {
            return;
        };
        match (self.step, observation) {
            (Step::CheckHealth | Step::WaitGreen, Observation::Health(HealthStatus::Green)) => {
                self.quiet_polls = 0;
                self.health_accepted(node_name, HealthStatus::Green, now);
            }
            (Step::CheckHealth | Step::WaitGreen, Observation::Health(status)) => {
                // Judged with the shard table, asked for at once.
                self.pending_health = Some(status);
            }
            (Step::CheckHealth | Step::WaitGreen, Observation::Shards(rows))
                if self.pending_health.is_some() =>
            {
                let status = self.pending_health.take().unwrap_or(HealthStatus::Red);
                self.judge_health(&node_name, status, &rows, now);
            }
            (
                Step::CheckHealth | Step::WaitGreen,
                Observation::Failed(reason) | Observation::Unreachable(reason),
            ) if self.pending_health.is_some() => {
                // Without the shard table a yellow cannot be judged: wait
                // (it is no reason to stop a roll that only waits).
                let status = self.pending_health.take().unwrap_or(HealthStatus::Red);
                self.quiet_polls = 0;
                self.wait(
                    WaitKind::Health,
                    format!("cluster is {status}; shard table unavailable: {reason}"),
                    now,
                );
            }
            (Step::ReadAllocation, Observation::Allocation(setting)) => {
                self.saved_allocation = Some(setting);
                self.advance(Step::DisableAllocation, now);
            }
            (Step::DisableAllocation, Observation::Done) => {
                self.allocation_changed = true;
                self.advance(Step::Flush, now);
            }
            (Step::Flush, Observation::Done) => self.advance(Step::Restart, now),
            (Step::Restart, Observation::Done) => self.advance(Step::WaitLeave, now),
            (Step::WaitLeave, Observation::Unreachable(_)) => self.advance(Step::WaitRejoin, now),
            (Step::WaitLeave, Observation::Nodes(nodes)) => {
                match nodes.iter().find(|node| node.name == node_name) {
                    None => self.advance(Step::WaitRejoin, now),
                    Some(node) if self.restarted_since_action(node, now) => {
                        self.advance(Step::WaitRejoin, now)
                    }
                    Some(_) => self.wait(
                        WaitKind::NodeLeaving,
                        format!("{node_name} is still in the cluster"),
                        now,
                    ),
                }
            }
            (Step::WaitRejoin, Observation::Unreachable(reason)) => self.wait(
                WaitKind::Unreachable,
                format!("cluster unreachable: {reason}"),
                now,
            ),
            (Step::WaitRejoin, Observation::Nodes(nodes)) => {
                let back = nodes.iter().any(|node| {
                    node.name == node_name
                        && (node.uptime_ms.is_none() || self.restarted_since_action(node, now))
                });
                if back {
                    self.advance(Step::RestoreAllocation, now);
                } else {
                    self.wait(
                        WaitKind::NodeRejoining,
                        format!("{node_name} has not rejoined"),
                        now,
                    );
                }
            }
            (Step::RestoreAllocation, Observation::Done) => {
                self.allocation_changed = false;
                self.advance(Step::WaitGreen, now);
            }
            (Step::CheckHealth | Step::WaitGreen, Observation::Unreachable(reason)) => self.wait(
                WaitKind::Unreachable,
                format!("cluster unreachable: {reason}"),
                now,
            ),
            (Step::DisableAllocation, other) => {
                // The setting may or may not have been applied: restore to be safe.
                self.allocation_changed = true;
                self.fail(describe(&other), now);
            }
            (_, other) => self.fail(describe(&other), now),
        }
    }

    /// Health is good enough: the health check goes on to the node, the
    /// wait for green finishes it.
    fn health_accepted(&mut self, node_name: String, status: HealthStatus, now: DateTime<Utc>) {
        if self.step == Step::WaitGreen {
            self.finish_node(node_name, status, now);
            return;
        }
        let next = if self.saved_allocation.is_some() {
            Step::DisableAllocation
        } else {
            Step::ReadAllocation
        };
        self.advance(next, now);
    }

    /// Judges a cluster that is not green from its shard table: a yellow is
    /// accepted (where allowed) once quiet for `settled_polls` polls in a
    /// row, and the node to stop must not hold the only started copy of a
    /// shard; anything else waits, saying why.
    fn judge_health(
        &mut self,
        node_name: &str,
        status: HealthStatus,
        rows: &[ShardRow],
        now: DateTime<Utc>,
    ) {
        let activity = ShardActivity::of(rows);
        let yellow_allowed = status == HealthStatus::Yellow && self.settings.allow_yellow;
        if !yellow_allowed || !activity.is_quiet() {
            self.quiet_polls = 0;
            let details = activity.describe();
            let note = if details.is_empty() {
                format!("cluster is {status}")
            } else {
                format!("cluster is {status}: {details}")
            };
            self.wait(WaitKind::Health, note, now);
            return;
        }
        self.quiet_polls = self.quiet_polls.saturating_add(1);
        let needed = self.settings.settled_polls.max(1);
        if self.quiet_polls < needed {
            let mut note = format!(
                "cluster is yellow, settling: no shard initializing or relocating for {} of {needed} polls",
                self.quiet_polls
            );
            if activity.unassigned > 0 {
                note.push_str(&format!(
                    " ({} unassigned)",
                    shard_count(activity.unassigned)
                ));
            }
            self.wait(WaitKind::Settling, note, now);
            return;
        }
        if self.step == Step::CheckHealth {
            let only = only_started_copies(rows, node_name);
            if !only.is_empty() {
                let note = format!(
                    "{node_name} holds the only started copy of {}",
                    name_shards(&only)
                );
                self.wait(WaitKind::OnlyStartedCopy, note, now);
                return;
            }
        }
        self.health_accepted(node_name.to_string(), status, now);
    }

    /// A node shows a fresh process when its uptime is shorter than the time
    /// since the restart action started.
    fn restarted_since_action(&self, node: &ClusterNode, now: DateTime<Utc>) -> bool {
        match (node.uptime_ms, self.restart_started_at) {
            (Some(uptime), Some(started)) => {
                let elapsed = (now - started).num_milliseconds().max(0) as u64;
                uptime < elapsed
            }
            _ => false,
        }
    }

    fn poll_interval(&self) -> ChronoDuration {
        ChronoDuration::milliseconds(i64::try_from(self.settings.poll_interval_ms).unwrap_or(1_000))
    }

    fn wait(&mut self, kind: WaitKind, note: String, now: DateTime<Utc>) {
        self.wait = Some(kind);
        self.last_note = Some(note);
        self.next_poll_at = Some(now + self.poll_interval());
    }

    fn advance(&mut self, step: Step, now: DateTime<Utc>) {
        self.step = step;
        self.step_started_at = now;
        self.next_poll_at = None;
        self.last_note = None;
        self.wait = None;
        self.pending_health = None;
        self.quiet_polls = 0;
    }

    fn finish_node(&mut self, node_name: String, health: HealthStatus, now: DateTime<Utc>) {
        self.completed.push(node_name);
        self.current += 1;
        self.restart_started_at = None;
        self.finished_on = Some(health);
        // Nothing changes between this wait and the next node's health check:
        // a yellow that settled here needs no second round of quiet polls.
        let quiet_polls = self.quiet_polls;
        self.advance(Step::CheckHealth, now);
        self.quiet_polls = quiet_polls;
        if self.current >= self.nodes.len() {
            self.status = RollStatus::Done;
        } else if self.abort_requested {
            self.status = RollStatus::Aborted;
        }
    }

    fn fail(&mut self, reason: String, now: DateTime<Utc>) {
        let node = self
            .current_node()
            .map(|node| node.name.clone())
            .unwrap_or_default();
        self.failure = Some(Failure {
            node,
            step: self.step,
            reason,
            at: now,
        });
        self.next_poll_at = None;
        self.updated_at = now;
        if self.allocation_changed {
            self.status = RollStatus::Restoring;
            self.restore_attempts_left = self.settings.restore_attempts.max(1);
        } else {
            self.status = RollStatus::Failed;
        }
    }

    /// Asks the roll to stop before the next node.
    pub fn request_abort(&mut self, now: DateTime<Utc>) -> Result<(), RollControlError> {
        if self.status != RollStatus::Running {
            return Err(RollControlError::NotRunning);
        }
        self.abort_requested = true;
        self.updated_at = now;
        Ok(())
    }

    /// Continues a roll that stopped, from where it stopped; nodes already
    /// done are skipped and the allocation setting saved before the roll is
    /// kept.
    ///
    /// - Failed or aborted: the node where it stopped starts again from the
    ///   health check. When allocation could not be restored then, it is
    ///   restored first (a health check would only see the yellow that
    ///   `primaries` causes).
    /// - Still marked running or restoring: the process driving it died
    ///   (the caller checked the roll lock). The same step continues with a
    ///   fresh time-out: every step is safe to repeat, and because
    ///   `allocation_changed` is persisted after every step, allocation is
    ///   still put back after a crash between "set" and "restored".
    pub fn resume(&mut self, now: DateTime<Utc>) -> Result<(), RollControlError> {
        if self.status == RollStatus::Done || self.current >= self.nodes.len() {
            return Err(RollControlError::AlreadyDone);
        }
        self.abort_requested = false;
        self.restore_attempts_left = self.settings.restore_attempts.max(1);
        self.next_poll_at = None;
        self.updated_at = now;
        // Counted again from what the cluster looks like now.
        self.pending_health = None;
        self.quiet_polls = 0;
        self.wait = None;
        match self.status {
            RollStatus::Running => {
                self.step_started_at = now;
                self.last_note = None;
            }
            RollStatus::Restoring => self.resume_after_restore = true,
            RollStatus::Failed | RollStatus::Aborted | RollStatus::Done => {
                self.restart_started_at = None;
                self.advance(Step::CheckHealth, now);
                if self.allocation_changed {
                    self.status = RollStatus::Restoring;
                    self.resume_after_restore = true;
                } else {
                    self.failure = None;
                    self.status = RollStatus::Running;
                }
            }
        }
        Ok(())
    }

    /// Stops the roll now (opsbot is shutting down): like a failure of the
    /// current step, so allocation is restored and `resume` continues later.
    pub fn interrupt(&mut self, now: DateTime<Utc>) {
        if self.status == RollStatus::Running {
            self.fail("interrupted by shutdown".to_string(), now);
        }
    }

    /// Where the roll is, in a form that changes only at milestones.
    pub fn position(&self) -> RollPosition {
        RollPosition {
            status: self.status,
            current: self.current,
            step: self.step,
            wait: self.wait,
        }
    }

    /// A progress message when the roll moved from `before` to here: a node
    /// starts restarting, a step starts waiting for something else, a node
    /// is done, the roll stops or finishes.
    pub fn milestone(&self, before: RollPosition) -> Option<String> {
        let now = self.position();
        if now == before {
            return None;
        }
        let total = self.nodes.len();
        if now.status != before.status && now.status != RollStatus::Running {
            return Some(self.summary());
        }
        if now.current != before.current {
            let name = self
                .nodes
                .get(before.current)
                .map(|node| node.name.as_str())
                .unwrap_or("-");
            let health = match self.finished_on {
                Some(HealthStatus::Yellow) => "cluster yellow and settled",
                _ => "cluster healthy",
            };
            return Some(format!(
                "node {name} restarted, {health} ({} of {total} done)",
                self.completed.len()
            ));
        }
        if now.step == Step::Restart && before.step != Step::Restart {
            let node = self.current_node()?;
            return Some(format!(
                "restarting node {} on {} ({} of {total})",
                node.name,
                node.host,
                self.current + 1
            ));
        }
        if now.status == RollStatus::Running
            && now.wait.is_some()
            && now.wait != before.wait
            && let (Some(node), Some(note)) = (self.current_node(), &self.last_note)
        {
            return Some(format!("waiting ({}, {}): {note}", node.name, self.step));
        }
        None
    }

    /// One line on where the roll is, for progress messages and `status`.
    pub fn summary(&self) -> String {
        let total = self.nodes.len();
        match self.status {
            RollStatus::Done => {
                format!("roll {} done: {total} of {total} nodes restarted", self.id)
            }
            RollStatus::Aborted => format!(
                "roll {} aborted after {} of {total} nodes",
                self.id,
                self.completed.len()
            ),
            RollStatus::Failed | RollStatus::Restoring => {
                let mut line = match &self.failure {
                    Some(failure) => format!(
                        "roll {} stopped at node {} step '{}': {}",
                        self.id, failure.node, failure.step, failure.reason
                    ),
                    None => format!("roll {} stopped", self.id),
                };
                if self.status == RollStatus::Restoring {
                    line.push_str("; restoring allocation");
                } else if self.allocation_changed {
                    line.push_str("; allocation NOT restored, set it back by hand");
                } else {
                    line.push_str("; allocation restored");
                }
                line
            }
            RollStatus::Running => {
                let node = self
                    .current_node()
                    .map(|node| node.name.as_str())
                    .unwrap_or("-");
                let mut line = format!(
                    "roll {} running: node {} ({} of {total}), step '{}'",
                    self.id,
                    node,
                    self.current + 1,
                    self.step
                );
                if let (Some(_), Some(note)) = (self.wait, &self.last_note) {
                    line.push_str(&format!(", waiting: {note}"));
                }
                if self.abort_requested {
                    line.push_str(", abort requested");
                }
                line
            }
        }
    }
}

/// `1 shard`, `3 shards`.
fn shard_count(count: u64) -> String {
    format!("{count} shard{}", if count == 1 { "" } else { "s" })
}

/// `logs[0]`, or `3 shards: logs[0], logs[1], logs[4]` (at most five named).
fn name_shards(names: &[String]) -> String {
    match names {
        [one] => one.clone(),
        _ => {
            let mut text = format!(
                "{}: {}",
                shard_count(names.len() as u64),
                names.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            );
            if names.len() > 5 {
                text.push_str(&format!(" and {} more", names.len() - 5));
            }
            text
        }
    }
}

fn describe(observation: &Observation) -> String {
    match observation {
        Observation::Failed(reason) => reason.clone(),
        Observation::Unreachable(reason) => format!("cluster unreachable: {reason}"),
        Observation::Health(status) => format!("unexpected health answer {status}"),
        Observation::Allocation(_) => "unexpected allocation answer".to_string(),
        Observation::Nodes(_) => "unexpected node list".to_string(),
        Observation::Shards(_) => "unexpected shard table".to_string(),
        Observation::Done => "unexpected completion".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tests::{cluster_nodes, row as copy};
    use crate::cluster::{Target, plan_order};
    use std::collections::{BTreeMap, VecDeque};

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
            .expect("valid time")
            .with_timezone(&Utc)
    }

    /// What the simulated cluster does wrong, and where.
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        None,
        /// The action of this step fails on this node.
        FailAt(Step, usize),
        /// The waiting step never gets satisfied on this node.
        HangAt(Step, usize),
    }

    /// A cluster in memory: nodes with uptimes, health, allocation settings.
    struct SimCluster {
        nodes: BTreeMap<String, ClusterNode>,
        down: Option<String>,
        down_polls: u32,
        allocation: AllocationSetting,
        health: HealthStatus,
        fault: Fault,
        restarted: Vec<String>,
        node_index: BTreeMap<String, usize>,
        restore_failures_left: u32,
        log: Vec<String>,
        /// Health and shard table for the coming health checks, one per
        /// check; the last one stays once the script has run out.
        script: VecDeque<(HealthStatus, Vec<ShardRow>)>,
        shards: Vec<ShardRow>,
    }

    impl SimCluster {
        fn new(plan: &[PlannedNode], fault: Fault) -> SimCluster {
            SimCluster {
                nodes: cluster_nodes()
                    .into_iter()
                    .map(|n| (n.name.clone(), n))
                    .collect(),
                down: None,
                down_polls: 0,
                allocation: AllocationSetting {
                    persistent: Some("all".into()),
                    transient: None,
                },
                health: HealthStatus::Green,
                fault,
                restarted: Vec::new(),
                node_index: plan
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.name.clone(), i))
                    .collect(),
                restore_failures_left: 0,
                log: Vec::new(),
                script: VecDeque::new(),
                shards: Vec::new(),
            }
        }

        fn faulty(&self, step: Step, node: &str) -> bool {
            let index = self.node_index.get(node).copied();
            matches!(self.fault, Fault::FailAt(s, i) if s == step && Some(i) == index)
        }

        fn hangs(&self, step: Step, node: &str) -> bool {
            let index = self.node_index.get(node).copied();
            matches!(self.fault, Fault::HangAt(s, i) if s == step && Some(i) == index)
        }

        fn perform(&mut self, action: &Action, state: &RollState) -> Observation {
            let node = state
                .current_node()
                .map(|n| n.name.clone())
                .unwrap_or_default();
            self.log.push(format!("{node}: {action:?}"));
            let step = state.step;
            if state.status == RollStatus::Running && self.faulty(step, &node) {
                return Observation::Failed(format!("injected failure at {step}"));
            }
            match action {
                Action::CheckHealth => {
                    if let Some((health, shards)) = self.script.pop_front() {
                        self.health = health;
                        self.shards = shards;
                    }
                    if self.hangs(step, &node) {
                        Observation::Health(HealthStatus::Yellow)
                    } else {
                        Observation::Health(self.health)
                    }
                }
                Action::ListShards => Observation::Shards(self.shards.clone()),
                Action::ReadAllocation => Observation::Allocation(self.allocation.clone()),
                Action::DisableAllocation(_) => {
                    self.allocation.persistent = Some("primaries".into());
                    Observation::Done
                }
                Action::Flush => Observation::Done,
                Action::Restart { node, .. } => {
                    self.restarted.push(node.clone());
                    self.down = Some(node.clone());
                    self.down_polls = 2;
                    Observation::Done
                }
                Action::ListNodes => {
                    if self.hangs(step, &node) {
                        return match step {
                            // Still there with its old uptime: never left.
                            Step::WaitLeave => {
                                Observation::Nodes(self.nodes.values().cloned().collect())
                            }
                            _ => Observation::Nodes(
                                self.nodes
                                    .values()
                                    .filter(|n| n.name != node)
                                    .cloned()
                                    .collect(),
                            ),
                        };
                    }
                    if let Some(down) = self.down.clone() {
                        if self.down_polls > 0 {
                            self.down_polls -= 1;
                            return Observation::Nodes(
                                self.nodes
                                    .values()
                                    .filter(|n| n.name != down)
                                    .cloned()
                                    .collect(),
                            );
                        }
                        if let Some(entry) = self.nodes.get_mut(&down) {
                            entry.uptime_ms = Some(10);
                        }
                        self.down = None;
                    }
                    Observation::Nodes(self.nodes.values().cloned().collect())
                }
                Action::RestoreAllocation(saved) => {
                    if self.restore_failures_left > 0 {
                        self.restore_failures_left -= 1;
                        return Observation::Unreachable("connection refused".into());
                    }
                    self.allocation = saved.clone();
                    Observation::Done
                }
            }
        }
    }

    /// Drives the machine against the simulated cluster with a simulated
    /// clock, persisting (serialize + deserialize) after every observation as
    /// the real driver does.
    fn run(
        state: &mut RollState,
        cluster: &mut SimCluster,
        mut now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        for _ in 0..10_000 {
            match state.poll(now) {
                Next::Finished => return now,
                Next::SleepUntil(at) => {
                    assert!(at > now, "sleep must move time forward");
                    now = at;
                }
                Next::Do(action) => {
                    let observation = cluster.perform(&action, state);
                    now += ChronoDuration::milliseconds(100);
                    state.observe(observation, now);
                    let json = serde_json::to_string(state).expect("serialize");
                    *state = serde_json::from_str(&json).expect("deserialize");
                }
            }
        }
        panic!("roll did not finish");
    }

    fn new_roll() -> (RollState, SimCluster) {
        let plan = plan_order(&cluster_nodes(), &Target::All, |n| n.ip.clone()).expect("plan");
        let state = RollState::new(plan.clone(), RollSettings::default(), start());
        (state, SimCluster::new(&plan, Fault::None))
    }

    #[test]
    fn full_roll_restarts_every_node_in_order_and_restores_allocation() {
        let (mut state, mut cluster) = new_roll();
        run(&mut state, &mut cluster, start());
        assert_eq!(state.status, RollStatus::Done, "{}", state.summary());
        assert_eq!(
            cluster.restarted,
            [
                "hot-1", "hot-2", "warm-1", "coord-1", "master-2", "master-1"
            ]
        );
        assert_eq!(cluster.allocation.persistent.as_deref(), Some("all"));
        assert_eq!(state.completed.len(), 6);
        assert!(!state.allocation_changed);
        // Allocation is read once, before the first node only.
        let reads = cluster
            .log
            .iter()
            .filter(|l| l.contains("ReadAllocation"))
            .count();
        assert_eq!(reads, 1);
        assert!(state.summary().contains("done"));
    }

    #[test]
    fn per_node_sequence_is_in_the_documented_order() {
        let (mut state, mut cluster) = new_roll();
        run(&mut state, &mut cluster, start());
        let first: Vec<String> = cluster
            .log
            .iter()
            .filter(|l| l.starts_with("hot-1:"))
            .map(|l| {
                l.trim_start_matches("hot-1: ")
                    .split('(')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        let mut deduped = first.clone();
        deduped.dedup();
        assert_eq!(
            deduped,
            [
                "CheckHealth",
                "ReadAllocation",
                "DisableAllocation",
                "Flush",
                "Restart { node: \"hot-1\", host: \"10.0.0.5\" }",
                "ListNodes",
                "RestoreAllocation",
                "CheckHealth"
            ]
        );
    }

    #[test]
    fn failure_at_every_step_stops_and_restores_allocation() {
        let plan = plan_order(&cluster_nodes(), &Target::All, |n| n.ip.clone()).expect("plan");
        for step in Step::ALL {
            let mut state = RollState::new(plan.clone(), RollSettings::default(), start());
            // Fail on the third node so earlier nodes are done and later
            // untouched; allocation is read on the first node only.
            let index = if step == Step::ReadAllocation { 0 } else { 2 };
            let mut cluster = SimCluster::new(&plan, Fault::FailAt(step, index));
            run(&mut state, &mut cluster, start());
            assert_eq!(state.status, RollStatus::Failed, "step {step}");
            let failure = state.failure.clone().expect("failure recorded");
            assert_eq!(failure.step, step, "failed step");
            assert_eq!(failure.node, plan[index].name, "failed node at {step}");
            assert!(failure.reason.contains("injected"), "{}", failure.reason);
            assert_eq!(state.completed.len(), index, "step {step}");
            assert_eq!(
                cluster.allocation.persistent.as_deref(),
                Some("all"),
                "allocation restored after failing at {step}"
            );
            assert!(!state.allocation_changed);
            assert!(!cluster.restarted.contains(&"coord-1".to_string()));
            let summary = state.summary();
            assert!(
                summary.contains(&plan[index].name) && summary.contains("allocation restored"),
                "{summary}"
            );
        }
    }

    #[test]
    fn time_out_at_every_waiting_step_stops_and_restores_allocation() {
        let plan = plan_order(&cluster_nodes(), &Target::All, |n| n.ip.clone()).expect("plan");
        for step in [
            Step::CheckHealth,
            Step::WaitLeave,
            Step::WaitRejoin,
            Step::WaitGreen,
        ] {
            let mut state = RollState::new(plan.clone(), RollSettings::default(), start());
            let mut cluster = SimCluster::new(&plan, Fault::HangAt(step, 1));
            let end = run(&mut state, &mut cluster, start());
            assert_eq!(state.status, RollStatus::Failed, "step {step}");
            let failure = state.failure.clone().expect("failure");
            assert_eq!((failure.step, failure.node.as_str()), (step, "hot-2"));
            assert!(
                failure.reason.starts_with("timed out after"),
                "{}",
                failure.reason
            );
            assert_eq!(cluster.allocation.persistent.as_deref(), Some("all"));
            let limit = ChronoDuration::milliseconds(
                i64::try_from(RollSettings::default().timeout_of(step)).expect("fits"),
            );
            assert!(
                end - start() >= limit,
                "waited the whole time-out at {step}"
            );
        }
    }

    #[test]
    fn yellow_is_accepted_only_when_allowed() {
        let plan = plan_order(&cluster_nodes(), &Target::Node("hot-1".into()), |n| {
            n.ip.clone()
        })
        .expect("plan");
        let settings = RollSettings {
            allow_yellow: true,
            ..RollSettings::default()
        };
        let mut state = RollState::new(plan.clone(), settings, start());
        let mut cluster = SimCluster::new(&plan, Fault::None);
        cluster.health = HealthStatus::Yellow;
        run(&mut state, &mut cluster, start());
        assert_eq!(state.status, RollStatus::Done);

        let mut state = RollState::new(plan.clone(), RollSettings::default(), start());
        let mut cluster = SimCluster::new(&plan, Fault::None);
        cluster.health = HealthStatus::Yellow;
        run(&mut state, &mut cluster, start());
        assert_eq!(state.status, RollStatus::Failed);
        assert!(
            cluster.restarted.is_empty(),
            "nothing restarted on a yellow cluster"
        );
        let failure = state.failure.expect("failure");
        assert!(
            failure.reason.contains("cluster is yellow"),
            "{}",
            failure.reason
        );
    }

    #[test]
    fn abort_stops_before_the_next_node() {
        let (mut state, mut cluster) = new_roll();
        let mut now = start();
        // Run until the first node is restarted, then ask for an abort.
        while cluster.restarted.is_empty() {
            match state.poll(now) {
                Next::Do(action) => {
                    let observation = cluster.perform(&action, &state);
                    state.observe(observation, now);
                }
                Next::SleepUntil(at) => now = at,
                Next::Finished => panic!("finished early"),
            }
        }
        state.request_abort(now).expect("running");
        assert!(state.summary().contains("abort requested"));
        run(&mut state, &mut cluster, now);
        assert_eq!(state.status, RollStatus::Aborted);
        assert_eq!(state.completed, ["hot-1"]);
        assert_eq!(cluster.restarted, ["hot-1"]);
        assert_eq!(cluster.allocation.persistent.as_deref(), Some("all"));
        assert_eq!(state.request_abort(now), Err(RollControlError::NotRunning));
    }

    #[test]
    fn resume_after_failure_continues_with_the_failed_node() {
        let plan = plan_order(&cluster_nodes(), &Target::All, |n| n.ip.clone()).expect("plan");
        let mut state = RollState::new(plan.clone(), RollSettings::default(), start());
        let mut cluster = SimCluster::new(&plan, Fault::FailAt(Step::Restart, 3));
        let now = run(&mut state, &mut cluster, start());
        assert_eq!(state.status, RollStatus::Failed);
        cluster.fault = Fault::None;
        state.resume(now).expect("resumable");
        run(&mut state, &mut cluster, now);
        assert_eq!(state.status, RollStatus::Done);
        assert_eq!(
            cluster.restarted,
            [
                "hot-1", "hot-2", "warm-1", "coord-1", "master-2", "master-1"
            ]
        );
        assert_eq!(cluster.allocation.persistent.as_deref(), Some("all"));
        assert_eq!(state.resume(now), Err(RollControlError::AlreadyDone));
    }

    /// Runs the machine until `stop` holds, returning the state as it was
    /// last persisted (a crash loses nothing else) and the time.
    fn run_until(
        state: &mut RollState,
        cluster: &mut SimCluster,
        mut now: DateTime<Utc>,
        stop: impl Fn(&RollState) -> bool,
    ) -> DateTime<Utc> {
        for _ in 0..10_000 {
            if stop(state) {
                return now;
            }
            match state.poll(now) {
                Next::Finished => panic!("finished before the crash point"),
                Next::SleepUntil(at) => now = at,
                Next::Do(action) => {
                    let observation = cluster.perform(&action, state);
                    now += ChronoDuration::milliseconds(100);
                    state.observe(observation, now);
                }
            }
        }
        panic!("crash point never reached");
    }

    #[test]
    fn resume_after_a_crash_with_allocation_at_primaries_restores_it() {
        for crash_step in [
            Step::Flush,
            Step::Restart,
            Step::WaitLeave,
            Step::WaitRejoin,
            Step::RestoreAllocation,
        ] {
            let (mut state, mut cluster) = new_roll();
            let now = run_until(&mut state, &mut cluster, start(), |state| {
                state.current == 1 && state.step == crash_step
            });
            // The driver died here: what is on disk is all that is left.
            let json = serde_json::to_string(&state).expect("serialize");
            let mut state: RollState = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(state.status, RollStatus::Running);
            assert!(
                state.allocation_changed,
                "allocation is primaries at {crash_step}"
            );
            assert_eq!(cluster.allocation.persistent.as_deref(), Some("primaries"));

            let later = now + ChronoDuration::minutes(30);
            state.resume(later).expect("resumable");
            assert_eq!(state.step, crash_step, "continues the same step");
            run(&mut state, &mut cluster, later);
            assert_eq!(state.status, RollStatus::Done, "{}", state.summary());
            assert_eq!(cluster.allocation.persistent.as_deref(), Some("all"));
            let restarts_of_hot_2 = cluster.restarted.iter().filter(|n| *n == "hot-2").count();
            assert_eq!(
                restarts_of_hot_2, 1,
                "restarted once, crash at {crash_step}"
            );
        }
    }

    #[test]
    fn resume_after_a_failed_restore_restores_before_the_node() {
        let plan = plan_order(&cluster_nodes(), &Target::All, |n| n.ip.clone()).expect("plan");
        let mut state = RollState::new(plan.clone(), RollSettings::default(), start());
        let mut cluster = SimCluster::new(&plan, Fault::FailAt(Step::Flush, 1));
        cluster.restore_failures_left = 100;
        let now = run(&mut state, &mut cluster, start());
        assert_eq!(state.status, RollStatus::Failed);
        assert!(state.allocation_changed);
        assert_eq!(cluster.allocation.persistent.as_deref(), Some("primaries"));

        cluster.fault = Fault::None;
        cluster.restore_failures_left = 0;
        state.resume(now).expect("resumable");
        assert_eq!(state.status, RollStatus::Restoring);
        let first = state.poll(now);
        assert!(
            matches!(first, Next::Do(Action::RestoreAllocation(_))),
            "restore first: {first:?}"
        );
        run(&mut state, &mut cluster, now);
        assert_eq!(state.status, RollStatus::Done, "{}", state.summary());
        assert_eq!(cluster.allocation.persistent.as_deref(), Some("all"));
        assert_eq!(state.completed.len(), 6);
    }

    #[test]
    fn restore_is_retried_and_a_failed_restore_is_reported() {
        let plan = plan_order(&cluster_nodes(), &Target::All, |n| n.ip.clone()).expect("plan");
        let mut state = RollState::new(plan.clone(), RollSettings::default(), start());
        let mut cluster = SimCluster::new(&plan, Fault::FailAt(Step::Flush, 0));
        cluster.restore_failures_left = 2;
        run(&mut state, &mut cluster, start());
        assert_eq!(state.status, RollStatus::Failed);
        assert_eq!(cluster.allocation.persistent.as_deref(), Some("all"));

        let mut state = RollState::new(plan.clone(), RollSettings::default(), start());
        let mut cluster = SimCluster::new(&plan, Fault::FailAt(Step::Flush, 0));
        cluster.restore_failures_left = 100;
        run(&mut state, &mut cluster, start());
        assert_eq!(state.status, RollStatus::Failed);
        assert!(state.allocation_changed);
        assert!(
            state.summary().contains("NOT restored"),
            "{}",
            state.summary()
        );
    }

    #[test]
    fn unset_allocation_is_restored_by_reset() {
        let plan = plan_order(&cluster_nodes(), &Target::Node("warm-1".into()), |n| {
            n.ip.clone()
        })
        .expect("plan");
        let mut state = RollState::new(plan.clone(), RollSettings::default(), start());
        let mut cluster = SimCluster::new(&plan, Fault::None);
        cluster.allocation = AllocationSetting::default();
        run(&mut state, &mut cluster, start());
        assert_eq!(state.status, RollStatus::Done);
        assert_eq!(cluster.allocation, AllocationSetting::default());
    }

    #[test]
    fn milestones_and_interrupt() {
        let (mut state, mut cluster) = new_roll();
        let mut now = start();
        let mut messages = Vec::new();
        loop {
            let before = state.position();
            if state.completed.len() == 2 {
                state.interrupt(now);
            }
            match state.poll(now) {
                Next::Do(action) => {
                    let observation = cluster.perform(&action, &state);
                    state.observe(observation, now);
                }
                Next::SleepUntil(at) => now = at,
                Next::Finished => {
                    messages.extend(state.milestone(before));
                    break;
                }
            }
            messages.extend(state.milestone(before));
        }
        assert_eq!(messages[0], "restarting node hot-1 on 10.0.0.5 (1 of 6)");
        assert_eq!(
            messages[1],
            "waiting (hot-1, wait for node to rejoin): hot-1 has not rejoined"
        );
        assert_eq!(
            messages[2],
            "node hot-1 restarted, cluster healthy (1 of 6 done)"
        );
        assert!(
            messages
                .last()
                .expect("some")
                .contains("interrupted by shutdown"),
            "{messages:?}"
        );
        assert_eq!(state.status, RollStatus::Failed);
        assert_eq!(cluster.allocation.persistent.as_deref(), Some("all"));
    }

    /// Yellow and quiet: a replica that cannot be placed, its primary on
    /// hot-2 (so no node but hot-2 holds an only started copy).
    fn quiet_yellow() -> Vec<ShardRow> {
        vec![
            copy("logs", "0", "p", "STARTED", Some("hot-2")),
            copy("logs", "0", "r", "UNASSIGNED", None),
        ]
    }

    /// Yellow with a replica recovering on warm-2.
    fn moving_yellow() -> Vec<ShardRow> {
        let mut rows = quiet_yellow();
        rows.push(copy("logs", "1", "p", "STARTED", Some("hot-1")));
        rows.push(copy("logs", "1", "r", "INITIALIZING", Some("warm-2")));
        rows
    }

    fn yellow_allowed(settled_polls: u32) -> RollSettings {
        RollSettings {
            allow_yellow: true,
            settled_polls,
            ..RollSettings::default()
        }
    }

    fn roll_of(node: &str, settings: RollSettings) -> RollState {
        let plan = plan_order(&cluster_nodes(), &Target::Node(node.into()), |n| {
            n.ip.clone()
        })
        .expect("plan");
        RollState::new(plan, settings, start())
    }

    /// One health poll of the current step: health, then (not green) the
    /// shard table, as the machine asks for them. Returns the time after.
    fn health_poll(
        state: &mut RollState,
        mut now: DateTime<Utc>,
        health: HealthStatus,
        shards: &[ShardRow],
    ) -> DateTime<Utc> {
        loop {
            match state.poll(now) {
                Next::SleepUntil(at) => now = at,
                Next::Do(Action::CheckHealth) => break,
                other => panic!("expected a health check, got {other:?}"),
            }
        }
        now += ChronoDuration::milliseconds(10);
        state.observe(Observation::Health(health), now);
        if health == HealthStatus::Green {
            return now;
        }
        assert_eq!(
            state.poll(now),
            Next::Do(Action::ListShards),
            "the shard table right after a {health} answer"
        );
        now += ChronoDuration::milliseconds(10);
        state.observe(Observation::Shards(shards.to_vec()), now);
        now
    }

    #[test]
    fn settled_yellow_needs_the_configured_quiet_polls_in_a_row() {
        let mut state = roll_of("warm-1", yellow_allowed(3));
        let mut now = start();
        now = health_poll(&mut state, now, HealthStatus::Yellow, &quiet_yellow());
        assert_eq!(
            (state.step, state.wait, state.quiet_polls),
            (Step::CheckHealth, Some(WaitKind::Settling), 1)
        );
        assert_eq!(
            state.last_note.as_deref(),
            Some(
                "cluster is yellow, settling: no shard initializing or relocating for 1 of 3 polls (1 shard unassigned)"
            )
        );
        now = health_poll(&mut state, now, HealthStatus::Yellow, &quiet_yellow());
        assert_eq!((state.step, state.quiet_polls), (Step::CheckHealth, 2));
        // One shard moving starts the count again.
        now = health_poll(&mut state, now, HealthStatus::Yellow, &moving_yellow());
        assert_eq!(
            (state.step, state.wait, state.quiet_polls),
            (Step::CheckHealth, Some(WaitKind::Health), 0)
        );
        assert_eq!(
            state.last_note.as_deref(),
            Some("cluster is yellow: 1 shard initializing on warm-2, 1 shard unassigned")
        );
        now = health_poll(&mut state, now, HealthStatus::Yellow, &quiet_yellow());
        now = health_poll(&mut state, now, HealthStatus::Yellow, &quiet_yellow());
        assert_eq!((state.step, state.quiet_polls), (Step::CheckHealth, 2));
        health_poll(&mut state, now, HealthStatus::Yellow, &quiet_yellow());
        assert_eq!(
            state.step,
            Step::ReadAllocation,
            "settled after 3 quiet polls"
        );
        assert_eq!(state.wait, None);

        // One poll when one is configured.
        let mut state = roll_of("warm-1", yellow_allowed(1));
        health_poll(&mut state, start(), HealthStatus::Yellow, &quiet_yellow());
        assert_eq!(state.step, Step::ReadAllocation);
    }

    #[test]
    fn yellow_waits_for_green_unless_allowed_and_green_goes_at_once() {
        let mut state = roll_of("warm-1", RollSettings::default());
        let mut now = start();
        for _ in 0..10 {
            now = health_poll(&mut state, now, HealthStatus::Yellow, &quiet_yellow());
            assert_eq!(state.step, Step::CheckHealth);
        }
        assert_eq!(
            state.last_note.as_deref(),
            Some("cluster is yellow: 1 shard unassigned")
        );
        // Red is never accepted, even where yellow is.
        let mut state = roll_of("warm-1", yellow_allowed(1));
        let now = health_poll(&mut state, start(), HealthStatus::Red, &quiet_yellow());
        assert_eq!(
            (state.step, state.wait),
            (Step::CheckHealth, Some(WaitKind::Health))
        );
        // Green: no shard table, no quiet polls (as before settled yellow).
        health_poll(&mut state, now, HealthStatus::Green, &[]);
        assert_eq!(state.step, Step::ReadAllocation);
    }

    #[test]
    fn wait_for_green_settles_and_the_next_node_needs_no_second_round() {
        let plan = plan_order(&cluster_nodes(), &Target::All, |n| n.ip.clone()).expect("plan");
        let mut state = RollState::new(plan, yellow_allowed(2), start());
        state.saved_allocation = Some(AllocationSetting::default());
        state.step = Step::WaitGreen;
        let mut now = health_poll(&mut state, start(), HealthStatus::Yellow, &moving_yellow());
        assert_eq!(
            state.last_note.as_deref(),
            Some("cluster is yellow: 1 shard initializing on warm-2, 1 shard unassigned")
        );
        now = health_poll(&mut state, now, HealthStatus::Yellow, &quiet_yellow());
        assert_eq!((state.step, state.current), (Step::WaitGreen, 0));
        now = health_poll(&mut state, now, HealthStatus::Yellow, &quiet_yellow());
        assert_eq!((state.step, state.current), (Step::CheckHealth, 1));
        assert_eq!(state.completed, ["hot-1"]);
        // hot-2 holds the only started copy of logs[0]: the next node waits.
        health_poll(&mut state, now, HealthStatus::Yellow, &quiet_yellow());
        assert_eq!(
            (state.step, state.wait),
            (Step::CheckHealth, Some(WaitKind::OnlyStartedCopy))
        );
        assert_eq!(
            state.last_note.as_deref(),
            Some("hot-2 holds the only started copy of logs[0]")
        );
    }

    #[test]
    fn a_node_holding_the_only_started_copy_of_a_shard_is_never_stopped() {
        let only_copy_on_hot_1 = vec![
            copy("logs", "0", "p", "STARTED", Some("hot-1")),
            copy("logs", "0", "r", "UNASSIGNED", None),
            copy("logs", "3", "r", "STARTED", Some("hot-1")),
            copy("logs", "3", "p", "UNASSIGNED", None),
            copy("logs", "1", "p", "STARTED", Some("hot-1")),
            copy("logs", "1", "r", "STARTED", Some("hot-2")),
        ];
        let plan = plan_order(&cluster_nodes(), &Target::Node("hot-1".into()), |n| {
            n.ip.clone()
        })
        .expect("plan");
        let settings = yellow_allowed(2);
        let mut state = RollState::new(plan.clone(), settings.clone(), start());
        let mut cluster = SimCluster::new(&plan, Fault::None);
        cluster.health = HealthStatus::Yellow;
        cluster.shards = only_copy_on_hot_1.clone();
        let end = run(&mut state, &mut cluster, start());
        assert!(cluster.restarted.is_empty(), "hot-1 was never restarted");
        assert!(
            !cluster
                .log
                .iter()
                .any(|line| line.contains("DisableAllocation")),
            "the cluster was not touched: {:?}",
            cluster.log
        );
        assert_eq!(state.status, RollStatus::Failed);
        let failure = state.failure.clone().expect("failure");
        assert_eq!(failure.step, Step::CheckHealth);
        assert_eq!(
            failure.reason,
            "timed out after 5m (hot-1 holds the only started copy of 2 shards: logs[0], logs[3])"
        );
        assert!(end - start() >= ChronoDuration::minutes(5));

        // Once the replica has recovered (and nothing moves), the node goes.
        let mut state = RollState::new(plan.clone(), settings, start());
        let mut cluster = SimCluster::new(&plan, Fault::None);
        let recovering = {
            let mut rows = only_copy_on_hot_1.clone();
            rows[1] = copy("logs", "0", "r", "INITIALIZING", Some("hot-2"));
            rows
        };
        let recovered = {
            let mut rows = only_copy_on_hot_1.clone();
            rows[1] = copy("logs", "0", "r", "STARTED", Some("hot-2"));
            rows[3] = copy("logs", "3", "p", "STARTED", Some("hot-3"));
            rows
        };
        cluster.script = VecDeque::from([
            (HealthStatus::Yellow, only_copy_on_hot_1.clone()),
            (HealthStatus::Yellow, only_copy_on_hot_1.clone()),
            (HealthStatus::Yellow, recovering),
            (HealthStatus::Green, recovered),
        ]);
        let mut now = start();
        let mut messages = Vec::new();
        loop {
            let before = state.position();
            match state.poll(now) {
                Next::Finished => break,
                Next::SleepUntil(at) => now = at,
                Next::Do(action) => {
                    if matches!(action, Action::Restart { .. }) {
                        assert_eq!(
                            cluster.health,
                            HealthStatus::Green,
                            "restarted only once the other copies started"
                        );
                    }
                    let observation = cluster.perform(&action, &state);
                    now += ChronoDuration::milliseconds(100);
                    state.observe(observation, now);
                }
            }
            messages.extend(state.milestone(before));
        }
        assert_eq!(state.status, RollStatus::Done, "{}", state.summary());
        assert_eq!(cluster.restarted, ["hot-1"]);
        assert_eq!(
            messages[..2],
            [
                "waiting (hot-1, check health): cluster is yellow, settling: no shard initializing or relocating for 1 of 2 polls (2 shards unassigned)",
                "waiting (hot-1, check health): hot-1 holds the only started copy of 2 shards: logs[0], logs[3]",
            ]
        );
        assert_eq!(
            messages[2],
            "waiting (hot-1, check health): cluster is yellow: 1 shard initializing on hot-2, 1 shard unassigned"
        );
        assert_eq!(messages[3], "restarting node hot-1 on 10.0.0.5 (1 of 1)");
    }

    #[test]
    fn waits_say_what_they_wait_for_in_progress_and_status() {
        let mut state = roll_of("warm-1", yellow_allowed(3));
        let before = state.position();
        let now = health_poll(&mut state, start(), HealthStatus::Yellow, &moving_yellow());
        let message = state.milestone(before).expect("a wait is reported");
        assert_eq!(
            message,
            "waiting (warm-1, check health): cluster is yellow: 1 shard initializing on warm-2, 1 shard unassigned"
        );
        // The same kind of wait with other counts is not reported again...
        let before = state.position();
        let now = health_poll(&mut state, now, HealthStatus::Yellow, &moving_yellow());
        assert_eq!(state.milestone(before), None);
        // ...but `status` shows the latest.
        assert!(
            state.summary().ends_with(
                "step 'check health', waiting: cluster is yellow: 1 shard initializing on warm-2, 1 shard unassigned"
            ),
            "{}",
            state.summary()
        );
        let before = state.position();
        health_poll(&mut state, now, HealthStatus::Yellow, &quiet_yellow());
        assert!(
            state
                .milestone(before)
                .is_some_and(|message| message.contains("settling")),
        );
        // A state saved before settled yellow existed still loads.
        let mut json = serde_json::to_value(&state).expect("json");
        for field in ["wait", "pending_health", "quiet_polls", "finished_on"] {
            json.as_object_mut().expect("object").remove(field);
        }
        json["settings"]
            .as_object_mut()
            .expect("settings")
            .remove("settled_polls");
        let old: RollState = serde_json::from_value(json).expect("old state loads");
        assert_eq!(old.settings.settled_polls, DEFAULT_SETTLED_POLLS);
    }
}
