//! `bench-sync`: the esync daemon end to end against the standalone speed of
//! each stage it is made of, in one run on one machine.
//!
//! Prints, for N changed ids (default 200,000):
//! - standalone throughput of Kafka consume, database re-read by id, and
//!   Elasticsearch `_bulk` (same concurrency as the daemon's workers);
//! - the daemon's end-to-end ids/s and its ratio to the slowest stage;
//! - the daemon's own CPU seconds (from /proc) per 50,000 ids and peak RSS;
//! - docs written per distinct id (target at most 1.02) for two workloads
//!   where ids repeat, each against a slow index (a delaying proxy,
//!   `--index-delay-ms`, default 10 ms per chunk sent) so the index is the
//!   bottleneck and ids queue up:
//!   - `repeating ids` (bursts): `--distinct` ids (50,000), each announced
//!     ids/distinct times (4) close together, shuffled in windows of 1000;
//!   - `spread updates`: ids/4 row changes (50,000) drawn uniformly at random,
//!     with replacement, from the first ids/4 * 16/15 rows (53,333), so about
//!     32,450 distinct ids: the 50,000 updates over 32,437 ids, with
//!     the repeats of an id anywhere in the stream. Each change updates the
//!     row (version + 1) and is then announced; all are made before the
//!     daemon starts (it meets the whole backlog), or at `--update-rate` per
//!     second while it runs.
//!
//!   Each prints one line in the same format, `<workload>, index slowed by
//!   D ms per chunk sent: M messages over N distinct ids -> W docs written =
//!   W/N per distinct id (target <= 1.02); CPU ...; peak RSS ...`, and a
//!   second, indented one with the checks that coalescing kept the
//!   guarantees: offsets committed for every message once the daemon
//!   stopped, every id indexed at its row's latest version, and timings.
//!
//! Measured 2026-12 (2 shared cores, defaults), docs per distinct id of
//! `spread updates`: 1.32 before coalescing (316fb65), 1.045-1.053 with it,
//! where the rest was each worker's first batch, re-read before the
//! consumer had read the backlog; 1.000 since workers hold their first
//! re-read after an assignment until the backlog is read (`catch_up`).
//! Made while the daemon runs (`--update-rate 20000`): 1.43, 1.09 and 1.12,
//! where a change arriving after its id's re-read must be written again.
//! The README's benchmark section has the table and the reasoning.
//!
//! `--only stages|bursts|spread` (repeatable) measures a part only.
//! `ESYNC_BENCH_LOG=info` keeps the daemon's per-batch log (ids received,
//! distinct) in `$TMPDIR/esync-bench-<suffix>-<topic>/esync.log`.
//!
//! Needs the `ESYNC_TEST_*` variables of `scripts/services.sh up` and a
//! release build of `esync` (bench/run.sh does both).

mod common;
mod delay_proxy;

use anyhow::{Context as _, bail};
use clap::Parser;
use common::rate;
use delay_proxy::DelayProxy;
use esync::config::{KafkaConfig, MappingConfig};
use esync::db::{Database, RowReader};
use esync::document::SqlValue;
use esync::document::{BulkAction, DocumentSpec, plan_actions};
use esync::es::EsClient;
use esync::id::Id;
use esync::kafka::{IdProducer, create_topics};
use esync::secret::Secret;
use esync::sql::Param;
use esync_testkit::env::required_env;
use esync_testkit::es::{EsApi, Index};
use esync_testkit::kafka::GroupCommits;
use esync_testkit::process::{PrivateEs, cpu_seconds, metric_sum, metrics};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// Changed ids per scenario.
    #[arg(long, default_value_t = 200_000)]
    ids: i64,
    /// Distinct ids of the bursts workload (each announced ids/distinct times).
    #[arg(long, default_value_t = 50_000)]
    distinct: i64,
    /// Daemon workers, and the concurrency of the standalone stages.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Ids per batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// The esync binary to measure (a release build).
    #[arg(long, default_value = "target/release/esync")]
    esync: PathBuf,
    /// Kafka brokers (default: $ESYNC_TEST_KAFKA, the noida-db broker).
    #[arg(long)]
    brokers: Option<String>,
    /// How long the slow index of the repeating workloads holds each chunk a
    /// client sends (ms): the index is the slowest stage, as in production.
    #[arg(long, default_value_t = 10)]
    index_delay_ms: u64,
    /// Row changes per second the spread-updates workload makes and announces
    /// while the daemon runs (default 0: all of them before it starts, the
    /// backlog the target is for).
    #[arg(long, default_value_t = 0)]
    update_rate: u64,
    /// Measure only these (repeatable; default: all of them).
    #[arg(long, value_enum)]
    only: Vec<Measurement>,
}

