//! Shared set-up for the integration tests: real PostgreSQL/MariaDB and the
//! Elasticsearch API server from the `ESYNC_TEST_*` variables printed by
//! `scripts/services.sh up`; `esync-recover` runs as a child process.
//!
//! A missing variable fails the test with a message naming it: integration
//! tests never skip silently.

#![allow(dead_code)]

use esync::db::Database;
use esync::es::EsClient;
use esync::secret::Secret;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
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

pub fn es_url() -> String {
    required_env("ESYNC_TEST_ES")
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

/// One row of the test table.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub id: i64,
    pub name: String,
    pub version: i64,
    pub deleted: bool,
}

/// A uniquely named `orders` table.
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
        let name = unique("rec_orders");
        let ddl = match db {
            Db::Postgres => format!(
                "CREATE TABLE {name} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, amount NUMERIC(12,2) NOT NULL, \
                 version BIGINT NOT NULL, deleted BOOLEAN NOT NULL DEFAULT false)"
            ),
            Db::MariaDb => format!(
                "CREATE TABLE {name} (id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, amount DECIMAL(12,2) NOT NULL, \
                 version BIGINT NOT NULL, deleted BOOLEAN NOT NULL DEFAULT false)"
            ),
        };
        let table = OrdersTable { db, database, name };
        table.execute(&ddl).await;
        table
    }

    pub async fn execute(&self, sql: &str) {
        let result = self.database.execute(sql, &[]).await.map(drop);
        result.unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// Inserts ids with version `id % 5 + 1`.
    pub async fn insert(&self, ids: impl IntoIterator<Item = i64>) {
        let values: Vec<String> = ids
            .into_iter()
            .map(|id| {
                format!(
                    "({id}, 'order {id}', {}.{:02}, {}, false)",
                    id % 1000,
                    id % 100,
                    id % 5 + 1
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

    pub async fn update(&self, id: i64, tag: &str) {
        self.execute(&format!(
            "UPDATE {} SET name = 'order {id} {tag}', version = version + 1 WHERE id = {id}",
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
        let sql = format!("SELECT id, name, version, deleted FROM {}", self.name);
        let rows: Vec<(i64, String, i64, bool)> = match &self.database {
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
            .map(|(id, name, version, deleted)| {
                (
                    id,
                    OrderRow {
                        id,
                        name,
                        version,
                        deleted,
                    },
                )
            })
            .collect()
    }

    /// `SELECT` of one integer column with one row.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match &self.database {
            Database::Postgres(pool) => {
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .fetch_one(pool)
                    .await
            }
            Database::MySql(pool) => {
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .fetch_one(pool)
                    .await
            }
            Database::Sqlite(_) => unreachable!(),
        }
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    pub async fn drop_table(&self) {
        self.execute(&format!("DROP TABLE IF EXISTS {}", self.name))
            .await;
    }
}

/// The index side.
pub struct Index {
    pub name: String,
    pub es: EsClient,
}

impl Index {
    pub async fn create() -> Index {
        let index = Index {
            name: unique("rec_idx"),
            es: EsClient::from_url(&es_url(), Duration::from_secs(30)).expect("es client"),
        };
        let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}});
        index
            .es
            .request_ok(
                elasticsearch::http::Method::Put,
                &format!("/{}", index.name),
                Some(&body),
            )
            .await
            .expect("create index");
        index
    }

    /// Documents by id for `ids`: (version, source).
    pub async fn documents(&self, ids: &[i64]) -> BTreeMap<i64, (i64, Value)> {
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
                .expect("_mget");
            for doc in response["docs"].as_array().expect("docs") {
                if doc["found"] == json!(true) {
                    let id: i64 = doc["_id"]
                        .as_str()
                        .and_then(|id| id.parse().ok())
                        .expect("numeric _id");
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
        found
    }

    /// Differences between the table and the index over `all_ids`.
    pub async fn differences(&self, table: &OrdersTable, all_ids: &[i64]) -> Vec<String> {
        let rows = table.rows().await;
        let docs = self.documents(all_ids).await;
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
                    "id {id}: indexed v{version} but not live in the table"
                )),
                (Some(row), Some((version, source))) => {
                    if *version != row.version {
                        differences
                            .push(format!("id {id}: indexed v{version}, row v{}", row.version));
                    } else if source["name"] != json!(row.name) || source["id"] != json!(row.id) {
                        differences.push(format!("id {id}: fields differ: {source}"));
                    }
                }
            }
        }
        differences
    }

    pub async fn assert_equal(&self, table: &OrdersTable, all_ids: &[i64]) {
        let differences = self.differences(table, all_ids).await;
        assert!(
            differences.is_empty(),
            "index {} differs from table {}: {} difference(s), first: {:#?}",
            self.name,
            table.name,
            differences.len(),
            &differences[..differences.len().min(10)]
        );
    }

    /// How many documents the index holds (after a refresh).
    pub async fn count(&self) -> u64 {
        let refresh = format!("/{}/_refresh", self.name);
        self.es
            .request_ok(elasticsearch::http::Method::Post, &refresh, None)
            .await
            .expect("refresh");
        let response = self
            .es
            .request_ok(
                elasticsearch::http::Method::Get,
                &format!("/{}/_count", self.name),
                None,
            )
            .await
            .expect("_count");
        response["count"].as_u64().expect("a count")
    }

    /// Indexes a document directly (planting differences).
    pub async fn put(&self, id: i64, version: u64, name: &str) {
        let path = format!(
            "/{}/_doc/{id}?version={version}&version_type=external_gte&refresh=true",
            self.name
        );
        self.es
            .request_ok(
                elasticsearch::http::Method::Put,
                &path,
                Some(&json!({"id": id, "name": name, "version": version})),
            )
            .await
            .expect("index a document");
    }

    /// Deletes a document directly (planting differences).
    pub async fn delete(&self, id: i64) {
        let path = format!("/{}/_doc/{id}?refresh=true", self.name);
        self.es
            .request_ok(elasticsearch::http::Method::Delete, &path, None)
            .await
            .expect("delete a document");
    }

    pub async fn drop_index(&self) {
        let _ = self
            .es
            .request(
                elasticsearch::http::Method::Delete,
                &format!("/{}", self.name),
                None,
            )
            .await;
    }
}

/// A config file for `table` -> `index` in a temporary directory.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub database_url: String,
    /// The mapping's topic (for the daemon).
    pub topic: String,
}

