//! Configuration: one YAML file (`--config`), every field optional with the
//! default documented next to it; unknown fields are errors. Secrets never
//! come from the file, only from the environment (see [`Secrets`]).
//!
//! Load order: parse ([`Config::from_yaml`]) → pure [`Config::validate`] →
//! adapters are built and checked by the caller. This module reads the
//! environment only in [`Secrets::from_env`].

use crate::command::{AccessPolicy, Role};
use crate::roll::RollSettings;
use crate::yaml_config::{ConfigProblem, problem_list};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A configuration problem, named by the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax, unknown or mistyped fields, values that make no sense:
    /// every one found.
    #[error("invalid config{}:\n{}", .path.as_ref().map(|path| format!(" {}", path.display())).unwrap_or_default(), problem_list(.problems))]
    Invalid {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// Every problem found, with its path in the file.
        problems: Vec<ConfigProblem>,
    },
    /// A required environment variable is missing.
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
}

pub use esync_common::secret::Secret;

/// Environment variable with the Telegram bot token.
pub const ENV_TELEGRAM_TOKEN: &str = "OPSBOT_TELEGRAM_TOKEN";
/// Environment variable with the Elasticsearch password (with `cluster.username`).
pub const ENV_ES_PASSWORD: &str = "OPSBOT_ES_PASSWORD";
/// Environment variable with an Elasticsearch API key (base64 `id:key`).
pub const ENV_ES_API_KEY: &str = "OPSBOT_ES_API_KEY";

/// Secrets, read from the environment only.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// `OPSBOT_ES_PASSWORD`.
    pub es_password: Option<Secret>,
    /// `OPSBOT_ES_API_KEY`.
    pub es_api_key: Option<Secret>,
    /// `OPSBOT_TELEGRAM_TOKEN`.
    pub telegram_token: Option<Secret>,
}

impl Secrets {
    /// Reads the variables that are set; empty values count as unset.
    pub fn from_env() -> Secrets {
        let read = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .map(Secret::new)
        };
        Secrets {
            es_password: read(ENV_ES_PASSWORD),
            es_api_key: read(ENV_ES_API_KEY),
            telegram_token: read(ENV_TELEGRAM_TOKEN),
        }
    }

    /// The bot token, or an error naming the variable.
    pub fn require_telegram_token(&self) -> Result<&Secret, ConfigError> {
        self.telegram_token
            .as_ref()
            .ok_or(ConfigError::MissingEnv(ENV_TELEGRAM_TOKEN))
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The cluster to operate.
    pub cluster: ClusterConfig,
    /// Rolling restarts.
    pub restart: RestartConfig,
    /// Slow-log reports.
    pub slowlog: SlowlogConfig,
    /// The Telegram bot.
    pub telegram: TelegramConfig,
    /// The audit log.
    pub audit: AuditConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// `metrics:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the `/metrics` endpoint (Prometheus text format), served by
    /// `opsbot bot` and by `opsbot restart`/`resume` while they drive a roll.
    /// Default: none (no endpoint).
    pub listen: Option<std::net::SocketAddr>,
}

/// `cluster:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Elasticsearch HTTP URL. Default `http://127.0.0.1:9200`.
    pub url: String,
    /// Basic-auth user; the password comes from `OPSBOT_ES_PASSWORD`.
    /// Default: none (no auth, or `OPSBOT_ES_API_KEY` when set).
    pub username: Option<String>,
    /// Time-out of one HTTP request. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            url: "http://127.0.0.1:9200".to_string(),
            username: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// How a node is restarted: `kind: shell | systemd | ansible` and the
/// fields of that kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields, rename_all = "snake_case")]
pub enum RestartActionConfig {
    /// A shell command run with `sh -c`; `{host}` and `{node}` are replaced
    /// by the node's host and name (both checked to be plain names first).
    Shell {
        /// The command template.
        command: String,
    },
    /// `ssh [options] [user@]{host} sudo systemctl restart <unit>`.
    Systemd {
        /// The unit. Default `elasticsearch`.
        #[serde(default = "default_unit")]
        unit: String,
        /// SSH user. Default: ssh's own default.
        #[serde(default)]
        ssh_user: Option<String>,
        /// Extra ssh arguments, e.g. `["-o", "BatchMode=yes"]`. Default none.
        #[serde(default)]
        ssh_options: Vec<String>,
    },
    /// `ansible-playbook <playbook> -i <inventory> --limit {host} -e
    /// es_restart_only=true` (opsbot does the API steps itself).
    Ansible {
        /// Playbook. Default `playbooks/rolling_restart.yml`.
        #[serde(default = "default_playbook")]
        playbook: PathBuf,
        /// Inventory. Default `playbooks/inventory/hosts.yml`.
        #[serde(default = "default_inventory")]
        inventory: PathBuf,
        /// Extra arguments, e.g. `["-e", "es_restart_method=command"]`. Default none.
        #[serde(default)]
        extra_args: Vec<String>,
    },
}