/// What `bench-sync` measures, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Measurement {
    /// The standalone stages and the daemon end to end.
    Stages,
    /// Repeating ids in bursts, against the slow index.
    Bursts,
    /// Updates spread over the table, against the slow index.
    Spread,
}

impl Args {
    fn measures(&self, measurement: Measurement) -> bool {
        self.only.is_empty() || self.only.contains(&measurement)
    }
}

struct Services {
    database_url: String,
    database: Database,
    kafka: KafkaConfig,
    suffix: String,
}

/// A private Elasticsearch API server (noida-db) for one measurement, so no
/// stage runs against an index grown by another stage or by other tests;
/// with `index` created and a client for the measurement.
async fn es_server(index: &str) -> anyhow::Result<(PrivateEs, EsClient)> {
    let server = PrivateEs::start().await;
    let timeout = Duration::from_secs(120);
    EsApi::new(&server.url(), timeout).create_index(index).await;
    let client = EsClient::from_url(&server.url(), timeout)?;
    Ok((server, client))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.esync.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p esync`",
            args.esync.display()
        );
    }
    let database_url = required_env("ESYNC_TEST_PG");
    let brokers = match &args.brokers {
        Some(brokers) => brokers.clone(),
        None => required_env("ESYNC_TEST_KAFKA"),
    };
    let services = Services {
        database: Database::connect(
            &Secret::new(database_url.clone()),
            args.workers as u32 + 1,
            Duration::from_secs(10),
        )
        .await?,
        database_url,
        kafka: serde_yaml::from_str(&format!("brokers: \"{brokers}\""))?,
        suffix: format!("{:06x}", rand::random::<u32>() & 0xff_ffff),
    };
    let table = format!("bench_orders_{}", services.suffix);
    println!(
        "bench-sync: {} ids, {} workers, batches of {}, table {table}",
        args.ids, args.workers, args.batch
    );
    create_table(&services, &table, args.ids).await?;
    let stages = if args.measures(Measurement::Stages) {
        Some(measure_stages(&services, &args, &table).await?)
    } else {
        None
    };

    let mut repeating = Vec::new();
    if args.measures(Measurement::Bursts) {
        repeating.push(bursts(&services, &args, &table).await?);
    }
    if args.measures(Measurement::Spread) {
        repeating.push(spread_updates(&services, &args, &table).await?);
    }
    execute(&services, &format!("DROP TABLE {table}")).await?;

    if let Some(stages) = &stages {
        stages.print(&args);
    }
    for workload in &repeating {
        println!(
            "{}, index slowed by {} ms per chunk sent: {}",
            workload.name,
            args.index_delay_ms,
            workload.summary()
        );
        println!("  {}", workload.checks());
    }
    Ok(())
}

/// The stages' standalone rates and the daemon end to end.
struct Stages {
    produce_rate: f64,
    consume_rate: f64,
    reread_rate: f64,
    bulk_rate: f64,
    e2e: DaemonRun,
}

/// Measures each stage alone, then the daemon draining a topic pre-filled
/// with every id into a fresh index (no slow proxy: the stages set the pace).
async fn measure_stages(services: &Services, args: &Args, table: &str) -> anyhow::Result<Stages> {
    let mapping: MappingConfig = serde_yaml::from_str(&format!(
        "topics: [t]\ntable: {table}\nindex: i\nversion: {{column: version, kind: counter}}\nlag_column: updated_at"
    ))?;
    let all_ids: Vec<Id> = (1..=args.ids).map(Id::Int).collect();

    // Stage 1: Kafka consume (and, on the way, the broker's produce rate).
    let stage_topic = format!("bench.stage.{}", services.suffix);
    create_topics(
        &services.kafka,
        &[stage_topic.as_str()],
        args.workers as i32,
        1,
    )
    .await?;
    let producer = IdProducer::new(&services.kafka)?;
    let started = Instant::now();
    producer.send_all(&stage_topic, &all_ids).await?;
    let produce_rate = rate(args.ids, started);
    let consume_rate = consume_rate(services, &stage_topic, args.ids as usize).await?;

    // Stage 2: database re-read by id, `workers` readers in parallel.
    let reader = Arc::new(RowReader::new(&mapping, services.database.dialect(), 1000));
    let started = Instant::now();
    let mut readers = Vec::new();
    for chunk in all_ids
        .chunks(args.batch)
        .map(<[Id]>::to_vec)
        .collect::<Vec<_>>()
        .chunks(args.ids as usize / args.batch / args.workers + 1)
    {
        let (reader, database, batches) =
            (reader.clone(), services.database.clone(), chunk.to_vec());
        readers.push(tokio::spawn(async move {
            let mut rows = 0;
            for batch in batches {
                rows += reader.fetch(&database, &batch).await?.len();
            }
            anyhow::Ok(rows)
        }));
    }
    let mut rows_read = 0;
    for reader in readers {
        rows_read += reader.await??;
    }
    let reread_rate = rate(rows_read as i64, started);

    // Stage 3: Elasticsearch _bulk of the same documents into a fresh index.
    let stage_index = format!("bench-stage-{}", services.suffix);
    let (stage_es, stage_client) = es_server(&stage_index).await?;
    let bulk_rate = bulk_rate(
        services,
        &stage_client,
        &reader,
        &stage_index,
        &all_ids,
        args.batch,
        args.workers,
    )
    .await?;
    drop(stage_es);

    // End to end: the daemon drains a topic pre-filled with every id.
    let e2e_topic = format!("bench.e2e.{}", services.suffix);
    let e2e_index = format!("bench-e2e-{}", services.suffix);
    create_topics(
        &services.kafka,
        &[e2e_topic.as_str()],
        args.workers as i32,
        1,
    )
    .await?;
    let (e2e_es, _) = es_server(&e2e_index).await?;
    producer.send_all(&e2e_topic, &all_ids).await?;
    let (e2e, ()) = run_daemon(
        services,
        args,
        &DaemonTarget {
            es_url: &e2e_es.url(),
            table,
            topic: &e2e_topic,
            index: &e2e_index,
            expected_messages: args.ids as u64,
            expected_docs: args.ids as u64,
        },
        async { Ok(()) },
    )
    .await?;
    drop(e2e_es);

    Ok(Stages {
        produce_rate,
        consume_rate,
        reread_rate,
        bulk_rate,
        e2e,
    })
}

impl Stages {
    fn print(&self, args: &Args) {
        let slowest = [
            ("kafka consume", self.consume_rate),
            ("db re-read", self.reread_rate),
            ("es bulk", self.bulk_rate),
        ]
        .into_iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("three stages");
        let e2e = &self.e2e;
        println!();
        println!("stage                      rate (ids/s)   vs slowest");
        println!("kafka produce (setup)      {:>12.0}", self.produce_rate);
        for (name, stage_rate) in [
            ("kafka consume", self.consume_rate),
            ("db re-read by id", self.reread_rate),
            ("es bulk (new ids)", self.bulk_rate),
        ] {
            println!(
                "{name:<26} {stage_rate:>12.0}   {:>8.2}x",
                stage_rate / slowest.1
            );
        }
        println!(
            "esync end to end           {:>12.0}   {:>8.2}x   (target >= 0.80 of the slowest stage, {})",
            e2e.rate,
            e2e.rate / slowest.1,
            slowest.0
        );
        println!();
        let per_50k = |seconds: f64| seconds / args.ids as f64 * 50_000.0;
        println!(
            "esync CPU: {:.2} s for {} ids = {:.3} core-s per 50,000 ids (target <= 1.0); \
             of which librdkafka threads {:.2} s, esync's own threads {:.3} core-s per 50,000 ids",
            e2e.cpu_seconds,
            args.ids,
            per_50k(e2e.cpu_seconds),
            e2e.kafka_client_cpu_seconds,
            per_50k(e2e.cpu_seconds - e2e.kafka_client_cpu_seconds),
        );
        println!(
            "esync peak RSS: {:.1} MB (target < 150 MB)",
            e2e.peak_rss_kb as f64 / 1024.0
        );
    }
}

/// Repeating ids in bursts: `distinct` ids, each announced ids/distinct
/// times close together (a row changed several times in quick succession),
/// shuffled in windows of 1000; the topic is filled before the daemon starts.
async fn bursts(services: &Services, args: &Args, table: &str) -> anyhow::Result<RepeatRun> {
    let repeats = (args.ids / args.distinct).max(1);
    let mut announced: Vec<Id> = (1..=args.distinct)
        .flat_map(|id| (0..repeats).map(move |_| Id::Int(id)))
        .collect();
    {
        use rand::seq::SliceRandom as _;
        let mut rng = rand::rng();
        for window in announced.chunks_mut(1000) {
            window.shuffle(&mut rng);
        }
    }
    let producer = IdProducer::new(&services.kafka)?;
    let ids: Vec<i64> = (1..=args.distinct).collect();
    let messages = announced.len();
    repeat_workload(
        services,
        args,
        table,
        RepeatSetUp {
            name: "repeating ids",
            topic_name: "repeat",
            ids: &ids,
            messages,
            when: When::Before,
        },
        |topic| async move {
            let started = Instant::now();
            producer.send_all(&topic, &announced).await?;
            Ok(started.elapsed())
        },
    )
    .await
}

/// Updates spread over the table: ids/4 row changes drawn uniformly at
/// random, with replacement, from the first ids/4 * 16/15 rows (50,000
/// changes over ~32,450 distinct ids by default, the proportions the issue
/// measured), each row updated, then announced, at `--update-rate` while the
/// daemon runs against the slow index; repeats of an id arrive anywhere
/// later in the stream, behind the backlog.
async fn spread_updates(
    services: &Services,
    args: &Args,
    table: &str,
) -> anyhow::Result<RepeatRun> {
    let updates = (args.ids / 4).max(1);
    let range = (updates + updates / 15).min(args.ids);
    let changes: Vec<i64> = {
        use rand::Rng as _;
        let mut rng = rand::rng();
        (0..updates).map(|_| rng.random_range(1..=range)).collect()
    };
    let ids: Vec<i64> = changes
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    repeat_workload(
        services,
        args,
        table,
        RepeatSetUp {
            name: "spread updates",
            topic_name: "spread",
            ids: &ids,
            messages: changes.len(),
            when: if args.update_rate == 0 {
                When::Before
            } else {
                When::WhileRunning
            },
        },
        |topic| update_and_announce(services, table, topic, &changes, args.update_rate),
    )
    .await
}

/// When a repeating workload produces its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// All of them before the daemon starts: it finds a full topic.
    Before,
    /// While the daemon runs.
    WhileRunning,
}

/// What a repeating workload announces, and when.
struct RepeatSetUp<'a> {
    /// As printed.
    name: &'static str,
    /// In the topic's and the index's names.
    topic_name: &'static str,
    /// The distinct ids announced.
    ids: &'a [i64],
    messages: usize,
    when: When,
}

/// What a repeating workload measured.
struct RepeatRun {
    name: &'static str,
    when: When,
    messages: usize,
    /// Distinct ids the messages announced.
    distinct: usize,
    daemon: DaemonRun,
    /// How long producing the messages took.
    announced_in: Duration,
    /// Distinct ids whose document is missing or not at its row's version
    /// once the daemon stopped.
    stale_ids: usize,
}

impl RepeatRun {
    /// `M messages over D distinct ids -> W docs written = W/D per distinct
    /// id (target <= 1.02); CPU ...; peak RSS ...`
    fn summary(&self) -> String {
        format!(
            "{} messages over {} distinct ids -> {} docs written = {:.3} per distinct id (target <= 1.02); \
             CPU {:.3} core-s per 50,000 messages; peak RSS {:.1} MB",
            self.messages,
            self.distinct,
            self.daemon.docs_written,
            self.daemon.docs_written as f64 / self.distinct as f64,
            self.daemon.cpu_seconds / self.messages as f64 * 50_000.0,
            self.daemon.peak_rss_kb as f64 / 1024.0
        )
    }

    /// What the run kept of the guarantees: every message committed, every
    /// id indexed at its row's latest version.
    fn checks(&self) -> String {
        format!(
            "offsets committed for {} of {} messages; {} of {} ids indexed at their row's version; \
             messages produced {} in {:.1} s ({:.0}/s); the daemon consumed the last {:.1} s after the first, \
             and had written as many documents as distinct ids {:.1} s after the first",
            self.daemon.committed_messages,
            self.messages,
            self.distinct - self.stale_ids,
            self.distinct,
            match self.when {
                When::Before => "before the daemon started",
                When::WhileRunning => "while the daemon ran",
            },
            self.announced_in.as_secs_f64(),
            self.messages as f64 / self.announced_in.as_secs_f64().max(1e-9),
            self.daemon.consumed_in.as_secs_f64(),
            self.daemon.elapsed.as_secs_f64(),
        )
    }
}

