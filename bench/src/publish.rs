//! `bench-publish`: the two ways `esync publish` gets ids into Kafka, per
//! database.
//!
//! - `poll` (the incremental-column poller) against the broker's standalone
//!   produce rate, measured in the same run with the same `IdProducer`, and
//!   the ratio: fill a table with N rows stamped one microsecond apart,
//!   produce the same N ids once with a bare `IdProducer` (the broker's
//!   rate), then start `esync publish` from the beginning and time it until
//!   every id is in the topic.
//! - `outbox` (`esync publish --outbox`, default settings): start the relay
//!   on an empty private outbox table, then commit M outbox rows at once and
//!   take the relay's own CPU seconds (user + sys from /proc) until every row
//!   is in the topic and gone from the outbox; printed per 50,000 rows with
//!   the ratio to the target of 1 CPU second per 50,000 rows.
//!
//! Prints one line per workload and database. Needs the `ESYNC_TEST_*`
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
use esync_testkit::db::Db;
use esync_testkit::env::required_env;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// Rows per database (poll workload).
    #[arg(long, default_value_t = 200_000)]
    rows: i64,
    /// Outbox rows committed at once per database (outbox workload, backlog).
    #[arg(long, default_value_t = 50_000)]
    outbox_rows: i64,
    /// Outbox rows written while the relay runs (outbox workload, live).
    #[arg(long, default_value_t = 10_000)]
    outbox_live_rows: i64,
    /// Rows per second of the live writer (commits of a 50th of it, every 20 ms).
    #[arg(long, default_value_t = 500)]
    outbox_live_rate: i64,
    /// Workloads to run.
    #[arg(long, value_delimiter = ',', default_value = "poll,outbox")]
    workloads: Vec<Workload>,
    /// Databases to measure.
    #[arg(long, value_delimiter = ',', default_value = "postgres,mariadb")]
    databases: Vec<Source>,
    /// The esync binary to measure.
    #[arg(long, default_value = "target/debug/esync")]
    esync: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    Poll,
    Outbox,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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
        if args.workloads.contains(&Workload::Poll) {
            measure(*source, &args, &kafka, &es_url)
                .await
                .with_context(|| format!("publish bench on {source:?}"))?;
        }
        if args.workloads.contains(&Workload::Outbox) {
            measure_outbox(*source, &args, &kafka, &es_url)
                .await
                .with_context(|| format!("outbox bench on {source:?}"))?;
        }
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

