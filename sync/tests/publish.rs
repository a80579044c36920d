//! `esync publish` against real services: PostgreSQL and MariaDB, the
//! noida-db Kafka broker (and its Elasticsearch API for the end-to-end case).
//!
//! Each scenario is one async fn run once per database. The publisher and the
//! daemon run as the real binary, so signals, checkpoints and exit codes are
//! the ones users get.

use esync::db::Database;
use esync::secret::Secret;
use esync_testkit::kafka::{counts, read_topic, topic_size};
use esync_testkit::prelude::*;
use esync_testkit::publish::*;
use rand::Rng as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ESYNC: &str = env!("CARGO_BIN_EXE_esync");
const WAIT: Duration = Duration::from_secs(60);

/// `(id, count)` pairs missing from `counts` for `ids`, as a short text.
fn missing(
    counts: &BTreeMap<i64, usize>,
    ids: impl IntoIterator<Item = i64>,
    at_least: usize,
) -> Result<(), String> {
    let short: Vec<i64> = ids
        .into_iter()
        .filter(|id| counts.get(id).copied().unwrap_or(0) < at_least)
        .collect();
    if short.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} id(s) below {at_least} message(s), first {:?}",
            short.len(),
            &short[..short.len().min(10)]
        ))
    }
}

/// A transaction that stamps a row, then commits only after newer rows were
/// published, is still published (look-back window); rows with a NULL
/// timestamp are reported.
async fn late_commit_is_published(db: Db) {
    let table = OrdersTable::create(db).await;
    prepare_for_polling(&table).await;
    let topic = Topic::create(&kafka(), "publish", 3).await;
    let (brokers, es_url) = (kafka(), es());
    table.insert(1..=200).await;
    let setup = PublisherSetup {
        table: &table,
        topic: &topic.name,
        brokers: &brokers,
        es_url: &es_url,
        publish: "  poll_interval: 100ms\n  page_size: 50\n  look_back: 30s\n  null_check_interval: 200ms\n".into(),
        checkpoint_table: None,
    };
    let mut publisher = Publisher::start(ESYNC, &setup, false);
    wait_until(
        "the existing rows published",
        WAIT,
        &mut [&mut publisher],
        || async {
            missing(
                &counts(&read_topic(&brokers, &topic.name).await),
                1..=200,
                1,
            )
        },
    )
    .await;

    // the late transaction: its row is stamped now, but commits later
    let stamp = format!(
        "UPDATE {} SET version = version + 1, updated_at = {} WHERE id = 7",
        table.name,
        db.now_sql()
    );
    let late: Box<dyn std::any::Any> = match &table.pool {
        Pool::Postgres(pool) => {
            let mut transaction = pool.begin().await.expect("begin");
            let _ = sqlx::query(sqlx::AssertSqlSafe(stamp))
                .execute(&mut *transaction)
                .await
                .expect("stamp");
            Box::new(transaction)
        }
        Pool::MySql(pool) => {
            let mut transaction = pool.begin().await.expect("begin");
            let _ = sqlx::query(sqlx::AssertSqlSafe(stamp))
                .execute(&mut *transaction)
                .await
                .expect("stamp");
            Box::new(transaction)
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    table.insert(201..=210).await;
    for id in 150..=160 {
        table.execute(&touch_sql(&table, id, "newer")).await;
    }
    wait_until(
        "the newer rows published",
        WAIT,
        &mut [&mut publisher],
        || async {
            let counts = counts(&read_topic(&brokers, &topic.name).await);
            missing(&counts, 201..=210, 1).and(missing(&counts, 150..=160, 2))
        },
    )
    .await;
    assert_eq!(
        counts(&read_topic(&brokers, &topic.name).await)[&7],
        1,
        "not committed yet: not visible"
    );
    match late.downcast::<sqlx::Transaction<'static, sqlx::Postgres>>() {
        Ok(transaction) => transaction.commit().await.expect("commit"),
        Err(other) => other
            .downcast::<sqlx::Transaction<'static, sqlx::MySql>>()
            .expect("a transaction")
            .commit()
            .await
            .expect("commit"),
    }
    wait_until(
        "the late commit published",
        WAIT,
        &mut [&mut publisher],
        || async { missing(&counts(&read_topic(&brokers, &topic.name).await), [7], 2) },
    )
    .await;
    let metrics = publisher.metrics().await;
    assert!(
        metric_sum(&metrics, "esync_publish_late_ids_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "esync_publish_suppressed_total") >= 200.0,
        "the window re-scan is suppressed: {metrics}"
    );

    // a row edited by hand without a timestamp is reported, not silently missed
    table
        .execute(&format!(
            "UPDATE {} SET updated_at = NULL, version = version + 1 WHERE id IN (42, 43)",
            table.name
        ))
        .await;
    let publisher_log = publisher.log_path.clone();
    wait_until("NULL timestamps reported", WAIT, &mut [], || async {
        let metrics = publisher.metrics().await;
        let rows = metric_sum(&metrics, "esync_publish_null_timestamp_rows");
        let log = std::fs::read_to_string(&publisher_log).unwrap_or_default();
        if rows == 2.0 {
            Ok(())
        } else {
            Err(format!(
                "esync_publish_null_timestamp_rows = {rows}; log:\n{log}"
            ))
        }
    })
    .await;
    let log = std::fs::read_to_string(&publisher.log_path).unwrap_or_default();
    assert!(
        log.contains("NULL timestamp") && log.contains("42,43"),
        "{}",
        publisher.log_tail(20)
    );

    let status = publisher.terminate();
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}\n{}",
        publisher.log_tail(20)
    );
    let checkpoint =
        std::fs::read_to_string(&publisher.checkpoint_path).expect("checkpoint written");
    assert!(checkpoint.contains("\"orders\""), "{checkpoint}");
    table.drop_table().await;
}

