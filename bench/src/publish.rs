//! `bench-publish`: `esync publish` (the incremental-column poller) against
//! the broker's standalone produce rate, measured in the same run with the
//! same `IdProducer`, and the ratio, per database.
//!
//! For each database: fill a table with N rows stamped one microsecond apart,
//! produce the same N ids once with a bare `IdProducer` (the broker's rate),
//! then start `esync publish` from the beginning and time it until every id
//! is in the topic. Prints one line per database. Needs the `ESYNC_TEST_*`
//! variables of `scripts/services.sh up` and a build of `esync`
//! (bench/publish.sh does both). Not a test: `cargo test` never runs it.

mod common;

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use common::rate;
use esync::config::KafkaConfig;
use esync::db::Database;
use esync::id::Id;
use esync::kafka::{IdProducer, create_topics};
use esync::secret::Secret;
use esync_testkit::env::required_env;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// Rows per database.
    #[arg(long, default_value_t = 200_000)]
    rows: i64,
    /// Databases to measure.
    #[arg(long, value_delimiter = ',', default_value = "postgres,mariadb")]
    databases: Vec<Source>,
    /// The esync binary to measure.
    #[arg(long, default_value = "target/debug/esync")]
    esync: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Source {
    Postgres,
    Mariadb,
}

impl Source {
    fn url(self) -> String {
        match self {
            Source::Postgres => required_env("ESYNC_TEST_PG"),
            Source::Mariadb => required_env("ESYNC_TEST_MYSQL"),
        }
    }

