//! Helpers for the `esync publish` tests: a publisher child process, a topic
//! reader, and SQL that stamps `updated_at` the way every writer must.

#![allow(dead_code)]

use crate::common::{Db, LoggedChild, OrdersTable, exec, free_port, reqwest_get, unique};
use esync::db::Database;
use rdkafka::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sqlx::AssertSqlSafe;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs one statement and returns the rows it affected.
pub async fn exec_count(database: &Database, sql: &str) -> u64 {
    let result = match database {
        Database::Postgres(pool) => sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
        Database::MySql(pool) => sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
        Database::Sqlite(_) => unreachable!(),
    };
    result.unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// A single integer from a query.
pub async fn scalar(database: &Database, sql: &str) -> i64 {
    let result = match database {
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
    };
    result.unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// The current time in the database, as every writer stamps it.
pub fn now_sql(db: Db) -> &'static str {
    match db {
        Db::Postgres => "clock_timestamp()",
        Db::MariaDb => "NOW(6)",
    }
}

/// Prepares an orders table for polling: the `(updated_at, id)` index, and
/// `updated_at` nullable so hand-edited rows can be simulated.
pub async fn prepare_for_polling(table: &OrdersTable) {
    let name = &table.name;
    exec(
        &table.database,
        &format!("CREATE INDEX {name}_poll ON {name} (updated_at, id)"),
    )
    .await;
    let nullable = match table.db {
        Db::Postgres => format!("ALTER TABLE {name} ALTER COLUMN updated_at DROP NOT NULL"),
        Db::MariaDb => format!(
            "ALTER TABLE {name} MODIFY updated_at TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6)"
        ),
    };
    exec(&table.database, &nullable).await;
}

/// Changes a row the way a well-behaved writer does: bumps the version and
/// stamps `updated_at`.
pub fn touch_sql(table: &OrdersTable, id: i64, tag: &str) -> String {
    format!(
        "UPDATE {} SET name = 'order {id} {tag}', amount = amount + 1, version = version + 1, updated_at = {} WHERE id = {id}",
        table.name,
        now_sql(table.db)
    )
}

/// Soft-deletes a row, stamping `updated_at`.
pub fn soft_delete_sql(table: &OrdersTable, id: i64) -> String {
    format!(
        "UPDATE {} SET deleted = true, version = version + 1, updated_at = {} WHERE id = {id}",
        table.name,
        now_sql(table.db)
    )
}

/// Every row's id and `updated_at` in microseconds.
pub async fn row_times(table: &OrdersTable) -> BTreeMap<i64, i64> {
    let sql = match table.db {
        Db::Postgres => format!(
            "SELECT id, CAST(EXTRACT(EPOCH FROM updated_at) * 1000000 AS BIGINT) FROM {} WHERE updated_at IS NOT NULL",
            table.name
        ),
        Db::MariaDb => format!(
            "SELECT id, CAST(UNIX_TIMESTAMP(updated_at) * 1000000 AS SIGNED) FROM {} WHERE updated_at IS NOT NULL",
            table.name
        ),
    };
    let rows: Vec<(i64, i64)> = match &table.database {
        Database::Postgres(pool) => sqlx::query_as(AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .expect("read times"),
        Database::MySql(pool) => sqlx::query_as(AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .expect("read times"),
        Database::Sqlite(_) => unreachable!(),
    };
    rows.into_iter().collect()
}

/// One message read back: the key and its produce timestamp (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub key: String,
    pub value: String,
    pub timestamp_ms: i64,
}

/// Every message currently in `topic`, all partitions, from the beginning.
pub async fn read_topic(brokers: &str, topic: &str) -> Vec<Received> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|partition| partition.id())
            .collect();
        let mut list = rdkafka::TopicPartitionList::new();
        let mut remaining = 0i64;
        let mut ends = BTreeMap::new();
        for partition in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, *partition, Duration::from_secs(10))
                .expect("watermarks");
            list.add_partition_offset(&topic, *partition, rdkafka::Offset::Beginning)
                .expect("partition");
            remaining += high - low;
            let _ = ends.insert(*partition, high);
        }
        consumer.assign(&list).expect("assign");
        let mut out = Vec::with_capacity(remaining as usize);
        let started = Instant::now();
        while (out.len() as i64) < remaining {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "reading {topic} timed out at {} of {remaining}",
                out.len()
            );
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message.expect("message");
            if message.offset() >= ends[&message.partition()] {
                continue;
            }
            let text = |bytes: Option<&[u8]>| {
                bytes
                    .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                    .unwrap_or_default()
            };
            out.push(Received {
                key: text(message.key()),
                value: text(message.payload()),
                timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
            });
        }
        out
    })
    .await
    .expect("reader task")
}