/// Writers keep inserting and updating while the publisher is SIGKILLed twice
/// and restarted: every row's latest change is published after it happened.
async fn killed_publisher_misses_nothing(db: Db, checkpoint_in_table: bool) {
    let table = Arc::new(OrdersTable::create(db).await);
    prepare_for_polling(&table).await;
    let topic = Topic::create(&kafka(), "publish", 3).await;
    let (brokers, es_url) = (kafka(), es());
    table.insert(1..=300).await;
    let checkpoint_table = checkpoint_in_table.then(|| format!("{}_checkpoint", table.name));
    let setup = PublisherSetup {
        table: &table,
        topic: &topic.name,
        brokers: &brokers,
        es_url: &es_url,
        publish: "  poll_interval: 50ms\n  page_size: 40\n  look_back: 5s\n".into(),
        checkpoint_table: checkpoint_table.clone(),
    };
    let mut publisher = Publisher::start(ESYNC, &setup, false);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (table, stop) = (table.clone(), stop.clone());
        tokio::spawn(async move {
            let mut next_id = 301;
            let mut changes = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = rand::rng().random_range(1..next_id);
                table.execute(&touch_sql(&table, id, "w")).await;
                if changes % 3 == 0 {
                    table.insert([next_id]).await;
                    next_id += 1;
                }
                changes += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            changes
        })
    };
    for _ in 0..2 {
        // kill only once the running process has checkpointed (again), so the
        // restart resumes from a checkpoint while the writer keeps writing
        let checkpoint_file = publisher.checkpoint_path.clone();
        let before = saved_checkpoint(&table, checkpoint_table.as_deref(), &checkpoint_file).await;
        wait_until("a new checkpoint", WAIT, &mut [&mut publisher], || async {
            let now = saved_checkpoint(&table, checkpoint_table.as_deref(), &checkpoint_file).await;
            if now.is_some() && now != before {
                Ok(())
            } else {
                Err(format!("checkpoint still {now:?}"))
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        publisher.kill();
        tokio::time::sleep(Duration::from_millis(400)).await;
        publisher.spawn();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let changes = writer.await.expect("writer");
    assert!(changes > 100, "the writer made only {changes} changes");

    let times = row_times(&table).await;
    wait_until(
        "every row's latest change published",
        WAIT,
        &mut [&mut publisher],
        || async {
            let mut latest: BTreeMap<i64, i64> = BTreeMap::new();
            for message in read_topic(&brokers, &topic.name).await {
                let id: i64 = message.key.parse().expect("integer id");
                let entry = latest.entry(id).or_insert(i64::MIN);
                *entry = (*entry).max(message.timestamp_ms);
            }
            let stale: Vec<i64> = times
                .iter()
                .filter(|(id, updated_us)| {
                    latest
                        .get(id)
                        .is_none_or(|produced_ms| *produced_ms < *updated_us / 1000)
                })
                .map(|(id, _)| *id)
                .collect();
            if stale.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} rows not published after their last change: {:?}",
                    stale.len(),
                    times.len(),
                    &stale[..stale.len().min(10)]
                ))
            }
        },
    )
    .await;
    let status = publisher.terminate();
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}\n{}",
        publisher.log_tail(20)
    );
    if let Some(name) = &checkpoint_table {
        table.execute(&format!("DROP TABLE {name}")).await;
    }
    table.drop_table().await;
}

/// The saved watermark (file or table), if any.
async fn saved_checkpoint(
    table: &OrdersTable,
    checkpoint_table: Option<&str>,
    checkpoint_file: &std::path::Path,
) -> Option<String> {
    match checkpoint_table {
        None => std::fs::read_to_string(checkpoint_file)
            .ok()
            .filter(|text| text.contains("timestamp_us")),
        Some(name) => {
            let sql = format!("SELECT timestamp_us FROM {name} WHERE mapping = 'orders'");
            let saved = table.pool.try_scalar(&sql).await;
            saved.map(|micros| micros.to_string())
        }
    }
}

