//! The `publish:` section of `esync.yaml` and its pure validation.
//!
//! ```yaml
//! publish:
//!   poll_interval: 1s
//!   page_size: 1000
//!   max_rows_per_second: 5000
//!   look_back: 30s
//!   checkpoint: {file: /var/lib/esync/publish.json}   # or {table: esync_publish_checkpoint}
//!   mappings:
//!     - {name: orders, timestamp_column: updated_at}
//!   outbox: {table: esync_outbox, after_relay: delete}
//! ```

use crate::yaml_config::ConfigProblem;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `publish:` — how `esync publish` finds changed ids and produces them to
/// each mapping's first topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PublishConfig {
    /// Pause between polls once a poll found nothing more (default `1s`).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Rows read per query, and ids produced per acknowledged batch (default 1000).
    pub page_size: usize,
    /// Upper bound on rows read per second and mapping, protecting the source
    /// database during catch-up (default: none).
    pub max_rows_per_second: Option<u32>,
    /// Each poll re-scans this far behind the watermark, so rows whose
    /// transaction committed after newer rows were seen are still published
    /// (default `30s`). Must exceed the longest write transaction plus
    /// `poll_interval` and any clock skew between writers; see `PUBLISH.md`.
    #[serde(with = "humantime_serde")]
    pub look_back: Duration,
    /// Where a mapping without a checkpoint starts: `earliest` publishes every
    /// existing row (default), `latest` starts at the newest row.
    pub start: StartPosition,
    /// How often rows with a NULL timestamp are counted and reported; they can
    /// never be seen by the poller (default `60s`; `0s` disables).
    #[serde(with = "humantime_serde")]
    pub null_check_interval: Duration,
    /// Where watermarks are stored (default `{file: esync-publish.checkpoint.json}`).
    pub checkpoint: CheckpointConfig,
    /// Address of `/metrics` and `/healthz` of the publisher (default
    /// `127.0.0.1:9465`, next to the daemon's 9464; `null` disables).
    pub metrics_listen: Option<SocketAddr>,
    /// Mappings polled by their timestamp column (default none).
    pub mappings: Vec<PublishMappingConfig>,
    /// The outbox relayed by `esync publish --outbox` (default: none).
    pub outbox: Option<OutboxConfig>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            poll_interval: Duration::from_secs(1),
            page_size: 1000,
            max_rows_per_second: None,
            look_back: Duration::from_secs(30),
            start: StartPosition::Earliest,
            null_check_interval: Duration::from_secs(60),
            checkpoint: CheckpointConfig::default(),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9465))),
            mappings: Vec::new(),
            outbox: None,
        }
    }
}

/// `publish.start`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// Publish every existing row first.
    Earliest,
    /// Start after the newest existing row.
    Latest,
}

/// `publish.checkpoint`: exactly one of `file` and `table`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckpointConfig {
    /// JSON file, replaced atomically on each save (default
    /// `esync-publish.checkpoint.json`, relative to the working directory).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Table in the source database (created if missing), one row per mapping.
    #[serde(default)]
    pub table: Option<String>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            file: Some(PathBuf::from("esync-publish.checkpoint.json")),
            table: None,
        }
    }
}

/// `publish.mappings[]`: one polled mapping.
#[derive(Debug, Clone, Deserialize)]
pub struct PublishMappingConfig {
    /// The mapping's name (its `name`, or its `index` when it has none).
    pub name: String,
    /// The column every writer sets to the change time, e.g. `updated_at`
    /// (default `updated_at`). An index on `(<column>, <id column>)` is needed.
    #[serde(default = "default_timestamp_column")]
    pub timestamp_column: String,
    /// Table to poll (default: the mapping's `table`; required for mappings
    /// defined by `query`).
    #[serde(default)]
    pub table: Option<String>,
}

/// `publish.outbox`
#[derive(Debug, Clone, Deserialize)]
pub struct OutboxConfig {
    /// The outbox table (default `esync_outbox`), with columns `seq`,
    /// `table_name`, `row_id`, `changed_at`, `relayed_at` (see `sync/sql/`).
    #[serde(default = "default_outbox_table")]
    pub table: String,
    /// What happens to relayed rows once Kafka acknowledged them: `delete`
    /// (default) or `mark` (sets `relayed_at`; purge them yourself).
    #[serde(default = "default_after_relay")]
    pub after_relay: AfterRelay,
    /// Outbox rows claimed per transaction (default 1000).
    #[serde(default = "default_outbox_batch_size")]
    pub batch_size: usize,
    /// Pause when the outbox is empty (default `200ms`).
    #[serde(default = "default_outbox_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
}

