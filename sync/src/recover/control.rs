//! Online control of a running recovery (`esync-recover ctl`): the
//! operator's commands, the control record they leave for the run, and the
//! run's throttle state (the operator's limit, pause, the adaptive slow-down,
//! and why the limit last changed).
//!
//! The effective limit is the smaller of the operator's limit (or the run's
//! own `--max-rate` until an operator set one) and the adaptive rate; a pause
//! holds every page whatever the limit. `rate 0` pauses, as in RisingWave's
//! online rate limit; any other rate also resumes.
//!
//! Pure: no I/O and no clock; times are passed in. Where the record is kept
//! is [`crate::recover::store`]'s job, polling it is the run's.

use crate::recover::rate::{AdaptiveRate, AdaptiveSettings, Decision, Pressure, Window};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The version of the control record's JSON.
pub const CONTROL_FORMAT: u32 = 1;

/// Problems with a `ctl` command line or a control record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    /// Not one of the known commands.
    #[error("unknown command {0:?}: use rate N, rate unlimited, pause, resume or status")]
    UnknownCommand(String),
    /// `rate` without its value.
    #[error("rate needs a value: rows per second (0 pauses) or unlimited")]
    MissingRate,
    /// `rate` with something that is no rate.
    #[error("invalid rate {0:?}: give rows per second (a number, 0 pauses) or unlimited")]
    InvalidRate(String),
    /// A command that takes no value got one.
    #[error("{command} takes no value, got {value:?}")]
    UnexpectedValue {
        /// The command.
        command: String,
        /// What followed it.
        value: String,
    },
    /// The stored record cannot be used.
    #[error("{0}")]
    BadRecord(String),
}

/// What an operator asks a run to do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Action {
    /// `rate N`: at most N rows per second (and run); `rate 0` pauses and
    /// keeps the limit for `resume`.
    Rate(f64),
    /// `rate unlimited`: no operator limit (and run).
    Unlimited,
    /// `pause`: claim and write nothing until `resume`.
    Pause,
    /// `resume`: go on at the current limit.
    Resume,
}

impl Action {
    /// The action of `rate <value>`.
    pub fn rate(value: &str) -> Result<Action, ControlError> {
        if value.eq_ignore_ascii_case("unlimited") {
            return Ok(Action::Unlimited);
        }
        match value.parse::<f64>() {
            Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(Action::Rate(rate)),
            _ => Err(ControlError::InvalidRate(value.to_owned())),
        }
    }

    /// Whether this pauses the run.
    pub fn pauses(self) -> bool {
        matches!(self, Action::Pause) || matches!(self, Action::Rate(rate) if rate == 0.0)
    }

    /// Whether this sets the operator's limit.
    pub fn sets_limit(self) -> bool {
        matches!(self, Action::Unlimited) || matches!(self, Action::Rate(rate) if rate > 0.0)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Rate(rate) => write!(formatter, "rate {rate}"),
            Action::Unlimited => formatter.write_str("rate unlimited"),
            Action::Pause => formatter.write_str("pause"),
            Action::Resume => formatter.write_str("resume"),
        }
    }
}

impl std::str::FromStr for Action {
    type Err = ControlError;

    /// The text of [`Action`]'s `Display`: `rate 500`, `pause`, ...
    fn from_str(text: &str) -> Result<Action, ControlError> {
        let mut words = text.split_whitespace();
        let command = words.next().unwrap_or_default();
        let value = words.next();
        if let Some(extra) = words.next() {
            return Err(ControlError::UnexpectedValue {
                command: text.to_owned(),
                value: extra.to_owned(),
            });
        }
        match Command::parse(command, value)? {
            Command::Apply(action) => Ok(action),
            Command::Status => Err(ControlError::UnknownCommand(text.to_owned())),
        }
    }
}

impl TryFrom<String> for Action {
    type Error = ControlError;

    fn try_from(text: String) -> Result<Action, ControlError> {
        text.parse()
    }
}

impl From<Action> for String {
    fn from(action: Action) -> String {
        action.to_string()
    }
}

/// A `ctl` command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    /// Change the run.
    Apply(Action),
    /// Show the run's state.
    Status,
}