/// Serialises installing the shared outbox table and function within this
/// test binary (concurrent `CREATE OR REPLACE FUNCTION` can conflict).
static OUTBOX_INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Installs `sync/sql/<db>/outbox.sql` and the triggers for `table`.
/// Drops `table` and its rows left in the shared outbox.
async fn drop_outbox_table(table: &OrdersTable) {
    table
        .execute(&format!(
            "DELETE FROM esync_outbox WHERE table_name = '{}'",
            table.name
        ))
        .await;
    table.drop_table().await;
}

async fn install_outbox(table: &OrdersTable) {
    let sql_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let (setup, triggers) = match table.db {
        Db::Postgres => ("postgres/outbox.sql", "postgres/outbox_trigger.sql"),
        Db::MariaDb => ("mysql/outbox.sql", "mysql/outbox_triggers.sql"),
    };
    let read = |name: &str| {
        std::fs::read_to_string(sql_dir.join(name))
            .unwrap_or_else(|error| panic!("{name}: {error}"))
    };
    {
        let _guard = OUTBOX_INSTALL.lock().await;
        table.execute(&read(setup)).await;
    }
    let triggers = read(triggers)
        .replace("__TABLE__", &table.name)
        .replace("__ID_COLUMN__", "id");
    table.execute(&triggers).await;
}

/// Three writers insert, update and delete concurrently while two relays
/// share the outbox: every change is relayed exactly once and the outbox ends
/// empty (or all marked).
async fn outbox_relays_every_change_once(db: Db, after_relay: &str) {
    let table = Arc::new(OrdersTable::create(db).await);
    install_outbox(&table).await;
    let topic = Topic::create(&kafka(), "outbox", 3).await;
    let (brokers, es_url) = (kafka(), es());
    let setup = PublisherSetup {
        table: &table,
        topic: &topic.name,
        brokers: &brokers,
        es_url: &es_url,
        publish: format!(
            "  outbox: {{after_relay: {after_relay}, batch_size: 40, poll_interval: 50ms}}\n"
        ),
        checkpoint_table: None,
    };
    let mut relay_one = Publisher::start(ESYNC, &setup, true);
    let mut relay_two = Publisher::start(ESYNC, &setup, true);

    let mut writers = Vec::new();
    for writer in 0..3i64 {
        let table = table.clone();
        writers.push(tokio::spawn(async move {
            let mut changes: BTreeMap<i64, usize> = BTreeMap::new();
            let ids: Vec<i64> = (writer * 1000 + 1..=writer * 1000 + 120).collect();
            for id in &ids {
                table.insert([*id]).await;
                *changes.entry(*id).or_default() += 1;
            }
            let mut deleted = Vec::new();
            for step in 0..240 {
                let id = ids[rand::rng().random_range(0..ids.len())];
                let sql = if step % 12 == 0 {
                    format!("DELETE FROM {} WHERE id = {id}", table.name)
                } else {
                    format!(
                        "UPDATE {} SET version = version + 1 WHERE id = {id}",
                        table.name
                    )
                };
                if table.pool.execute_count(&sql).await == 1 {
                    *changes.entry(id).or_default() += 1;
                    if step % 12 == 0 {
                        deleted.push(id);
                    }
                }
            }
            changes
        }));
    }
    let mut expected: BTreeMap<i64, usize> = BTreeMap::new();
    for writer in writers {
        expected.extend(writer.await.expect("writer"));
    }
    let total: usize = expected.values().sum();

    let pending_sql = format!(
        "SELECT COUNT(*) FROM esync_outbox WHERE table_name = '{}' AND relayed_at IS NULL",
        table.name
    );
    wait_until(
        "the outbox drained",
        WAIT,
        &mut [&mut relay_one, &mut relay_two],
        || async {
            let pending = table.scalar(&pending_sql).await;
            let produced = topic_size(&brokers, &topic.name).await;
            if pending == 0 && produced >= total as i64 {
                Ok(())
            } else {
                Err(format!("{pending} pending, {produced} of {total} produced"))
            }
        },
    )
    .await;
    let received = counts(&read_topic(&brokers, &topic.name).await);
    if received != expected {
        let differing: Vec<String> = expected
            .keys()
            .chain(received.keys())
            .filter(|id| received.get(id) != expected.get(id))
            .map(|id| {
                format!(
                    "{id}: {:?} relayed, {:?} changes",
                    received.get(id),
                    expected.get(id)
                )
            })
            .collect();
        let logs = [&relay_one, &relay_two]
            .map(|relay| relay.log_tail(30))
            .join("\n---\n");
        panic!(
            "one message per change expected; {} id(s) differ, first {:?}\n--- relay logs ---\n{logs}",
            differing.len(),
            &differing[..differing.len().min(10)]
        );
    }
    let remaining = table
        .scalar(&format!(
            "SELECT COUNT(*) FROM esync_outbox WHERE table_name = '{}'",
            table.name
        ))
        .await;
    match after_relay {
        "delete" => assert_eq!(remaining, 0, "relayed rows are deleted"),
        _ => assert_eq!(remaining, total as i64, "relayed rows are kept, marked"),
    }
    for relay in [&mut relay_one, &mut relay_two] {
        let status = relay.terminate();
        assert!(
            status.success(),
            "SIGTERM must exit 0, got {status}\n{}",
            relay.log_tail(20)
        );
    }
    drop_outbox_table(&table).await;
}