/// The daemon against a slow index (the delaying proxy in front of a fresh
/// private server) on a fresh topic that `announce` fills with the set-up's
/// messages, before the daemon starts or while it runs; then the index
/// compared with the table over the announced ids.
async fn repeat_workload<Announce, Announcing>(
    services: &Services,
    args: &Args,
    table: &str,
    set_up: RepeatSetUp<'_>,
    announce: Announce,
) -> anyhow::Result<RepeatRun>
where
    Announce: FnOnce(String) -> Announcing,
    Announcing: Future<Output = anyhow::Result<Duration>>,
{
    let RepeatSetUp {
        name,
        topic_name,
        ids,
        messages,
        when,
    } = set_up;
    let topic = format!("bench.{topic_name}.{}", services.suffix);
    let index = format!("bench-{topic_name}-{}", services.suffix);
    create_topics(&services.kafka, &[topic.as_str()], args.workers as i32, 1).await?;
    let (server, _) = es_server(&index).await?;
    let slow_index = DelayProxy::start(
        server.url().trim_start_matches("http://"),
        Duration::from_millis(args.index_delay_ms),
    )
    .await?;
    let target = DaemonTarget {
        es_url: &slow_index.url,
        table,
        topic: &topic,
        index: &index,
        expected_messages: messages as u64,
        expected_docs: ids.len() as u64,
    };
    let announcing = announce(topic.clone());
    let (daemon, announced_in) = match when {
        When::Before => {
            let announced_in = announcing.await?;
            let (daemon, ()) = run_daemon(services, args, &target, async { Ok(()) }).await?;
            (daemon, announced_in)
        }
        When::WhileRunning => run_daemon(services, args, &target, announcing).await?,
    };
    drop(slow_index);
    let stale_ids = stale_ids(services, &server.url(), &index, table, ids).await?;
    Ok(RepeatRun {
        name,
        when,
        messages,
        distinct: ids.len(),
        daemon,
        announced_in,
        stale_ids,
    })
}

