//! Shared set-up for the integration tests: real PostgreSQL/MariaDB, a real
//! Kafka-protocol broker and Elasticsearch API server, all from the
//! `ESYNC_TEST_*` variables printed by `scripts/services.sh up`.
//!
//! A missing variable fails the test with a message naming it: integration
//! tests never skip silently.

#![allow(dead_code)]

use esync::config::KafkaConfig;
use esync::db::{Database, Dialect};
use esync::es::EsClient;
use esync::id::Id;
use esync::kafka::{IdProducer, create_topics};
use esync::secret::Secret;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Reads a required test variable or fails with instructions.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `scripts/services.sh up` and `source .services/env` (scripts/test.sh does both)")
    })
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Which database a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Postgres,
    MariaDb,
}

impl Db {
    pub fn url(self) -> String {
        match self {
            Db::Postgres => required_env("ESYNC_TEST_PG"),
            Db::MariaDb => required_env("ESYNC_TEST_MYSQL"),
        }
    }
}

/// Kafka connection settings for `brokers`.
pub fn kafka_config(brokers: &str) -> KafkaConfig {
    serde_yaml::from_str(&format!("brokers: \"{brokers}\"")).expect("kafka config")
}

/// One row of the test table.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub id: i64,
    pub name: String,
    pub amount_cents: i64,
    pub version: i64,
    pub deleted: bool,
}

