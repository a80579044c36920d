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

/// `name` as a number: the new mapping refuses every row.
const NUMERIC_NAME: &str = "{mappings: {properties: {name: {type: long}}}}";

/// `esync_dual_writes_total{outcome}`, summed over mappings.
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

/// What the daemons of a scenario are configured with.
struct Streams {
    table: Arc<OrdersTable>,
    topic: Arc<Topic>,
    alias: String,
    group: String,
    brokers: String,
    es_url: String,
    dead_letters: Option<Topic>,
    definition: Option<&'static str>,
}

impl Streams {
    /// The config of a daemon of the scenario's group.
    fn setup(&self) -> DaemonSetup<'_> {
        DaemonSetup {
            group: Some(&self.group),
            index_definition: self.definition,
            dead_letter_topic: self.dead_letters.as_ref().map(|topic| topic.name.as_str()),
            ..DaemonSetup::new(
                &self.table,
                &self.topic.name,
                &self.brokers,
                &self.es_url,
                &self.alias,
            )
        }
    }
}

/// A table of `rows` rows, its topic, a daemon streaming it into the
/// alias, the index created by `esync index create` (or, without a
/// definition, a concrete index the daemon creates on first write), all
/// rows synced.
struct Scenario {
    streams: Streams,
    daemon: Daemon,
    /// The alias, read through.
    live: Index,
    /// Ids 1..=rows.
    all: Vec<i64>,
}

impl Scenario {
    async fn start(
        db: Db,
        rows: i64,
        partitions: i32,
        definition: Option<&'static str>,
        with_dead_letters: bool,
    ) -> Scenario {
        let table = Arc::new(OrdersTable::create(db).await);
        table.insert(1..=rows).await;
        let brokers = kafka();
        let topic = Arc::new(Topic::create(&brokers, "life", partitions).await);
        let dead_letters = match with_dead_letters {
            true => Some(Topic::create(&brokers, "life_dlq", 1).await),
            false => None,
        };
        let alias = unique("life");
        let streams = Streams {
            table,
            topic,
            alias: alias.clone(),
            group: unique("life_group"),
            brokers,
            es_url: es(),
            dead_letters,
            definition,
        };
        let mut scenario = Scenario {
            daemon: EsyncProcess::start(ESYNC, &streams.setup()),
            streams,
            live: Index {
                name: alias.clone(),
                es: es_api(),
            },
            all: (1..=rows).collect(),
        };
        if definition.is_some() {
            let created = scenario.esync(&["index", "create"]);
            let expected = format!("created {alias}-v1 behind the alias {alias}");
            assert!(created.contains(&expected), "{created}");
        }
        scenario.daemon.wait_healthy(Duration::from_secs(30)).await;
        scenario.streams.topic.send_ids(&scenario.all).await;
        scenario.wait_synced(&scenario.all.clone()).await;
        scenario
    }

    /// Puts another index definition into the running daemon's config (the
    /// daemon does not read it; the index commands do).
    fn set_definition(&mut self, definition: &'static str) {
        self.streams.definition = Some(definition);
        let path = &self.daemon.config_path;
        let text = std::fs::read_to_string(path).expect("read config");
        let kept: String = text
            .lines()
            .filter(|line| !line.starts_with("    index_definition:"))
            .map(|line| {
                let mut line = format!("{line}\n");
                if line == "    lag_column: updated_at\n" {
                    line.push_str(&format!("    index_definition: {definition}\n"));
                }
                line
            })
            .collect();
        assert!(kept.contains(definition), "the definition went into {kept}");
        std::fs::write(path, kept).expect("rewrite config");
    }

    /// `esync <args>` on the daemon's config: (success, output).
    fn try_esync(&self, args: &[&str]) -> (bool, String) {
        run_esync(
            ESYNC,
            args,
            &self.daemon.config_path,
            &self.daemon.database_url,
        )
    }

    /// `esync index <command> --mapping orders` (rebuild or rollback), which
    /// must end swapping the alias to `-v<version>`.
    fn swap_with(&self, command: &str, version: u32) {
        let args = [
            "index",
            command,
            "--mapping",
            "orders",
            "--progress",
            "none",
        ];
        let output = self.esync(&args);
        let swapped = format!(
            "swapped: the alias now points at {}-v{version}",
            self.alias()
        );
        assert!(output.contains(&swapped), "{output}");
    }