/// A relay whose produce fails (no broker) rolls its transaction back: the
/// removal made before producing must not survive, every outbox row stays
/// pending, and the next relay with a working broker relays them all.
async fn outbox_keeps_rows_when_kafka_fails(db: Db, after_relay: &str) {
    let table = OrdersTable::create(db).await;
    install_outbox(&table).await;
    let topic = Topic::create(&kafka(), "outbox_fail", 1).await;
    table.insert(1..=5).await;
    let pending_sql = format!(
        "SELECT COUNT(*) FROM esync_outbox WHERE table_name = '{}' AND relayed_at IS NULL",
        table.name
    );
    assert_eq!(table.scalar(&pending_sql).await, 5);
    let config = |brokers: &str| {
        let text = format!(
            r#"source: {{url: "{url}"}}
kafka: {{brokers: "{brokers}", options: {{message.timeout.ms: "1500"}}}}
elasticsearch: {{urls: ["{es}"]}}
mappings:
  - {{name: orders, topics: [{topic}], table: {table}, index: unused, version: {{column: version, kind: counter}}}}
publish: {{outbox: {{after_relay: {after_relay}, batch_size: 3}}}}
"#,
            url = db.url(),
            es = es(),
            topic = topic.name,
            table = table.name,
        );
        esync::config::LoadedConfig::from_yaml(&text, &|_| None)
            .unwrap_or_else(|problems| panic!("{problems:?}"))
            .config
    };
    // the relay under test reads through its own pool
    let database = Database::connect(&Secret::new(db.url()), 4, Duration::from_secs(10))
        .await
        .expect("connect");
    let relay = |config: &esync::config::Config| {
        let producer = esync::kafka::IdProducer::new(&config.kafka).expect("producer");
        esync::publish::outbox::Relay::new(
            config,
            database.clone(),
            Arc::new(producer),
            esync::publish::metrics::PublishMetrics::unregistered(),
        )
        .expect("relay")
    };
    // nothing listens on port 9 (discard): the produce times out
    let broken = relay(&config("127.0.0.1:9"));
    // (Ok(0): a concurrent test's relay briefly holds our rows; try again)
    let deadline = Instant::now() + WAIT;
    let error = loop {
        match broken.relay_once().await {
            Err(error) => break error,
            Ok(0) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(relayed) => panic!("no broker, yet {relayed} rows relayed"),
        }
    };
    assert!(error.contains("produce"), "{error}");
    assert_eq!(
        table.scalar(&pending_sql).await,
        5,
        "a failed produce leaves every outbox row pending"
    );
    drop(broken);
    let working = relay(&config(&kafka()));
    // The outbox table is shared with concurrently running tests whose
    // relays may hold (and SKIP LOCKED skips) rows for a moment: relay until
    // drained, in batches of at most 3.
    let deadline = Instant::now() + WAIT;
    let mut relayed = 0;
    while relayed < 5 {
        assert!(
            Instant::now() < deadline,
            "only {relayed} of 5 rows relayed"
        );
        let batch = working.relay_once().await.expect("relay");
        assert!(batch <= 3, "batch_size bounds a batch: {batch}");
        relayed += batch;
        if batch == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(relayed, 5, "each pending row relayed once");
    assert_eq!(table.scalar(&pending_sql).await, 0);
    let received = counts(&read_topic(&kafka(), &topic.name).await);
    assert_eq!(
        received,
        (1..=5).map(|id| (id, 1)).collect::<BTreeMap<_, _>>()
    );
    drop_outbox_table(&table).await;
}

/// SIGKILL of the relay while writers keep changing rows, twice, loses no
/// change: a batch killed before its COMMIT stays in the outbox (claimed and
/// removed in the same transaction) and is relayed after the restart, so
/// every change reaches Kafka at least once and the outbox drains.
async fn outbox_relay_killed_mid_stream_misses_nothing(db: Db) {
    let table = Arc::new(OrdersTable::create(db).await);
    install_outbox(&table).await;
    let topic = Topic::create(&kafka(), "outbox_kill", 3).await;
    let (brokers, es_url) = (kafka(), es());
    let setup = PublisherSetup {
        table: &table,
        topic: &topic.name,
        brokers: &brokers,
        es_url: &es_url,
        publish: "  outbox: {batch_size: 25, poll_interval: 20ms}\n".into(),
        checkpoint_table: None,
    };
    let mut relay = Publisher::start(ESYNC, &setup, true);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (table, stop) = (table.clone(), stop.clone());
        tokio::spawn(async move {
            let mut changes: BTreeMap<i64, usize> = BTreeMap::new();
            let mut next_id = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                table.insert(next_id..next_id + 5).await;
                for id in next_id..next_id + 5 {
                    *changes.entry(id).or_default() += 1;
                }
                next_id += 5;
                let id = rand::rng().random_range(1..next_id);
                table.update(id, "w").await;
                *changes.entry(id).or_default() += 1;
            }
            changes
        })
    };
    let pending_sql = format!(
        "SELECT COUNT(*) FROM esync_outbox WHERE table_name = '{}' AND relayed_at IS NULL",
        table.name
    );
    for _ in 0..2 {
        // kill while the relay is busy: it produced more since the last
        // round and rows are waiting
        let produced_before = topic_size(&brokers, &topic.name).await;
        wait_until("the relay busy", WAIT, &mut [&mut relay], || async {
            let produced = topic_size(&brokers, &topic.name).await;
            let pending = table.scalar(&pending_sql).await;
            if produced > produced_before && pending > 0 {
                Ok(())
            } else {
                Err(format!("{produced} produced, {pending} pending"))
            }
        })
        .await;
        relay.kill();
        relay.spawn();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let expected = writer.await.expect("writer");
    let total: usize = expected.values().sum();
    wait_until("every change relayed", WAIT, &mut [&mut relay], || async {
        let pending = table.scalar(&pending_sql).await;
        let received = counts(&read_topic(&brokers, &topic.name).await);
        let short = missing(&received, expected.keys().copied(), 1).and_then(|()| {
            match expected
                .iter()
                .find(|(id, changes)| received.get(id).copied().unwrap_or(0) < **changes)
            {
                Some((id, changes)) => Err(format!(
                    "id {id}: {:?} message(s) for {changes} change(s)",
                    received.get(id)
                )),
                None => Ok(()),
            }
        });
        match (pending, short) {
            (0, Ok(())) => Ok(()),
            (pending, short) => Err(format!("{pending} pending of {total} changes; {short:?}")),
        }
    })
    .await;
    let status = relay.terminate();
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}\n{}",
        relay.log_tail(20)
    );
    drop_outbox_table(&table).await;
}

