//! Progress and the final summary.
//!
//! [`Snapshot`] and its renderings are pure. [`Reporter`] writes them: an
//! indicatif bar with rows/s and ETA when stderr is a terminal, otherwise one
//! JSON object per line on stderr (`{"event": "progress", ...}`), which log
//! shippers and tests read.

use crate::recover::checkpoint::Totals;
use crate::recover::control::LimitReason;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

/// Counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    /// Time since this process started working.
    pub elapsed: Duration,
    /// Counters of this process.
    pub totals: Totals,
    /// Chunks done, including those of earlier runs and other workers.
    pub chunks_done: u64,
    /// Chunks in the plan.
    pub chunks_total: u64,
    /// Rows this process is expected to walk (estimate).
    pub rows_expected: u64,
    /// The current rate limit (`None`: unlimited, 0 while paused).
    pub limit: Option<f64>,
    /// Whether an operator paused the run (`esync-recover ctl`).
    pub paused: bool,
    /// Why the limit last changed (`None`: unknown).
    pub limit_reason: Option<LimitReason>,
}

impl Snapshot {
    /// Rows per second so far.
    pub fn rows_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds <= 0.0 {
            0.0
        } else {
            self.totals.rows as f64 / seconds
        }
    }

    /// Time left at the current rate, when it can be told.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rows_per_second();
        if rate <= 0.0 {
            return None;
        }
        let left = self.rows_expected.saturating_sub(self.totals.rows);
        Some(Duration::from_secs_f64(left as f64 / rate))
    }

    /// The JSON progress line.
    pub fn to_json(&self) -> Value {
        json!({
            "event": "progress",
            "elapsed_s": round(self.elapsed.as_secs_f64()),
            "rows": self.totals.rows,
            "rows_expected": self.rows_expected,
            "rows_per_s": round(self.rows_per_second()),
            "docs": self.totals.docs(),
            "conflicts": self.totals.conflicts,
            "failed": self.totals.failed,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "eta_s": self.eta().map(|eta| round(eta.as_secs_f64())),
            "limit_rows_per_s": self.limit.map(round),
            "paused": self.paused,
            "limit_reason": self.limit_reason.map(|reason| reason.to_string()),
        })
    }

    /// The bar's message: chunks, counters, and the limit with its reason.
    pub fn bar_message(&self) -> String {
        let throttle = match (self.paused, self.limit) {
            (true, _) => ", PAUSED".to_owned(),
            (false, Some(limit)) => format!(", limit {limit:.0}/s"),
            (false, None) => String::new(),
        };
        let reason = match (&self.limit_reason, throttle.is_empty()) {
            (Some(reason), false) => format!(" ({reason})"),
            _ => String::new(),
        };
        format!(
            "chunks {}/{}, docs {}, conflicts {}, failed {}{throttle}{reason}",
            self.chunks_done,
            self.chunks_total,
            self.totals.docs(),
            self.totals.conflicts,
            self.totals.failed
        )
    }

    /// The final summary as text.
    pub fn summary_text(&self, run_name: &str, outcome: &str) -> String {
        let totals = &self.totals;
        format!(
            "recovery {run_name:?} {outcome}: {} of {} chunks done\n  rows {}, docs {} (indexed {}, deleted {}), conflicts {}, dead-lettered {}, elapsed {}, {} rows/s",
            self.chunks_done,
            self.chunks_total,
            totals.rows,
            totals.docs(),
            totals.indexed,
            totals.deleted,
            totals.conflicts,
            totals.failed,
            humantime::format_duration(Duration::from_millis(self.elapsed.as_millis() as u64)),
            self.rows_per_second().round(),
        )
    }

    /// The final summary as JSON.
    pub fn summary_json(&self, run_name: &str, outcome: &str) -> Value {
        let mut value = self.to_json();
        value["event"] = json!("summary");
        value["run"] = json!(run_name);
        value["outcome"] = json!(outcome);
        value["indexed"] = json!(self.totals.indexed);
        value["deleted"] = json!(self.totals.deleted);
        value
    }
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, JSON lines otherwise.
    Auto,
    /// Always the bar.
    Bar,
    /// Always JSON lines on stderr.
    Json,
    /// Nothing but the summary.
    None,
}

impl ProgressMode {
    /// `Auto` resolved by looking at stderr.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Json,
            other => other,
        }
    }
}