impl Command {
    /// `command` and its optional value, as typed: `rate 500`, `rate 0`,
    /// `rate unlimited`, `pause`, `resume`, `status`.
    pub fn parse(command: &str, value: Option<&str>) -> Result<Command, ControlError> {
        let no_value = |parsed: Command| match value {
            None => Ok(parsed),
            Some(value) => Err(ControlError::UnexpectedValue {
                command: command.to_owned(),
                value: value.to_owned(),
            }),
        };
        match command {
            "rate" => value
                .ok_or(ControlError::MissingRate)
                .and_then(Action::rate)
                .map(Command::Apply),
            "pause" => no_value(Command::Apply(Action::Pause)),
            "resume" => no_value(Command::Apply(Action::Resume)),
            "status" => no_value(Command::Status),
            other => Err(ControlError::UnknownCommand(other.to_owned())),
        }
    }
}

/// The operator's limit in a control record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorRate {
    /// No limit.
    Unlimited,
    /// At most this many rows per second.
    RowsPerSecond(f64),
}

impl OperatorRate {
    /// As a limit (`None`: unlimited).
    pub fn limit(self) -> Option<f64> {
        match self {
            OperatorRate::Unlimited => None,
            OperatorRate::RowsPerSecond(rate) => Some(rate),
        }
    }
}

/// What `ctl` leaves for a run: the operator's limit, whether it is paused,
/// and the last command with who gave it and when. Every process of the run
/// reads it about twice a second; it outlives them, so a resumed run or a
/// worker joining later obeys it too. A fresh start of the run clears it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRecord {
    /// [`CONTROL_FORMAT`].
    pub format: u32,
    /// The run it controls.
    pub run_name: String,
    /// The operator's limit; absent: each process's own `--max-rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<OperatorRate>,
    /// Whether the run is paused.
    pub paused: bool,
    /// The last command.
    pub action: Action,
    /// Who gave it (`user@host`).
    pub changed_by: String,
    /// When.
    pub changed_at: DateTime<Utc>,
}

impl ControlRecord {
    /// The record after `action`, given the previous one (if any).
    pub fn after(
        previous: Option<&ControlRecord>,
        run_name: &str,
        action: Action,
        changed_by: &str,
        changed_at: DateTime<Utc>,
    ) -> ControlRecord {
        let mut rate = previous.and_then(|record| record.rate);
        // every command decides the pause; only rates change the limit
        let paused = match action {
            Action::Rate(rows_per_second) if action.sets_limit() => {
                rate = Some(OperatorRate::RowsPerSecond(rows_per_second));
                false
            }
            Action::Unlimited => {
                rate = Some(OperatorRate::Unlimited);
                false
            }
            Action::Resume => false,
            Action::Rate(_) | Action::Pause => true,
        };
        ControlRecord {
            format: CONTROL_FORMAT,
            run_name: run_name.to_owned(),
            rate,
            paused,
            action,
            changed_by: changed_by.to_owned(),
            changed_at,
        }
    }

    /// The stored JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("control records serialise")
    }

    /// Reads stored JSON.
    pub fn from_json(text: &str) -> Result<ControlRecord, ControlError> {
        let record: ControlRecord = serde_json::from_str(text)
            .map_err(|error| ControlError::BadRecord(format!("not a control record: {error}")))?;
        if record.format != CONTROL_FORMAT {
            return Err(ControlError::BadRecord(format!(
                "control record format {} is not {CONTROL_FORMAT}; written by another esync-recover version",
                record.format
            )));
        }
        Ok(record)
    }

    /// The state it sets, for `ctl`: `paused (operator: pause via ctl at
    /// 12:03:04 UTC by alice@db1)`.
    pub fn describe(&self) -> String {
        let limit = match self.rate {
            None => "each process's own --max-rate".to_owned(),
            Some(rate) => limit_text(rate.limit()),
        };
        let state = if self.paused {
            format!("paused (limit after resume: {limit})")
        } else {
            format!("running, limit {limit}")
        };
        let reason = LimitReason::Operator {
            action: self.action,
            at: self.changed_at,
        };
        format!("{state}; {reason} by {}", self.changed_by)
    }
}

/// `500 rows/s` or `unlimited`.
pub fn limit_text(limit: Option<f64>) -> String {
    match limit {
        Some(limit) => format!("{} rows/s", round_rate(limit)),
        None => "unlimited".to_owned(),
    }
}

fn round_rate(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}

/// Why the limit is what it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitReason {
    /// The limit the run started with (`--max-rate`, `None`: none).
    Start(Option<f64>),
    /// An operator's command.
    Operator {
        /// The command.
        action: Action,
        /// When it was given.
        at: DateTime<Utc>,
    },
    /// The adaptive rule lowered the rate on push-back.
    Pressure(Pressure),
    /// The adaptive rule raised the rate after a calm period.
    Calm,
}

