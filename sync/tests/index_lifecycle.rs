//! Index lifecycle (issue 11) against real PostgreSQL and MariaDB, Kafka and
//! the local Elasticsearch API server: versioned indexes behind an alias,
//! a rebuild while rows keep changing (the daemon and the rebuild each
//! killed once), dual writes picked up by every daemon of a group, rollback,
//! prune, and `esync check` comparing mappings.

use esync_testkit::es::EsApi;
use esync_testkit::prelude::*;
use rand::Rng as _;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const ESYNC: &str = env!("CARGO_BIN_EXE_esync");
const CONVERGE: Duration = Duration::from_secs(120);

/// `name` as a keyword: the "before" of a field type change.
const KEYWORD_NAME: &str =
    "{settings: {number_of_shards: 1}, mappings: {properties: {name: {type: keyword}}}}";
/// `name` as text with a keyword sub-field: the "after".
const TEXT_NAME: &str = "{settings: {number_of_shards: 1}, mappings: {properties: {name: {type: text, fields: {raw: {type: keyword}}}}}}";

/// `esync_dual_writes_total{outcome="written"}`, summed over mappings.
fn dual_writes_written(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("esync_dual_writes_total{") && line.contains(r#"outcome="written""#)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn es_api() -> EsApi {
    EsApi::new(&es(), Duration::from_secs(30))
}

/// The indexes the alias points at.
async fn alias_targets(alias: &str) -> Vec<String> {
    let (status, body) = es_api()
        .request(Method::Get, &format!("/_alias/{alias}"), None)
        .await
        .expect("GET _alias");
    match status {
        200 => body
            .as_object()
            .map(|indexes| indexes.keys().cloned().collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

async fn field_type(alias: &str, field: &str) -> Value {
    let body = es_api()
        .request_ok(Method::Get, &format!("/{alias}/_mapping"), None)
        .await
        .expect("GET _mapping");
    let mappings = body
        .as_object()
        .and_then(|indexes| indexes.values().next())
        .cloned();
    mappings.map_or(Value::Null, |info| {
        info["mappings"]["properties"][field]["type"].clone()
    })
}

async fn drop_family(alias: &str) {
    let _ = es_api()
        .request(Method::Delete, &format!("/{alias}-v*"), None)
        .await;
}

/// Rewrites the daemon's config with another index definition (the daemon
/// itself does not read it; the index commands do).
fn set_definition(setup: &mut DaemonSetup<'_>, daemon: &Daemon, definition: &'static str) {
    setup.index_definition = Some(definition);
    std::fs::write(&daemon.config_path, setup.config(daemon.metrics_port)).expect("rewrite config");
}

fn esync(args: &[&str], daemon: &Daemon) -> String {
    let (ok, output) = run_esync(ESYNC, args, &daemon.config_path, &daemon.database_url);
    assert!(ok, "esync {args:?} failed:\n{output}");
    output
}

/// Keeps changing rows until `stop`: updates, soft and hard deletes, inserts;
/// every change's id goes to the topic. Returns the next unused id.
async fn keep_writing(
    table: Arc<OrdersTable>,
    topic: Arc<Topic>,
    first_new_id: i64,
    stop: CancellationToken,
) -> i64 {
    let mut next_id = first_new_id;
    let mut changes = 0u64;
    while !stop.is_cancelled() {
        let (choice, existing) = {
            let mut rng = rand::rng();
            (rng.random_range(0..10), rng.random_range(1..next_id))
        };
        let id = match choice {
            0 => {
                table.hard_delete(existing).await;
                existing
            }
            1 => {
                table.soft_delete(existing).await;
                existing
            }
            2 => {
                table.insert([next_id]).await;
                next_id += 1;
                next_id - 1
            }
            _ => {
                table.update(existing, &format!("w{changes}")).await;
                existing
            }
        };
        topic.send_ids(&[id]).await;
        changes += 1;
        // a steady stream rather than a burst
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    next_id
}

/// Searches the alias until `stop`; returns (searches, failures, first failure).
async fn keep_searching(alias: String, stop: CancellationToken) -> (u64, u64, Option<String>) {
    let api = es_api();
    let (mut searches, mut failures, mut first) = (0, 0, None);
    while !stop.is_cancelled() {
        let answer = api
            .request(Method::Get, &format!("/{alias}/_search?size=1"), None)
            .await;
        searches += 1;
        if !matches!(answer, Ok((200, _))) {
            failures += 1;
            first.get_or_insert(format!("{answer:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (searches, failures, first)
}

async fn wait_exit(process: &mut EsyncProcess, timeout: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    let mut child = process.child.take().expect("a running process");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            panic!(
                "{} still running after {timeout:?}\n{}",
                process.name,
                process.log_tail(60)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rebuild_process(daemon: &Daemon, checkpoint_dir: &Path, resume: bool) -> EsyncProcess {
    let dir = checkpoint_dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "index",
        "rebuild",
        "--mapping",
        "orders",
        "--max-rate",
        "600",
        "--batch-size",
        "100",
        "--chunk-size",
        "400",
        "--progress",
        "json",
        "--checkpoint-dir",
        dir,
    ];
    if resume {
        args.push("--resume");
    }
    EsyncProcess::on_config(
        Path::new(ESYNC),
        if resume {
            "esync index rebuild --resume"
        } else {
            "esync index rebuild"
        },
        &args,
        daemon.config_path.clone(),
        daemon.database_url.clone(),
        daemon.metrics_port,
        None,
    )
}

esync_testkit::per_database! {
    both {
        rebuild_under_writes_swaps_to_a_complete_index;
    }
    postgres {
        rollback_check_status_and_prune;
        a_concrete_index_moves_behind_the_alias;
    }
}

/// The whole rebuild: writers keep changing rows and the daemon streams;
/// the rebuild is killed during its backfill and resumed, the daemon is
/// killed and restarted; afterwards the alias points at the new index, which
/// equals the table, and no search failed at any moment.
async fn rebuild_under_writes_swaps_to_a_complete_index(db: Db) {
    let table = Arc::new(OrdersTable::create(db).await);
    table.insert(1..=3000).await;
    let topic = Arc::new(Topic::create(&kafka(), "life", 3).await);
    let alias = unique("life");
    let (brokers, es_url) = (kafka(), es());
    let mut setup = DaemonSetup::new(&table, &topic.name, &brokers, &es_url, &alias);
    setup.index_definition = Some(KEYWORD_NAME);
    let mut daemon = EsyncProcess::start(ESYNC, &setup);
    let created = esync(&["index", "create"], &daemon);
    assert!(
        created.contains(&format!("created {alias}-v1 behind the alias {alias}")),
        "{created}"
    );
    daemon.wait_healthy(Duration::from_secs(30)).await;
    topic.send_ids(&(1..=3000).collect::<Vec<_>>()).await;
    let live = Index {
        name: alias.clone(),
        es: es_api(),
    };
    live.wait_equal(
        &table,
        &(1..=3000).collect::<Vec<_>>(),
        CONVERGE,
        &mut daemon,
    )
    .await;

    set_definition(&mut setup, &daemon, TEXT_NAME);
    let stop = CancellationToken::new();
    let writers = tokio::spawn(keep_writing(
        table.clone(),
        topic.clone(),
        3001,
        stop.clone(),
    ));
    let searcher = tokio::spawn(keep_searching(alias.clone(), stop.clone()));
    let checkpoints = tempfile::tempdir().expect("temp dir");

    let mut rebuild = rebuild_process(&daemon, checkpoints.path(), false);
    let building = Index {
        name: format!("{alias}-v2"),
        es: es_api(),
    };
    let started = Instant::now();
    loop {
        rebuild.assert_running();
        let (status, body) = es_api()
            .request(Method::Get, &format!("/{}/_count", building.name), None)
            .await
            .expect("_count");
        if status == 200 && body["count"].as_u64().unwrap_or(0) >= 900 {
            break;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "the backfill made no progress\n{}",
            rebuild.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rebuild.kill();
    daemon.kill();
    daemon.spawn();
    daemon.wait_healthy(Duration::from_secs(30)).await;
    assert_eq!(
        alias_targets(&alias).await,
        vec![format!("{alias}-v1")],
        "the alias stays until the swap"
    );

    let mut resumed = rebuild_process(&daemon, checkpoints.path(), true);
    let status = wait_exit(&mut resumed, CONVERGE).await;
    assert!(
        status.success(),
        "the resumed rebuild failed\n{}",
        resumed.log_tail(60)
    );
    let log = resumed.log_tail(200);
    assert!(
        log.contains(&format!("resuming the rebuild into {alias}-v2")),
        "{log}"
    );
    assert!(log.contains("swapped"), "{log}");

    stop.cancel();
    let next_id = writers.await.expect("writers");
    let (searches, failures, first_failure) = searcher.await.expect("searcher");
    let all: Vec<i64> = (1..next_id).collect();
    live.wait_equal(&table, &all, CONVERGE, &mut daemon).await;

    assert_eq!(alias_targets(&alias).await, vec![format!("{alias}-v2")]);
    assert!(
        alias_targets(&format!("{alias}.next")).await.is_empty(),
        "the announcement is retracted"
    );
    assert_eq!(
        field_type(&alias, "name").await,
        json!("text"),
        "the new mapping serves"
    );
    assert!(searches > 50, "searches ran during the rebuild: {searches}");
    assert_eq!(
        failures, 0,
        "searches failed during the rebuild: {first_failure:?}"
    );
    drop(daemon);
    drop_family(&alias).await;
    table.drop_table().await;
}

/// Rollback returns the alias to the previous index, repaired to the
/// table's current state (it missed the writes made after the swap);
/// `check` reports mapping differences line by line; `status` and `prune`.
async fn rollback_check_status_and_prune(db: Db) {
    let table = OrdersTable::create(db).await;
    table.insert(1..=500).await;
    let all: Vec<i64> = (1..=500).collect();
    let topic = Topic::create(&kafka(), "life", 2).await;
    let alias = unique("life");
    let (brokers, es_url) = (kafka(), es());
    let mut setup = DaemonSetup::new(&table, &topic.name, &brokers, &es_url, &alias);
    setup.index_definition = Some(KEYWORD_NAME);
    let mut daemon = EsyncProcess::start(ESYNC, &setup);
    esync(&["index", "create"], &daemon);
    let again = esync(&["index", "create"], &daemon);
    assert!(
        again.contains("already serves"),
        "create is idempotent: {again}"
    );
    daemon.wait_healthy(Duration::from_secs(30)).await;
    topic.send_ids(&all).await;
    let live = Index {
        name: alias.clone(),
        es: es_api(),
    };
    live.wait_equal(&table, &all, CONVERGE, &mut daemon).await;

    set_definition(&mut setup, &daemon, TEXT_NAME);
    let (_, check) = run_esync(ESYNC, &["check"], &daemon.config_path, &daemon.database_url);
    assert!(
        check.contains(&format!(
            "index {alias}: field name: configured as text, the index has keyword"
        )),
        "{check}"
    );
    assert!(
        check.contains(&format!(
            "index {alias}: field name.raw: configured as keyword, missing from the index"
        )),
        "{check}"
    );

    let rebuilt = esync(
        &[
            "index",
            "rebuild",
            "--mapping",
            "orders",
            "--progress",
            "none",
        ],
        &daemon,
    );
    assert!(
        rebuilt.contains(&format!("swapped: the alias now points at {alias}-v2")),
        "{rebuilt}"
    );
    // changes after the swap reach v2 only
    for id in 1..=100 {
        table.update(id, "after-swap").await;
    }
    table.hard_delete(200).await;
    topic
        .send_ids(&(1..=100).chain([200]).collect::<Vec<_>>())
        .await;
    live.wait_equal(&table, &all, CONVERGE, &mut daemon).await;

    let rolled_back = esync(
        &[
            "index",
            "rollback",
            "--mapping",
            "orders",
            "--progress",
            "none",
        ],
        &daemon,
    );
    assert!(
        rolled_back.contains(&format!("swapped: the alias now points at {alias}-v1")),
        "{rolled_back}"
    );
    assert_eq!(alias_targets(&alias).await, vec![format!("{alias}-v1")]);
    // nothing was streamed since: equality is the rollback's repair
    live.assert_equal(&table, &all).await;

    let status = esync(&["index", "status"], &daemon);
    assert!(
        status.contains(&format!("{alias}: live {alias}-v1")),
        "{status}"
    );
    assert!(status.contains(&format!("older {alias}-v2")), "{status}");
    let pruned = esync(&["index", "prune", "--keep", "0"], &daemon);
    assert!(pruned.contains(&format!("deleted {alias}-v2")), "{pruned}");
    assert!(!esync(&["index", "status"], &daemon).contains(&format!("{alias}-v2")));
    drop(daemon);
    drop_family(&alias).await;
    table.drop_table().await;
}

/// Two daemons of one group both start writing to an announced index
/// within seconds, without a restart. Nothing backfills here: every
/// document in the new index came from a dual write.
#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn every_daemon_of_a_group_picks_up_the_dual_write() {
    let table = OrdersTable::create(Db::Postgres).await;
    table.insert(1..=400).await;
    let all: Vec<i64> = (1..=400).collect();
    let topic = Topic::create(&kafka(), "life", 4).await;
    let alias = unique("life");
    let group = unique("life_group");
    let (brokers, es_url) = (kafka(), es());
    let mut setup = DaemonSetup::new(&table, &topic.name, &brokers, &es_url, &alias);
    setup.index_definition = Some(KEYWORD_NAME);
    setup.group = Some(&group);
    let mut first = EsyncProcess::start(ESYNC, &setup);
    let mut second = EsyncProcess::start(ESYNC, &setup);
    esync(&["index", "create"], &first);
    first.wait_healthy(Duration::from_secs(30)).await;
    second.wait_healthy(Duration::from_secs(30)).await;

    // both members consume before the announcement
    let started = Instant::now();
    loop {
        topic.send_ids(&all).await;
        let consumed = |metrics: &str| metric_sum(metrics, "esync_messages_total") > 0.0;
        if consumed(&first.metrics().await) && consumed(&second.metrics().await) {
            break;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "the group never split the partitions"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let live = Index {
        name: alias.clone(),
        es: es_api(),
    };
    live.wait_equal(&table, &all, CONVERGE, &mut first).await;

    // the first step of a rebuild, by hand: a new index, announced
    let next = Index {
        name: format!("{alias}-v2"),
        es: es_api(),
    };
    es_api()
        .request_ok(
            Method::Put,
            &format!("/{}", next.name),
            Some(&json!({"aliases": {format!("{alias}.next"): {}}})),
        )
        .await
        .expect("create the announced index");
    // `ANNOUNCEMENT_SETTLE`: what a rebuild waits before it backfills
    tokio::time::sleep(esync::lifecycle::targets::ANNOUNCEMENT_SETTLE).await;
    for id in &all {
        table.update(*id, "dual").await;
    }
    topic.send_ids(&all).await;
    live.wait_equal(&table, &all, CONVERGE, &mut first).await;
    next.wait_equal(&table, &all, CONVERGE, &mut second).await;
    for daemon in [&first, &second] {
        let written = dual_writes_written(&daemon.metrics().await);
        assert!(
            written > 0.0,
            "{} wrote nothing to the announced index",
            daemon.name
        );
    }
    drop((first, second));
    drop_family(&alias).await;
    table.drop_table().await;
}

/// `name` as a number: the new mapping refuses every row.
const NUMERIC_NAME: &str = "{mappings: {properties: {name: {type: long}}}}";

fn dual_writes(metrics: &str, outcome: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("esync_dual_writes_total{")
                && line.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A new index that refuses writes (blocked) or documents (its mapping)
/// never holds up the live index: live writes converge, `/healthz` stays
/// ok, the failures are counted and the blocked ones retried until they get
/// through. A rebuild into a mapping that refuses rows stops before the
/// swap, dead-letters nothing, and `abort` cleans up.
#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn a_failing_new_index_never_holds_up_live_writes() {
    let table = OrdersTable::create(Db::Postgres).await;
    table.insert(1..=300).await;
    let all: Vec<i64> = (1..=300).collect();
    let topic = Topic::create(&kafka(), "life", 2).await;
    let dead_letters = Topic::create(&kafka(), "life_dlq", 1).await;
    let alias = unique("life");
    let (brokers, es_url) = (kafka(), es());
    let mut setup = DaemonSetup::new(&table, &topic.name, &brokers, &es_url, &alias);
    setup.index_definition = Some(KEYWORD_NAME);
    setup.dead_letter_topic = Some(&dead_letters.name);
    let mut daemon = EsyncProcess::start(ESYNC, &setup);
    esync(&["index", "create"], &daemon);
    daemon.wait_healthy(Duration::from_secs(30)).await;
    topic.send_ids(&all).await;
    let live = Index {
        name: alias.clone(),
        es: es_api(),
    };
    live.wait_equal(&table, &all, CONVERGE, &mut daemon).await;

    // an announced index whose writes are blocked
    let next = Index {
        name: format!("{alias}-v2"),
        es: es_api(),
    };
    es_api()
        .request_ok(
            Method::Put,
            &format!("/{}", next.name),
            Some(&json!({"settings": {"index.blocks.write": true}, "aliases": {format!("{alias}.next"): {}}})),
        )
        .await
        .expect("create a blocked announced index");
    tokio::time::sleep(esync::lifecycle::targets::ANNOUNCEMENT_SETTLE).await;
    for id in 1..=100 {
        table.update(id, "blocked").await;
    }
    topic.send_ids(&(1..=100).collect::<Vec<_>>()).await;
    live.wait_equal(&table, &all, CONVERGE, &mut daemon).await;
    assert!(
        http_get(&format!("http://127.0.0.1:{}/healthz", daemon.metrics_port))
            .await
            .starts_with("ok"),
        "a blocked new index does not make the daemon unhealthy"
    );
    let metrics = daemon.metrics().await;
    assert!(
        metric_sum(&metrics, "esync_dual_write_pending") > 0.0,
        "{metrics}"
    );
    // unblocked, the backlog drains into the new index by itself
    es_api()
        .request_ok(
            Method::Put,
            &format!("/{}/_settings", next.name),
            Some(&json!({"index.blocks.write": null})),
        )
        .await
        .expect("unblock");
    let updated: Vec<i64> = (1..=100).collect();
    next.wait_equal(&table, &updated, CONVERGE, &mut daemon)
        .await;
    let started = Instant::now();
    while metric_sum(&daemon.metrics().await, "esync_dual_write_pending") > 0.0 {
        assert!(started.elapsed() < CONVERGE, "the backlog never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let aborted = esync(&["index", "abort", "--mapping", "orders"], &daemon);
    assert!(
        aborted.contains(&format!("deleted {}", next.name)),
        "{aborted}"
    );

    // a rebuild into a mapping that refuses every row stops before the swap
    set_definition(&mut setup, &daemon, NUMERIC_NAME);
    let (ok, output) = run_esync(
        ESYNC,
        &[
            "index",
            "rebuild",
            "--mapping",
            "orders",
            "--progress",
            "none",
            "--verify-passes",
            "1",
        ],
        &daemon.config_path,
        &daemon.database_url,
    );
    assert!(!ok, "the rebuild must fail: {output}");
    assert!(output.contains("still differs from the table"), "{output}");
    assert_eq!(
        alias_targets(&alias).await,
        vec![format!("{alias}-v1")],
        "the alias stays"
    );
    // live writes go on meanwhile; the new index refuses their copies
    table.update(1, "refused").await;
    topic.send_ids(&[1]).await;
    live.wait_equal(&table, &all, CONVERGE, &mut daemon).await;
    let started = Instant::now();
    while dual_writes(&daemon.metrics().await, "rejected") == 0.0 {
        assert!(
            started.elapsed() < CONVERGE,
            "refused dual writes are counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, refused) = run_esync(
        ESYNC,
        &["index", "rebuild", "--mapping", "orders"],
        &daemon.config_path,
        &daemon.database_url,
    );
    assert!(!ok && refused.contains("pass --resume"), "{refused}");
    esync(&["index", "abort", "--mapping", "orders"], &daemon);
    assert!(alias_targets(&format!("{alias}.next")).await.is_empty());
    // the rows are in the live index: neither the daemon nor the rebuild
    // dead-letters what only the new mapping refuses
    assert_eq!(
        esync_testkit::kafka::topic_size(&kafka(), &dead_letters.name).await,
        0
    );
    drop(daemon);
    drop_family(&alias).await;
    table.drop_table().await;
}

/// An index set up before esync managed it (a concrete index with the
/// mapping's name): `create` refuses and says what to do; `rebuild` moves
/// it behind the alias without a moment in which searches fail.
async fn a_concrete_index_moves_behind_the_alias(db: Db) {
    let table = OrdersTable::create(db).await;
    table.insert(1..=500).await;
    let all: Vec<i64> = (1..=500).collect();
    let topic = Topic::create(&kafka(), "life", 2).await;
    let alias = unique("life");
    let (brokers, es_url) = (kafka(), es());
    let mut setup = DaemonSetup::new(&table, &topic.name, &brokers, &es_url, &alias);
    let mut daemon = EsyncProcess::start(ESYNC, &setup);
    daemon.wait_healthy(Duration::from_secs(30)).await;
    topic.send_ids(&all).await;
    let live = Index {
        name: alias.clone(),
        es: es_api(),
    };
    live.wait_equal(&table, &all, CONVERGE, &mut daemon).await;
    assert!(
        alias_targets(&alias).await.is_empty(),
        "a concrete index, no alias"
    );

    set_definition(&mut setup, &daemon, TEXT_NAME);
    let (ok, refused) = run_esync(
        ESYNC,
        &["index", "create"],
        &daemon.config_path,
        &daemon.database_url,
    );
    assert!(
        !ok && refused.contains("is a concrete index, not an alias"),
        "{refused}"
    );
    let stop = CancellationToken::new();
    let searcher = tokio::spawn(keep_searching(alias.clone(), stop.clone()));
    let moved = esync(
        &[
            "index",
            "rebuild",
            "--mapping",
            "orders",
            "--progress",
            "none",
        ],
        &daemon,
    );
    assert!(
        moved.contains(&format!("swapped: the alias now points at {alias}-v1")),
        "{moved}"
    );
    for id in 1..=50 {
        table.update(id, "behind-the-alias").await;
    }
    topic.send_ids(&(1..=50).collect::<Vec<_>>()).await;
    live.wait_equal(&table, &all, CONVERGE, &mut daemon).await;
    stop.cancel();
    let (_, failures, first_failure) = searcher.await.expect("searcher");
    assert_eq!(
        failures, 0,
        "searches failed during the move: {first_failure:?}"
    );
    assert_eq!(alias_targets(&alias).await, vec![format!("{alias}-v1")]);
    assert_eq!(field_type(&alias, "name").await, json!("text"));
    drop(daemon);
    drop_family(&alias).await;
    table.drop_table().await;
}