/// Writes progress.
#[derive(Debug)]
pub struct Reporter {
    bar: Option<ProgressBar>,
    json: bool,
}

impl Reporter {
    /// A reporter for `mode` (`Auto` looks at stderr).
    pub fn new(mode: ProgressMode, rows_expected: u64) -> Reporter {
        let mode = mode.resolve();
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(rows_expected), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} rows {per_sec} ETA {eta} {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Reporter {
            bar,
            json: mode == ProgressMode::Json,
        }
    }

    /// Whether JSON lines are written.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Shows a snapshot.
    pub fn update(&self, snapshot: &Snapshot) {
        if let Some(bar) = &self.bar {
            bar.set_length(snapshot.rows_expected.max(snapshot.totals.rows));
            bar.set_position(snapshot.totals.rows);
            bar.set_message(snapshot.bar_message());
        }
        if self.json {
            self.event(&snapshot.to_json());
        }
    }

    /// Writes one event line (JSON mode only; the bar shows counters instead).
    pub fn event(&self, event: &Value) {
        if self.json {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{event}");
        }
    }

    /// Shows a change (of the throttle): a line above the bar, or `event` in
    /// JSON mode; nothing without progress (the log has it).
    pub fn change(&self, line: &str, event: &Value) {
        if let Some(bar) = &self.bar {
            bar.println(line);
        }
        self.event(event);
    }

    /// Writes a line above the bar, or to stderr.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_rates_eta_and_lines() {
        let snapshot = Snapshot {
            elapsed: Duration::from_secs(10),
            totals: Totals {
                rows: 5000,
                indexed: 4990,
                deleted: 5,
                conflicts: 5,
                failed: 1,
            },
            chunks_done: 5,
            chunks_total: 20,
            rows_expected: 20_000,
            limit: Some(600.0),
            paused: false,
            limit_reason: Some(LimitReason::Start(Some(600.0))),
        };
        assert_eq!(snapshot.rows_per_second(), 500.0);
        assert_eq!(snapshot.eta(), Some(Duration::from_secs(30)));
        let line = snapshot.to_json();
        assert_eq!(line["event"], "progress");
        assert_eq!(line["rows_per_s"], 500.0);
        assert_eq!(line["eta_s"], 30.0);
        assert_eq!(line["docs"], 4995);
        assert_eq!(line["limit_rows_per_s"], 600.0);
        assert_eq!(line["paused"], false);
        assert_eq!(line["limit_reason"], "start: max rate 600 rows/s");
        assert_eq!(
            snapshot.bar_message(),
            "chunks 5/20, docs 4995, conflicts 5, failed 1, limit 600/s (start: max rate 600 rows/s)"
        );
        assert_eq!(
            snapshot.summary_text("r", "finished"),
            "recovery \"r\" finished: 5 of 20 chunks done\n  rows 5000, docs 4995 (indexed 4990, deleted 5), conflicts 5, dead-lettered 1, elapsed 10s, 500 rows/s"
        );
        let summary = snapshot.summary_json("r", "interrupted");
        assert_eq!(
            (summary["event"].as_str(), summary["outcome"].as_str()),
            (Some("summary"), Some("interrupted"))
        );
        let idle = Snapshot::default();
        assert_eq!((idle.rows_per_second(), idle.eta()), (0.0, None));
        assert_eq!(idle.to_json()["eta_s"], Value::Null);
        assert_eq!(idle.to_json()["limit_reason"], Value::Null);
        assert_eq!(
            idle.bar_message(),
            "chunks 0/0, docs 0, conflicts 0, failed 0",
            "no limit, no reason"
        );
    }

    #[test]
    fn paused_snapshots_say_so_and_why() {
        let paused = Snapshot {
            limit: Some(0.0),
            paused: true,
            limit_reason: Some(LimitReason::Operator {
                action: crate::recover::control::Action::Pause,
                at: "2026-12-01T12:03:04Z".parse().unwrap(),
            }),
            ..Snapshot::default()
        };
        let line = paused.to_json();
        assert_eq!(
            (
                &line["paused"],
                &line["limit_rows_per_s"],
                &line["limit_reason"]
            ),
            (
                &json!(true),
                &json!(0.0),
                &json!("operator: pause via ctl at 12:03:04 UTC")
            )
        );
        assert_eq!(
            paused.bar_message(),
            "chunks 0/0, docs 0, conflicts 0, failed 0, PAUSED (operator: pause via ctl at 12:03:04 UTC)"
        );
    }
}