impl fmt::Display for LimitReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitReason::Start(Some(rate)) => {
                write!(formatter, "start: max rate {}", limit_text(Some(*rate)))
            }
            LimitReason::Start(None) => formatter.write_str("start: no max rate"),
            LimitReason::Operator { action, at } => write!(
                formatter,
                "operator: {action} via ctl at {} UTC",
                at.format("%H:%M:%S")
            ),
            LimitReason::Pressure(pressure) => write!(formatter, "adaptive: {pressure}"),
            LimitReason::Calm => formatter.write_str("adaptive: calm, raised"),
        }
    }
}

/// The throttle as the workers and the progress output see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleView {
    /// The effective limit when running (`None`: unlimited).
    pub limit: Option<f64>,
    /// Whether pages are held.
    pub paused: bool,
    /// Why the limit or the pause last changed.
    pub reason: LimitReason,
}

impl ThrottleView {
    /// The limit now: 0 while paused.
    pub fn current_limit(&self) -> Option<f64> {
        if self.paused { Some(0.0) } else { self.limit }
    }

    /// `limit 500 rows/s (operator: rate 500 via ctl at 12:03:04 UTC)`, or
    /// `paused (...)`.
    pub fn describe(&self) -> String {
        if self.paused {
            format!("paused ({})", self.reason)
        } else {
            format!("limit {} ({})", limit_text(self.limit), self.reason)
        }
    }
}

/// Which way a change went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A lower limit.
    Down,
    /// A higher limit.
    Up,
    /// Paused.
    Pause,
    /// Resumed.
    Resume,
    /// Neither (a repeated command).
    Same,
}

impl Direction {
    /// The name in JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Down => "down",
            Direction::Up => "up",
            Direction::Pause => "pause",
            Direction::Resume => "resume",
            Direction::Same => "same",
        }
    }
}

/// A change of the throttle, to be applied and shown.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleChange {
    /// The new state.
    pub view: ThrottleView,
    /// Which way it went.
    pub direction: Direction,
    /// The operator, for changes by `ctl`.
    pub changed_by: Option<String>,
}

impl ThrottleChange {
    /// The JSON progress event: `{"event": "throttle", "direction": "up",
    /// "limit_rows_per_s": 500.0, "paused": false, "reason": "operator: rate
    /// 500 via ctl at 12:03:04 UTC", "changed_by": "alice@db1"}`.
    pub fn to_event(&self) -> serde_json::Value {
        serde_json::json!({
            "event": "throttle",
            "direction": self.direction.as_str(),
            "limit_rows_per_s": self.view.current_limit().map(round_rate),
            "paused": self.view.paused,
            "reason": self.view.reason.to_string(),
            "changed_by": self.changed_by,
        })
    }
}

/// The throttle state of one process of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttle {
    /// `--max-rate`.
    configured: Option<f64>,
    /// The operator's limit, once one was set.
    operator: Option<OperatorRate>,
    paused: bool,
    adaptive: AdaptiveRate,
    reason: LimitReason,
    /// The control record last applied, so each is applied once.
    applied: Option<ControlRecord>,
}

impl Throttle {
    /// The state at the start of a run: `max_rate`, running, the adaptive
    /// rule at the ceiling.
    pub fn new(max_rate: Option<f64>, db_latency_threshold: Duration, now: Duration) -> Throttle {
        Throttle {
            configured: max_rate,
            operator: None,
            paused: false,
            adaptive: AdaptiveRate::new(AdaptiveSettings::new(max_rate, db_latency_threshold), now),
            reason: LimitReason::Start(max_rate),
            applied: None,
        }
    }

    /// The operator's limit, or `--max-rate` until one was set.
    pub fn ceiling(&self) -> Option<f64> {
        match self.operator {
            Some(rate) => rate.limit(),
            None => self.configured,
        }
    }

    /// The effective limit when running: the smaller of the ceiling and the
    /// adaptive rate.
    pub fn limit(&self) -> Option<f64> {
        match (self.ceiling(), self.adaptive.limit()) {
            (Some(ceiling), Some(adaptive)) => Some(ceiling.min(adaptive)),
            (ceiling, adaptive) => ceiling.or(adaptive),
        }
    }

    /// The state as workers and progress see it.
    pub fn view(&self) -> ThrottleView {
        ThrottleView {
            limit: self.limit(),
            paused: self.paused,
            reason: self.reason,
        }
    }