fn default_unit() -> String {
    "elasticsearch".to_string()
}

fn default_playbook() -> PathBuf {
    PathBuf::from("playbooks/rolling_restart.yml")
}

fn default_inventory() -> PathBuf {
    PathBuf::from("playbooks/inventory/hosts.yml")
}

impl Default for RestartActionConfig {
    fn default() -> Self {
        RestartActionConfig::Systemd {
            unit: default_unit(),
            ssh_user: None,
            ssh_options: Vec::new(),
        }
    }
}

/// `restart:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    /// How to restart one node. Default `systemd` over ssh, unit `elasticsearch`.
    pub action: RestartActionConfig,
    /// `{host}` per node name, where the node's `ip` is not the right
    /// address. Default: empty (use `ip` from `_cat/nodes`).
    pub hosts: BTreeMap<String, String>,
    /// Where progress is persisted (for status, resume, abort).
    /// Default `opsbot-roll.json`.
    pub state_path: PathBuf,
    /// Accept a settled yellow where green is required: no shard
    /// initializing or relocating for `settled_polls` polls in a row, and the
    /// node to restart holds no shard's only started copy. Default `false`.
    pub allow_yellow: bool,
    /// Polls in a row without a shard initializing or relocating before a
    /// yellow cluster counts as settled (with `allow_yellow`). Default `3`.
    pub settled_polls: u32,
    /// Pause between polls. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long to wait for green before a node. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub health_timeout: Duration,
    /// Time-out of the settings and flush calls. Default `1m`.
    #[serde(with = "humantime_serde")]
    pub api_timeout: Duration,
    /// Time-out of the restart action. Default `10m`.
    #[serde(with = "humantime_serde")]
    pub restart_timeout: Duration,
    /// How long a node may take to leave. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub leave_timeout: Duration,
    /// How long a node may take to rejoin. Default `10m`.
    #[serde(with = "humantime_serde")]
    pub rejoin_timeout: Duration,
    /// How long the cluster may take to be green again. Default `30m`.
    #[serde(with = "humantime_serde")]
    pub green_timeout: Duration,
    /// How often to try restoring allocation after a failure. Default `5`.
    pub restore_attempts: u32,
}

impl Default for RestartConfig {
    fn default() -> Self {
        let roll = RollSettings::default();
        RestartConfig {
            action: RestartActionConfig::default(),
            hosts: BTreeMap::new(),
            state_path: PathBuf::from("opsbot-roll.json"),
            allow_yellow: roll.allow_yellow,
            settled_polls: roll.settled_polls,
            poll_interval: Duration::from_millis(roll.poll_interval_ms),
            health_timeout: Duration::from_millis(roll.health_timeout_ms),
            api_timeout: Duration::from_millis(roll.api_timeout_ms),
            restart_timeout: Duration::from_millis(roll.restart_timeout_ms),
            leave_timeout: Duration::from_millis(roll.leave_timeout_ms),
            rejoin_timeout: Duration::from_millis(roll.rejoin_timeout_ms),
            green_timeout: Duration::from_millis(roll.green_timeout_ms),
            restore_attempts: roll.restore_attempts,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RestartConfig {
    /// The roll settings, with `allow_yellow` from the command when given.
    pub fn roll_settings(&self, allow_yellow: bool) -> RollSettings {
        RollSettings {
            allow_yellow: allow_yellow || self.allow_yellow,
            settled_polls: self.settled_polls,
            poll_interval_ms: millis(self.poll_interval),
            health_timeout_ms: millis(self.health_timeout),
            api_timeout_ms: millis(self.api_timeout),
            restart_timeout_ms: millis(self.restart_timeout),
            leave_timeout_ms: millis(self.leave_timeout),
            rejoin_timeout_ms: millis(self.rejoin_timeout),
            green_timeout_ms: millis(self.green_timeout),
            restore_attempts: self.restore_attempts,
        }
    }
}

/// `slowlog:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowlogConfig {
    /// Slow-log files (plain or gzip) read by `/slowlog` and by the CLI when
    /// no files are given. Default: none.
    pub paths: Vec<PathBuf>,
    /// A slow-log index (or pattern) to read instead of files. Default: none.
    pub index: Option<String>,
    /// Most documents read from the slow-log index. Default `10000`.
    pub index_max_docs: usize,
    /// Fingerprints shown. Default `10`.
    pub top: usize,
    /// Window of `/slowlog` without one. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub default_window: Duration,
    /// Counting by request: the largest gap on one node between the shard
    /// executions of one search (from the end of one to the start of the
    /// next, starts being log time minus took). Default `2s`.
    #[serde(with = "humantime_serde")]
    pub request_window: Duration,
}

impl Default for SlowlogConfig {
    fn default() -> Self {
        SlowlogConfig {
            paths: Vec::new(),
            index: None,
            index_max_docs: 10_000,
            top: 10,
            default_window: Duration::from_secs(24 * 3600),
            request_window: crate::slowlog::digest::DEFAULT_REQUEST_WINDOW,
        }
    }
}

/// One allow-listed Telegram user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Telegram user id.
    pub id: u64,
    /// `viewer` or `operator`.
    pub role: Role,
    /// A name for people reading the config. Default: none.
    #[serde(default)]
    pub name: Option<String>,
}

/// `telegram:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// Chat ids the bot answers in. Default: none (the bot answers nobody).
    pub chats: Vec<i64>,
    /// Users and roles. Default: none.
    pub users: Vec<UserConfig>,
    /// How long a confirmation button stays valid. Default `2m`.
    #[serde(with = "humantime_serde")]
    pub confirm_ttl: Duration,
    /// Long-polling time-out of `getUpdates`. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub poll_timeout: Duration,
    /// Bot API base URL. Default `https://api.telegram.org` (tests point it
    /// at a local server).
    pub api_url: Option<String>,
    /// Replies longer than this many characters are sent as a file.
    /// Default `3500` (Telegram's limit is 4096).
    pub max_message_chars: usize,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            chats: Vec::new(),
            users: Vec::new(),
            confirm_ttl: Duration::from_secs(120),
            poll_timeout: Duration::from_secs(30),
            api_url: None,
            max_message_chars: 3500,
        }
    }
}