    /// `esync <args>`, which must succeed: its output.
    fn esync(&self, args: &[&str]) -> String {
        let (ok, output) = self.try_esync(args);
        assert!(ok, "esync {args:?} failed:\n{output}");
        output
    }

    /// Updates `ids` and announces them.
    async fn change(&self, ids: impl IntoIterator<Item = i64>, tag: &str) {
        let ids: Vec<i64> = ids.into_iter().collect();
        for id in &ids {
            self.streams.table.update(*id, tag).await;
        }
        self.streams.topic.send_ids(&ids).await;
    }

    /// Waits until the alias equals the table over `ids`.
    async fn wait_synced(&mut self, ids: &[i64]) {
        self.live
            .wait_equal(&self.streams.table, ids, CONVERGE, &mut self.daemon)
            .await;
    }

    /// An index of the family, read directly.
    fn version(&self, version: u32) -> Index {
        Index {
            name: format!("{}-v{version}", self.streams.alias),
            es: es_api(),
        }
    }

    fn alias(&self) -> &str {
        &self.streams.alias
    }

    async fn finish(self) {
        drop(self.daemon);
        drop_family(&self.streams.alias).await;
        self.streams.table.drop_table().await;
    }
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

/// Blocks or unblocks writes to `index`.
async fn block_writes(index: &Index, blocked: bool) {
    let value = if blocked { json!(true) } else { Value::Null };
    es_api()
        .request_ok(
            Method::Put,
            &format!("/{}/_settings", index.name),
            Some(&json!({"index.blocks.write": value})),
        )
        .await
        .expect("index.blocks.write");
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
    let mut scenario = Scenario::start(db, 3000, 3, Some(KEYWORD_NAME), false).await;
    let alias = scenario.alias().to_owned();
    scenario.set_definition(TEXT_NAME);
    let stop = CancellationToken::new();
    let writers = tokio::spawn(keep_writing(
        scenario.streams.table.clone(),
        scenario.streams.topic.clone(),
        3001,
        stop.clone(),
    ));
    let searcher = tokio::spawn(keep_searching(alias.clone(), stop.clone()));
    let checkpoints = tempfile::tempdir().expect("temp dir");

    let mut rebuild = rebuild_process(&scenario.daemon, checkpoints.path(), false);
    let building = scenario.version(2);
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
    scenario.daemon.kill();
    scenario.daemon.spawn();
    scenario.daemon.wait_healthy(Duration::from_secs(30)).await;
    assert_eq!(
        alias_targets(&alias).await,
        vec![format!("{alias}-v1")],
        "the alias stays until the swap"
    );

    let mut resumed = rebuild_process(&scenario.daemon, checkpoints.path(), true);
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
    let leftovers: Vec<_> = std::fs::read_dir(checkpoints.path())
        .expect("checkpoint dir")
        .collect();
    assert!(
        leftovers.is_empty(),
        "the swap removes the backfill's checkpoint: {leftovers:?}"
    );

    stop.cancel();
    let next_id = writers.await.expect("writers");
    let (searches, failures, first_failure) = searcher.await.expect("searcher");
    scenario
        .wait_synced(&(1..next_id).collect::<Vec<_>>())
        .await;

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
    scenario.finish().await;
}

/// Rollback returns the alias to the previous index, repaired to the
/// table's current state (it missed the writes made after the swap);
/// `check` reports mapping differences line by line; `status` and `prune`.
async fn rollback_check_status_and_prune(db: Db) {
    let mut scenario = Scenario::start(db, 500, 2, Some(KEYWORD_NAME), false).await;
    let alias = scenario.alias().to_owned();
    let all = scenario.all.clone();
    let again = scenario.esync(&["index", "create"]);
    assert!(
        again.contains("already serves"),
        "create is idempotent: {again}"
    );
    let (_, nothing) = scenario.try_esync(&["index", "rebuild", "--mapping", "orders", "--resume"]);
    assert!(
        nothing.contains("no rebuild in progress to resume"),
        "{nothing}"
    );

    scenario.set_definition(TEXT_NAME);
    let (_, check) = scenario.try_esync(&["check"]);
    for expected in [
        format!("index {alias}: field name: configured as text, the index has keyword"),
        format!("index {alias}: field name.raw: configured as keyword, missing from the index"),
    ] {
        assert!(check.contains(&expected), "{check}");
    }

    scenario.swap_with("rebuild", 2);
    // changes after the swap reach v2 only
    scenario.change(1..=100, "after-swap").await;
    scenario.streams.table.hard_delete(200).await;
    scenario.streams.topic.send_ids(&[200]).await;
    scenario.wait_synced(&all).await;

    scenario.swap_with("rollback", 1);
    assert_eq!(alias_targets(&alias).await, vec![format!("{alias}-v1")]);
    // nothing was streamed since: equality is the rollback's repair
    scenario
        .live
        .assert_equal(&scenario.streams.table, &all)
        .await;

    let status = scenario.esync(&["index", "status"]);
    assert!(
        status.contains(&format!("{alias}: live {alias}-v1")),
        "{status}"
    );
    assert!(status.contains(&format!("older {alias}-v2")), "{status}");
    let pruned = scenario.esync(&["index", "prune", "--keep", "0"]);
    assert!(pruned.contains(&format!("deleted {alias}-v2")), "{pruned}");
    assert!(
        !scenario
            .esync(&["index", "status"])
            .contains(&format!("{alias}-v2"))
    );
    scenario.finish().await;
}

/// Two daemons of one group both start writing to an announced index
/// within seconds, without a restart. Nothing backfills here: every
/// document in the new index came from a dual write.
#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn every_daemon_of_a_group_picks_up_the_dual_write() {
    let mut scenario = Scenario::start(Db::Postgres, 400, 4, Some(KEYWORD_NAME), false).await;
    let all = scenario.all.clone();
    let mut second = EsyncProcess::start(ESYNC, &scenario.streams.setup());
    second.wait_healthy(Duration::from_secs(30)).await;
    // both members consume before the announcement
    let started = Instant::now();
    loop {
        scenario.change(all.iter().copied(), "both").await;
        let consumed = |metrics: &str| metric_sum(metrics, "esync_messages_total") > 0.0;
        if consumed(&scenario.daemon.metrics().await) && consumed(&second.metrics().await) {
            break;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "the group never split the partitions"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    scenario.wait_synced(&all).await;

    // the first step of a rebuild, by hand: a new index, announced
    let next = scenario.version(2);
    es_api()
        .request_ok(
            Method::Put,
            &format!("/{}", next.name),
            Some(&json!({"aliases": {format!("{}.next", scenario.alias()): {}}})),
        )
        .await
        .expect("create the announced index");
    // `ANNOUNCEMENT_SETTLE`: what a rebuild waits before it backfills
    tokio::time::sleep(esync::lifecycle::targets::ANNOUNCEMENT_SETTLE).await;
    scenario.change(all.iter().copied(), "dual").await;
    scenario.wait_synced(&all).await;
    next.wait_equal(&scenario.streams.table, &all, CONVERGE, &mut second)
        .await;
    for daemon in [&scenario.daemon, &second] {
        let written = dual_writes(&daemon.metrics().await, "written");
        assert!(
            written > 0.0,
            "{} wrote nothing to the announced index",
            daemon.name
        );
    }
    drop(second);
    scenario.finish().await;
}

/// A new index that refuses writes (blocked) or documents (its mapping)
/// never holds up the live index: live writes converge, `/healthz` stays
/// ok, the failures are counted and the blocked ones retried until they get
/// through. A rebuild into a mapping that refuses rows stops before the
/// swap, dead-letters nothing, and `abort` cleans up.
#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn a_failing_new_index_never_holds_up_live_writes() {
    let mut scenario = Scenario::start(Db::Postgres, 300, 2, Some(KEYWORD_NAME), true).await;
    let (alias, all) = (scenario.alias().to_owned(), scenario.all.clone());

    // an announced index whose writes are blocked
    let next = scenario.version(2);
    es_api()
        .request_ok(
            Method::Put,
            &format!("/{}", next.name),
            Some(&json!({"settings": {"index.blocks.write": true}, "aliases": {format!("{alias}.next"): {}}})),
        )
        .await
        .expect("create a blocked announced index");
    tokio::time::sleep(esync::lifecycle::targets::ANNOUNCEMENT_SETTLE).await;
    scenario.change(1..=100, "blocked").await;
    scenario.wait_synced(&all).await;
    let healthz = format!("http://127.0.0.1:{}/healthz", scenario.daemon.metrics_port);
    assert!(
        http_get(&healthz).await.starts_with("ok"),
        "a blocked new index does not make the daemon unhealthy"
    );
    let metrics = scenario.daemon.metrics().await;
    assert!(
        metric_sum(&metrics, "esync_dual_write_pending") > 0.0,
        "{metrics}"
    );
    // unblocked, the backlog drains into the new index by itself
    block_writes(&next, false).await;
    let updated: Vec<i64> = (1..=100).collect();
    next.wait_equal(
        &scenario.streams.table,
        &updated,
        CONVERGE,
        &mut scenario.daemon,
    )
    .await;
    let started = Instant::now();
    while metric_sum(&scenario.daemon.metrics().await, "esync_dual_write_pending") > 0.0 {
        assert!(started.elapsed() < CONVERGE, "the backlog never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // blocked again, then stopped: shutdown retries the backlog within its grace
    block_writes(&next, true).await;
    scenario.change(101..=150, "at shutdown").await;
    scenario.wait_synced(&all).await;
    let started = Instant::now();
    while metric_sum(&scenario.daemon.metrics().await, "esync_dual_write_pending") == 0.0 {
        assert!(started.elapsed() < CONVERGE, "no dual write waits");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scenario.daemon.signal_terminate();
    block_writes(&next, false).await;
    let status = wait_exit(&mut scenario.daemon, Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    next.assert_equal(&scenario.streams.table, &(1..=150).collect::<Vec<_>>())
        .await;
    scenario.daemon.spawn();
    scenario.daemon.wait_healthy(Duration::from_secs(30)).await;

    let aborted = scenario.esync(&["index", "abort", "--mapping", "orders"]);
    assert!(
        aborted.contains(&format!("deleted {}", next.name)),
        "{aborted}"
    );

    // a rebuild into a mapping that refuses every row stops before the swap
    scenario.set_definition(NUMERIC_NAME);
    let (ok, output) = scenario.try_esync(&[
        "index",
        "rebuild",
        "--mapping",
        "orders",
        "--progress",
        "none",
        "--verify-passes",
        "1",
    ]);
    assert!(!ok, "the rebuild must fail: {output}");
    assert!(output.contains("still differs from the table"), "{output}");
    assert_eq!(
        alias_targets(&alias).await,
        vec![format!("{alias}-v1")],
        "the alias stays"
    );
    // live writes go on meanwhile; the new index refuses their copies
    scenario.change([1], "refused").await;
    scenario.wait_synced(&all).await;
    let started = Instant::now();
    while dual_writes(&scenario.daemon.metrics().await, "rejected") == 0.0 {
        assert!(
            started.elapsed() < CONVERGE,
            "refused dual writes are counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, refused) = scenario.try_esync(&["index", "rebuild", "--mapping", "orders"]);
    assert!(!ok && refused.contains("pass --resume"), "{refused}");
    scenario.esync(&["index", "abort", "--mapping", "orders"]);
    assert!(alias_targets(&format!("{alias}.next")).await.is_empty());
    // the rows are in the live index: neither the daemon nor the rebuild
    // dead-letters what only the new mapping refuses
    let dead_letters = scenario
        .streams
        .dead_letters
        .as_ref()
        .expect("a dead-letter topic");
    assert_eq!(
        esync_testkit::kafka::topic_size(&kafka(), &dead_letters.name).await,
        0
    );
    scenario.finish().await;
}

/// An index set up before esync managed it (a concrete index with the
/// mapping's name): `create` refuses and says what to do; `rebuild` moves
/// it behind the alias without a moment in which searches fail.
async fn a_concrete_index_moves_behind_the_alias(db: Db) {
    let mut scenario = Scenario::start(db, 500, 2, None, false).await;
    let (alias, all) = (scenario.alias().to_owned(), scenario.all.clone());
    assert!(
        alias_targets(&alias).await.is_empty(),
        "a concrete index, no alias"
    );

    scenario.set_definition(TEXT_NAME);
    let (ok, refused) = scenario.try_esync(&["index", "create"]);
    assert!(
        !ok && refused.contains("is a concrete index, not an alias"),
        "{refused}"
    );
    let stop = CancellationToken::new();
    let searcher = tokio::spawn(keep_searching(alias.clone(), stop.clone()));
    scenario.swap_with("rebuild", 1);
    scenario.change(1..=50, "behind-the-alias").await;
    scenario.wait_synced(&all).await;
    stop.cancel();
    let (_, failures, first_failure) = searcher.await.expect("searcher");
    assert_eq!(
        failures, 0,
        "searches failed during the move: {first_failure:?}"
    );
    assert_eq!(alias_targets(&alias).await, vec![format!("{alias}-v1")]);
    assert_eq!(field_type(&alias, "name").await, json!("text"));
    scenario.finish().await;
}