/// Makes each change of `changes` in order (the row's version + 1, in
/// chunks of 100 rows, one statement each) and announces it on `topic` once
/// made, `rate` changes per second (0: as fast as possible); the time it
/// took, until every announcement was acknowledged.
async fn update_and_announce(
    services: &Services,
    table: &str,
    topic: String,
    changes: &[i64],
    rate: u64,
) -> anyhow::Result<Duration> {
    const CHUNK: usize = 100;
    let producer = Arc::new(IdProducer::new(&services.kafka)?);
    let topic = Arc::new(topic);
    // announcements are not awaited one chunk at a time: the broker's round
    // trip would cap the rate below the slow index's
    let mut announcing = Vec::new();
    let update =
        format!("UPDATE {table} SET version = version + 1, updated_at = now() WHERE id = ANY($1)");
    let started = tokio::time::Instant::now();
    for (number, chunk) in changes.chunks(CHUNK).enumerate() {
        if rate > 0 {
            let due = Duration::from_secs_f64((number * CHUNK) as f64 / rate as f64);
            tokio::time::sleep_until(started + due).await;
        }
        services
            .database
            .execute(&update, &[Param::IntList(chunk.to_vec())])
            .await
            .with_context(|| update.clone())?;
        let ids: Vec<Id> = chunk.iter().copied().map(Id::Int).collect();
        let (producer, topic) = (producer.clone(), topic.clone());
        announcing.push(tokio::spawn(async move {
            producer.send_all(&topic, &ids).await
        }));
    }
    for announced in announcing {
        announced.await??;
    }
    Ok(started.elapsed())
}

