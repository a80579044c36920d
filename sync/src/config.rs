//! The `esync.yaml` configuration: structure, defaults, loading and validation.
//!
//! Loading is parse, then pure validation that reports every problem at once
//! with its path in the file; connecting is somebody else's job (`check`).
//! Unknown keys are errors. Parsing goes on past a bad value
//! ([`crate::yaml_config`]), so one run names every mistake. Secrets come from the environment, either through
//! `${VAR}` in the file or the `ESYNC_*` variables, and are held as [`Secret`].

use crate::decode::MessageFormat;
use crate::document::{DeleteStrategy, VersionKind};
use crate::id::IdType;
use crate::publish::config::{PublishConfig, PublishedMapping};
use crate::retry::RetryPolicy;
use crate::secret::Secret;
pub use crate::yaml_config::ConfigProblem;
use crate::yaml_config::problem_list;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The database rows are re-read from.
    pub source: SourceConfig,
    /// The Kafka cluster the change ids come from.
    pub kafka: KafkaConfig,
    /// The Elasticsearch (or OpenSearch) cluster written to.
    pub elasticsearch: ElasticsearchConfig,
    /// One entry per table -> index.
    pub mappings: Vec<MappingConfig>,
    /// Batching of ids (see [`BatchConfig`]).
    #[serde(default)]
    pub batch: BatchConfig,
    /// Workers that re-read and write in parallel; an id always goes to the
    /// same worker (default 4).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Backoff for retried database reads, bulk items and dead-letter writes.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Where undecodable messages and unwritable ids go (default: none; they
    /// are then logged and counted only).
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
    /// The Prometheus `/metrics` and `/healthz` endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// How long a shutdown may take to finish in-flight batches (default `30s`).
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How `esync publish` gets changed ids into Kafka: incremental-column
    /// polling and/or an outbox relay (default: none; see `PUBLISH.md`).
    #[serde(default)]
    pub publish: Option<PublishConfig>,
}

/// `source:`
#[derive(Debug, Clone, Deserialize)]
pub struct SourceConfig {
    /// `postgres://`, `mysql://` (MySQL and MariaDB) or `sqlite://` URL.
    /// Default: the `ESYNC_DATABASE_URL` variable. `${VAR}` is expanded.
    #[serde(default)]
    pub url: Option<String>,
    /// Connection pool size (default 8).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Time-out for getting a connection (default `10s`).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Ids per re-read query on MySQL/MariaDB/SQLite, which bind one
    /// parameter per id (default 1000). Postgres binds one array.
    #[serde(default = "default_read_chunk_size")]
    pub read_chunk_size: usize,
}