    /// The orders table of the integration tests, with the poll index.
    fn create_table(self, table: &str) -> [String; 2] {
        let create = match self {
            Source::Postgres => format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, amount NUMERIC(12,2) NOT NULL, \
                 version BIGINT NOT NULL, deleted BOOLEAN NOT NULL DEFAULT false, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ),
            Source::Mariadb => format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, amount DECIMAL(12,2) NOT NULL, \
                 version BIGINT NOT NULL, deleted BOOLEAN NOT NULL DEFAULT false, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
            ),
        };
        [
            create,
            format!("CREATE INDEX {table}_poll ON {table} (updated_at, id)"),
        ]
    }

    /// `rows` rows, one microsecond apart, an hour old.
    fn fill_table(self, table: &str, rows: i64) -> String {
        match self {
            Source::Postgres => format!(
                "INSERT INTO {table} (id, name, amount, version, deleted, updated_at) SELECT g, 'order ' || g, g % 1000, 1, false, \
                 now() - interval '1 hour' + g * interval '1 microsecond' FROM generate_series(1, {rows}) AS g"
            ),
            Source::Mariadb => format!(
                "INSERT INTO {table} (id, name, amount, version, deleted, updated_at) SELECT seq, CONCAT('order ', seq), seq % 1000, 1, false, \
                 NOW(6) - INTERVAL 1 HOUR + INTERVAL seq MICROSECOND FROM seq_1_to_{rows}"
            ),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.esync.exists() {
        bail!(
            "{} not found: build it with `cargo build -p esync`",
            args.esync.display()
        );
    }
    let brokers = required_env("ESYNC_TEST_KAFKA");
    let es_url = required_env("ESYNC_TEST_ES");
    let kafka: KafkaConfig = serde_yaml::from_str(&format!("brokers: \"{brokers}\""))?;
    for source in &args.databases {
        measure(*source, &args, &kafka, &es_url)
            .await
            .with_context(|| format!("publish bench on {source:?}"))?;
    }
    Ok(())
}

async fn measure(
    source: Source,
    args: &Args,
    kafka: &KafkaConfig,
    es_url: &str,
) -> anyhow::Result<()> {
    let rows = args.rows;
    let suffix = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);

    // the broker alone: the same ids through the same producer, all in flight
    let standalone_topic = format!("bench_standalone_{suffix}");
    create_topics(kafka, &[standalone_topic.as_str()], 3, 1).await?;
    let ids: Vec<Id> = (1..=rows).map(Id::Int).collect();
    let producer = IdProducer::new(kafka)?;
    let started = Instant::now();
    for chunk in ids.chunks(5000) {
        let _ = producer.send_all(&standalone_topic, chunk).await?;
    }
    let standalone = rate(rows, started);

    let url = source.url();
    let database = Database::connect(&Secret::new(url.clone()), 2, Duration::from_secs(10)).await?;
    let table = format!("bench_orders_{suffix}");
    for statement in source
        .create_table(&table)
        .into_iter()
        .chain([source.fill_table(&table, rows)])
    {
        let _ = database
            .execute(&statement, &[])
            .await
            .with_context(|| statement.clone())?;
    }
    let topic = format!("bench_publish_{suffix}");
    create_topics(kafka, &[topic.as_str()], 3, 1).await?;

    let dir = std::env::temp_dir().join(format!("esync-bench-publish-{suffix}"));
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let mut publisher = start_publisher(&args.esync, &dir, &url, kafka, es_url, &table, &topic)?;
    let waited = wait_for_messages(&mut publisher, &kafka.brokers, &topic, rows).await;
    let wall = started.elapsed().as_secs_f64();
    let cpu_seconds = esync_testkit::process::cpu_seconds(std::path::Path::new(&format!(
        "/proc/{}/stat",
        publisher.id()
    )))
    .unwrap_or(0.0);
    let _ = Command::new("kill")
        .args(["-TERM", &publisher.id().to_string()])
        .status();
    let status = publisher.wait()?;
    waited.with_context(|| format!("log in {}", dir.display()))?;

    let (distinct, first_ms, last_ms) = read_topic(&kafka.brokers, &topic).await?;
    let streaming = rows as f64 / ((last_ms - first_ms).max(1) as f64 / 1000.0);
    let published = rows as f64 / wall;
    println!(
        "publish bench ({source:?}, {rows} rows, page_size 5000): standalone IdProducer {standalone:.0} ids/s; \
         esync publish {published:.0} ids/s including start-up ({wall:.2} s), {streaming:.0} ids/s first to last message; \
         ratio {:.2} (start-up included), {:.2} (streaming); publisher CPU {cpu_seconds:.2} s ({:.0} ids per CPU second)",
        published / standalone,
        streaming / standalone,
        rows as f64 / cpu_seconds.max(0.001)
    );
    ensure!(
        distinct == rows,
        "{distinct} distinct ids of {rows} published"
    );
    ensure!(status.success(), "SIGTERM must exit 0, got {status}");
    let _ = database
        .execute(&format!("DROP TABLE {table}"), &[])
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts `esync publish` on `table` from the beginning, logging into `dir`.
fn start_publisher(
    esync: &Path,
    dir: &Path,
    database_url: &str,
    kafka: &KafkaConfig,
    es_url: &str,
    table: &str,
    topic: &str,
) -> anyhow::Result<Child> {
    let config = format!(
        "source: {{url: \"${{ESYNC_DATABASE_URL}}\", max_connections: 4}}\n\
         kafka: {{brokers: \"{brokers}\"}}\n\
         elasticsearch: {{urls: [\"{es_url}\"]}}\n\
         mappings:\n  - name: orders\n    topics: [{topic}]\n    table: {table}\n    index: unused\n    version: {{column: version, kind: counter}}\n\
         metrics: {{listen: null}}\n\
         publish:\n  checkpoint: {{file: \"{checkpoint}\"}}\n  mappings: [{{name: orders}}]\n\
         \x20 poll_interval: 100ms\n  page_size: 5000\n  look_back: 10s\n",
        brokers = kafka.brokers,
        checkpoint = dir.join("publish.checkpoint.json").display(),
    );
    let config_path = dir.join("esync.yaml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.join("publish.log"))?;
    Command::new(esync)
        .args(["publish", "--config"])
        .arg(&config_path)
        .env("ESYNC_DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", esync.display()))
}

/// Waits until `topic` holds `expected` messages (5 minutes at most).
async fn wait_for_messages(
    publisher: &mut Child,
    brokers: &str,
    topic: &str,
    expected: i64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = publisher.try_wait()? {
            bail!("esync publish exited with {status}");
        }
        let size = topic_size(brokers, topic).await?;
        if size >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{size} of {expected} ids published after 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn consumer(brokers: &str) -> anyhow::Result<BaseConsumer> {
    Ok(rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("bench-publish-{:08x}", rand::random::<u32>()),
        )
        .set("enable.auto.commit", "false")
        .create()?)
}

/// `(partition, low, high)` watermarks of every partition of `topic`.
fn watermarks(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions = metadata.topics().first().context("no topic metadata")?;
    partitions
        .partitions()
        .iter()
        .map(|partition| {
            let (low, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
            Ok((partition.id(), low, high))
        })
        .collect()
}

/// Messages in `topic`.
async fn topic_size(brokers: &str, topic: &str) -> anyhow::Result<i64> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer = consumer(&brokers)?;
        let marks = watermarks(&consumer, &topic)?;
        Ok(marks.iter().map(|(_, low, high)| high - low).sum())
    })
    .await?
}

/// Every message of `topic`: the number of distinct keys, and the first and
/// last message timestamps (ms).
async fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<(i64, i64, i64)> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer = consumer(&brokers)?;
        let marks = watermarks(&consumer, &topic)?;
        let mut list = rdkafka::TopicPartitionList::new();
        for (partition, _, _) in &marks {
            list.add_partition_offset(&topic, *partition, rdkafka::Offset::Beginning)?;
        }
        consumer.assign(&list)?;
        let mut remaining: i64 = marks.iter().map(|(_, low, high)| high - low).sum();
        let (mut keys, mut first, mut last) = (BTreeSet::new(), i64::MAX, i64::MIN);
        let deadline = Instant::now() + Duration::from_secs(120);
        while remaining > 0 {
            ensure!(Instant::now() < deadline, "reading {topic} timed out");
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message?;
            remaining -= 1;
            let _ = keys.insert(message.key().map(<[u8]>::to_vec));
            let timestamp = message.timestamp().to_millis().unwrap_or(0);
            first = first.min(timestamp);
            last = last.max(timestamp);
        }
        Ok((keys.len() as i64, first, last))
    })
    .await?
}