/// Ids of `ids` whose document in `index` is missing or not at the version
/// of its row.
async fn stale_ids(
    services: &Services,
    es_url: &str,
    index: &str,
    table: &str,
    ids: &[i64],
) -> anyhow::Result<usize> {
    let documents = Index {
        name: index.to_owned(),
        es: EsApi::new(es_url, Duration::from_secs(120)),
    }
    .documents(ids)
    .await
    .map_err(anyhow::Error::msg)?;
    let select = format!("SELECT id, version FROM {table} WHERE id = ANY($1)");
    let mut current = 0;
    for chunk in ids.chunks(10_000) {
        for row in services
            .database
            .fetch_all(&select, &[Param::IntList(chunk.to_vec())])
            .await
            .with_context(|| select.clone())?
        {
            let (Some(SqlValue::Int(id)), Some(SqlValue::Int(version))) =
                (row.get("id"), row.get("version"))
            else {
                bail!("unexpected row from {table}: {:?}", row.values);
            };
            if documents.get(id).map(|(indexed, _)| indexed) == Some(version) {
                current += 1;
            }
        }
    }
    Ok(ids.len() - current)
}

async fn execute(services: &Services, sql: &str) -> anyhow::Result<()> {
    let _ = services
        .database
        .execute(sql, &[])
        .await
        .with_context(|| sql.to_owned())?;
    Ok(())
}