/// `kafka:`
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`. `${VAR}` is expanded.
    pub brokers: String,
    /// Consumer group (default `esync`).
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Where a group without committed offsets starts: `earliest` (default) or `latest`.
    #[serde(default = "default_offset_reset")]
    pub auto_offset_reset: String,
    /// How often finished offsets are committed (default `1s`).
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Extra librdkafka options passed through as they are, e.g.
    /// `security.protocol: SASL_SSL`, `sasl.password: ${KAFKA_PASSWORD}`.
    /// `${VAR}` is expanded in values. Offsets and group are managed by esync
    /// and cannot be set here.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `elasticsearch:`
#[derive(Debug, Clone, Deserialize)]
pub struct ElasticsearchConfig {
    /// One or more node URLs, used round robin. `${VAR}` is expanded.
    pub urls: Vec<String>,
    /// Basic auth user (password from `password` or `ESYNC_ES_PASSWORD`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password; prefer `${VAR}` or `ESYNC_ES_PASSWORD`.
    #[serde(default)]
    pub password: Option<String>,
    /// Encoded API key (`id:key` base64); prefer `${VAR}` or `ESYNC_ES_API_KEY`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// PEM file of the CA that signed the cluster's certificate.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Skip TLS certificate checks (default false; never in production).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Time-out of one request (default `30s`).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest `_bulk` body; bigger batches are split (default 10 MiB).
    #[serde(default = "default_max_bulk_bytes")]
    pub max_bulk_bytes: usize,
    /// The target indexes' `index.gc_deletes` (default `60s`, Elasticsearch's
    /// default): how long a delete's tombstone refuses older versions. A
    /// re-inserted row refused by a tombstone is written again after this.
    #[serde(default = "default_gc_deletes", with = "humantime_serde")]
    pub gc_deletes: Duration,
}

/// One table -> index mapping (`mappings: - ...`).
#[derive(Debug, Clone, Deserialize)]
pub struct MappingConfig {
    /// A name for logs and metrics (default: the index).
    #[serde(default)]
    pub name: Option<String>,
    /// Topics carrying this table's changed ids.
    pub topics: Vec<String>,
    /// Message format (default `{type: plain, from: key}`).
    #[serde(default)]
    pub format: MessageFormat,
    /// The id column (default `{column: id, type: integer}`).
    #[serde(default)]
    pub id: IdConfig,
    /// Table to re-read from; esync builds `SELECT <columns> FROM <table>
    /// WHERE <id> = ANY/IN (...)`. Give either `table` or `query`.
    #[serde(default)]
    pub table: Option<String>,
    /// Columns to read with `table` (default: all).
    #[serde(default)]
    pub columns: Vec<String>,
    /// A custom re-read query whose `WHERE` has `<id> IN {ids}`; it must return
    /// the id column under its configured name.
    #[serde(default)]
    pub query: Option<String>,
    /// Target index or alias.
    pub index: String,
    /// Column whose value is the routing key (default: none).
    #[serde(default)]
    pub routing_column: Option<String>,
    /// The version column and what it holds.
    pub version: VersionConfig,
    /// How deletes are recognised (default `{strategy: hard}`).
    #[serde(default = "default_delete")]
    pub delete: DeleteStrategy,
    /// Column -> field renames (default none).
    #[serde(default)]
    pub rename: HashMap<String, String>,
    /// Columns left out of documents (default none).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Text columns holding JSON to index as objects (MariaDB's `JSON` is text).
    #[serde(default)]
    pub json_columns: Vec<String>,
    /// Timestamp column for the end-to-end lag histogram (default: none).
    #[serde(default)]
    pub lag_column: Option<String>,
    /// Settings and mappings of the index, for `esync index create` and
    /// `rebuild` (default: none; the index commands then refuse the mapping
    /// and the daemon writes to `index` as it finds it).
    #[serde(default)]
    pub index_definition: Option<IndexDefinition>,
}

/// `index_definition:` either inline `settings`/`mappings` (YAML, in
/// Elasticsearch's JSON shape), or `file`: a JSON file holding
/// `{"settings": ..., "mappings": ...}`, relative to the config file. esync
/// adds the aliases and a `_meta.esync` entry itself.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct IndexDefinition {
    /// JSON file with `settings` and `mappings` (read when the config is loaded).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Index settings, e.g. `{number_of_shards: 3, analysis: ...}` (default `{}`).
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
    /// Index mappings, e.g. `{dynamic: strict, properties: ...}` (default `{}`).
    #[serde(default)]
    pub mappings: Option<serde_json::Value>,
}

impl IndexDefinition {
    /// The body of a create-index request, without aliases.
    pub fn create_body(&self) -> serde_json::Value {
        let empty = || serde_json::Value::Object(Default::default());
        serde_json::json!({
            "settings": self.settings.clone().unwrap_or_else(empty),
            "mappings": self.mappings.clone().unwrap_or_else(empty),
        })
    }

    /// Takes `settings` and `mappings` from the text of the JSON `file`.
    fn fill_from_file(&mut self, text: &str) -> Result<(), String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|error| format!("is not valid JSON: {error}"))?;
        let serde_json::Value::Object(mut object) = value else {
            return Err("must hold a JSON object with settings and mappings".into());
        };
        if let Some(key) = object
            .keys()
            .find(|key| !matches!(key.as_str(), "settings" | "mappings"))
        {
            return Err(format!(
                "has {key:?}; only settings and mappings belong there (esync manages the aliases)"
            ));
        }
        self.settings = object.remove("settings");
        self.mappings = object.remove("mappings");
        Ok(())
    }
}

impl MappingConfig {
    /// The mapping's display name.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.index)
    }

    /// The decoder of the mapping's Kafka messages.
    pub fn decoder(&self) -> crate::decode::Decoder {
        crate::decode::Decoder::new(self.format.clone(), self.id.id_type, &self.id.column)
    }
}