/// The relay keeps one connection for all its batches; when the database
/// drops it (restart, fail-over, a proxy's idle time-out), the next batch
/// fails and the one after runs on a new connection: the relay recovers by
/// itself and relays every row once.
async fn outbox_relay_reconnects_after_losing_its_connection(db: Db) {
    let table = OrdersTable::create(db).await;
    install_outbox(&table).await;
    let topic = Topic::create(&kafka(), "outbox_reconnect", 1).await;
    let login = SeparateLogin::create(db).await;
    let text = format!(
        r#"source: {{url: "{url}"}}
kafka: {{brokers: "{brokers}"}}
elasticsearch: {{urls: ["{es}"]}}
mappings:
  - {{name: orders, topics: [{topic}], table: {table}, index: unused, version: {{column: version, kind: counter}}}}
publish: {{outbox: {{batch_size: 100}}}}
"#,
        url = login.url,
        brokers = kafka(),
        es = es(),
        topic = topic.name,
        table = table.name,
    );
    let config = esync::config::LoadedConfig::from_yaml(&text, &|_| None)
        .unwrap_or_else(|problems| panic!("{problems:?}"))
        .config;
    let database = Database::connect(&Secret::new(login.url.clone()), 4, Duration::from_secs(10))
        .await
        .expect("connect");
    let producer = esync::kafka::IdProducer::new(&config.kafka).expect("producer");
    let relay = esync::publish::outbox::Relay::new(
        &config,
        database,
        Arc::new(producer),
        esync::publish::metrics::PublishMetrics::unregistered(),
    )
    .expect("relay");
    // Relays until `count` rows are through; failed batches are allowed
    // (and counted, with the last error) until the deadline. Ok(0): a
    // concurrent test's relay briefly holds our rows.
    let relay_rows = async |count: usize| {
        let deadline = Instant::now() + WAIT;
        let (mut relayed, mut failures, mut last_error) = (0, 0, None);
        while relayed < count {
            assert!(
                Instant::now() < deadline,
                "{relayed} of {count} rows relayed; {failures} failed batches, the last: {last_error:?}"
            );
            match relay.relay_once().await {
                Ok(0) => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(batch) => relayed += batch,
                Err(error) => {
                    failures += 1;
                    last_error = Some(error);
                }
            }
        }
        (failures, last_error)
    };
    table.insert(1..=3).await;
    let failed = relay_rows(3).await;
    assert_eq!(failed.0, 0, "{failed:?}");
    let killed = login.kill_connections().await;
    assert!(killed >= 1, "the relay's connection was open");
    table.insert(4..=6).await;
    let failed = relay_rows(3).await;
    assert!(
        failed.0 <= 1,
        "one failed batch at most, then a new connection: {failed:?}"
    );
    let received = counts(&read_topic(&kafka(), &topic.name).await);
    assert_eq!(
        received,
        (1..=6).map(|id| (id, 1)).collect::<BTreeMap<_, _>>(),
        "every row once: the failed batch removed nothing"
    );
    drop(relay);
    drop_outbox_table(&table).await;
    login.drop_login().await;
}

