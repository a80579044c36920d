//! `esync` child processes on a config file (`esync run`, `esync publish`),
//! and the config of a test daemon.

use crate::db::OrdersTable;
use crate::env::{free_port, unique};
use crate::process::{LoggedChild, metrics};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// An `esync <subcommand> --config <file>` child process, the source URL in
/// `ESYNC_TEST_DATABASE_URL`, stderr logged next to the config; restartable
/// with [`EsyncProcess::spawn`]. Process control through Deref.
pub struct EsyncProcess {
    /// The process and its log.
    pub process: LoggedChild,
    binary: PathBuf,
    args: Vec<OsString>,
    pub config_path: PathBuf,
    pub database_url: String,
    pub metrics_port: u16,
    _dir: Option<tempfile::TempDir>,
}

/// An `esync run` child process.
pub type Daemon = EsyncProcess;

impl EsyncProcess {
    /// Starts `binary` with `args` (e.g. `["run"]`) and `--config
    /// <config_path>`. `dir`, when given, is removed with the process.
    pub fn on_config(
        binary: &Path,
        name: &'static str,
        args: &[&str],
        config_path: PathBuf,
        database_url: String,
        metrics_port: u16,
        dir: Option<tempfile::TempDir>,
    ) -> EsyncProcess {
        let log_path = config_path.with_file_name(format!("{}.log", name.replace(' ', "-")));
        let mut args: Vec<OsString> = args.iter().map(OsString::from).collect();
        args.extend([OsString::from("--config"), config_path.clone().into()]);
        let mut process = EsyncProcess {
            process: LoggedChild::new(name, log_path),
            binary: binary.to_owned(),
            args,
            config_path,
            database_url,
            metrics_port,
            _dir: dir,
        };
        process.spawn();
        process
    }

    /// Starts the process (again, or a second one on the same config).
    pub fn spawn(&mut self) {
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .env("ESYNC_TEST_DATABASE_URL", &self.database_url);
        self.process.start(&mut command);
    }

    /// Body of `/metrics`.
    pub async fn metrics(&self) -> String {
        metrics(self.metrics_port).await
    }

    /// Waits until `/healthz` answers 200.
    pub async fn wait_healthy(&mut self, timeout: Duration) {
        let port = self.metrics_port;
        self.process.wait_healthy(port, timeout).await;
    }
}

impl std::ops::Deref for EsyncProcess {
    type Target = LoggedChild;
    fn deref(&self) -> &LoggedChild {
        &self.process
    }
}

impl std::ops::DerefMut for EsyncProcess {
    fn deref_mut(&mut self) -> &mut LoggedChild {
        &mut self.process
    }
}

/// A temporary directory for a child's config and log; kept for a
/// post-mortem when `ESYNC_TEST_KEEP_LOGS` is set.
pub fn process_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().expect("temp dir");
    if std::env::var_os("ESYNC_TEST_KEEP_LOGS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("config and log kept in {}", dir.path().display());
    }
    dir
}

/// What a test daemon's config holds.
pub struct DaemonSetup<'a> {
    pub table: &'a OrdersTable,
    pub topic: &'a str,
    pub brokers: &'a str,
    pub es_url: &'a str,
    pub index: &'a str,
    pub dead_letter_topic: Option<&'a str>,
    pub workers: usize,
    pub max_ids: usize,
    pub format: &'a str,
    /// Consumer group; a unique one per daemon when `None`.
    pub group: Option<&'a str>,
    pub queue_capacity: usize,
    /// `group.instance.id` per daemon (see the config comment); off for
    /// scenarios that need every restart to rebalance the group.
    pub static_membership: bool,
    /// Extra `kafka.options` lines, e.g. `partition.assignment.strategy`.
    pub kafka_options: Vec<(&'a str, &'a str)>,
    /// The mapping's `index_definition` (YAML flow map), if any.
    pub index_definition: Option<&'a str>,
    /// `batch.catch_up_wait`, when not the default.
    pub catch_up_wait: Option<&'a str>,
}

