//! Rolling restart as a pure state machine.
//!
//! The machine decides *what* to do next ([`RollState::poll`]) and learns what
//! happened ([`RollState::observe`]); the driver (`crate::driver`) performs the
//! actions against a cluster and a restart action. This module must not do
//! I/O, read a clock or the environment: `now` is always passed in, so the
//! whole sequence, its time-outs and its failure handling are tested on a
//! simulated cluster.
//!
//! Per node: check health (green, or yellow when allowed), remember the
//! allocation setting (once per roll), set `cluster.routing.allocation.enable`
//! to `primaries`, flush, restart, wait for the node to leave and rejoin, put
//! allocation back, wait for green, then the next node. Data nodes go first,
//! the elected master last. Any failure or time-out stops the roll and puts
//! allocation back before it reports the node and step.

use crate::cluster::{AllocationSetting, ClusterNode, HealthStatus, PlannedNode};
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
    /// Accept yellow where green is required.
    pub allow_yellow: bool,
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

impl Default for RollSettings {
    fn default() -> Self {
        RollSettings {
            allow_yellow: false,
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

/// Status, node and step: what progress messages are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollPosition {
    /// Status.
    pub status: RollStatus,
    /// Index of the current node.
    pub current: usize,
    /// Step of the current node.
    pub step: Step,
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
            (Step::CheckHealth, Observation::Health(status)) => {
                if self.health_acceptable(status) {
                    let next = if self.saved_allocation.is_some() {
                        Step::DisableAllocation
                    } else {
                        Step::ReadAllocation
                    };
                    self.advance(next, now);
                } else {
                    self.wait(format!("cluster is {status}"), now);
                }
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
                    Some(_) => self.wait(format!("{node_name} is still in the cluster"), now),
                }
            }
            (Step::WaitRejoin, Observation::Unreachable(reason)) => {
                self.wait(format!("cluster unreachable: {reason}"), now)
            }
            (Step::WaitRejoin, Observation::Nodes(nodes)) => {
                let back = nodes.iter().any(|node| {
                    node.name == node_name
                        && (node.uptime_ms.is_none() || self.restarted_since_action(node, now))
                });
                if back {
                    self.advance(Step::RestoreAllocation, now);
                } else {
                    self.wait(format!("{node_name} has not rejoined"), now);
                }
            }
            (Step::RestoreAllocation, Observation::Done) => {
                self.allocation_changed = false;
                self.advance(Step::WaitGreen, now);
            }
            (Step::WaitGreen, Observation::Health(status)) => {
                if self.health_acceptable(status) {
                    self.finish_node(node_name, now);
                } else {
                    self.wait(format!("cluster is {status}"), now);
                }
            }
            (Step::CheckHealth | Step::WaitGreen, Observation::Unreachable(reason)) => {
                self.wait(format!("cluster unreachable: {reason}"), now)
            }
            (Step::DisableAllocation, other) => {
                // The setting may or may not have been applied: restore to be safe.
                self.allocation_changed = true;
                self.fail(describe(&other), now);
            }
            (_, other) => self.fail(describe(&other), now),
        }
    }

    fn health_acceptable(&self, status: HealthStatus) -> bool {
        status == HealthStatus::Green
            || (self.settings.allow_yellow && status == HealthStatus::Yellow)
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

    fn wait(&mut self, note: String, now: DateTime<Utc>) {
        self.last_note = Some(note);
        self.next_poll_at = Some(now + self.poll_interval());
    }

    fn advance(&mut self, step: Step, now: DateTime<Utc>) {
        self.step = step;
        self.step_started_at = now;
        self.next_poll_at = None;
        self.last_note = None;
    }

    fn finish_node(&mut self, node_name: String, now: DateTime<Utc>) {
        self.completed.push(node_name);
        self.current += 1;
        self.restart_started_at = None;
        self.advance(Step::CheckHealth, now);
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
        }
    }

    /// A progress message when the roll moved from `before` to here: a node
    /// starts restarting, a node is done, the roll stops or finishes.
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
            return Some(format!(
                "node {name} restarted, cluster healthy ({} of {total} done)",
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
                if self.abort_requested {
                    line.push_str(", abort requested");
                }
                line
            }
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
        Observation::Done => "unexpected completion".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tests::cluster_nodes;
    use crate::cluster::{Target, plan_order};
    use std::collections::BTreeMap;

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
                    if self.hangs(step, &node) {
                        Observation::Health(HealthStatus::Yellow)
                    } else {
                        Observation::Health(self.health)
                    }
                }
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
}
