//! `bench-sync`: the esync daemon end to end against the standalone speed of
//! each stage it is made of, in one run on one machine.
//!
//! Prints, for N changed ids (default 200,000):
//! - standalone throughput of Kafka consume, database re-read by id, and
//!   Elasticsearch `_bulk` (same concurrency as the daemon's workers);
//! - the daemon's end-to-end ids/s and its ratio to the slowest stage;
//! - the daemon's own CPU seconds (from /proc) per 50,000 ids and peak RSS;
//! - docs written per distinct id for a workload where ids repeat, against a
//!   slow index (a delaying proxy, `--index-delay-ms`) so ids queue up.
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
use esync::document::{BulkAction, DocumentSpec, plan_actions};
use esync::es::EsClient;
use esync::id::Id;
use esync::kafka::{IdProducer, create_topics};
use esync::secret::Secret;
use esync_testkit::env::required_env;
use esync_testkit::es::EsApi;
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
    /// Distinct ids of the repeating workload (each announced ids/distinct times).
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
    /// How long the slow index of the repeating workload holds each chunk a
    /// client sends (ms): the index is the slowest stage, as in production.
    #[arg(long, default_value_t = 10)]
    index_delay_ms: u64,
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
    let consume_rate = consume_rate(&services, &stage_topic, args.ids as usize).await?;

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
        &services,
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
    let e2e = run_daemon(
        &services,
        &args,
        &e2e_es.url(),
        &table,
        &e2e_topic,
        &e2e_index,
        args.ids as u64,
        args.ids as u64,
    )
    .await?;
    drop(e2e_es);

    // Repeating ids: `distinct` ids, each announced several times in bursts
    // (a row changed several times in quick succession), shuffled in windows.
    let repeat_topic = format!("bench.repeat.{}", services.suffix);
    let repeat_index = format!("bench-repeat-{}", services.suffix);
    create_topics(
        &services.kafka,
        &[repeat_topic.as_str()],
        args.workers as i32,
        1,
    )
    .await?;
    let (repeat_es, _) = es_server(&repeat_index).await?;
    let slow_index = DelayProxy::start(
        repeat_es.url().trim_start_matches("http://"),
        Duration::from_millis(args.index_delay_ms),
    )
    .await?;
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
    producer.send_all(&repeat_topic, &announced).await?;
    let repeated = run_daemon(
        &services,
        &args,
        &slow_index.url,
        &table,
        &repeat_topic,
        &repeat_index,
        announced.len() as u64,
        args.distinct as u64,
    )
    .await?;
    drop(slow_index);
    drop(repeat_es);
    execute(&services, &format!("DROP TABLE {table}")).await?;

    let slowest = [
        ("kafka consume", consume_rate),
        ("db re-read", reread_rate),
        ("es bulk", bulk_rate),
    ]
    .into_iter()
    .min_by(|a, b| a.1.total_cmp(&b.1))
    .expect("three stages");
    let written_per_distinct = repeated.docs_written as f64 / args.distinct as f64;
    println!();
    println!("stage                      rate (ids/s)   vs slowest");
    println!("kafka produce (setup)      {produce_rate:>12.0}");
    for (name, stage_rate) in [
        ("kafka consume", consume_rate),
        ("db re-read by id", reread_rate),
        ("es bulk (new ids)", bulk_rate),
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
    println!(
        "repeating ids, index slowed by {} ms per chunk sent: {} messages over {} distinct ids -> {} docs written = {:.3} per distinct id (target <= 1.02); \
         CPU {:.3} core-s per 50,000 messages; peak RSS {:.1} MB",
        args.index_delay_ms,
        announced.len(),
        args.distinct,
        repeated.docs_written,
        written_per_distinct,
        repeated.cpu_seconds / announced.len() as f64 * 50_000.0,
        repeated.peak_rss_kb as f64 / 1024.0
    );
    Ok(())
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
    cpu_seconds: f64,
    /// CPU of librdkafka's own threads (`rdk:*`), part of `cpu_seconds`.
    kafka_client_cpu_seconds: f64,
    peak_rss_kb: u64,
    docs_written: u64,
}

#[allow(clippy::too_many_arguments)]
async fn run_daemon(
    services: &Services,
    args: &Args,
    es_url: &str,
    table: &str,
    topic: &str,
    index: &str,
    expected_messages: u64,
    expected_docs: u64,
) -> anyhow::Result<DaemonRun> {
    let dir = std::env::temp_dir().join(format!("esync-bench-{}-{topic}", services.suffix));
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = format!(
        "source: {{url: \"${{ESYNC_DATABASE_URL}}\", max_connections: {connections}}}\n\
         kafka: {{brokers: \"{brokers}\", group_id: bench-{topic}}}\n\
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
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let result = measure_daemon(&mut child, port, expected_messages, expected_docs).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    result.with_context(|| format!("daemon run on {topic}; log in {}", dir.display()))
}

/// Polls `/metrics` until every message was consumed and every distinct id
/// written, then until the written count is stable (late repeats), and reads
/// the process's CPU time and peak RSS.
async fn measure_daemon(
    child: &mut Child,
    port: u16,
    expected_messages: u64,
    expected_docs: u64,
) -> anyhow::Result<DaemonRun> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut first_message_at = None;
    let mut done_at = None;
    let mut last_written = 0;
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
        match done_at {
            None if messages >= expected_messages && written >= expected_docs => {
                done_at = Some(Instant::now())
            }
            Some(_) if written == last_written => {
                let elapsed = done_at
                    .zip(first_message_at)
                    .map_or(Duration::ZERO, |(done, first)| done - first);
                let (cpu_seconds, kafka_client_cpu_seconds, peak_rss_kb) =
                    process_usage(child.id())?;
                return Ok(DaemonRun {
                    rate: expected_docs as f64 / elapsed.as_secs_f64().max(1e-9),
                    cpu_seconds,
                    kafka_client_cpu_seconds,
                    peak_rss_kb,
                    docs_written: written,
                });
            }
            _ => {}
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