    /// Applies a control record; `None` when it is the one already applied.
    pub fn apply(&mut self, record: &ControlRecord, now: Duration) -> Option<ThrottleChange> {
        if self.applied.as_ref() == Some(record) {
            return None;
        }
        let before = self.view();
        let ceiling_before = self.ceiling();
        self.operator = record.rate;
        self.paused = record.paused;
        // An explicit rate restarts the adaptive rule at it; pause and resume
        // leave the adaptive rate alone.
        if record.action.sets_limit() || self.ceiling() != ceiling_before {
            self.adaptive.reset_ceiling(self.ceiling(), now);
        }
        self.reason = LimitReason::Operator {
            action: record.action,
            at: record.changed_at,
        };
        self.applied = Some(record.clone());
        Some(ThrottleChange {
            view: self.view(),
            direction: direction(&before, &self.view()),
            changed_by: Some(record.changed_by.clone()),
        })
    }

    /// Feeds one observation window to the adaptive rule; `None` when the
    /// limit stays. Paused windows say nothing about load and are skipped.
    pub fn observe(&mut self, window: &Window, now: Duration) -> Option<ThrottleChange> {
        if self.paused {
            return None;
        }
        let before = self.view();
        self.reason = match self.adaptive.observe(window, now) {
            Decision::Keep => return None,
            Decision::SlowDown { pressure, .. } => LimitReason::Pressure(pressure),
            Decision::SpeedUp { .. } => LimitReason::Calm,
        };
        Some(ThrottleChange {
            view: self.view(),
            direction: direction(&before, &self.view()),
            changed_by: None,
        })
    }
}