/// `id:`
#[derive(Debug, Clone, Deserialize)]
pub struct IdConfig {
    /// Column name (default `id`).
    #[serde(default = "default_id_column")]
    pub column: String,
    /// `integer` (default; a whole number from -2^63 to 2^63-1, from any
    /// integer or integral NUMERIC/DECIMAL column) or `string` (exact text,
    /// byte for byte; also uuids, CHAR(n) and numbers beyond `integer`).
    #[serde(default = "default_id_type", rename = "type")]
    pub id_type: IdType,
}

impl Default for IdConfig {
    fn default() -> Self {
        IdConfig {
            column: default_id_column(),
            id_type: default_id_type(),
        }
    }
}

/// `version:`
#[derive(Debug, Clone, Deserialize)]
pub struct VersionConfig {
    /// Column name, e.g. `version` or `updated_at`.
    pub column: String,
    /// `counter` or `timestamp` (microseconds are used).
    pub kind: VersionKind,
}

/// `batch:`
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct BatchConfig {
    /// Distinct ids per batch and worker (default 1000).
    pub max_ids: usize,
    /// Longest time a batch waits to fill (default `200ms`).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Ids queued per worker before the consumer pauses (default 10000).
    pub queue_capacity: usize,
    /// After partitions are assigned, how long re-reads may wait for the
    /// consumer to read the backlog that was waiting, so that repeats of an
    /// id in it are written once (default `2s`; `0s`: never wait). See
    /// [`crate::catch_up`].
    #[serde(with = "humantime_serde")]
    pub catch_up_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_ids: 1000,
            max_wait: Duration::from_millis(200),
            queue_capacity: 10_000,
            catch_up_wait: Duration::from_secs(2),
        }
    }
}

/// `dead_letter:`
#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetterConfig {
    /// Topic receiving undecodable messages (original key and value) and
    /// unwritable ids, with the reason in headers.
    pub topic: String,
}

/// `metrics:`
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Address of `/metrics` and `/healthz` (default `127.0.0.1:9464`; `null` disables).
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

fn default_workers() -> usize {
    4
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> u32 {
    8
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_read_chunk_size() -> usize {
    1000
}
fn default_group_id() -> String {
    "esync".into()
}
fn default_offset_reset() -> String {
    "earliest".into()
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_bulk_bytes() -> usize {
    10 * 1024 * 1024
}
fn default_gc_deletes() -> Duration {
    Duration::from_secs(60)
}
fn default_id_column() -> String {
    "id".into()
}
fn default_id_type() -> IdType {
    IdType::Integer
}
fn default_delete() -> DeleteStrategy {
    DeleteStrategy::Hard
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Problems found; all of them.
    #[error("invalid config file {path}:\n{}", problem_list(problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

/// Settings after secrets were resolved from the environment.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The database URL.
    pub database_url: Secret,
    /// Basic auth password.
    pub es_password: Option<Secret>,
    /// API key.
    pub es_api_key: Option<Secret>,
}

/// A loaded, validated configuration with its secrets.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The file's settings, `${VAR}` expanded in non-secret fields.
    pub config: Config,
    /// Resolved secrets.
    pub secrets: Secrets,
}

impl LoadedConfig {
    /// Reads, parses and validates `path`, taking variables from the process
    /// environment.
    pub fn from_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        };
        let mut loaded =
            LoadedConfig::from_yaml(&text, &|name| std::env::var(name).ok()).map_err(invalid)?;
        let directory = path.parent().unwrap_or(Path::new("."));
        let problems = loaded.read_index_definition_files(&|file| {
            std::fs::read_to_string(directory.join(file)).map_err(|error| error.to_string())
        });
        if problems.is_empty() {
            Ok(loaded)
        } else {
            Err(invalid(problems))
        }
    }

    /// Fills every `index_definition.file` with what `read` returns for it
    /// (pure given `read`); returns the problems found.
    pub fn read_index_definition_files(
        &mut self,
        read: &dyn Fn(&Path) -> Result<String, String>,
    ) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        for (index, mapping) in self.config.mappings.iter_mut().enumerate() {
            let Some(definition) = mapping.index_definition.as_mut() else {
                continue;
            };
            let Some(file) = definition.file.clone() else {
                continue;
            };
            let result = read(&file).and_then(|text| definition.fill_from_file(&text));
            if let Err(message) = result {
                problems.push(ConfigProblem {
                    path: format!("mappings[{index}].index_definition.file"),
                    message: format!("{}: {message}", file.display()),
                });
            }
        }
        problems
    }

    /// Parses and validates YAML text with variables from `env` (pure).
    pub fn from_yaml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LoadedConfig, Vec<ConfigProblem>> {
        let mut parsed = crate::yaml_config::parse::<Config>(text);
        let Some(mut config) = parsed.value.take() else {
            return Err(parsed.problems);
        };
        let mut problems = Vec::new();
        let secrets = resolve_environment(&mut config, env, &mut problems);
        problems.extend(validate(&config));
        // problems about values already reported while parsing are dropped
        parsed.add_checked(problems);
        match secrets {
            Some(secrets) if parsed.problems.is_empty() => Ok(LoadedConfig { config, secrets }),
            _ => Err(parsed.problems),
        }
    }
}

