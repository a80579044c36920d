//! Every Prometheus metric of opsbot, in one place, and the hooks that
//! record them. No I/O: the `/metrics` endpoint is `crate::metrics_http`;
//! the values are recorded where events are observed (`crate::execute` for
//! commands, `crate::bot` for refused chat users, `crate::driver` for rolls),
//! never in the pure state machine (`crate::roll`).
//!
//! Names start with `opsbot_`, counters end in `_total`; labels are
//! low-cardinality (command names, outcomes, wait kinds), never user or
//! chat ids.

use crate::roll::{RollState, RollStatus, WaitKind};
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// What became of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOutcome {
    /// It ran and produced its answer.
    Ok,
    /// Its input was refused (a `/plan` key or value): no cluster call failed.
    Refused,
    /// The operation failed (cluster unreachable, a roll already running, ...).
    Failed,
    /// The chat user may not run it: an unlisted chat or user, or a viewer
    /// asking for an operator command.
    Unauthorized,
}

impl CommandOutcome {
    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            CommandOutcome::Ok => "ok",
            CommandOutcome::Refused => "refused",
            CommandOutcome::Failed => "failed",
            CommandOutcome::Unauthorized => "unauthorized",
        }
    }
}

/// Why a chat user was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedReason {
    /// The chat or the user is not on the allow-list (no reply is sent).
    Unlisted,
    /// A listed viewer asked for an operator command.
    Role,
}

impl RefusedReason {
    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            RefusedReason::Unlisted => "unlisted",
            RefusedReason::Role => "role",
        }
    }
}

/// Label set `{command, outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// Command name (`health`, `restart`, ...; `invalid` for a message that
    /// did not parse).
    pub command: &'static str,
    /// `ok`, `refused`, `failed` or `unauthorized`.
    pub outcome: &'static str,
}

/// Label set `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A short, fixed reason.
    pub reason: &'static str,
}

/// Label set `{outcome}` of finished rolls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RollOutcomeLabel {
    /// `done`, `failed`, `aborted` or `interrupted` (opsbot stopped).
    pub outcome: &'static str,
}

/// Every wait kind of a roll, for the `reason` label of
/// `opsbot_roll_waiting`.
pub const WAIT_KINDS: [WaitKind; 6] = [
    WaitKind::Health,
    WaitKind::Settling,
    WaitKind::OnlyStartedCopy,
    WaitKind::NodeLeaving,
    WaitKind::NodeRejoining,
    WaitKind::Unreachable,
];

/// The `reason` label of a wait kind.
pub fn wait_label(kind: WaitKind) -> &'static str {
    match kind {
        WaitKind::Health => "health",
        WaitKind::Settling => "settling",
        WaitKind::OnlyStartedCopy => "only_started_copy",
        WaitKind::NodeLeaving => "node_leaving",
        WaitKind::NodeRejoining => "node_rejoining",
        WaitKind::Unreachable => "unreachable",
    }
}

/// opsbot's metrics. Cheap to clone (every metric is shared); a clone
/// records into the same values.
#[derive(Debug, Clone, Default)]
pub struct OpsbotMetrics {
    /// Commands run, CLI and chat, by command and outcome.
    pub commands: Family<CommandLabels, Counter>,
    /// Chat messages refused because of who sent them.
    pub refused_chat_users: Family<ReasonLabel, Counter>,
    /// Slow-log reports made.
    pub slowlog_reports: Counter,
    /// Nodes restarted by rolls (each counted when its roll moves past it).
    pub roll_nodes_restarted: Counter,
    /// Rolls that stopped on a failed or timed-out step.
    pub roll_failures: Counter,
    /// Rolls finished, by outcome.
    pub rolls_finished: Family<RollOutcomeLabel, Counter>,
    /// 1 for the kind the current roll waits for, 0 for the others.
    pub roll_waiting: Family<ReasonLabel, Gauge>,
    /// Unix time the current wait of the running roll began (its kind may
    /// change while it lasts); 0 when no roll waits.
    pub roll_wait_started: Gauge<f64, AtomicU64>,
    /// 1 while this process drives a roll.
    pub roll_running: Gauge,
}