/// `publish.outbox.after_relay`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterRelay {
    /// Delete relayed rows.
    Delete,
    /// Set `relayed_at` on relayed rows.
    Mark,
}

fn default_timestamp_column() -> String {
    "updated_at".into()
}
fn default_outbox_table() -> String {
    "esync_outbox".into()
}
fn default_after_relay() -> AfterRelay {
    AfterRelay::Delete
}
fn default_outbox_batch_size() -> usize {
    1000
}
fn default_outbox_poll_interval() -> Duration {
    Duration::from_millis(200)
}

/// What the `publish:` section needs to know of one mapping of the file.
#[derive(Debug, Clone, Copy)]
pub struct PublishedMapping<'a> {
    /// The mapping's name (its `name`, or its `index`).
    pub name: &'a str,
    /// Whether it names a `table` (a mapping defined by `query` has none).
    pub has_table: bool,
}

/// Checks of the `publish:` section that need no I/O, against the file's
/// `mappings`; called by the top-level validation.
pub fn validate(publish: &PublishConfig, mappings: &[PublishedMapping<'_>]) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut problem =
        |path: String, message: String| problems.push(ConfigProblem { path, message });
    if publish.poll_interval.is_zero() {
        problem(
            "publish.poll_interval".into(),
            "must be longer than 0s".into(),
        );
    }
    if publish.page_size == 0 || publish.page_size > 100_000 {
        problem(
            "publish.page_size".into(),
            format!("must be between 1 and 100000, not {}", publish.page_size),
        );
    }
    if publish.max_rows_per_second == Some(0) {
        problem(
            "publish.max_rows_per_second".into(),
            "must be at least 1 (leave it out for no limit)".into(),
        );
    }
    match (&publish.checkpoint.file, &publish.checkpoint.table) {
        (Some(_), Some(_)) => problem(
            "publish.checkpoint".into(),
            "give either file or table, not both".into(),
        ),
        (None, None) => problem("publish.checkpoint".into(), "give file or table".into()),
        (None, Some(table)) if table.trim().is_empty() => problem(
            "publish.checkpoint.table".into(),
            "must not be empty".into(),
        ),
        _ => {}
    }
    if publish.mappings.is_empty() && publish.outbox.is_none() {
        problem(
            "publish".into(),
            "give mappings to poll or an outbox to relay".into(),
        );
    }
    let mut seen = HashSet::new();
    for (index, entry) in publish.mappings.iter().enumerate() {
        let at = |field: &str| format!("publish.mappings[{index}].{field}");
        if !seen.insert(entry.name.as_str()) {
            problem(at("name"), format!("{:?} is listed twice", entry.name));
        }
        if entry.timestamp_column.trim().is_empty() {
            problem(at("timestamp_column"), "must not be empty".into());
        }
        match mappings.iter().find(|mapping| mapping.name == entry.name) {
            None => {
                let names: Vec<&str> = mappings.iter().map(|mapping| mapping.name).collect();
                problem(
                    at("name"),
                    format!("no mapping is named {:?} (mappings: {names:?})", entry.name),
                );
            }
            Some(mapping) if !mapping.has_table && entry.table.is_none() => problem(
                at("table"),
                format!(
                    "mapping {:?} is defined by a query; name the table to poll",
                    entry.name
                ),
            ),
            Some(_) => {}
        }
    }
    if let Some(outbox) = &publish.outbox {
        if outbox.table.trim().is_empty() {
            problem("publish.outbox.table".into(), "must not be empty".into());
        }
        if outbox.batch_size == 0 || outbox.batch_size > 50_000 {
            problem(
                "publish.outbox.batch_size".into(),
                format!("must be between 1 and 50000, not {}", outbox.batch_size),
            );
        }
        if outbox.poll_interval.is_zero() {
            problem(
                "publish.outbox.poll_interval".into(),
                "must be longer than 0s".into(),
            );
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use crate::config::LoadedConfig;
    use std::time::Duration;

    const BASE: &str = r#"
source: {url: "postgres://db/shop"}
kafka: {brokers: "127.0.0.1:9092"}
elasticsearch: {urls: ["http://127.0.0.1:9200"]}
mappings:
  - {name: orders, topics: [shop.orders, other], table: orders, index: orders, version: {column: version, kind: counter}}
  - {name: custom, topics: [shop.custom], query: "SELECT * FROM c WHERE id IN {ids}", index: c, version: {column: v, kind: counter}}
"#;

    fn load(publish: &str) -> Result<LoadedConfig, Vec<String>> {
        LoadedConfig::from_yaml(&format!("{BASE}{publish}"), &|_| None)
            .map_err(|problems| problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn section_is_optional_and_defaults_are_documented() {
        assert!(load("").unwrap().config.publish.is_none());
        let loaded = load("publish:\n  mappings: [{name: orders}]\n").unwrap();
        let publish = loaded.config.publish.unwrap();
        assert_eq!(publish.poll_interval, Duration::from_secs(1));
        assert_eq!(publish.page_size, 1000);
        assert_eq!(publish.look_back, Duration::from_secs(30));
        assert_eq!(publish.max_rows_per_second, None);
        assert_eq!(publish.start, super::StartPosition::Earliest);
        assert_eq!(
            publish.checkpoint.file.as_deref(),
            Some(std::path::Path::new("esync-publish.checkpoint.json"))
        );
        assert_eq!(
            publish.metrics_listen,
            Some("127.0.0.1:9465".parse().unwrap())
        );
        assert_eq!(publish.mappings[0].timestamp_column, "updated_at");
        let outbox = load("publish: {outbox: {}}\n")
            .unwrap()
            .config
            .publish
            .unwrap()
            .outbox
            .unwrap();
        assert_eq!(
            (outbox.table.as_str(), outbox.after_relay, outbox.batch_size),
            ("esync_outbox", super::AfterRelay::Delete, 1000)
        );
    }

    #[test]
    fn problems_are_reported_with_paths() {
        let cases: &[(&str, &str)] = &[
            (
                "publish: {}\n",
                "publish: give mappings to poll or an outbox",
            ),
            (
                "publish: {page_size: 0, outbox: {}}\n",
                "publish.page_size: must be between 1 and 100000",
            ),
            (
                "publish: {poll_interval: 0s, outbox: {}}\n",
                "publish.poll_interval: must be longer",
            ),
            (
                "publish: {max_rows_per_second: 0, outbox: {}}\n",
                "publish.max_rows_per_second: must be at least 1",
            ),
            (
                "publish: {checkpoint: {file: a, table: b}, outbox: {}}\n",
                "publish.checkpoint: give either file or table",
            ),
            (
                "publish: {checkpoint: {}, outbox: {}}\n",
                "publish.checkpoint: give file or table",
            ),
            (
                "publish: {mappings: [{name: nope}]}\n",
                "publish.mappings[0].name: no mapping is named \"nope\"",
            ),
            (
                "publish: {mappings: [{name: custom}]}\n",
                "publish.mappings[0].table: mapping \"custom\" is defined by a query",
            ),
            (
                "publish: {mappings: [{name: orders}, {name: orders}]}\n",
                "publish.mappings[1].name: \"orders\" is listed twice",
            ),
            (
                "publish: {outbox: {batch_size: 0}}\n",
                "publish.outbox.batch_size: must be between",
            ),
        ];
        for (publish, wanted) in cases {
            let problems = load(publish).unwrap_err();
            assert!(
                problems.iter().any(|line| line.starts_with(wanted)),
                "{publish}: missing {wanted:?} in {problems:#?}"
            );
        }
        assert!(load("publish: {mappings: [{name: custom, table: c}]}\n").is_ok());
        // unknown keys are found by config.rs, which renders an Option level as `?`
        let unknown = [
            ("publish: {outbox: {tabel: x}}\n", "tabel: unknown key"),
            (
                "publish: {mappings: [{name: orders, timestamp_colum: x}]}\n",
                "timestamp_colum: unknown key",
            ),
        ];
        for (publish, wanted) in unknown {
            let problems = load(publish).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|line| line.starts_with("publish.") && line.ends_with(wanted)),
                "{publish}: {problems:#?}"
            );
        }
    }
}