/// With a one-second column (MariaDB's default `TIMESTAMP`), a row updated a
/// second time within the second it was published in carries the same
/// `(timestamp, id)` pair: it must still be published again, or the daemon
/// keeps the first update's state.
async fn coarse_timestamp_second_update_is_published(db: Db) {
    let table = OrdersTable::create(db).await;
    prepare_for_polling(&table).await;
    let coarse = match db {
        Db::Postgres => format!(
            "ALTER TABLE {} ALTER COLUMN updated_at TYPE TIMESTAMPTZ(0)",
            table.name
        ),
        Db::MariaDb => format!(
            "ALTER TABLE {} MODIFY updated_at TIMESTAMP(0) NULL DEFAULT CURRENT_TIMESTAMP",
            table.name
        ),
    };
    table.execute(&coarse).await;
    let topic = Topic::create(&kafka(), "publish_coarse", 1).await;
    let (brokers, es_url) = (kafka(), es());
    table.insert(1..=3).await;
    let setup = PublisherSetup {
        table: &table,
        topic: &topic.name,
        brokers: &brokers,
        es_url: &es_url,
        publish: "  poll_interval: 50ms\n  look_back: 30s\n".into(),
        checkpoint_table: None,
    };
    let mut publisher = Publisher::start(ESYNC, &setup, false);
    wait_until("rows published", WAIT, &mut [&mut publisher], || async {
        missing(&counts(&read_topic(&brokers, &topic.name).await), 1..=3, 1)
    })
    .await;
    // Update row 2 twice within one second of the database clock, letting a
    // poll see the first update before the second one commits.
    let stamp = match db {
        Db::Postgres => "date_trunc('second', clock_timestamp())",
        Db::MariaDb => "NOW()",
    };
    let second_of = |db: Db| match db {
        Db::Postgres => {
            "SELECT CAST(EXTRACT(MICROSECONDS FROM clock_timestamp()) AS BIGINT) % 1000000"
        }
        Db::MariaDb => "SELECT CAST(MICROSECOND(NOW(6)) AS SIGNED)",
    };
    // start early in a second so both updates land in it
    let update = |tag: &str| {
        format!(
            "UPDATE {} SET version = version + 1, name = '{tag}', updated_at = {stamp} WHERE id = 2",
            table.name
        )
    };
    let messages_for_two = || async {
        read_topic(&brokers, &topic.name)
            .await
            .into_iter()
            .filter(|message| message.key == "2")
            .map(|message| message.timestamp_ms)
            .collect::<Vec<i64>>()
    };
    // the two updates must share a second; retry when a slow machine let
    // them straddle a second boundary (then they are two pairs anyway)
    let mut same_second = false;
    for _attempt in 0..5 {
        while table.scalar(second_of(db)).await > 200_000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = messages_for_two().await.len();
        table.execute(&update("first")).await;
        let first_stamp = row_times(&table).await[&2];
        wait_until(
            "the first update published",
            WAIT,
            &mut [&mut publisher],
            || async {
                let now = messages_for_two().await.len();
                if now > before {
                    Ok(())
                } else {
                    Err(format!("{now} messages for id 2"))
                }
            },
        )
        .await;
        table.execute(&update("second")).await;
        let committed_ms = chrono::Utc::now().timestamp_millis();
        if row_times(&table).await[&2] != first_stamp {
            continue;
        }
        same_second = true;
        wait_until(
            "the second update (same timestamp) published after it committed",
            WAIT,
            &mut [&mut publisher],
            || async {
                let latest = messages_for_two().await.into_iter().max().unwrap_or(0);
                if latest >= committed_ms {
                    Ok(())
                } else {
                    Err(format!(
                        "last message for id 2 at {latest}, committed at {committed_ms}"
                    ))
                }
            },
        )
        .await;
        break;
    }
    assert!(same_second, "never managed two updates within one second");
    let status = publisher.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    table.drop_table().await;
}