fn direction(before: &ThrottleView, after: &ThrottleView) -> Direction {
    // unlimited is the highest limit
    let rank = |limit: Option<f64>| limit.unwrap_or(f64::INFINITY);
    match (before.paused, after.paused) {
        (false, true) => Direction::Pause,
        (true, false) => Direction::Resume,
        _ if rank(after.limit) < rank(before.limit) => Direction::Down,
        _ if rank(after.limit) > rank(before.limit) => Direction::Up,
        _ => Direction::Same,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hms: &str) -> DateTime<Utc> {
        format!("2026-12-01T{hms}Z").parse().unwrap()
    }

    fn seconds(value: u64) -> Duration {
        Duration::from_secs(value)
    }

    #[test]
    fn commands_parse_as_typed() {
        let cases: Vec<(&str, Option<&str>, Result<Command, ControlError>)> = vec![
            ("rate", Some("500"), Ok(Command::Apply(Action::Rate(500.0)))),
            ("rate", Some("2.5"), Ok(Command::Apply(Action::Rate(2.5)))),
            ("rate", Some("0"), Ok(Command::Apply(Action::Rate(0.0)))),
            (
                "rate",
                Some("unlimited"),
                Ok(Command::Apply(Action::Unlimited)),
            ),
            ("pause", None, Ok(Command::Apply(Action::Pause))),
            ("resume", None, Ok(Command::Apply(Action::Resume))),
            ("status", None, Ok(Command::Status)),
            ("rate", None, Err(ControlError::MissingRate)),
            (
                "rate",
                Some("-1"),
                Err(ControlError::InvalidRate("-1".into())),
            ),
            (
                "rate",
                Some("NaN"),
                Err(ControlError::InvalidRate("NaN".into())),
            ),
            (
                "rate",
                Some("fast"),
                Err(ControlError::InvalidRate("fast".into())),
            ),
            (
                "pause",
                Some("5"),
                Err(ControlError::UnexpectedValue {
                    command: "pause".into(),
                    value: "5".into(),
                }),
            ),
            (
                "stop",
                None,
                Err(ControlError::UnknownCommand("stop".into())),
            ),
        ];
        for (command, value, expected) in cases {
            assert_eq!(
                Command::parse(command, value),
                expected,
                "{command} {value:?}"
            );
        }
        assert_eq!(
            ControlError::MissingRate.to_string(),
            "rate needs a value: rows per second (0 pauses) or unlimited"
        );
        for action in [
            Action::Rate(500.0),
            Action::Rate(0.5),
            Action::Unlimited,
            Action::Pause,
            Action::Resume,
        ] {
            assert_eq!(action.to_string().parse::<Action>(), Ok(action));
        }
        assert_eq!(Action::Rate(500.0).to_string(), "rate 500");
        assert!(Action::Rate(0.0).pauses() && !Action::Rate(0.0).sets_limit());
    }

    #[test]
    fn records_accumulate_commands() {
        // (action, expected rate, expected paused)
        let steps = [
            (Action::Pause, None, true),
            (Action::Resume, None, false),
            (
                Action::Rate(500.0),
                Some(OperatorRate::RowsPerSecond(500.0)),
                false,
            ),
            // 0 pauses and keeps the limit for resume
            (
                Action::Rate(0.0),
                Some(OperatorRate::RowsPerSecond(500.0)),
                true,
            ),
            (
                Action::Resume,
                Some(OperatorRate::RowsPerSecond(500.0)),
                false,
            ),
            (
                Action::Pause,
                Some(OperatorRate::RowsPerSecond(500.0)),
                true,
            ),
            // any other rate resumes
            (Action::Unlimited, Some(OperatorRate::Unlimited), false),
        ];
        let mut record: Option<ControlRecord> = None;
        for (action, rate, paused) in steps {
            let next =
                ControlRecord::after(record.as_ref(), "r", action, "alice@db1", at("12:03:04"));
            assert_eq!((next.rate, next.paused), (rate, paused), "after {action}");
            assert_eq!(next.action, action);
            record = Some(next);
        }
    }

    #[test]
    fn records_round_trip_as_json_and_describe_themselves() {
        let record = ControlRecord::after(
            None,
            "nightly",
            Action::Rate(500.0),
            "alice@db1",
            at("12:03:04"),
        );
        let json = record.to_json();
        assert!(json.contains(r#""action": "rate 500""#), "{json}");
        assert!(json.contains(r#""rows_per_second": 500.0"#), "{json}");
        assert_eq!(ControlRecord::from_json(&json), Ok(record.clone()));
        assert_eq!(
            record.describe(),
            "running, limit 500 rows/s; operator: rate 500 via ctl at 12:03:04 UTC by alice@db1"
        );
        let paused =
            ControlRecord::after(None, "nightly", Action::Pause, "bob@ops", at("01:02:03"));
        assert_eq!(
            paused.describe(),
            "paused (limit after resume: each process's own --max-rate); operator: pause via ctl at 01:02:03 UTC by bob@ops"
        );
        let future = json.replace(r#""format": 1"#, r#""format": 2"#);
        assert!(
            ControlRecord::from_json(&future)
                .unwrap_err()
                .to_string()
                .contains("format 2 is not 1")
        );
        assert!(ControlRecord::from_json("{").is_err());
        let bad_action = json.replace("rate 500", "rate fast");
        assert!(ControlRecord::from_json(&bad_action).is_err());
    }

    fn window(rows: u64, es_retries: u64, db_latency_ms: Option<u64>) -> Window {
        Window {
            rows,
            elapsed: seconds(1),
            es_retries,
            db_latency: db_latency_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn the_effective_limit_is_the_smaller_of_operator_and_adaptive() {
        let mut throttle = Throttle::new(Some(1000.0), Duration::from_millis(200), seconds(0));
        assert_eq!(
            throttle.view(),
            ThrottleView {
                limit: Some(1000.0),
                paused: false,
                reason: LimitReason::Start(Some(1000.0))
            }
        );
        assert_eq!(
            throttle.view().describe(),
            "limit 1000 rows/s (start: max rate 1000 rows/s)"
        );
        // the database strains: adaptive 500 < operator 1000
        let change = throttle
            .observe(&window(1000, 0, Some(250)), seconds(1))
            .expect("a slow-down");
        assert_eq!(change.direction, Direction::Down);
        assert_eq!(change.view.limit, Some(500.0));
        assert_eq!(
            change.to_event(),
            serde_json::json!({
                "event": "throttle",
                "direction": "down",
                "limit_rows_per_s": 500.0,
                "paused": false,
                "reason": "adaptive: database query latency 250 ms",
                "changed_by": null,
            })
        );
        assert_eq!(
            change.view.describe(),
            "limit 500 rows/s (adaptive: database query latency 250 ms)"
        );
        // the operator lowers below the adaptive rate: operator 100
        let record =
            ControlRecord::after(None, "r", Action::Rate(100.0), "alice@db1", at("12:03:04"));
        let change = throttle.apply(&record, seconds(2)).expect("a change");
        assert_eq!(
            (
                change.view.limit,
                change.direction,
                change.changed_by.as_deref()
            ),
            (Some(100.0), Direction::Down, Some("alice@db1"))
        );
        assert_eq!(
            change.view.describe(),
            "limit 100 rows/s (operator: rate 100 via ctl at 12:03:04 UTC)"
        );
        assert_eq!(throttle.apply(&record, seconds(3)), None, "applied once");
        // pressure goes on: the adaptive rule lowers from what went through
        let change = throttle
            .observe(&window(100, 4, None), seconds(3))
            .expect("a slow-down");
        assert_eq!(change.view.limit, Some(50.0));
        // the operator raises: the adaptive rule starts again at the new ceiling
        let raised = ControlRecord::after(
            Some(&record),
            "r",
            Action::Rate(5000.0),
            "alice@db1",
            at("12:04:00"),
        );
        let change = throttle.apply(&raised, seconds(4)).expect("a change");
        assert_eq!(
            (change.view.limit, change.direction),
            (Some(5000.0), Direction::Up)
        );
        let unlimited = ControlRecord::after(
            Some(&raised),
            "r",
            Action::Unlimited,
            "alice@db1",
            at("12:05:00"),
        );
        let change = throttle.apply(&unlimited, seconds(5)).expect("a change");
        assert_eq!((change.view.limit, change.direction), (None, Direction::Up));
        assert_eq!(
            change.view.describe(),
            "limit unlimited (operator: rate unlimited via ctl at 12:05:00 UTC)"
        );
    }

    #[test]
    fn pause_holds_the_limit_and_ignores_idle_windows() {
        let mut throttle = Throttle::new(Some(300.0), Duration::from_millis(200), seconds(0));
        let paused = ControlRecord::after(None, "r", Action::Rate(0.0), "ops@db1", at("08:00:00"));
        let change = throttle.apply(&paused, seconds(1)).expect("a change");
        assert_eq!(change.direction, Direction::Pause);
        assert_eq!(change.view.current_limit(), Some(0.0));
        let event = change.to_event();
        assert_eq!(
            (
                &event["direction"],
                &event["limit_rows_per_s"],
                &event["paused"],
                &event["changed_by"]
            ),
            (
                &serde_json::json!("pause"),
                &serde_json::json!(0.0),
                &serde_json::json!(true),
                &serde_json::json!("ops@db1")
            )
        );
        assert_eq!(change.view.limit, Some(300.0), "the limit after resume");
        assert_eq!(
            change.view.describe(),
            "paused (operator: rate 0 via ctl at 08:00:00 UTC)"
        );
        // nothing moves while paused: no slow-down, no speed-up
        assert_eq!(throttle.observe(&window(0, 0, None), seconds(2)), None);
        assert_eq!(throttle.observe(&window(0, 3, None), seconds(3)), None);
        let resumed = ControlRecord::after(
            Some(&paused),
            "r",
            Action::Resume,
            "ops@db1",
            at("08:01:00"),
        );
        let change = throttle.apply(&resumed, seconds(4)).expect("a change");
        assert_eq!(
            (change.direction, change.view.current_limit()),
            (Direction::Resume, Some(300.0))
        );
        // a repeated resume is a change of reason only
        let again = ControlRecord::after(
            Some(&resumed),
            "r",
            Action::Resume,
            "ops@db1",
            at("08:02:00"),
        );
        assert_eq!(
            throttle
                .apply(&again, seconds(5))
                .map(|change| change.direction),
            Some(Direction::Same)
        );
    }

    #[test]
    fn a_stored_record_overrides_max_rate_at_start() {
        // a resumed run (or a worker joining) obeys the operator, not its own
        // --max-rate
        let mut throttle = Throttle::new(Some(50.0), Duration::from_millis(200), seconds(0));
        let record =
            ControlRecord::after(None, "r", Action::Rate(800.0), "ops@db1", at("08:00:00"));
        let paused =
            ControlRecord::after(Some(&record), "r", Action::Pause, "ops@db1", at("08:00:05"));
        let change = throttle.apply(&paused, seconds(0)).expect("a change");
        assert_eq!((change.view.paused, change.view.limit), (true, Some(800.0)));
        // a pause-only record keeps --max-rate
        let mut throttle = Throttle::new(Some(50.0), Duration::from_millis(200), seconds(0));
        let pause_only = ControlRecord::after(None, "r", Action::Pause, "ops@db1", at("08:00:00"));
        throttle.apply(&pause_only, seconds(0));
        assert_eq!(throttle.view().limit, Some(50.0));
    }
}