/// Expands `${VAR}` (and `$$` to `$`) with `env`; the error names the missing variable.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| "unclosed ${".to_owned())?;
            let name = &body[..end];
            let value =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve_environment(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Secrets> {
    let mut expand = |path: &str, value: &str| match interpolate(value, env) {
        Ok(value) => Some(value),
        Err(message) => {
            problems.push(ConfigProblem {
                path: path.into(),
                message,
            });
            None
        }
    };
    let database_url = match &config.source.url {
        Some(url) => expand("source.url", url),
        None => env("ESYNC_DATABASE_URL"),
    };
    let es_password = match &config.elasticsearch.password {
        Some(password) => expand("elasticsearch.password", password),
        None => env("ESYNC_ES_PASSWORD"),
    };
    let es_api_key = match &config.elasticsearch.api_key {
        Some(key) => expand("elasticsearch.api_key", key),
        None => env("ESYNC_ES_API_KEY"),
    };
    if let Some(brokers) = expand("kafka.brokers", &config.kafka.brokers) {
        config.kafka.brokers = brokers;
    }
    for (index, url) in config.elasticsearch.urls.iter_mut().enumerate() {
        if let Some(expanded) = expand(&format!("elasticsearch.urls[{index}]"), url) {
            *url = expanded;
        }
    }
    if let Some(username) = &config.elasticsearch.username
        && let Some(expanded) = expand("elasticsearch.username", username)
    {
        config.elasticsearch.username = Some(expanded);
    }
    for (key, value) in config.kafka.options.iter_mut() {
        if let Some(expanded) = expand(&format!("kafka.options.{key}"), value) {
            *value = expanded;
        }
    }
    // The values themselves are secret; only their absence is reported.
    config.source.url = None;
    config.elasticsearch.password = None;
    config.elasticsearch.api_key = None;
    let Some(database_url) = database_url else {
        if !problems.iter().any(|problem| problem.path == "source.url") {
            problems.push(ConfigProblem {
                path: "source.url".into(),
                message: "no database URL: set source.url or ESYNC_DATABASE_URL".into(),
            });
        }
        return None;
    };
    Some(Secrets {
        database_url: Secret::new(database_url),
        es_password: es_password.map(Secret::new),
        es_api_key: es_api_key.map(Secret::new),
    })
}

/// librdkafka options esync sets itself; overriding them would break the
/// delivery guarantee.
const MANAGED_KAFKA_OPTIONS: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
    "auto.offset.reset",
];