/// Issue 9 item 13: a row stamped in the future moved the saved watermark
/// there; a publisher restarted later than `look_back` then scanned from its
/// own `now - look_back` and never published the rows written while it was
/// down. The checkpoint is capped at the database time of the poll's start.
async fn future_stamp_then_restart_after_look_back_misses_nothing(db: Db) {
    let table = OrdersTable::create(db).await;
    prepare_for_polling(&table).await;
    let topic = Topic::create(&kafka(), "publish_future", 1).await;
    let (brokers, es_url) = (kafka(), es());
    table.insert(1..=20).await;
    let look_back = Duration::from_secs(1);
    let setup = PublisherSetup {
        table: &table,
        topic: &topic.name,
        brokers: &brokers,
        es_url: &es_url,
        publish: "  poll_interval: 50ms\n  look_back: 1s\n".into(),
        checkpoint_table: None,
    };
    let mut publisher = Publisher::start(ESYNC, &setup, false);
    wait_until(
        "the rows published",
        WAIT,
        &mut [&mut publisher],
        || async { missing(&counts(&read_topic(&brokers, &topic.name).await), 1..=20, 1) },
    )
    .await;
    // a writer whose clock runs a day ahead
    let tomorrow = match db {
        Db::Postgres => "clock_timestamp() + interval '1 day'",
        Db::MariaDb => "NOW(6) + INTERVAL 1 DAY",
    };
    table
        .execute(&format!(
            "UPDATE {} SET version = version + 1, updated_at = {tomorrow} WHERE id = 5",
            table.name
        ))
        .await;
    wait_until(
        "the future-stamped row published",
        WAIT,
        &mut [&mut publisher],
        || async { missing(&counts(&read_topic(&brokers, &topic.name).await), [5], 2) },
    )
    .await;
    let status = publisher.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    // rows written while the publisher is down, then a restart later than look_back
    table.insert(21..=40).await;
    for id in 10..=12 {
        table.execute(&touch_sql(&table, id, "while down")).await;
    }
    tokio::time::sleep(look_back + Duration::from_millis(700)).await;
    publisher.spawn();
    wait_until(
        "every row written while down published",
        Duration::from_secs(20),
        &mut [&mut publisher],
        || async {
            let counts = counts(&read_topic(&brokers, &topic.name).await);
            missing(&counts, 21..=40, 1).and(missing(&counts, 10..=12, 2))
        },
    )
    .await;
    let status = publisher.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    // logs written to a file carry no terminal colour codes
    let log = std::fs::read_to_string(&publisher.log_path).expect("publisher log");
    assert!(log.contains("polling"), "{log}");
    assert!(
        !log.contains("\x1b["),
        "ANSI escape codes in a log file:\n{log}"
    );
    table.drop_table().await;
}

/// The poller feeds `esync run`: inserts, updates and soft deletes reach the
/// index, which ends equal to the table.
async fn poller_feeds_the_daemon_end_to_end(db: Db) {
    let table = OrdersTable::create(db).await;
    prepare_for_polling(&table).await;
    let topic = Topic::create(&kafka(), "publish", 3).await;
    let index = Index::new(&es());
    index.create().await;
    let (brokers, es_url) = (kafka(), es());
    let ids: Vec<i64> = (1..=300).collect();
    table.insert(ids.clone()).await;
    let mut daemon = Daemon::start(
        ESYNC,
        &DaemonSetup::new(&table, &topic.name, &brokers, &es_url, &index.name),
    );
    let setup = PublisherSetup {
        table: &table,
        topic: &topic.name,
        brokers: &brokers,
        es_url: &es_url,
        publish: "  poll_interval: 100ms\n  look_back: 10s\n".into(),
        checkpoint_table: None,
    };
    let mut publisher = Publisher::start(ESYNC, &setup, false);
    index.wait_equal(&table, &ids, WAIT, &mut daemon).await;

    for id in (1..=300).step_by(3) {
        table.execute(&touch_sql(&table, id, "changed")).await;
    }
    for id in (2..=300).step_by(10) {
        table.execute(&soft_delete_sql(&table, id)).await;
    }
    let more: Vec<i64> = (301..=350).collect();
    table.insert(more.clone()).await;
    let all: Vec<i64> = (1..=350).collect();
    index.wait_equal(&table, &all, WAIT, &mut daemon).await;
    publisher.assert_running();
    let docs = index.documents(&all).await.expect("documents");
    assert_eq!(
        docs.len(),
        350 - 30,
        "soft-deleted rows are gone from the index"
    );

    let status = publisher.terminate();
    assert!(
        status.success(),
        "publisher SIGTERM must exit 0, got {status}\n{}",
        publisher.log_tail(20)
    );
    let status = daemon.terminate();
    assert!(
        status.success(),
        "daemon SIGTERM must exit 0, got {status}\n{}",
        daemon.log_tail(20)
    );
    table.drop_table().await;
}