/// The outbox relay's own CPU seconds (user + sys from /proc), with the
/// default `publish.outbox` settings users get: idle on an empty outbox,
/// relaying a backlog committed at once, and relaying rows written at a
/// steady rate while it runs (where its cost per second counts).
async fn measure_outbox(
    source: Source,
    args: &Args,
    kafka: &KafkaConfig,
    es_url: &str,
) -> anyhow::Result<()> {
    const TARGET_CPU_SECONDS_PER_50K: f64 = 1.0;
    const IDLE: Duration = Duration::from_secs(10);
    let (backlog_rows, live_rows) = (args.outbox_rows, args.outbox_live_rows);
    let suffix = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let db = match source {
        Source::Postgres => Db::Postgres,
        Source::Mariadb => Db::MariaDb,
    };
    let pool = db.connect(2).await;
    // a private outbox, installed from the file users install (renamed)
    let outbox = format!("bench_outbox_{suffix}");
    let install = match source {
        Source::Postgres => include_str!("../../sync/sql/postgres/outbox.sql"),
        Source::Mariadb => include_str!("../../sync/sql/mysql/outbox.sql"),
    };
    pool.execute(&install.replace("esync_outbox", &outbox))
        .await;
    let topic = format!("bench_outbox_{suffix}");
    create_topics(kafka, &[topic.as_str()], 3, 1).await?;

    let dir = std::env::temp_dir().join(format!("esync-bench-outbox-{suffix}"));
    std::fs::create_dir_all(&dir)?;
    let config = format!(
        "source: {{url: \"${{ESYNC_DATABASE_URL}}\"}}\n\
         kafka: {{brokers: \"{brokers}\"}}\n\
         elasticsearch: {{urls: [\"{es_url}\"]}}\n\
         mappings:\n  - name: orders\n    topics: [{topic}]\n    table: bench_orders_{suffix}\n    index: unused\n    version: {{column: version, kind: counter}}\n\
         metrics: {{listen: null}}\n\
         publish:\n  metrics_listen: null\n  outbox: {{table: {outbox}}}\n",
        brokers = kafka.brokers,
    );
    let config_path = dir.join("esync.yaml");
    std::fs::write(&config_path, config)?;
    let log_path = dir.join("relay.log");
    let mut relay = Command::new(&args.esync)
        .args(["publish", "--outbox", "--config"])
        .arg(&config_path)
        .env("ESYNC_DATABASE_URL", source.url())
        .env("RUST_LOG", "info,librdkafka=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .with_context(|| format!("cannot start {}", args.esync.display()))?;
    let stat = PathBuf::from(format!("/proc/{}/stat", relay.id()));
    let cpu = || esync_testkit::process::cpu_seconds(&stat).context("cannot read the relay's CPU");
    let log_hint = || format!("log in {}", log_path.display());

    // start-up is not counted: wait until the relay polls the empty outbox
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log_path)?.contains("relaying the outbox") {
        if let Some(status) = relay.try_wait()? {
            bail!(
                "esync publish --outbox exited with {status}; {}",
                log_hint()
            );
        }
        ensure!(
            Instant::now() < deadline,
            "the relay did not start; {}",
            log_hint()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // its first poll opens the relay's own connection (a TLS handshake on
    // PostgreSQL): also start-up
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_started = cpu()?;
    tokio::time::sleep(IDLE).await;
    let idle_ms_per_second = (cpu()? - idle_started) * 1000.0 / IDLE.as_secs_f64();

    let fill = |low: i64, high: i64| match source {
        Source::Postgres => format!(
            "INSERT INTO {outbox} (table_name, row_id) SELECT 'orders', g::text FROM generate_series({low}, {high}) AS g"
        ),
        Source::Mariadb => format!(
            "INSERT INTO {outbox} (table_name, row_id) SELECT 'orders', seq FROM seq_{low}_to_{high}"
        ),
    };
    let pending_sql = format!("SELECT COUNT(*) FROM {outbox} WHERE relayed_at IS NULL");
    // Waits until `total` messages are in the topic and nothing is pending.
    let drained = async |relay: &mut Child, total: i64| -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = relay.try_wait()? {
                bail!(
                    "esync publish --outbox exited with {status}; {}",
                    log_hint()
                );
            }
            let produced = esync_testkit::kafka::topic_size(&kafka.brokers, &topic).await;
            let pending = pool.scalar(&pending_sql).await;
            if produced >= total && pending == 0 {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{produced} of {total} produced, {pending} pending after 5 minutes; {}",
                log_hint()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // a backlog: every row in one commit
    let backlog_started = (cpu()?, Instant::now());
    pool.execute(&fill(1, backlog_rows)).await;
    drained(&mut relay, backlog_rows).await?;
    let backlog_cpu = cpu()? - backlog_started.0;
    let backlog_wall = backlog_started.1.elapsed().as_secs_f64();

    // live: small commits at a steady rate, as writers' triggers make them
    let commit_rows = (args.outbox_live_rate / 50).max(1);
    let live_started = (cpu()?, Instant::now());
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut low = backlog_rows + 1;
    while low <= backlog_rows + live_rows {
        let _ = ticks.tick().await;
        let high = (low + commit_rows - 1).min(backlog_rows + live_rows);
        pool.execute(&fill(low, high)).await;
        low = high + 1;
    }
    let written_in = live_started.1.elapsed().as_secs_f64();
    drained(&mut relay, backlog_rows + live_rows).await?;
    let live_cpu = cpu()? - live_started.0;

    let _ = Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status();
    let status = relay.wait()?;
    let received = esync_testkit::kafka::counts(
        &esync_testkit::kafka::read_topic(&kafka.brokers, &topic).await,
    );

    let per_50k = |cpu: f64, rows: i64| cpu * 50_000.0 / rows as f64;
    let (backlog_per_50k, live_per_50k) = (
        per_50k(backlog_cpu, backlog_rows),
        per_50k(live_cpu, live_rows),
    );
    println!(
        "outbox relay bench ({source:?}, {esync}, default publish.outbox): \
         idle {idle_ms_per_second:.1} ms CPU per second; \
         backlog of {backlog_rows} rows: {backlog_per_50k:.2} CPU-s per 50,000 rows, ratio to the {TARGET_CPU_SECONDS_PER_50K:.0} CPU-s target {:.2}, {:.0} rows/s; \
         live {live_rows} rows at {:.0} rows/s: {live_per_50k:.2} CPU-s per 50,000 rows, ratio to the target {:.2}",
        backlog_per_50k / TARGET_CPU_SECONDS_PER_50K,
        backlog_rows as f64 / backlog_wall,
        live_rows as f64 / written_in,
        live_per_50k / TARGET_CPU_SECONDS_PER_50K,
        esync = args.esync.display(),
    );
    let total = backlog_rows + live_rows;
    ensure!(
        received.len() as i64 == total && received.values().all(|count| *count == 1),
        "{} distinct ids of {total} relayed, {} messages",
        received.len(),
        received.values().sum::<usize>()
    );
    ensure!(status.success(), "SIGTERM must exit 0, got {status}");
    pool.execute(&format!("DROP TABLE {outbox}")).await;
    if source == Source::Postgres {
        pool.execute(&format!("DROP FUNCTION {outbox}_capture()"))
            .await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