impl TelegramConfig {
    /// The allow-list as an [`AccessPolicy`].
    pub fn access_policy(&self) -> AccessPolicy {
        AccessPolicy {
            chats: self.chats.iter().copied().collect(),
            users: self.users.iter().map(|user| (user.id, user.role)).collect(),
        }
    }
}

/// `audit:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// JSON-lines audit file. Default `opsbot-audit.jsonl`.
    pub path: PathBuf,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: PathBuf::from("opsbot-audit.jsonl"),
        }
    }
}

impl Config {
    /// Parses YAML (an empty document gives the defaults), reporting every
    /// problem serde finds; see [`Config::validate`] for the rest.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text)
            .into_result()
            .map_err(|problems| ConfigError::Invalid {
                path: None,
                problems,
            })
    }

    /// Reads, parses and validates a file, reporting every problem of both
    /// steps in one error.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut parsed = Config::parse(&text);
        if let Some(config) = &parsed.value {
            let problems = config.problems();
            parsed.add_checked(problems);
        }
        parsed
            .into_result()
            .map_err(|problems| ConfigError::Invalid {
                path: Some(path.to_path_buf()),
                problems,
            })
    }

    fn parse(text: &str) -> crate::yaml_config::Parsed<Config> {
        // an empty document is an empty map: every default
        let text = if text.trim().is_empty() { "{}" } else { text };
        crate::yaml_config::parse(text)
    }

    /// Checks values that parse but make no sense, all of them. Pure.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            path: None,
            problems,
        })
    }

    fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut invalid =
            |path: &str, message: &str| problems.push(ConfigProblem::new(path, message));
        if !(self.cluster.url.starts_with("http://") || self.cluster.url.starts_with("https://")) {
            invalid("cluster.url", "must start with http:// or https://");
        }
        let restart = &self.restart;
        if restart.poll_interval.is_zero() {
            invalid("restart.poll_interval", "must be more than 0s");
        } else if restart.poll_interval >= restart.rejoin_timeout
            || restart.poll_interval >= restart.green_timeout
            || restart.poll_interval >= restart.leave_timeout
        {
            invalid(
                "restart.poll_interval",
                "must be shorter than every wait time-out",
            );
        }
        if restart.settled_polls == 0 {
            invalid("restart.settled_polls", "must be at least 1");
        }
        if let RestartActionConfig::Shell { command } = &restart.action
            && command.trim().is_empty()
        {
            invalid("restart.action.command", "is empty");
        }
        if self.slowlog.top == 0 {
            invalid("slowlog.top", "must be at least 1");
        }
        if self.telegram.confirm_ttl.is_zero() {
            invalid("telegram.confirm_ttl", "must be more than 0s");
        }
        let chats: std::collections::BTreeSet<_> = self.telegram.chats.iter().collect();
        if chats.len() != self.telegram.chats.len() {
            invalid("telegram.chats", "lists a chat twice");
        }
        let users: std::collections::BTreeSet<_> =
            self.telegram.users.iter().map(|u| u.id).collect();
        if users.len() != self.telegram.users.len() {
            invalid("telegram.users", "lists a user twice");
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let config = Config::from_yaml("").expect("defaults");
        assert_eq!(config.cluster.url, "http://127.0.0.1:9200");
        assert_eq!(config.restart.green_timeout, Duration::from_secs(1800));
        assert_eq!(config.restart.action, RestartActionConfig::default());
        assert_eq!(config.slowlog.top, 10);
        assert_eq!(config.telegram.confirm_ttl, Duration::from_secs(120));
        assert_eq!(config.audit.path, PathBuf::from("opsbot-audit.jsonl"));
        assert_eq!(
            config.metrics.listen, None,
            "no /metrics endpoint unless asked"
        );
        config.validate().expect("defaults are valid");

        let config = Config::from_yaml("metrics: {listen: \"127.0.0.1:9467\"}\n").expect("parses");
        assert_eq!(
            config.metrics.listen.map(|address| address.port()),
            Some(9467)
        );
        let error =
            Config::from_yaml("metrics: {listen: localhost}\n").expect_err("not an address");
        assert!(error.to_string().contains("metrics.listen"), "{error}");
    }

    #[test]
    fn full_file_parses() {
        let yaml = r#"
cluster:
  url: https://es.example:9200
  username: opsbot
  request_timeout: 10s
restart:
  action:
    kind: shell
    command: "ssh {host} sudo systemctl restart elasticsearch"
  hosts:
    es-hot-1: 10.1.0.11
  state_path: /var/lib/opsbot/roll.json
  poll_interval: 2s
  green_timeout: 1h
slowlog:
  paths: [/var/log/elasticsearch/prod_index_search_slowlog.json]
  top: 5
  default_window: 6h
telegram:
  chats: [-1001234]
  users:
    - { id: 42, role: operator, name: ann }
    - { id: 43, role: viewer }
audit:
  path: /var/log/opsbot/audit.jsonl
"#;
        let config = Config::from_yaml(yaml).expect("parses");
        config.validate().expect("valid");
        assert_eq!(
            config.restart.roll_settings(false).green_timeout_ms,
            3_600_000
        );
        assert!(config.restart.roll_settings(true).allow_yellow);
        let policy = config.telegram.access_policy();
        assert_eq!(policy.users.get(&42), Some(&Role::Operator));
        assert!(policy.chats.contains(&-1001234));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        let error = Config::from_yaml("cluster:\n  urll: x\n").expect_err("unknown field");
        assert!(error.to_string().contains("urll"), "{error}");
        let error = Config::from_yaml("restart:\n  action: {kind: shell, command: x, extra: 1}\n")
            .expect_err("unknown field in action");
        assert!(error.to_string().contains("extra"), "{error}");
        let config = Config::from_yaml("cluster:\n  url: localhost:9200\n").expect("parses");
        assert!(config.validate().is_err());
        let config = Config::from_yaml(
            "telegram:\n  users: [{id: 1, role: viewer}, {id: 1, role: operator}]\n",
        )
        .expect("parses");
        assert!(config.validate().is_err());
        assert!(Config::from_yaml("telegram:\n  users: [{id: 1, role: admin}]\n").is_err());
    }

    /// Issue 13 item 3: every mistake in one run, each once.
    #[test]
    fn every_problem_is_reported_in_one_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("opsbot.yaml");
        std::fs::write(
            &path,
            "cluster:\n  url: localhost:9200\n  urll: x\n  request_timeout: fast\nslowlog: {top: 0}\ntelegram:\n  users: [{id: 1, role: admin}]\n",
        )
        .expect("write");
        let error = Config::load(&path).expect_err("invalid");
        let ConfigError::Invalid { problems, .. } = &error else {
            panic!("{error}");
        };
        let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "cluster.urll: unknown field `urll`, expected one of `url`, `username`, `request_timeout`",
                "cluster.request_timeout: invalid value: string \"fast\", expected a duration",
                "telegram.users[0].role: unknown variant `admin`, expected `viewer` or `operator`",
                "cluster.url: must start with http:// or https://",
                "slowlog.top: must be at least 1",
            ]
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "**REDACTED** **REDACTED**");
        let secrets = Secrets::default();
        let error = secrets.require_telegram_token().expect_err("missing");
        assert_eq!(
            error.to_string(),
            "environment variable OPSBOT_TELEGRAM_TOKEN is not set"
        );
    }
}