/// `esync check` runs EXPLAIN on the poll query: it warns while the
/// `(updated_at, id)` index is missing and is satisfied once it exists.
async fn check_warns_without_the_poll_index(db: Db) {
    let table = OrdersTable::create(db).await;
    let topic = Topic::create(&kafka(), "publish", 1).await;
    let (brokers, es_url) = (kafka(), es());
    table.insert(1..=50).await;
    let setup = PublisherSetup {
        table: &table,
        topic: &topic.name,
        brokers: &brokers,
        es_url: &es_url,
        publish: String::new(),
        checkpoint_table: None,
    };
    let mut publisher = Publisher::start(ESYNC, &setup, false);
    publisher.kill();
    let check = || {
        let output = std::process::Command::new(ESYNC)
            .arg("check")
            .arg("--config")
            .arg(&publisher.config_path)
            .env("ESYNC_TEST_DATABASE_URL", db.url())
            .output()
            .expect("run esync check");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let without = check();
    assert!(
        without
            .lines()
            .any(|line| line.starts_with("[warn] publish orders: no index serves the poll query")),
        "{without}"
    );
    assert!(
        without.contains("CREATE INDEX"),
        "the warning says how to fix it: {without}"
    );
    table
        .execute(&format!(
            "CREATE INDEX {0}_poll ON {0} (updated_at, id)",
            table.name
        ))
        .await;
    let with = check();
    assert!(
        with.lines()
            .any(|line| line.starts_with("[ok  ] publish orders: the poll query uses an index")),
        "{with}"
    );
    table.drop_table().await;
}

/// Issue 9 item 15: a version column that cannot strictly increase with
/// every change (second precision, `DATE`) lets two states share a version,
/// and an older read can stay in the index; `esync check` warns about it.
async fn check_warns_about_coarse_version_columns(db: Db) {
    let table = OrdersTable::create(db).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("esync.yaml");
    let config = format!(
        "source:\n  url: ${{ESYNC_TEST_DATABASE_URL}}\nkafka:\n  brokers: \"{}\"\nelasticsearch:\n  urls: [\"{}\"]\n\
         metrics: {{listen: null}}\nmappings:\n  - name: orders\n    topics: [{}]\n    table: {}\n    index: {}\n\
         \x20   version: {{column: updated_at, kind: timestamp}}\n",
        kafka(),
        es(),
        unique("unused"),
        table.name,
        unique("unused"),
    );
    std::fs::write(&config_path, config).expect("write config");
    let check = || {
        let output = std::process::Command::new(ESYNC)
            .arg("check")
            .arg("--config")
            .arg(&config_path)
            .env("ESYNC_TEST_DATABASE_URL", db.url())
            .output()
            .expect("run esync check");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let warning = stdout
            .lines()
            .find(|line| line.starts_with("[warn] mapping orders: version column updated_at"))
            .map(str::to_owned);
        (stdout, warning)
    };
    let (stdout, warning) = check();
    assert_eq!(warning, None, "microseconds are fine: {stdout}");
    let (seconds, date) = match db {
        Db::Postgres => (
            format!(
                "ALTER TABLE {} ALTER COLUMN updated_at TYPE TIMESTAMPTZ(0)",
                table.name
            ),
            format!(
                "ALTER TABLE {} ALTER COLUMN updated_at TYPE DATE",
                table.name
            ),
        ),
        Db::MariaDb => (
            format!(
                "ALTER TABLE {} MODIFY updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP",
                table.name
            ),
            format!("ALTER TABLE {} MODIFY updated_at DATE NULL", table.name),
        ),
    };
    table.execute(&seconds).await;
    let (stdout, warning) = check();
    let warning = warning.unwrap_or_else(|| panic!("no warning for seconds: {stdout}"));
    assert!(warning.contains("within 1 s"), "{warning}");
    table.execute(&date).await;
    let (stdout, warning) = check();
    let warning = warning.unwrap_or_else(|| panic!("no warning for DATE: {stdout}"));
    assert!(
        warning.contains("DATE") && warning.contains("within 1 day"),
        "{warning}"
    );
    table.drop_table().await;
}

esync_testkit::per_database! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    both {
        late_commit_is_published;
        killed_publisher_misses_nothing_file_checkpoint =>
            async |db| super::killed_publisher_misses_nothing(db, false).await;
        killed_publisher_misses_nothing_table_checkpoint =>
            async |db| super::killed_publisher_misses_nothing(db, true).await;
        outbox_relays_every_change_once_delete =>
            async |db| super::outbox_relays_every_change_once(db, "delete").await;
        outbox_relays_every_change_once_mark =>
            async |db| super::outbox_relays_every_change_once(db, "mark").await;
        poller_feeds_the_daemon_end_to_end;
        check_warns_without_the_poll_index;
        outbox_keeps_rows_when_kafka_fails_delete =>
            async |db| super::outbox_keeps_rows_when_kafka_fails(db, "delete").await;
        outbox_keeps_rows_when_kafka_fails_mark =>
            async |db| super::outbox_keeps_rows_when_kafka_fails(db, "mark").await;
        outbox_relay_killed_mid_stream_misses_nothing;
        outbox_relay_reconnects_after_losing_its_connection;
        coarse_timestamp_second_update_is_published;
        future_stamp_then_restart_after_look_back_misses_nothing;
        check_warns_about_coarse_version_columns;
    }
}