impl OpsbotMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> OpsbotMetrics {
        let metrics = OpsbotMetrics::default();
        for kind in WAIT_KINDS {
            metrics.waiting(kind).set(0);
        }
        registry.register(
            "opsbot_commands",
            "Commands run (CLI and chat) by command and outcome (ok, refused, failed, unauthorized)",
            metrics.commands.clone(),
        );
        registry.register(
            "opsbot_refused_chat_users",
            "Chat messages refused because of the sender: unlisted chat or user, or a role too low",
            metrics.refused_chat_users.clone(),
        );
        registry.register(
            "opsbot_slowlog_reports",
            "Slow-log reports made",
            metrics.slowlog_reports.clone(),
        );
        registry.register(
            "opsbot_roll_nodes_restarted",
            "Nodes restarted by rolling restarts",
            metrics.roll_nodes_restarted.clone(),
        );
        registry.register(
            "opsbot_roll_failures",
            "Rolling restarts stopped by a failed or timed-out step",
            metrics.roll_failures.clone(),
        );
        registry.register(
            "opsbot_rolls_finished",
            "Rolling restarts finished, by outcome (done, failed, aborted, interrupted)",
            metrics.rolls_finished.clone(),
        );
        registry.register(
            "opsbot_roll_waiting",
            "1 for what the running roll waits for, 0 for the other reasons",
            metrics.roll_waiting.clone(),
        );
        registry.register(
            "opsbot_roll_wait_started_timestamp_seconds",
            "Unix time the running roll's current wait began; 0 when it does not wait",
            metrics.roll_wait_started.clone(),
        );
        registry.register(
            "opsbot_roll_running",
            "1 while this opsbot process drives a rolling restart",
            metrics.roll_running.clone(),
        );
        metrics
    }

    fn waiting(&self, kind: WaitKind) -> Gauge {
        self.roll_waiting
            .get_or_create(&ReasonLabel {
                reason: wait_label(kind),
            })
            .clone()
    }

    /// Counts a command.
    pub fn command(&self, command: &'static str, outcome: CommandOutcome) {
        self.commands
            .get_or_create(&CommandLabels {
                command,
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Counts a chat message refused because of its sender; `command` is the
    /// command's name, `invalid` when the message did not parse.
    pub fn refused(&self, command: &'static str, reason: RefusedReason) {
        self.command(command, CommandOutcome::Unauthorized);
        self.refused_chat_users
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    /// A roll is being driven from `state`.
    pub fn roll_started(&self, state: &RollState, now: DateTime<Utc>) {
        self.roll_running.set(1);
        self.roll_wait_changed(None, state, now);
    }

    /// The roll changed from `before` (its values before the last poll or
    /// observation) to `state`.
    pub fn roll_changed(&self, before: &RollSnapshot, state: &RollState, now: DateTime<Utc>) {
        let restarted = state.completed.len().saturating_sub(before.completed);
        self.roll_nodes_restarted
            .inc_by(u64::try_from(restarted).unwrap_or(u64::MAX));
        if !before.failing && failing(state.status) {
            self.roll_failures.inc();
        }
        self.roll_wait_changed(before.wait, state, now);
    }

    fn roll_wait_changed(&self, before: Option<WaitKind>, state: &RollState, now: DateTime<Utc>) {
        let wait = if state.status.is_finished() {
            None
        } else {
            state.wait
        };
        for kind in WAIT_KINDS {
            self.waiting(kind).set(i64::from(wait == Some(kind)));
        }
        match (before, wait) {
            (None, Some(_)) => {
                // millisecond precision is plenty for an alert in minutes
                #[allow(clippy::cast_precision_loss)]
                let seconds = now.timestamp_millis() as f64 / 1000.0;
                self.roll_wait_started.set(seconds);
            }
            (_, None) => {
                self.roll_wait_started.set(0.0);
            }
            (Some(_), Some(_)) => {}
        }
    }

    /// The roll stopped being driven, ending as `state`.
    pub fn roll_stopped(&self, state: &RollState) {
        self.roll_running.set(0);
        for kind in WAIT_KINDS {
            self.waiting(kind).set(0);
        }
        self.roll_wait_started.set(0.0);
        let outcome = match state.status {
            RollStatus::Done => "done",
            RollStatus::Failed => "failed",
            RollStatus::Aborted => "aborted",
            RollStatus::Running | RollStatus::Restoring => "interrupted",
        };
        self.rolls_finished
            .get_or_create(&RollOutcomeLabel { outcome })
            .inc();
    }
}

/// A step failed: the roll restores allocation or has stopped.
fn failing(status: RollStatus) -> bool {
    matches!(status, RollStatus::Restoring | RollStatus::Failed)
}

/// What [`OpsbotMetrics::roll_changed`] compares a roll with.
#[derive(Debug, Clone, Copy)]
pub struct RollSnapshot {
    completed: usize,
    failing: bool,
    wait: Option<WaitKind>,
}

impl RollSnapshot {
    /// The values of `state` now.
    pub fn of(state: &RollState) -> RollSnapshot {
        RollSnapshot {
            completed: state.completed.len(),
            failing: failing(state.status),
            wait: if state.status.is_finished() {
                None
            } else {
                state.wait
            },
        }
    }
}

/// The registry's text (OpenMetrics) encoding.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PlannedNode;
    use crate::roll::RollSettings;

    fn registered() -> (Registry, OpsbotMetrics) {
        let mut registry = Registry::default();
        let metrics = OpsbotMetrics::register(&mut registry);
        (registry, metrics)
    }

    /// The value of the sample line that starts with `series`.
    fn sample(registry: &Registry, series: &str) -> Option<f64> {
        let text = encode(registry).expect("encodes");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn roll() -> RollState {
        let node = |name: &str| PlannedNode {
            name: name.into(),
            host: name.into(),
            roles: "d".into(),
            elected_master: false,
        };
        RollState::new(
            vec![node("a"), node("b")],
            RollSettings::default(),
            Utc::now(),
        )
    }

    /// The names the dashboard and alerts (ops/) rely on.
    #[test]
    fn registry_encodes_the_documented_names() {
        let (registry, metrics) = registered();
        metrics.command("health", CommandOutcome::Ok);
        metrics.refused("restart", RefusedReason::Role);
        metrics.roll_stopped(&roll());
        let text = encode(&registry).expect("encodes");
        for name in [
            "# TYPE opsbot_commands counter",
            "opsbot_commands_total{command=\"health\",outcome=\"ok\"} 1",
            "opsbot_commands_total{command=\"restart\",outcome=\"unauthorized\"} 1",
            "opsbot_refused_chat_users_total{reason=\"role\"} 1",
            "opsbot_slowlog_reports_total 0",
            "opsbot_roll_nodes_restarted_total 0",
            "opsbot_roll_failures_total 0",
            "opsbot_rolls_finished_total{outcome=\"interrupted\"} 1",
            "opsbot_roll_waiting{reason=\"health\"} 0",
            "opsbot_roll_waiting{reason=\"node_rejoining\"} 0",
            "opsbot_roll_wait_started_timestamp_seconds 0",
            "opsbot_roll_running 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        // every wait kind is exported (0) before any roll, so that
        // dashboards and alerts see the series from the start
        let (registry, _) = registered();
        for kind in WAIT_KINDS {
            let series = format!("opsbot_roll_waiting{{reason=\"{}\"}}", wait_label(kind));
            assert_eq!(sample(&registry, &series), Some(0.0), "{series}");
        }
    }

    #[test]
    fn a_roll_records_nodes_failures_and_its_current_wait() {
        let (registry, metrics) = registered();
        let mut state = roll();
        let start = Utc::now();
        metrics.roll_started(&state, start);
        assert_eq!(sample(&registry, "opsbot_roll_running"), Some(1.0));

        // a wait begins: its kind is 1, its start time is set
        let before = RollSnapshot::of(&state);
        state.wait = Some(WaitKind::Health);
        metrics.roll_changed(&before, &state, start);
        assert_eq!(
            sample(&registry, "opsbot_roll_waiting{reason=\"health\"}"),
            Some(1.0)
        );
        let started = sample(&registry, "opsbot_roll_wait_started_timestamp_seconds");
        #[allow(clippy::cast_precision_loss)]
        let expected = start.timestamp_millis() as f64 / 1000.0;
        assert_eq!(started, Some(expected));

        // its kind changes: the same wait goes on, its start time stays
        let before = RollSnapshot::of(&state);
        state.wait = Some(WaitKind::Settling);
        metrics.roll_changed(&before, &state, start + chrono::Duration::minutes(5));
        assert_eq!(
            sample(&registry, "opsbot_roll_waiting{reason=\"health\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&registry, "opsbot_roll_waiting{reason=\"settling\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&registry, "opsbot_roll_wait_started_timestamp_seconds"),
            Some(expected)
        );

        // the node is done: counted once, the wait is over
        let before = RollSnapshot::of(&state);
        state.wait = None;
        state.completed.push("a".into());
        metrics.roll_changed(&before, &state, start);
        metrics.roll_changed(&RollSnapshot::of(&state), &state, start);
        assert_eq!(
            sample(&registry, "opsbot_roll_nodes_restarted_total"),
            Some(1.0)
        );
        assert_eq!(
            sample(&registry, "opsbot_roll_wait_started_timestamp_seconds"),
            Some(0.0)
        );

        // a step fails: restoring, then failed, is one failure
        let before = RollSnapshot::of(&state);
        state.status = RollStatus::Restoring;
        metrics.roll_changed(&before, &state, start);
        let before = RollSnapshot::of(&state);
        state.status = RollStatus::Failed;
        metrics.roll_changed(&before, &state, start);
        assert_eq!(sample(&registry, "opsbot_roll_failures_total"), Some(1.0));

        metrics.roll_stopped(&state);
        assert_eq!(
            sample(&registry, "opsbot_rolls_finished_total{outcome=\"failed\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&registry, "opsbot_roll_running"), Some(0.0));
        assert_eq!(
            sample(&registry, "opsbot_roll_waiting{reason=\"settling\"}"),
            Some(0.0)
        );
    }
}