/// Messages in `topic` (sum of high watermarks minus low ones).
pub async fn topic_size(brokers: &str, topic: &str) -> i64 {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        metadata.topics()[0]
            .partitions()
            .iter()
            .map(|partition| {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, partition.id(), Duration::from_secs(10))
                    .expect("watermarks");
                high - low
            })
            .sum()
    })
    .await
    .expect("size task")
}

/// Messages per key.
pub fn counts(messages: &[Received]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for message in messages {
        let id: i64 = message
            .key
            .parse()
            .unwrap_or_else(|_| panic!("key {:?} is not an integer id", message.key));
        assert_eq!(
            message.key, message.value,
            "plain format: the id is key and value"
        );
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// The `publish:` section and mapping of a test publisher.
pub struct PublisherSetup<'a> {
    pub table: &'a OrdersTable,
    pub topic: &'a str,
    pub brokers: &'a str,
    pub es_url: &'a str,
    /// Extra lines inside `publish:` (indented two spaces).
    pub publish: String,
    /// Checkpoint in this table of the source database instead of a file.
    pub checkpoint_table: Option<String>,
}

/// An `esync publish` child process (and its config, checkpoint and log).
pub struct Publisher {
    /// The process and its log (`publisher.kill()` etc. through Deref).
    pub process: LoggedChild,
    pub config_path: PathBuf,
    pub checkpoint_path: PathBuf,
    pub database_url: String,
    pub metrics_port: u16,
    pub outbox: bool,
    _dir: tempfile::TempDir,
}

impl Publisher {
    /// Writes the config and starts `esync publish` (with `--outbox` if asked).
    pub fn start(setup: &PublisherSetup<'_>, outbox: bool) -> Publisher {
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics_port = free_port();
        let checkpoint_path = dir.path().join("publish.checkpoint.json");
        let config = format!(
            r#"source:
  url: ${{ESYNC_TEST_DATABASE_URL}}
  max_connections: 4
kafka:
  brokers: "{brokers}"
elasticsearch:
  urls: ["{es}"]
mappings:
  - name: orders
    topics: [{topic}]
    table: {table}
    index: {index}
    version: {{column: version, kind: counter}}
retry: {{initial_backoff: 50ms, max_backoff: 1s}}
metrics: {{listen: null}}
publish:
  metrics_listen: "127.0.0.1:{metrics_port}"
  checkpoint: {checkpoint}
  mappings: [{{name: orders}}]
{publish}
"#,
            brokers = setup.brokers,
            es = setup.es_url,
            topic = setup.topic,
            table = setup.table.name,
            index = unique("unused"),
            checkpoint = match &setup.checkpoint_table {
                Some(table) => format!("{{table: {table}}}"),
                None => format!("{{file: \"{}\"}}", checkpoint_path.display()),
            },
            publish = setup.publish,
        );
        let config_path = dir.path().join("esync.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("publish.log");
        let mut publisher = Publisher {
            process: LoggedChild::new("esync publish", log_path),
            config_path,
            checkpoint_path,
            database_url: setup.table.db.url(),
            metrics_port,
            outbox,
            _dir: dir,
        };
        publisher.spawn();
        publisher
    }

    /// A second process on the same config (another relay).
    pub fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_esync"));
        command
            .arg("publish")
            .arg("--config")
            .arg(&self.config_path)
            .env("ESYNC_TEST_DATABASE_URL", &self.database_url);
        if self.outbox {
            command.arg("--outbox");
        }
        self.process.start(&mut command);
    }

    pub async fn metrics(&self) -> String {
        reqwest_get(&format!("http://127.0.0.1:{}/metrics", self.metrics_port)).await
    }
}

impl std::ops::Deref for Publisher {
    type Target = LoggedChild;
    fn deref(&self) -> &LoggedChild {
        &self.process
    }
}

impl std::ops::DerefMut for Publisher {
    fn deref_mut(&mut self) -> &mut LoggedChild {
        &mut self.process
    }
}

/// Waits until `check` holds, polling every 200 ms; panics with `what` and
/// the publisher's log otherwise.
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    publishers: &mut [&mut Publisher],
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        let outcome = check().await;
        let Err(problem) = outcome else { return };
        if started.elapsed() > timeout {
            let logs: Vec<String> = publishers
                .iter()
                .map(|publisher| publisher.log_tail(40))
                .collect();
            panic!(
                "{what} not reached within {timeout:?}: {problem}\n--- publisher log ---\n{}",
                logs.join("\n---\n")
            );
        }
        for publisher in publishers.iter_mut() {
            publisher.assert_running();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