async fn create_table(services: &Services, table: &str, rows: i64) -> anyhow::Result<()> {
    execute(
        services,
        &format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, total NUMERIC(10,2) NOT NULL, \
             status TEXT NOT NULL, version BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ),
    )
    .await?;
    execute(
        services,
        &format!(
            "INSERT INTO {table} (id, customer, total, status, version) \
             SELECT n, 'customer ' || (n % 997), (n % 1000) + 0.5, 'paid', 1 FROM generate_series(1, {rows}) AS n"
        ),
    )
    .await
}

async fn consume_rate(services: &Services, topic: &str, expected: usize) -> anyhow::Result<f64> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &services.kafka.brokers)
        .set("group.id", format!("bench-consume-{}", services.suffix))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    // the clock starts at the first message: group join time is not consume speed
    let first = consumer.recv().await?;
    let started = Instant::now();
    let mut count = 1usize;
    let mut bytes = first.key().map_or(0, <[u8]>::len);
    while count < expected {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("consume stalled")??;
        bytes += message.key().map_or(0, <[u8]>::len);
        count += 1;
    }
    std::hint::black_box(bytes);
    Ok(rate(count as i64, started))
}

async fn bulk_rate(
    services: &Services,
    es: &EsClient,
    reader: &RowReader,
    index: &str,
    ids: &[Id],
    batch: usize,
    workers: usize,
) -> anyhow::Result<f64> {
    let spec = DocumentSpec {
        index: Arc::from(index),
        id_column: "id".into(),
        id_type: esync::id::IdType::Integer,
        version_column: "version".into(),
        version_kind: esync::document::VersionKind::Counter,
        routing_column: None,
        delete: esync::document::DeleteStrategy::Hard,
        renames: Default::default(),
        exclude: Default::default(),
        json_columns: Default::default(),
        lag_column: None,
    };
    // Bodies are prepared first: this stage measures the server, not esync.
    // They hold the same documents per request as the daemon sends: the ids
    // of one worker (hash of the id), sorted, `batch` at a time.
    let mut per_worker: Vec<Vec<Id>> = vec![Vec::new(); workers];
    for id in ids {
        per_worker[id.worker_index(workers)].push(id.clone());
    }
    let mut bodies = Vec::new();
    for worker_ids in &per_worker {
        for chunk in worker_ids.chunks(batch) {
            let rows = reader.fetch(&services.database, chunk).await?;
            let mut body = Vec::new();
            for planned in plan_actions(&spec, chunk, rows, 1) {
                let action: BulkAction =
                    planned.action.map_err(|error| anyhow::anyhow!("{error}"))?;
                esync::bulk::encode_action(&action, &mut body);
            }
            bodies.push(body);
        }
    }
    bodies.reverse(); // senders pop from the end: keep each worker's order
    let bodies = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..workers {
        let (bodies, es) = (bodies.clone(), es.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let Some(body) = bodies.lock().expect("bodies").pop() else {
                    return anyhow::Ok(());
                };
                let response = es.bulk(body).await?;
                if response.status != 200 || response.json()["errors"] == json!(true) {
                    bail!("bulk failed: {}", response.status);
                }
            }
        }));
    }
    for sender in futures::future::join_all(senders).await {
        sender??;
    }
    Ok(rate(ids.len() as i64, started))
}

