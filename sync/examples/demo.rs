//! The quick-start demo (run by `scripts/demo.sh`): creates a demo `orders`
//! table with data, a topic and an index, starts `esync run`, announces
//! changed ids the way a CDC pipeline would, and shows the index following the
//! table through inserts, updates and deletes.
//!
//! Usage: demo <path to the esync binary> <work dir>; the `ESYNC_TEST_*`
//! variables from `scripts/services.sh up` say where the services are.

use anyhow::{Context as _, bail};
use esync::db::Database;
use esync::es::EsClient;
use esync::id::Id;
use esync::kafka::{IdProducer, create_topics};
use esync::secret::Secret;
use sqlx::AssertSqlSafe;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROWS: i64 = 5_000;

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .with_context(|| format!("{name} is not set: run `scripts/services.sh up` first"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(esync_binary), Some(work_dir)) = (args.next(), args.next()) else {
        bail!("usage: demo <esync binary> <work dir>");
    };
    let work_dir = PathBuf::from(work_dir);
    std::fs::create_dir_all(&work_dir)?;
    let (database_url, brokers, es_url) = (
        env("ESYNC_TEST_PG")?,
        env("ESYNC_TEST_KAFKA")?,
        env("ESYNC_TEST_ES")?,
    );
    let suffix = format!("{:06x}", rand::random::<u32>() & 0xffffff);
    let (table, topic, index) = (
        format!("demo_orders_{suffix}"),
        format!("demo.orders.{suffix}"),
        format!("demo-orders-{suffix}"),
    );

    println!("1. creating table {table} with {ROWS} rows in PostgreSQL");
    let database = Database::connect(
        &Secret::new(database_url.clone()),
        2,
        Duration::from_secs(10),
    )
    .await?;
    let Database::Postgres(pool) = &database else {
        bail!("the demo uses PostgreSQL")
    };
    let execute = |sql: String| async move {
        sqlx::query(AssertSqlSafe(sql))
            .execute(pool)
            .await
            .map(drop)
    };
    execute(format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, total NUMERIC(10,2) NOT NULL, \
         status TEXT NOT NULL, tags TEXT[] NOT NULL DEFAULT '{{}}', attrs JSONB, version BIGINT NOT NULL DEFAULT 1, \
         deleted_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ))
    .await?;
    execute(format!(
        "INSERT INTO {table} (id, customer, total, status, tags, attrs) SELECT n, 'customer ' || (n % 97), \
         (n % 500) + 0.99, 'new', ARRAY['demo', 'batch' || (n % 5)], jsonb_build_object('channel', 'web', 'n', n) \
         FROM generate_series(1, {ROWS}) AS n"
    ))
    .await?;

    println!("2. creating topic {topic} (4 partitions) and index {index} (esync index create)");
    let kafka: esync::config::KafkaConfig =
        serde_yaml::from_str(&format!("brokers: \"{brokers}\""))?;
    create_topics(&kafka, &[topic.as_str()], 4, 1).await?;
    let es = EsClient::from_url(&es_url, Duration::from_secs(30))?;

    let config_path = work_dir.join("esync.yaml");
    std::fs::write(
        &config_path,
        format!(
            "# written by the demo; see sync/esync.example.yaml for every option\n\
             source:\n  url: ${{ESYNC_DATABASE_URL}}\n\
             kafka:\n  brokers: \"{brokers}\"\n  group_id: demo-{suffix}\n\
             elasticsearch:\n  urls: [\"{es_url}\"]\n\
             mappings:\n  - name: orders\n    topics: [{topic}]\n    table: {table}\n    index: {index}\n\
             \x20   version: {{column: version, kind: counter}}\n    delete: {{strategy: soft, column: deleted_at}}\n\
             \x20   exclude: [deleted_at]\n    lag_column: updated_at\n\
             \x20   index_definition:\n      settings: {{number_of_shards: 1}}\n\
             \x20     mappings: {{properties: {{customer: {{type: keyword}}, status: {{type: keyword}}, total: {{type: double}}, tags: {{type: keyword}}}}}}\n\
             metrics:\n  listen: 127.0.0.1:9464\n"
        ),
    )?;
    // versioned index behind the alias, from the index_definition above
    let created = Command::new(&esync_binary)
        .args(["index", "create", "--config"])
        .arg(&config_path)
        .env("ESYNC_DATABASE_URL", &database_url)
        .output()
        .context("cannot run esync index create")?;
    if !created.status.success() {
        bail!(
            "esync index create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
    }
    print!(
        "   esync index create: {}",
        String::from_utf8_lossy(&created.stdout)
    );

    println!(
        "3. starting `esync run --config {}` (log: {})",
        config_path.display(),
        work_dir.join("esync.log").display()
    );
    let log = std::fs::File::create(work_dir.join("esync.log"))?;
    let mut daemon = Command::new(&esync_binary)
        .args(["run", "--config"])
        .arg(&config_path)
        .env("ESYNC_DATABASE_URL", &database_url)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start esync")?;

    let producer = IdProducer::new(&kafka)?;
    let all_ids: Vec<Id> = (1..=ROWS).map(Id::Int).collect();
    let started = Instant::now();
    println!("4. announcing {ROWS} new ids on {topic}");
    producer.send_all(&topic, &all_ids).await?;
    wait_for_count(&es, &index, ROWS as u64, &mut daemon).await?;
    println!(
        "   all {ROWS} documents indexed in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    println!(
        "5. changing rows: 500 updates, 100 soft deletes, 100 hard deletes (announced shuffled and twice)"
    );
    execute(format!("UPDATE {table} SET status = 'paid', total = total + 10, version = version + 1, updated_at = now() WHERE id % 10 = 0")).await?;
    execute(format!("UPDATE {table} SET deleted_at = now(), version = version + 1, updated_at = now() WHERE id % 50 = 1")).await?;
    execute(format!("DELETE FROM {table} WHERE id % 50 = 2")).await?;
    let mut changed: Vec<Id> = (1..=ROWS)
        .filter(|id| id % 10 == 0 || id % 50 == 1 || id % 50 == 2)
        .map(Id::Int)
        .collect();
    changed.extend(changed.clone());
    changed.reverse();
    producer.send_all(&topic, &changed).await?;
    wait_for_count(&es, &index, (ROWS - 200) as u64, &mut daemon).await?;
    let doc = es
        .request_ok(
            elasticsearch::http::Method::Get,
            &format!("/{index}/_doc/10"),
            None,
        )
        .await?;
    println!(
        "   index now holds {} documents; id 10 is version {}:",
        ROWS - 200,
        doc["_version"]
    );
    println!("   {}", doc["_source"]);

    let metrics = fetch_metrics().await;
    println!("6. metrics (http://127.0.0.1:9464/metrics):");
    for line in metrics
        .lines()
        .filter(|line| line.starts_with("esync_") && line.contains("_total"))
    {
        println!("   {line}");
    }
    println!("7. stopping esync (SIGTERM)");
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait()?;
    println!(
        "   esync exited with {status}; demo table {table} and index {index} are left for you to explore"
    );
    Ok(())
}

async fn wait_for_count(
    es: &EsClient,
    index: &str,
    expected: u64,
    daemon: &mut std::process::Child,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Some(status) = daemon.try_wait()? {
            bail!("esync exited with {status}; see its log");
        }
        let count = es
            .request_ok(
                elasticsearch::http::Method::Get,
                &format!("/{index}/_count"),
                None,
            )
            .await
            .map(|body| body["count"].as_u64().unwrap_or(0))
            .unwrap_or(0);
        if count == expected {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("index {index} holds {count} documents after 120 s, expected {expected}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn fetch_metrics() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut stream) = tokio::net::TcpStream::connect("127.0.0.1:9464").await else {
        return String::new();
    };
    let _ = stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await;
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body).await;
    body
}