impl Setup {
    pub fn new(table: &OrdersTable, index: &Index) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let topic = unique("rec_topic");
        let config = format!(
            r#"source:
  url: ${{ESYNC_TEST_DATABASE_URL}}
  max_connections: 4
kafka:
  brokers: "{kafka}"
  group_id: {group}
  commit_interval: 200ms
  options:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
elasticsearch:
  urls: ["{es}"]
  request_timeout: 10s
mappings:
  - name: orders
    topics: [{topic}]
    table: {table}
    columns: [id, name, amount, version, deleted]
    index: {index}
    version: {{column: version, kind: counter}}
    delete: {{strategy: soft, column: deleted}}
    exclude: [deleted]
retry: {{initial_backoff: 50ms, max_backoff: 1s}}
metrics: {{listen: null}}
batch: {{max_ids: 200, max_wait: 50ms}}
shutdown_grace: 5s
"#,
            group = unique("rec_group"),
            kafka = required_env("ESYNC_TEST_KAFKA"),
            es = es_url(),
            topic = &topic,
            table = table.name,
            index = index.name,
        );
        let path = dir.path().join("esync.yaml");
        std::fs::write(&path, config).expect("write config");
        Setup {
            dir,
            config: path,
            database_url: table.db.url(),
            topic,
        }
    }

    /// A config whose one mapping is `mapping_yaml` (indented as a list item's keys).
    pub fn custom(database_url: &str, mapping_yaml: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let topic = unique("rec_topic");
        let config = format!(
            "source:\n  url: ${{ESYNC_TEST_DATABASE_URL}}\nkafka:\n  brokers: \"{}\"\nelasticsearch:\n  urls: [\"{}\"]\n\
             metrics: {{listen: null}}\nmappings:\n  - name: items\n    topics: [{topic}]\n{mapping_yaml}",
            required_env("ESYNC_TEST_KAFKA"),
            es_url(),
        );
        let path = dir.path().join("esync.yaml");
        std::fs::write(&path, config).expect("write config");
        Setup {
            dir,
            config: path,
            database_url: database_url.to_owned(),
            topic,
        }
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.dir.path().join("checkpoint.json")
    }

    /// `esync-recover <args> --config <file>`, stdout and stderr piped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_esync-recover"));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("ESYNC_TEST_DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs to the end.
    pub fn run(&self, args: &[&str]) -> Finished {
        let output = self.command(args).output().expect("run esync-recover");
        Finished {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A finished child.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn expect_code(&self, code: i32) -> &Finished {
        assert_eq!(
            self.status.code(),
            Some(code),
            "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            tail(&self.stderr, 40)
        );
        self
    }

    /// JSON events on stderr of kind `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        events(&self.stderr, event)
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// JSON lines of `{"event": event}` in `text`.
pub fn events(text: &str, event: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|value| value["event"] == json!(event))
        .collect()
}

/// (mapping, chunk) of `chunk_done` events.
pub fn done_chunks(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|event| event["chunk"].as_u64().expect("chunk number"))
        .collect()
}