struct DaemonRun {
    rate: f64,
    /// From the first message consumed to the last distinct id written.
    elapsed: Duration,
    /// From the first message consumed to the last.
    consumed_in: Duration,
    cpu_seconds: f64,
    /// CPU of librdkafka's own threads (`rdk:*`), part of `cpu_seconds`.
    kafka_client_cpu_seconds: f64,
    peak_rss_kb: u64,
    docs_written: u64,
    /// Messages below the offsets the daemon committed, once it stopped.
    committed_messages: i64,
}

/// Where one daemon run reads and writes, and how much it must do.
struct DaemonTarget<'a> {
    es_url: &'a str,
    table: &'a str,
    topic: &'a str,
    index: &'a str,
    expected_messages: u64,
    /// Distinct ids: the run is not over before this many documents are written.
    expected_docs: u64,
}

/// Runs the daemon on `target` until it is done (see [`measure_daemon`]),
/// with `while_running` alongside, and stops it.
async fn run_daemon<Alongside>(
    services: &Services,
    args: &Args,
    target: &DaemonTarget<'_>,
    while_running: impl Future<Output = anyhow::Result<Alongside>>,
) -> anyhow::Result<(DaemonRun, Alongside)> {
    let DaemonTarget {
        es_url,
        table,
        topic,
        index,
        expected_messages,
        expected_docs,
    } = *target;
    let group = format!("bench-{topic}");
    let dir = std::env::temp_dir().join(format!("esync-bench-{}-{topic}", services.suffix));
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = format!(
        "source: {{url: \"${{ESYNC_DATABASE_URL}}\", max_connections: {connections}}}\n\
         kafka: {{brokers: \"{brokers}\", group_id: {group}}}\n\
         elasticsearch: {{urls: [\"{es}\"], request_timeout: 120s}}\n\
         mappings:\n  - topics: [{topic}]\n    table: {table}\n    index: {index}\n    version: {{column: version, kind: counter}}\n\
         \x20   lag_column: updated_at\n\
         batch: {{max_ids: {batch}, max_wait: 200ms}}\nworkers: {workers}\nmetrics: {{listen: \"127.0.0.1:{port}\"}}\n",
        connections = args.workers + 1,
        brokers = services.kafka.brokers,
        es = es_url,
        batch = args.batch,
        workers = args.workers,
    );
    let config_path = dir.join("esync.yaml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.join("esync.log"))?;
    // ESYNC_BENCH_PROFILE=dir runs the daemon under `perf record` (the CPU
    // figures then include perf itself)
    let mut command = match std::env::var("ESYNC_BENCH_PROFILE") {
        Ok(profile_dir) => {
            let mut perf = Command::new("perf");
            perf.args(["record", "-g", "-o"])
                .arg(PathBuf::from(profile_dir).join(format!("{topic}.perf.data")))
                .arg("--")
                .arg(&args.esync);
            perf
        }
        Err(_) => Command::new(&args.esync),
    };
    let mut child = command
        .args(["run", "--config"])
        .arg(&config_path)
        .env("ESYNC_DATABASE_URL", &services.database_url)
        // ESYNC_BENCH_LOG=info keeps the daemon's per-batch log in esync.log
        .env(
            "RUST_LOG",
            std::env::var("ESYNC_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let commits =
        GroupCommits::new(&services.kafka.brokers, &group, topic).map_err(anyhow::Error::msg)?;
    let measuring = measure_daemon(&mut child, port, expected_messages, expected_docs, &commits);
    let result = tokio::try_join!(measuring, while_running);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let (mut run, alongside) =
        result.with_context(|| format!("daemon run on {topic}; log in {}", dir.display()))?;
    // what it committed on the way out counts too
    run.committed_messages = commits.messages().await.map_err(anyhow::Error::msg)?;
    Ok((run, alongside))
}

/// Polls `/metrics` until every message was consumed and every distinct id
/// written, then until the written count is stable (late repeats), where it
/// reads the process's CPU time and peak RSS, and until every message is
/// committed (a slow batch can hold the count still for a second; its
/// commit comes after it: a count that moves again is not stable yet).
async fn measure_daemon(
    child: &mut Child,
    port: u16,
    expected_messages: u64,
    expected_docs: u64,
    commits: &GroupCommits,
) -> anyhow::Result<DaemonRun> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut first_message_at = None;
    let mut consumed_at = None;
    let mut done_at = None;
    let mut last_written = 0;
    // (cpu seconds, of which librdkafka's, peak RSS) when the count stopped
    let mut stable_usage = None;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("esync exited with {status}");
        }
        if Instant::now() > deadline {
            bail!("esync did not finish within 30 minutes");
        }
        let metrics = metrics(port).await;
        let messages = metric_sum(&metrics, "esync_messages_total") as u64;
        let written = (metric_sum(&metrics, "esync_docs_indexed_total")
            + metric_sum(&metrics, "esync_version_conflicts_total")) as u64;
        if first_message_at.is_none() && messages > 0 {
            first_message_at = Some(Instant::now());
        }
        if consumed_at.is_none() && messages >= expected_messages {
            consumed_at = Some(Instant::now());
        }
        match done_at {
            None if messages >= expected_messages && written >= expected_docs => {
                done_at = Some(Instant::now())
            }
            Some(done) if written == last_written => {
                let (cpu_seconds, kafka_client_cpu_seconds, peak_rss_kb) = match stable_usage {
                    Some(usage) => usage,
                    None => *stable_usage.insert(process_usage(child.id())?),
                };
                let committed = done.elapsed() > Duration::from_secs(120)
                    || commits.messages().await.map_err(anyhow::Error::msg)?
                        >= expected_messages as i64;
                if !committed {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    continue;
                }
                let elapsed = done_at
                    .zip(first_message_at)
                    .map_or(Duration::ZERO, |(done, first)| done - first);
                return Ok(DaemonRun {
                    rate: expected_docs as f64 / elapsed.as_secs_f64().max(1e-9),
                    elapsed,
                    consumed_in: consumed_at
                        .zip(first_message_at)
                        .map_or(Duration::ZERO, |(consumed, first)| consumed - first),
                    cpu_seconds,
                    kafka_client_cpu_seconds,
                    peak_rss_kb,
                    docs_written: written,
                    committed_messages: 0,
                });
            }
            Some(_) => stable_usage = None,
            None => {}
        }
        last_written = written;
        tokio::time::sleep(Duration::from_millis(if done_at.is_some() {
            1000
        } else {
            100
        }))
        .await;
    }
}

/// CPU seconds (user + system) of a process and of its librdkafka threads,
/// and its peak RSS, from /proc.
fn process_usage(pid: u32) -> anyhow::Result<(f64, f64, u64)> {
    let total = cpu_seconds(Path::new(&format!("/proc/{pid}/stat"))).context("bad /proc stat")?;
    let mut kafka_client = 0.0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if name.starts_with("rdk:") {
            kafka_client += cpu_seconds(&task.join("stat")).unwrap_or(0.0);
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_rss_kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .context("no VmHWM")?;
    Ok((total, kafka_client, peak_rss_kb))
}