impl<'a> DaemonSetup<'a> {
    pub fn new(
        table: &'a OrdersTable,
        topic: &'a str,
        brokers: &'a str,
        es_url: &'a str,
        index: &'a str,
    ) -> DaemonSetup<'a> {
        DaemonSetup {
            table,
            topic,
            brokers,
            es_url,
            index,
            dead_letter_topic: None,
            workers: 3,
            max_ids: 200,
            format: "{type: plain}",
            group: None,
            queue_capacity: 500,
            static_membership: true,
            kafka_options: Vec::new(),
            index_definition: None,
            catch_up_wait: None,
        }
    }

    /// The config file's text, metrics on `metrics_port`.
    pub fn config(&self, metrics_port: u16) -> String {
        let dead_letter = self
            .dead_letter_topic
            .map(|topic| format!("dead_letter: {{topic: {topic}}}\n"))
            .unwrap_or_default();
        format!(
            r#"source:
  url: ${{ESYNC_TEST_DATABASE_URL}}
  max_connections: 4
kafka:
  brokers: "{brokers}"
  group_id: {group}
  commit_interval: 200ms
  options:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
{instance}{options}{debug}
elasticsearch:
  urls: ["{es}"]
  request_timeout: 5s
mappings:
  - name: orders
    topics: [{topic}]
    format: {format}
    table: {table}
    columns: [id, name, amount, version, deleted, updated_at]
    index: {index}
    version: {{column: version, kind: counter}}
    delete: {{strategy: soft, column: deleted}}
    exclude: [deleted]
    lag_column: updated_at
{definition}batch:
  max_ids: {max_ids}
  max_wait: 50ms
  queue_capacity: {queue_capacity}
{catch_up_wait}workers: {workers}
retry: {{initial_backoff: 50ms, max_backoff: 1s}}
metrics: {{listen: "127.0.0.1:{metrics_port}"}}
shutdown_grace: 5s
{dead_letter}"#,
            brokers = self.brokers,
            group = self.group.map_or_else(|| unique("group"), str::to_owned),
            queue_capacity = self.queue_capacity,
            catch_up_wait = self
                .catch_up_wait
                .map(|wait| format!("  catch_up_wait: {wait}\n"))
                .unwrap_or_default(),
            options = self
                .kafka_options
                .iter()
                .map(|(key, value)| format!("    {key}: \"{value}\"\n"))
                .collect::<String>(),
            es = self.es_url,
            definition = self
                .index_definition
                .map(|definition| format!("    index_definition: {definition}\n"))
                .unwrap_or_default(),
            topic = self.topic,
            format = self.format,
            table = self.table.name,
            index = self.index,
            max_ids = self.max_ids,
            workers = self.workers,
            // Static membership: a restarted daemon takes over its old member at once.
            // noida-db never evicts a SIGKILLed dynamic member that leads its group
            // (real Kafka does after session.timeout.ms), which would stall restarts.
            instance = if self.static_membership {
                format!("    group.instance.id: {}\n", unique("instance"))
            } else {
                String::new()
            },
            debug = std::env::var("ESYNC_TEST_KAFKA_DEBUG")
                .map(|debug| format!("    debug: {debug}"))
                .unwrap_or_default(),
        )
    }
}

impl EsyncProcess {
    /// `esync run` (the binary at `esync`) on `setup`'s config.
    pub fn start(esync: &str, setup: &DaemonSetup<'_>) -> Daemon {
        let dir = process_dir();
        let metrics_port = free_port();
        let config_path = dir.path().join("esync.yaml");
        std::fs::write(&config_path, setup.config(metrics_port)).expect("write config");
        EsyncProcess::on_config(
            Path::new(esync),
            "esync run",
            &["run"],
            config_path,
            setup.table.db.url(),
            metrics_port,
            Some(dir),
        )
    }
}

/// Runs `esync <args> --config <config>` in the config's directory to its
/// end: (success, stdout + stderr).
pub fn run_esync(esync: &str, args: &[&str], config: &Path, database_url: &str) -> (bool, String) {
    let output = Command::new(esync)
        .args(args)
        .arg("--config")
        .arg(config)
        // files it writes (a rebuild's checkpoint) go beside the config
        .current_dir(config.parent().unwrap_or(Path::new(".")))
        .env("ESYNC_TEST_DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|error| panic!("run esync {args:?}: {error}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}