/// A running child whose stderr lines are collected as they come.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub stderr: Vec<String>,
}

impl Running {
    pub fn start(mut command: Command) -> Running {
        let mut child = command.spawn().expect("start esync-recover");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    /// Waits until `count` `chunk_done` events were printed.
    pub fn wait_for_chunks(&mut self, count: usize, timeout: Duration) {
        let started = Instant::now();
        while events(&self.stderr.join("\n"), "chunk_done").len() < count {
            assert!(
                started.elapsed() < timeout,
                "fewer than {count} chunks done within {timeout:?}:\n{}",
                self.stderr.join("\n")
            );
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.stderr.push(line);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                panic!(
                    "esync-recover exited early with {status}:\n{}",
                    self.stderr.join("\n")
                );
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.stderr.push(line);
        }
    }

    /// SIGKILL: no chance to save anything more.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain();
    }

    /// Waits for the exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.stderr.push(line);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                return status;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                self.drain();
                panic!(
                    "esync-recover did not finish within {timeout:?}:\n{}",
                    tail(&self.stderr.join("\n"), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn done_chunks(&self) -> Vec<u64> {
        done_chunks(&events(&self.stderr.join("\n"), "chunk_done"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chunk numbers recorded done in a checkpoint file.
pub fn checkpoint_done(path: &Path) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(path).expect("read checkpoint");
    let checkpoint: Value = serde_json::from_str(&text).expect("checkpoint JSON");
    let mut done = BTreeSet::new();
    for runs in checkpoint["done"].as_object().expect("done map").values() {
        for run in runs.as_array().expect("runs") {
            let (start, end) = (run[0].as_u64().unwrap(), run[1].as_u64().unwrap());
            done.extend(start..=end);
        }
    }
    done
}

/// The `esync` daemon binary of this workspace (`cargo build -p esync`).
pub fn daemon_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/esync");
    assert!(
        path.exists(),
        "{} is missing: build the daemon with `cargo build -p esync`",
        path.display()
    );
    path
}

/// `esync run` on `setup`'s config, logging to a file in its directory.
pub fn start_daemon(setup: &Setup) -> Child {
    let log = std::fs::File::create(setup.dir.path().join("esync.log")).expect("daemon log");
    Command::new(daemon_binary())
        .args(["run", "--config"])
        .arg(&setup.config)
        .env("ESYNC_TEST_DATABASE_URL", &setup.database_url)
        .env("RUST_LOG", "info,librdkafka=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start esync")
}