/// Runs one statement (or a multi-statement script) on `database`.
pub async fn exec(database: &Database, sql: &str) {
    let script = AssertSqlSafe(sql.to_owned());
    // a script may hold several statements: sent unprepared, which the
    // library's prepared-statement layer (`Database::execute`) never does
    let result = match database {
        Database::Postgres(pool) => sqlx::raw_sql(script).execute(pool).await.map(drop),
        Database::MySql(pool) => sqlx::raw_sql(script).execute(pool).await.map(drop),
        Database::Sqlite(pool) => sqlx::raw_sql(script).execute(pool).await.map(drop),
    };
    result.unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// A uniquely named `orders` table in the test database.
pub struct OrdersTable {
    pub db: Db,
    pub database: Database,
    pub name: String,
}

impl OrdersTable {
    pub async fn create(db: Db) -> OrdersTable {
        let database = Database::connect(&Secret::new(db.url()), 4, Duration::from_secs(10))
            .await
            .expect("connect to the test database");
        let name = unique("orders");
        let ddl = match db {
            Db::Postgres => format!(
                "CREATE TABLE {name} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, amount NUMERIC(12,2) NOT NULL, \
                 version BIGINT NOT NULL, deleted BOOLEAN NOT NULL DEFAULT false, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ),
            Db::MariaDb => format!(
                "CREATE TABLE {name} (id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, amount DECIMAL(12,2) NOT NULL, \
                 version BIGINT NOT NULL, deleted BOOLEAN NOT NULL DEFAULT false, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
            ),
        };
        let table = OrdersTable { db, database, name };
        table.execute(&ddl).await;
        table
    }

    pub async fn execute(&self, sql: &str) {
        exec(&self.database, sql).await;
    }

    /// Inserts ids with version 1.
    pub async fn insert(&self, ids: impl IntoIterator<Item = i64>) {
        let values: Vec<String> = ids
            .into_iter()
            .map(|id| {
                format!(
                    "({id}, 'order {id}', {}.{:02}, 1, false)",
                    id % 1000,
                    id % 100
                )
            })
            .collect();
        for chunk in values.chunks(1000) {
            self.execute(&format!(
                "INSERT INTO {} (id, name, amount, version, deleted) VALUES {}",
                self.name,
                chunk.join(", ")
            ))
            .await;
        }
    }

    /// Changes a row and bumps its version.
    pub async fn update(&self, id: i64, tag: &str) {
        self.execute(&format!(
            "UPDATE {} SET name = 'order {id} {tag}', amount = amount + 1, version = version + 1 WHERE id = {id}",
            self.name
        ))
        .await;
    }

    pub async fn soft_delete(&self, id: i64) {
        self.execute(&format!(
            "UPDATE {} SET deleted = true, version = version + 1 WHERE id = {id}",
            self.name
        ))
        .await;
    }

    pub async fn hard_delete(&self, id: i64) {
        self.execute(&format!("DELETE FROM {} WHERE id = {id}", self.name))
            .await;
    }

    /// Every row, by id.
    pub async fn rows(&self) -> BTreeMap<i64, OrderRow> {
        let sql = format!(
            // the cast lets tests change the id column's type (NUMERIC, unsigned, domains)
            "SELECT CAST(id AS SIGNED) AS id, name, CAST(amount * 100 AS SIGNED) AS cents, version, deleted FROM {}",
            self.name
        );
        let sql = if self.db == Db::Postgres {
            sql.replace("AS SIGNED", "AS BIGINT")
        } else {
            sql
        };
        let rows: Vec<(i64, String, i64, i64, bool)> = match &self.database {
            Database::Postgres(pool) => sqlx::query_as(AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .expect("read rows"),
            Database::MySql(pool) => sqlx::query_as(AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .expect("read rows"),
            Database::Sqlite(_) => unreachable!(),
        };
        rows.into_iter()
            .map(|(id, name, amount_cents, version, deleted)| {
                (
                    id,
                    OrderRow {
                        id,
                        name,
                        amount_cents,
                        version,
                        deleted,
                    },
                )
            })
            .collect()
    }

    pub async fn drop_table(&self) {
        self.execute(&format!("DROP TABLE IF EXISTS {}", self.name))
            .await;
    }

    pub fn dialect(&self) -> Dialect {
        self.database.dialect()
    }
}

/// A topic (and its producer) on a broker.
pub struct Topic {
    pub name: String,
    pub brokers: String,
    pub producer: IdProducer,
}

impl Topic {
    pub async fn create(brokers: &str, prefix: &str, partitions: i32) -> Topic {
        let name = unique(prefix);
        let config = kafka_config(brokers);
        create_topics(&config, &[name.as_str()], partitions, 1)
            .await
            .unwrap_or_else(|error| panic!("create topic {name} on {brokers}: {error}"));
        let producer = IdProducer::new(&config).expect("producer");
        Topic {
            name,
            brokers: brokers.to_owned(),
            producer,
        }
    }

    pub async fn send_ids(&self, ids: &[i64]) {
        let ids: Vec<Id> = ids.iter().map(|id| Id::Int(*id)).collect();
        self.producer
            .send_all(&self.name, &ids)
            .await
            .expect("produce ids");
    }
}

/// The index side: `_mget` of every id ever used, compared with the table.
pub struct Index {
    pub name: String,
    pub es: EsClient,
}

impl Index {
    pub fn new(es_url: &str) -> Index {
        Index {
            name: unique("idx"),
            es: EsClient::from_url(es_url, Duration::from_secs(30)).expect("es client"),
        }
    }

    pub async fn create(&self) {
        let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}});
        self.es
            .request_ok(
                elasticsearch::http::Method::Put,
                &format!("/{}", self.name),
                Some(&body),
            )
            .await
            .expect("create index");
    }

    /// Documents by id for `ids` (absent ids are left out).
    pub async fn documents(&self, ids: &[i64]) -> Result<BTreeMap<i64, (i64, Value)>, String> {
        let mut found = BTreeMap::new();
        for chunk in ids.chunks(1000) {
            let body = json!({"ids": chunk.iter().map(ToString::to_string).collect::<Vec<_>>()});
            let response = self
                .es
                .request_ok(
                    elasticsearch::http::Method::Post,
                    &format!("/{}/_mget", self.name),
                    Some(&body),
                )
                .await
                .map_err(|error| error.to_string())?;
            for doc in response["docs"].as_array().ok_or("no docs in _mget")? {
                if doc["found"] == json!(true) {
                    let id: i64 = doc["_id"]
                        .as_str()
                        .and_then(|id| id.parse().ok())
                        .ok_or("bad _id")?;
                    found.insert(
                        id,
                        (
                            doc["_version"].as_i64().unwrap_or(-1),
                            doc["_source"].clone(),
                        ),
                    );
                }
            }
        }
        Ok(found)
    }

    /// Differences between the table and the index, empty when equal: every
    /// live row indexed with its version and fields, nothing else indexed.
    pub async fn differences(&self, table: &OrdersTable, all_ids: &[i64]) -> Vec<String> {
        let rows = table.rows().await;
        let docs = match self.documents(all_ids).await {
            Ok(docs) => docs,
            Err(error) => return vec![format!("cannot read the index: {error}")],
        };
        let mut differences = Vec::new();
        for id in all_ids {
            let live = rows.get(id).filter(|row| !row.deleted);
            match (live, docs.get(id)) {
                (None, None) => {}
                (Some(row), None) => differences.push(format!(
                    "id {id}: row v{} missing from the index",
                    row.version
                )),
                (None, Some((version, _))) => differences.push(format!(
                    "id {id}: indexed v{version} but deleted in the table"
                )),
                (Some(row), Some((version, source))) => {
                    let expected_amount = row.amount_cents as f64 / 100.0;
                    let amount = source["amount"].as_f64().unwrap_or(f64::NAN);
                    if *version != row.version
                        || source["name"] != json!(row.name)
                        || (amount - expected_amount).abs() > 1e-9
                        || source["version"] != json!(row.version)
                    {
                        differences.push(format!(
                            "id {id}: index v{version} {source} != table {row:?}"
                        ));
                    }
                }
            }
        }
        differences
    }

    /// Polls until the index equals the table or `timeout` passes.
    pub async fn wait_equal(
        &self,
        table: &OrdersTable,
        all_ids: &[i64],
        timeout: Duration,
        daemon: &mut Daemon,
    ) {
        let started = Instant::now();
        loop {
            let differences = self.differences(table, all_ids).await;
            if differences.is_empty() {
                return;
            }
            if started.elapsed() > timeout {
                panic!(
                    "index {} did not converge to table {} within {timeout:?}: {} difference(s), first: {:#?}\n--- daemon log ---\n{}",
                    self.name,
                    table.name,
                    differences.len(),
                    &differences[..differences.len().min(10)],
                    daemon.log_tail(60)
                );
            }
            daemon.assert_running();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// An `esync run` child process.
pub struct Daemon {
    /// The process and its log (`daemon.kill()` etc. through Deref).
    pub process: LoggedChild,
    pub config_path: PathBuf,
    pub database_url: String,
    pub metrics_port: u16,
    _dir: tempfile::TempDir,
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
        }
    }
}

impl Daemon {
    pub fn start(setup: &DaemonSetup<'_>) -> Daemon {
        let mut dir = tempfile::tempdir().expect("temp dir");
        // ESYNC_TEST_KEEP_LOGS=1 keeps each daemon's config and log for a post-mortem
        if std::env::var_os("ESYNC_TEST_KEEP_LOGS").is_some() {
            dir.disable_cleanup(true);
            eprintln!("daemon files kept in {}", dir.path().display());
        }
        let metrics_port = free_port();
        let dead_letter = setup
            .dead_letter_topic
            .map(|topic| format!("dead_letter: {{topic: {topic}}}\n"))
            .unwrap_or_default();
        let config = format!(
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
batch:
  max_ids: {max_ids}
  max_wait: 50ms
  queue_capacity: {queue_capacity}
workers: {workers}
retry: {{initial_backoff: 50ms, max_backoff: 1s}}
metrics: {{listen: "127.0.0.1:{metrics_port}"}}
shutdown_grace: 5s
{dead_letter}"#,
            brokers = setup.brokers,
            group = setup.group.map_or_else(|| unique("group"), str::to_owned),
            queue_capacity = setup.queue_capacity,
            options = setup
                .kafka_options
                .iter()
                .map(|(key, value)| format!("    {key}: \"{value}\"\n"))
                .collect::<String>(),
            es = setup.es_url,
            topic = setup.topic,
            format = setup.format,
            table = setup.table.name,
            index = setup.index,
            max_ids = setup.max_ids,
            workers = setup.workers,
            // Static membership: a restarted daemon takes over its old member at once.
            // noida-db never evicts a SIGKILLed dynamic member that leads its group
            // (real Kafka does after session.timeout.ms), which would stall restarts.
            instance = if setup.static_membership {
                format!("    group.instance.id: {}\n", unique("instance"))
            } else {
                String::new()
            },
            debug = std::env::var("ESYNC_TEST_KAFKA_DEBUG")
                .map(|debug| format!("    debug: {debug}"))
                .unwrap_or_default(),
        );
        let config_path = dir.path().join("esync.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("esync.log");
        let mut daemon = Daemon {
            process: LoggedChild::new("esync run", log_path),
            config_path,
            database_url: setup.table.db.url(),
            metrics_port,
            _dir: dir,
        };
        daemon.spawn();
        daemon
    }

    pub fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_esync"));
        command
            .args(["run", "--config"])
            .arg(&self.config_path)
            .env("ESYNC_TEST_DATABASE_URL", &self.database_url);
        self.process.start(&mut command);
    }

    /// Body of `/metrics`.
    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        reqwest_get(&url).await
    }

    /// Waits until `/healthz` answers 200.
    pub async fn wait_healthy(&mut self, timeout: Duration) {
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{}/healthz", self.metrics_port);
        while started.elapsed() < timeout {
            self.assert_running();
            if reqwest_get(&url).await.starts_with("ok") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "esync not healthy within {timeout:?}\n{}",
            self.log_tail(40)
        );
    }
}

impl std::ops::Deref for Daemon {
    type Target = LoggedChild;
    fn deref(&self) -> &LoggedChild {
        &self.process
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut LoggedChild {
        &mut self.process
    }
}

/// A child process of a test, its stderr appended to a log file; killed
/// (SIGKILL) when dropped.
pub struct LoggedChild {
    pub name: &'static str,
    pub child: Option<Child>,
    pub log_path: PathBuf,
}

impl LoggedChild {
    pub fn new(name: &'static str, log_path: PathBuf) -> LoggedChild {
        LoggedChild {
            name,
            child: None,
            log_path,
        }
    }

    /// Starts `command` with stdout discarded, stderr to the log and
    /// `RUST_LOG` from `ESYNC_TEST_RUST_LOG` (default `info,librdkafka=warn`).
    pub fn start(&mut self, command: &mut Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let rust_log =
            std::env::var("ESYNC_TEST_RUST_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into());
        let child = command
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", self.name));
        self.child = Some(child);
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "{} exited early with {status}\n--- log ---\n{}",
                self.name,
                self.log_tail(60)
            );
        }
    }

    /// SIGKILL: no chance to commit, checkpoint or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and returns at once; `terminate` waits for the exit.
    pub fn signal_terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal_terminate();
        let mut child = self.child.take().expect("a running process");
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!(
                    "{} did not stop within 20 s of SIGTERM\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tiny HTTP GET over loopback (the tests need no HTTP client crate).
pub async fn reqwest_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(host, path)| {
            (host, format!("/{path}"))
        });
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Sum of a Prometheus counter over all its label sets.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A private noida-db server (one service) that a test can stop and start.
pub struct PrivateNoida {
    pub service: &'static str,
    pub port: u16,
    pub data_dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A private Elasticsearch API server.
pub type PrivateEs = PrivateNoida;

impl PrivateNoida {
    /// An Elasticsearch API server on a free port.
    pub async fn start() -> PrivateNoida {
        PrivateNoida::start_service("elasticsearch").await
    }

    /// A Kafka broker on a free port (`brokers()` is its address).
    pub async fn start_kafka() -> PrivateNoida {
        PrivateNoida::start_service("kafka").await
    }

    async fn start_service(service: &'static str) -> PrivateNoida {
        let mut server = PrivateNoida {
            service,
            port: free_port(),
            data_dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub async fn spawn(&mut self) {
        let binary = required_env("ESYNC_TEST_NOIDA_BIN");
        let child = Command::new(&binary)
            .args([
                "start",
                "--only",
                self.service,
                &format!("--{}-port", self.service),
                &self.port.to_string(),
                "--data-dir",
            ])
            .arg(self.data_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start {binary}: {error}"));
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            let ready = match self.service {
                "elasticsearch" => reqwest_get(&format!("{}/", self.url()))
                    .await
                    .contains("number"),
                _ => tokio::net::TcpStream::connect(self.brokers()).await.is_ok(),
            };
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "private {} server on {} did not start",
            self.service, self.port
        );
    }

    /// Freezes the server (SIGSTOP): connections stay open and requests hang
    /// until the client's time-out, as behind a network partition. Unlike a
    /// restart, nothing acknowledged can be lost on the server side (noida-db
    /// was seen losing writes acknowledged just before a SIGTERM).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("a running server");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} failed");
    }

    pub fn stop(&mut self) {
        self.thaw_if_running();
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl PrivateNoida {
    fn thaw_if_running(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
    }
}

impl Drop for PrivateNoida {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Path of a file next to the tests.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}