/// Checks that need no I/O; returns every problem found.
pub fn validate(config: &Config) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut problem =
        |path: String, message: String| problems.push(ConfigProblem { path, message });

    if config.workers == 0 {
        problem("workers".into(), "must be at least 1".into());
    }
    if config.batch.max_ids == 0 {
        problem("batch.max_ids".into(), "must be at least 1".into());
    }
    if config.batch.max_wait.is_zero() {
        problem("batch.max_wait".into(), "must be longer than 0s".into());
    }
    if config.batch.queue_capacity == 0 {
        problem("batch.queue_capacity".into(), "must be at least 1".into());
    }
    if config.source.max_connections == 0 {
        problem("source.max_connections".into(), "must be at least 1".into());
    }
    if config.source.read_chunk_size == 0 || config.source.read_chunk_size > 60_000 {
        problem(
            "source.read_chunk_size".into(),
            "must be between 1 and 60000 (bind parameter limits)".into(),
        );
    }
    if config.kafka.brokers.trim().is_empty() {
        problem(
            "kafka.brokers".into(),
            "must name at least one broker".into(),
        );
    }
    if config.kafka.group_id.trim().is_empty() {
        problem("kafka.group_id".into(), "must not be empty".into());
    }
    if !matches!(
        config.kafka.auto_offset_reset.as_str(),
        "earliest" | "latest"
    ) {
        problem(
            "kafka.auto_offset_reset".into(),
            format!(
                "must be earliest or latest, not {:?}",
                config.kafka.auto_offset_reset
            ),
        );
    }
    if config.kafka.commit_interval.is_zero() {
        problem(
            "kafka.commit_interval".into(),
            "must be longer than 0s".into(),
        );
    }
    for key in config.kafka.options.keys() {
        if MANAGED_KAFKA_OPTIONS.contains(&key.as_str()) {
            problem(
                format!("kafka.options.{key}"),
                "is managed by esync; use the kafka section's own keys".into(),
            );
        }
    }
    let session_timeout = config
        .kafka
        .options
        .get("session.timeout.ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map_or(Duration::from_secs(45), Duration::from_millis);
    if config.shutdown_grace >= session_timeout {
        problem(
            "shutdown_grace".into(),
            format!(
                "must be shorter than the Kafka session time-out ({}), or the group rebalances before the shutdown commits",
                humantime::format_duration(session_timeout)
            ),
        );
    }
    if config.elasticsearch.urls.is_empty() {
        problem(
            "elasticsearch.urls".into(),
            "must list at least one URL".into(),
        );
    }
    for (index, url) in config.elasticsearch.urls.iter().enumerate() {
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => problem(
                format!("elasticsearch.urls[{index}]"),
                format!("{url:?} is not an http(s) URL"),
            ),
        }
    }
    if config.elasticsearch.max_bulk_bytes < 1024 {
        problem(
            "elasticsearch.max_bulk_bytes".into(),
            "must be at least 1024".into(),
        );
    }
    if config.mappings.is_empty() {
        problem("mappings".into(), "must have at least one mapping".into());
    }
    let mut topic_owner: HashMap<&str, usize> = HashMap::new();
    let mut names = HashSet::new();
    for (index, mapping) in config.mappings.iter().enumerate() {
        let at = |field: &str| format!("mappings[{index}].{field}");
        if !names.insert(mapping.display_name()) {
            problem(
                at("name"),
                format!(
                    "{:?} is used by another mapping; set distinct names",
                    mapping.display_name()
                ),
            );
        }
        if mapping.topics.is_empty() {
            problem(at("topics"), "must list at least one topic".into());
        }
        for topic in &mapping.topics {
            if let Some(other) = topic_owner.insert(topic, index) {
                problem(
                    at("topics"),
                    format!("topic {topic:?} is already read by mappings[{other}]"),
                );
            }
            if config
                .dead_letter
                .as_ref()
                .is_some_and(|dead_letter| &dead_letter.topic == topic)
            {
                problem(
                    at("topics"),
                    format!("topic {topic:?} is also the dead-letter topic"),
                );
            }
        }
        if mapping.index.trim().is_empty() {
            problem(at("index"), "must not be empty".into());
        }
        if let Some(definition) = &mapping.index_definition {
            if definition.file.is_some()
                && (definition.settings.is_some() || definition.mappings.is_some())
            {
                problem(
                    at("index_definition"),
                    "give either file or settings/mappings, not both".into(),
                );
            }
            for (key, value) in [
                ("settings", &definition.settings),
                ("mappings", &definition.mappings),
            ] {
                if value.as_ref().is_some_and(|value| !value.is_object()) {
                    problem(
                        at(&format!("index_definition.{key}")),
                        "must be a map".into(),
                    );
                }
            }
            if let Err(message) = crate::lifecycle::names::check_alias_name(&mapping.index) {
                problem(at("index"), message);
            }
        }
        match (&mapping.table, &mapping.query) {
            (Some(_), Some(_)) => {
                problem(at("query"), "give either table or query, not both".into())
            }
            (None, None) => problem(
                at("table"),
                "give table (with optional columns) or query".into(),
            ),
            (None, Some(query)) if !query.contains("{ids}") => problem(
                at("query"),
                "must contain {ids} where the requested ids go, e.g. WHERE o.id IN {ids}".into(),
            ),
            (None, Some(_)) if !mapping.columns.is_empty() => problem(
                at("columns"),
                "only applies with table; list the columns in the query".into(),
            ),
            _ => {}
        }
        if mapping.table.is_some() && !mapping.columns.is_empty() {
            let mut required = vec![
                ("id.column", &mapping.id.column),
                ("version.column", &mapping.version.column),
            ];
            if let Some(routing) = &mapping.routing_column {
                required.push(("routing_column", routing));
            }
            if let DeleteStrategy::Soft { column } = &mapping.delete {
                required.push(("delete.column", column));
            }
            if let Some(lag) = &mapping.lag_column {
                required.push(("lag_column", lag));
            }
            for (what, column) in required {
                if !mapping.columns.contains(column) {
                    problem(at("columns"), format!("must include {column:?} ({what})"));
                }
            }
        }
    }
    if let Some(dead_letter) = &config.dead_letter
        && dead_letter.topic.trim().is_empty()
    {
        problem("dead_letter.topic".into(), "must not be empty".into());
    }
    if let Some(publish) = &config.publish {
        let mappings: Vec<PublishedMapping<'_>> = config
            .mappings
            .iter()
            .map(|mapping| PublishedMapping {
                name: mapping.display_name(),
                has_table: mapping.table.is_some(),
            })
            .collect();
        problems.extend(crate::publish::config::validate(publish, &mappings));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
source:
  url: postgres://app:${DB_PASSWORD}@db/shop
kafka:
  brokers: 127.0.0.1:9092
elasticsearch:
  urls: [http://127.0.0.1:9200]
mappings:
  - topics: [shop.orders]
    table: orders
    index: orders
    version: {column: version, kind: counter}
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "DB_PASSWORD" => Some("s3cret".into()),
            "ESYNC_ES_PASSWORD" => Some("espass".into()),
            _ => None,
        }
    }

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let loaded = LoadedConfig::from_yaml(MINIMAL, &env).unwrap();
        let config = &loaded.config;
        assert_eq!(
            loaded.secrets.database_url.expose(),
            "postgres://app:s3cret@db/shop"
        );
        assert_eq!(
            loaded.secrets.es_password.as_ref().map(Secret::expose),
            Some("espass")
        );
        assert!(
            config.source.url.is_none(),
            "secrets are not kept in the plain config"
        );
        assert_eq!(config.workers, 4);
        assert_eq!(config.batch.max_ids, 1000);
        assert_eq!(config.batch.max_wait, Duration::from_millis(200));
        assert_eq!(config.batch.catch_up_wait, Duration::from_secs(2));
        assert_eq!(config.kafka.group_id, "esync");
        assert_eq!(config.kafka.commit_interval, Duration::from_secs(1));
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        assert_eq!(
            config.metrics.listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        let mapping = &config.mappings[0];
        assert_eq!(mapping.id.column, "id");
        assert_eq!(mapping.id.id_type, IdType::Integer);
        assert_eq!(mapping.format, MessageFormat::default());
        assert_eq!(mapping.delete, DeleteStrategy::Hard);
        assert_eq!(mapping.display_name(), "orders");
        assert!(
            !format!("{loaded:?}").contains("s3cret"),
            "Debug must not print secrets"
        );
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let text = r#"
source: {url: "sqlite://x.db", max_connections: 0}
kafka:
  brokers: ""
  colour: blue
  options: {enable.auto.commit: "true"}
elasticsearch:
  urls: [ftp://x]
  typo_key: 1
dead_letter: {topic: dlq, partitions: 3}
mappings:
  - topics: [a]
    index: one
    version: {column: v, kind: counter}
  - topics: [a]
    table: t
    query: "select 1"
    index: one
    version: {column: v, kind: timestamp}
    columns: [id]
"#;
        let problems = LoadedConfig::from_yaml(text, &env).unwrap_err();
        let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let expected = [
            "kafka.colour: unknown key",
            "elasticsearch.typo_key: unknown key",
            "dead_letter.partitions: unknown key",
            "source.max_connections: must be at least 1",
            "kafka.brokers: must name at least one broker",
            "kafka.options.enable.auto.commit: is managed by esync",
            "elasticsearch.urls[0]: \"ftp://x\" is not an http(s) URL",
            "mappings[0].table: give table",
            "mappings[1].name: \"one\" is used by another mapping",
            "mappings[1].topics: topic \"a\" is already read by mappings[0]",
            "mappings[1].query: give either table or query, not both",
            "mappings[1].columns: must include \"v\" (version.column)",
        ];
        for wanted in expected {
            assert!(
                rendered.iter().any(|line| line.starts_with(wanted)),
                "missing {wanted:?} in {rendered:#?}"
            );
        }
    }

    #[test]
    fn type_errors_name_the_path() {
        let text = MINIMAL.replace("kind: counter", "kind: sometimes");
        let problems = LoadedConfig::from_yaml(&text, &env).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "mappings[0].version.kind");
        assert!(
            problems[0].message.contains("unknown variant"),
            "{}",
            problems[0].message
        );
    }

    /// Issue 13 item 3: six mistakes of different kinds, all in one run,
    /// each cause once (issue 13 item 2: the path is not repeated).
    #[test]
    fn every_mistake_is_reported_in_one_run() {
        let text = MINIMAL
            .replace(
                "  brokers: 127.0.0.1:9092",
                "  brokers: 127.0.0.1:9092\n  colour: blue",
            )
            .replace(
                "urls: [http://127.0.0.1:9200]",
                "urls: [http://127.0.0.1:9200]\n  request_timeout: fast",
            )
            .replace(
                "topics: [shop.orders]",
                "topics: []\n    id: {type: integr}",
            )
            + "workers: -1\nbatch: {max_ids: 0}\n";
        let problems = LoadedConfig::from_yaml(&text, &env).unwrap_err();
        let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "kafka.colour: unknown key",
                "elasticsearch.request_timeout: invalid value: string \"fast\", expected a duration",
                "mappings[0].id.type: unknown variant `integr`, expected `integer` or `string`",
                "workers: invalid value: integer `-1`, expected usize",
                "batch.max_ids: must be at least 1",
                "mappings[0].topics: must list at least one topic",
            ]
        );
    }

    #[test]
    fn missing_variables_are_named_not_guessed() {
        let no_env = |_: &str| None;
        let problems = LoadedConfig::from_yaml(MINIMAL, &no_env).unwrap_err();
        assert_eq!(
            problems[0].to_string(),
            "source.url: environment variable DB_PASSWORD is not set"
        );
        let text = MINIMAL.replace(
            "  url: postgres://app:${DB_PASSWORD}@db/shop\n",
            "  max_connections: 2\n",
        );
        let problems = LoadedConfig::from_yaml(&text, &no_env).unwrap_err();
        assert!(
            problems[0].message.contains("ESYNC_DATABASE_URL"),
            "{problems:?}"
        );
        let with_env =
            |name: &str| (name == "ESYNC_DATABASE_URL").then(|| "mysql://root@h/db".to_owned());
        assert_eq!(
            LoadedConfig::from_yaml(&text, &with_env)
                .unwrap()
                .secrets
                .database_url
                .expose(),
            "mysql://root@h/db"
        );
    }

    #[test]
    fn grace_must_be_shorter_than_session_timeout() {
        let text = MINIMAL.replace(
            "  brokers: 127.0.0.1:9092",
            "  brokers: 127.0.0.1:9092\n  options: {session.timeout.ms: \"6000\"}",
        );
        let problems = LoadedConfig::from_yaml(&text, &env).unwrap_err();
        assert!(
            problems[0]
                .to_string()
                .starts_with("shutdown_grace: must be shorter"),
            "{problems:?}"
        );
    }

    /// The documented example must stay loadable, with the defaults it claims.
    #[test]
    fn example_file_is_valid() {
        let env = |name: &str| {
            (name == "ESYNC_DATABASE_URL").then(|| "postgres://localhost/db".to_owned())
        };
        let loaded = LoadedConfig::from_yaml(include_str!("../esync.example.yaml"), &env).unwrap();
        let config = &loaded.config;
        assert_eq!(config.workers, default_workers());
        assert_eq!(config.batch.max_ids, BatchConfig::default().max_ids);
        assert_eq!(
            config.elasticsearch.max_bulk_bytes,
            default_max_bulk_bytes()
        );
        assert_eq!(config.elasticsearch.gc_deletes, default_gc_deletes());
        assert_eq!(config.shutdown_grace, default_shutdown_grace());
        assert_eq!(config.metrics.listen, MetricsConfig::default().listen);
    }

    fn with_definition(definition: &str) -> Result<LoadedConfig, Vec<ConfigProblem>> {
        with_definition_in(MINIMAL, definition)
    }

    fn with_definition_in(
        base: &str,
        definition: &str,
    ) -> Result<LoadedConfig, Vec<ConfigProblem>> {
        let text = base.replace(
            "    version: {column: version, kind: counter}\n",
            &format!("    version: {{column: version, kind: counter}}\n    index_definition: {definition}\n"),
        );
        assert_ne!(text, base, "the definition was inserted");
        LoadedConfig::from_yaml(&text, &env)
    }

    #[test]
    fn index_definitions_inline_or_from_a_file() {
        let inline = with_definition(
            "{settings: {number_of_shards: 2}, mappings: {properties: {name: {type: keyword}}}}",
        )
        .unwrap();
        let definition = inline.config.mappings[0].index_definition.clone().unwrap();
        assert_eq!(
            definition.create_body(),
            serde_json::json!({"settings": {"number_of_shards": 2}, "mappings": {"properties": {"name": {"type": "keyword"}}}})
        );

        let mut from_file = with_definition("{file: orders.json}").unwrap();
        let problems = from_file.read_index_definition_files(&|path| {
            assert_eq!(path, Path::new("orders.json"));
            Ok(r#"{"mappings": {"dynamic": "strict"}}"#.into())
        });
        assert!(problems.is_empty(), "{problems:?}");
        let body = from_file.config.mappings[0]
            .index_definition
            .as_ref()
            .unwrap()
            .create_body();
        assert_eq!(body["mappings"]["dynamic"], "strict");
        assert_eq!(body["settings"], serde_json::json!({}));
    }

    #[test]
    fn index_definition_mistakes_are_named() {
        let both = with_definition("{file: a.json, mappings: {}}").unwrap_err();
        assert!(
            both[0]
                .to_string()
                .contains("either file or settings/mappings"),
            "{both:?}"
        );
        let not_a_map = with_definition("{settings: 3}").unwrap_err();
        assert_eq!(
            not_a_map[0].to_string(),
            "mappings[0].index_definition.settings: must be a map"
        );
        let mut loaded = with_definition("{file: orders.json}").unwrap();
        let problems = loaded.read_index_definition_files(&|_| {
            Ok(r#"{"mappings": {}, "aliases": {"x": {}}}"#.into())
        });
        assert_eq!(
            problems[0].to_string(),
            "mappings[0].index_definition.file: orders.json: has \"aliases\"; only settings and mappings belong there (esync manages the aliases)"
        );
        let problems = loaded.read_index_definition_files(&|_| Err("No such file".into()));
        assert!(
            problems[0]
                .to_string()
                .ends_with("orders.json: No such file")
        );
        let upper = MINIMAL.replace("index: orders", "index: Orders");
        let upper = with_definition_in(&upper, "{mappings: {}}").unwrap_err();
        assert!(
            upper[0].to_string().contains("must be lowercase"),
            "{upper:?}"
        );
    }

    #[test]
    fn interpolation() {
        let env = |name: &str| (name == "A").then(|| "x".to_owned());
        assert_eq!(interpolate("a${A}b$${A}$c", &env).unwrap(), "axb${A}$c");
        assert_eq!(
            interpolate("${B}", &env).unwrap_err(),
            "environment variable B is not set"
        );
        assert_eq!(interpolate("${A", &env).unwrap_err(), "unclosed ${");
    }
}
