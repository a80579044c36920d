//! Issue 9, items 1 and 2: every id column type a user can reasonably have,
//! on PostgreSQL and MariaDB, through the daemon's own reader, `esync check`
//! and `esync run`: each row ends indexed under its announced id, never
//! planned as a delete, and `esync check` proves the id round-trips (or
//! fails with a hint when it cannot).

use esync::config::MappingConfig;
use esync::db::{Database, RowReader};
use esync::document::{BulkAction, DeleteStrategy, DocumentSpec, VersionKind, plan_actions};
use esync::id::{Id, IdType};
use esync::secret::Secret;
use esync_testkit::prelude::*;
use std::sync::Arc;
use std::time::Duration;

const ESYNC: &str = env!("CARGO_BIN_EXE_esync");

/// One id column type: its DDL, the mapping's id type, rows (SQL literal and
/// the id a producer announces for it) and an id that has no row.
struct Case {
    name: &'static str,
    column: &'static str,
    id_type: IdType,
    rows: Vec<(&'static str, Id)>,
    missing: Vec<Id>,
}

fn int(id: i64) -> Id {
    Id::Int(id)
}

fn text(id: &str) -> Id {
    Id::Str(id.into())
}

fn postgres_cases() -> Vec<Case> {
    vec![
        Case {
            name: "pg_numeric_20_0",
            column: "NUMERIC(20,0)",
            id_type: IdType::Integer,
            rows: vec![("1", int(1)), ("9223372036854775807", int(i64::MAX))],
            missing: vec![int(2)],
        },
        Case {
            name: "pg_decimal_12_0",
            column: "DECIMAL(12,0)",
            id_type: IdType::Integer,
            rows: vec![("42", int(42))],
            missing: vec![int(43)],
        },
        Case {
            name: "pg_domain_over_bigint",
            column: "esync_test_bigid",
            id_type: IdType::Integer,
            rows: vec![("5", int(5))],
            missing: vec![int(6)],
        },
        Case {
            name: "pg_smallint",
            column: "SMALLINT",
            id_type: IdType::Integer,
            rows: vec![("7", int(7))],
            missing: vec![int(8)],
        },
        Case {
            name: "pg_uuid_as_string",
            column: "UUID",
            id_type: IdType::String,
            rows: vec![(
                "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            )],
            missing: vec![text("b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")],
        },
        Case {
            name: "pg_numeric_as_string",
            column: "NUMERIC(20,0)",
            id_type: IdType::String,
            rows: vec![("18446744073709551615", text("18446744073709551615"))],
            missing: vec![text("18446744073709551614")],
        },
        Case {
            name: "pg_char_8",
            column: "CHAR(8)",
            id_type: IdType::String,
            // announced without the pad, and padded (as Debezium sends CHAR keys)
            rows: vec![("'ab'", text("ab")), ("'cd'", text("cd      "))],
            missing: vec![text("zz")],
        },
        Case {
            name: "pg_text_with_whitespace",
            column: "TEXT",
            id_type: IdType::String,
            rows: vec![
                ("' a'", text(" a")),
                ("'a '", text("a ")),
                ("E'\\ta\\t'", text("\ta\t")),
                ("'a'", text("a")),
            ],
            // neither is row "a": exact, so both are deletes
            missing: vec![text("\ta"), text("a  ")],
        },
        Case {
            name: "pg_varchar_with_whitespace",
            column: "VARCHAR(20)",
            id_type: IdType::String,
            rows: vec![
                ("' sku 1 '", text(" sku 1 ")),
                ("E'sku\\t2'", text("sku\t2")),
            ],
            missing: vec![text("sku 1")],
        },
    ]
}

fn mariadb_cases() -> Vec<Case> {
    vec![
        Case {
            name: "my_bigint_unsigned",
            column: "BIGINT UNSIGNED",
            id_type: IdType::Integer,
            rows: vec![("1", int(1)), ("9223372036854775807", int(i64::MAX))],
            missing: vec![int(2)],
        },
        Case {
            name: "my_bigint_unsigned_as_string",
            column: "BIGINT UNSIGNED",
            id_type: IdType::String,
            rows: vec![("18446744073709551615", text("18446744073709551615"))],
            missing: vec![text("3")],
        },
        Case {
            name: "my_decimal_20_0",
            column: "DECIMAL(20,0)",
            id_type: IdType::Integer,
            rows: vec![("3", int(3)), ("9223372036854775807", int(i64::MAX))],
            missing: vec![int(4)],
        },
        Case {
            name: "my_int_unsigned",
            column: "INT UNSIGNED",
            id_type: IdType::Integer,
            rows: vec![("4294967295", int(4_294_967_295))],
            missing: vec![int(4)],
        },
        Case {
            name: "my_uuid_as_string",
            column: "UUID",
            id_type: IdType::String,
            rows: vec![(
                "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            )],
            missing: vec![text("b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")],
        },
        Case {
            name: "my_char_8",
            column: "CHAR(8)",
            id_type: IdType::String,
            rows: vec![("'ab'", text("ab")), ("'cd'", text("cd      "))],
            missing: vec![text("zz")],
        },
        Case {
            name: "my_varchar_with_whitespace",
            column: "VARCHAR(20)",
            id_type: IdType::String,
            // a PAD SPACE collation allows only one of "a" and "a " as a key
            rows: vec![
                ("' a'", text(" a")),
                ("'b '", text("b ")),
                ("'\\tc\\t'", text("\tc\t")),
                ("'d'", text("d")),
            ],
            missing: vec![text("\td"), text("\tc")],
        },
    ]
}

/// The reader under test's own pool.
async fn connect(db: Db) -> Database {
    Database::connect(&Secret::new(db.url()), 2, Duration::from_secs(10))
        .await
        .expect("connect")
}

fn mapping_yaml(table: &str, case: &Case, index: &str, topic: &str) -> String {
    let id_type = match case.id_type {
        IdType::Integer => "integer",
        IdType::String => "string",
    };
    format!(
        "name: {name}\ntopics: [{topic}]\ntable: {table}\nid: {{column: id, type: {id_type}}}\nindex: {index}\nversion: {{column: version, kind: counter}}",
        name = case.name
    )
}

fn spec(id_type: IdType) -> DocumentSpec {
    DocumentSpec {
        index: Arc::from("i"),
        id_column: "id".into(),
        id_type,
        version_column: "version".into(),
        version_kind: VersionKind::Counter,
        routing_column: None,
        delete: DeleteStrategy::Hard,
        renames: Default::default(),
        exclude: Default::default(),
        json_columns: Default::default(),
        lag_column: None,
    }
}

/// Creates the case's table with its rows (version = position + 1).
async fn create_table(pool: &Pool, case: &Case) -> String {
    let table = unique(case.name);
    pool.execute(&format!(
        "CREATE TABLE {table} (id {} PRIMARY KEY, version BIGINT NOT NULL)",
        case.column
    ))
    .await;
    for (position, (literal, _)) in case.rows.iter().enumerate() {
        pool.execute(&format!(
            "INSERT INTO {table} (id, version) VALUES ({literal}, {})",
            position + 1
        ))
        .await;
    }
    table
}

/// What the writer plans for every case's ids, re-read through the real
/// reader; the problems found (empty when every row is indexed under its
/// announced id and every missing id is deleted).
async fn plan_problems(database: &Database, case: &Case, table: &str) -> Vec<String> {
    let mapping: MappingConfig =
        serde_yaml::from_str(&mapping_yaml(table, case, "i", "t")).expect("mapping");
    let reader = RowReader::new(&mapping, database.dialect(), 100);
    let mut requested: Vec<Id> = case.rows.iter().map(|(_, id)| id.clone()).collect();
    requested.extend(case.missing.iter().cloned());
    let rows = match reader.fetch(database, &requested).await {
        Ok(rows) => rows,
        Err(error) => return vec![format!("{}: re-read fails: {error}", case.name)],
    };
    let planned = plan_actions(&spec(case.id_type), &requested, rows, 1);
    let mut problems = Vec::new();
    for (position, planned) in planned.iter().enumerate() {
        let expected_version = position as u64 + 1;
        let doc_id = planned.id.to_doc_id();
        match (&planned.action, position < case.rows.len()) {
            (Ok(BulkAction::Index { id, version, .. }), true)
                if *id == doc_id && *version == expected_version => {}
            (Ok(BulkAction::Delete { id, .. }), false) if *id == doc_id => {}
            (action, row_exists) => problems.push(format!(
                "{}: id {:?} (row exists: {row_exists}) planned as {action:?}",
                case.name, planned.id
            )),
        }
    }
    problems
}

/// PostgreSQL types a test needs (created once, shared by runs).
async fn create_postgres_types(pool: &Pool) {
    pool.execute(
        "DO $$ BEGIN CREATE DOMAIN esync_test_bigid AS BIGINT; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .await;
}

/// The reader and the planner index every row of every id type under its
/// announced id and delete only ids without a row.
async fn every_id_type_is_indexed_not_deleted(db: Db, cases: Vec<Case>) {
    let pool = db.connect(2).await;
    let database = connect(db).await;
    if db == Db::Postgres {
        create_postgres_types(&pool).await;
    }
    let mut problems = Vec::new();
    for case in &cases {
        let table = create_table(&pool, case).await;
        problems.extend(plan_problems(&database, case, &table).await);
        pool.execute(&format!("DROP TABLE {table}")).await;
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `esync check` reads one real row per mapping and proves its id
/// round-trips; a mapping whose id cannot fails with a hint.
async fn check_proves_ids_round_trip(db: Db, cases: Vec<Case>, bad: Vec<Case>) {
    let pool = db.connect(2).await;
    if db == Db::Postgres {
        create_postgres_types(&pool).await;
    }
    let index = Index::new(&required_env("ESYNC_TEST_ES"));
    index.create().await;
    let mut tables = Vec::new();
    let mut topics = Vec::new();
    let mut mappings = Vec::new();
    for case in cases.iter().chain(&bad) {
        let table = create_table(&pool, case).await;
        // one topic per mapping: a topic feeds one mapping
        let topic = unique("ids");
        let yaml = mapping_yaml(&table, case, &index.name, &topic);
        topics.push(topic);
        mappings.push(format!("  - {}", yaml.replace('\n', "\n    ")));
        tables.push(table);
    }
    let topic_names: Vec<&str> = topics.iter().map(String::as_str).collect();
    esync_testkit::kafka::create_topics(&kafka(), &topic_names, 1).await;
    let config = format!(
        "source:\n  url: ${{ESYNC_TEST_DATABASE_URL}}\nkafka:\n  brokers: \"{}\"\n  group_id: {}\nelasticsearch:\n  urls: [\"{}\"]\nmappings:\n{}\n",
        required_env("ESYNC_TEST_KAFKA"),
        unique("check"),
        required_env("ESYNC_TEST_ES"),
        mappings.join("\n")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("esync.yaml");
    std::fs::write(&path, &config).expect("write config");
    let output = std::process::Command::new(ESYNC)
        .args(["check", "--config"])
        .arg(&path)
        .env("ESYNC_TEST_DATABASE_URL", db.url())
        .output()
        .expect("run esync check");
    for table in &tables {
        pool.execute(&format!("DROP TABLE {table}")).await;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = format!(
        "{stdout}\n{}\n{config}",
        String::from_utf8_lossy(&output.stderr)
    );
    for case in &cases {
        let ok = format!("[ok  ] mapping {}: id round trip", case.name);
        assert!(stdout.contains(&ok), "missing {ok:?} in:\n{report}");
    }
    for case in &bad {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("[FAIL] mapping {}: id round trip", case.name)))
            .unwrap_or_else(|| panic!("no failed round trip for {} in:\n{report}", case.name));
        assert!(line.contains("hint:"), "{line}");
    }
    assert_eq!(output.status.code(), Some(1), "{report}");
    println!("{stdout}");
}

/// A row whose id matches no requested id (here: read back in another case)
/// dead-letters the ids without a row of their own as `unmatched_id`; before
/// issue 9 they were planned as deletes.
async fn unmatched_ids_are_dead_lettered_not_deleted(db: Db) {
    let pool = db.connect(2).await;
    let database = connect(db).await;
    let table = unique("unmatched");
    pool.execute(&format!(
        "CREATE TABLE {table} (id VARCHAR(20) PRIMARY KEY, version BIGINT NOT NULL)"
    ))
    .await;
    pool.execute(&format!("INSERT INTO {table} VALUES ('ABC', 1)"))
        .await;
    // MariaDB's default collation is case-insensitive: `IN ('abc')` finds
    // 'ABC'; on PostgreSQL a custom query that lowers the id does the same
    let source = match db {
        Db::MariaDb => format!("table: {table}"),
        Db::Postgres => format!(
            "query: SELECT lower(id) AS id, version FROM {table} WHERE upper(id) IN {{ids}}"
        ),
    };
    let mapping: MappingConfig = serde_yaml::from_str(&format!(
        "topics: [t]\n{source}\nid: {{column: id, type: string}}\nindex: i\nversion: {{column: version, kind: counter}}"
    ))
    .expect("mapping");
    let requested = match db {
        Db::MariaDb => vec![text("abc"), text("gone")],
        Db::Postgres => vec![text("ABC"), text("GONE")],
    };
    let rows = RowReader::new(&mapping, database.dialect(), 100)
        .fetch(&database, &requested)
        .await
        .expect("re-read");
    pool.execute(&format!("DROP TABLE {table}")).await;
    for planned in plan_actions(&spec(IdType::String), &requested, rows, 1) {
        let Err(error) = &planned.action else {
            panic!(
                "{:?} must be dead-lettered, not {:?}",
                planned.id, planned.action
            );
        };
        assert_eq!(error.reason_code(), "unmatched_id", "{error}");
    }
}

/// Mappings whose ids cannot round-trip.
fn postgres_bad_cases() -> Vec<Case> {
    vec![
        Case {
            name: "pg_bad_fractional_decimal",
            column: "NUMERIC(12,2)",
            id_type: IdType::Integer,
            rows: vec![("5.5", int(5))],
            missing: vec![],
        },
        Case {
            name: "pg_bad_uuid_as_integer",
            column: "UUID",
            id_type: IdType::Integer,
            rows: vec![("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", int(1))],
            missing: vec![],
        },
    ]
}

fn mariadb_bad_cases() -> Vec<Case> {
    vec![Case {
        name: "my_bad_unsigned_above_i64",
        column: "BIGINT UNSIGNED",
        id_type: IdType::Integer,
        rows: vec![("18446744073709551615", int(1))],
        missing: vec![],
    }]
}

/// `esync run` end to end with a numeric id column of `column_type`: inserts,
/// updates, soft and hard deletes all reach the index.
async fn numeric_ids_reach_the_index(db: Db, column_type: &str) {
    let table = OrdersTable::create(db).await;
    if db == Db::Postgres {
        create_postgres_types(&table.pool).await;
    }
    let alter = match db {
        Db::Postgres => format!(
            "ALTER TABLE {} ALTER COLUMN id TYPE {column_type}",
            table.name
        ),
        Db::MariaDb => format!("ALTER TABLE {} MODIFY id {column_type}", table.name),
    };
    table.execute(&alter).await;
    let kafka = required_env("ESYNC_TEST_KAFKA");
    let es = required_env("ESYNC_TEST_ES");
    let topic = Topic::create(&kafka, "orders", 2).await;
    let index = Index::new(&es);
    index.create().await;
    let mut daemon = Daemon::start(
        ESYNC,
        &DaemonSetup::new(&table, &topic.name, &kafka, &es, &index.name),
    );
    daemon.wait_healthy(Duration::from_secs(30)).await;
    let ids: Vec<i64> = (1..=150).collect();
    table.insert(ids.clone()).await;
    topic.send_ids(&ids).await;
    let converge = Duration::from_secs(60);
    index.wait_equal(&table, &ids, converge, &mut daemon).await;
    for id in (1..=150).step_by(4) {
        table.update(id, "changed").await;
    }
    for id in (2..=150).step_by(10) {
        table.soft_delete(id).await;
    }
    for id in (3..=150).step_by(10) {
        table.hard_delete(id).await;
    }
    topic.send_ids(&ids).await;
    index.wait_equal(&table, &ids, converge, &mut daemon).await;
    assert_eq!(
        index.documents(&ids).await.expect("documents").len(),
        150 - 15 - 15
    );
    table.drop_table().await;
}

/// `esync run` end to end with string ids of `column` type: each row
/// (SQL literal, announced id) ends indexed under its announced id, byte for
/// byte, and a hard-deleted row's document is deleted.
async fn string_ids_reach_the_index(db: Db, column: &str, rows: &[(&str, &str)]) {
    let pool = db.connect(2).await;
    let table = unique("items");
    pool.execute(&format!(
        "CREATE TABLE {table} (id {column} PRIMARY KEY, version BIGINT NOT NULL)"
    ))
    .await;
    for (position, (literal, _)) in rows.iter().enumerate() {
        pool.execute(&format!(
            "INSERT INTO {table} VALUES ({literal}, {})",
            position + 1
        ))
        .await;
    }
    let kafka = required_env("ESYNC_TEST_KAFKA");
    let topic = Topic::create(&kafka, "items", 1).await;
    let index = Index::new(&required_env("ESYNC_TEST_ES"));
    index.create().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics_port = free_port();
    let config = format!(
        "source:\n  url: ${{ESYNC_TEST_DATABASE_URL}}\n  max_connections: 2\n\
         kafka:\n  brokers: \"{kafka}\"\n  group_id: {group}\n  commit_interval: 200ms\n  options:\n    session.timeout.ms: \"6000\"\n    heartbeat.interval.ms: \"500\"\n\
         elasticsearch:\n  urls: [\"{es}\"]\n  request_timeout: 5s\n\
         mappings:\n  - name: items\n    topics: [{topic}]\n    table: {table}\n    id: {{column: id, type: string}}\n    index: {index}\n    version: {{column: version, kind: counter}}\n\
         batch: {{max_ids: 50, max_wait: 50ms}}\nmetrics: {{listen: \"127.0.0.1:{metrics_port}\"}}\nshutdown_grace: 5s\n",
        group = unique("group"),
        es = required_env("ESYNC_TEST_ES"),
        topic = topic.name,
        index = index.name,
    );
    let config_path = dir.path().join("esync.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let mut daemon = EsyncProcess::on_config(
        std::path::Path::new(ESYNC),
        "esync run",
        &["run"],
        config_path,
        db.url(),
        metrics_port,
        Some(dir),
    );
    daemon.wait_healthy(Duration::from_secs(30)).await;
    let announced: Vec<&str> = rows.iter().map(|(_, id)| *id).collect();
    for id in &announced {
        topic
            .send_raw(Some(id.as_bytes()), None)
            .await
            .expect("produce");
    }
    // every row indexed under its announced id with its version
    let expected: Vec<Option<u64>> = (1..=announced.len() as u64).map(Some).collect();
    wait_for_versions(&index, &announced, &expected, &mut daemon).await;
    // a hard-deleted row's document goes, the others stay
    pool.execute(&format!("DELETE FROM {table} WHERE id = {}", rows[0].0))
        .await;
    topic
        .send_raw(Some(announced[0].as_bytes()), None)
        .await
        .expect("produce");
    let mut expected = expected;
    expected[0] = None;
    wait_for_versions(&index, &announced, &expected, &mut daemon).await;
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    pool.execute(&format!("DROP TABLE {table}")).await;
}

/// Polls `_mget` until `ids` have the `expected` versions (None: no document).
async fn wait_for_versions(
    index: &Index,
    ids: &[&str],
    expected: &[Option<u64>],
    daemon: &mut LoggedChild,
) {
    let started = std::time::Instant::now();
    loop {
        let response = index
            .es
            .request_ok(
                elasticsearch::http::Method::Post,
                &format!("/{}/_mget", index.name),
                Some(&serde_json::json!({ "ids": ids })),
            )
            .await
            .expect("_mget");
        let found: Vec<Option<u64>> = response["docs"]
            .as_array()
            .expect("docs")
            .iter()
            .map(|doc| doc["_version"].as_u64().filter(|_| doc["found"] == true))
            .collect();
        if found == expected {
            return;
        }
        daemon.assert_running();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ids {ids:?}: versions {found:?}, expected {expected:?}\n{}",
            daemon.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

esync_testkit::per_database! {
    both {
        unmatched_ids_are_dead_lettered_not_deleted;
    }
    postgres {
        every_id_type_is_indexed_not_deleted =>
            async |db| super::every_id_type_is_indexed_not_deleted(db, postgres_cases()).await;
        check_proves_ids_round_trip => async |db| {
            super::check_proves_ids_round_trip(db, postgres_cases(), postgres_bad_cases()).await
        };
        numeric_20_0_ids_reach_the_index =>
            async |db| super::numeric_ids_reach_the_index(db, "NUMERIC(20,0)").await;
        domain_ids_reach_the_index =>
            async |db| super::numeric_ids_reach_the_index(db, "esync_test_bigid").await;
        whitespace_text_ids_reach_the_index => async |db| {
            let rows = [
                ("' a'", " a"),
                ("'a '", "a "),
                ("E'\\ta\\t'", "\ta\t"),
                ("'a'", "a"),
            ];
            super::string_ids_reach_the_index(db, "TEXT", &rows).await;
        };
        char_and_uuid_ids_reach_the_index => async |db| {
            let rows = [("'ab'", "ab"), ("'cd'", "cd      ")];
            super::string_ids_reach_the_index(db, "CHAR(8)", &rows).await;
            let uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
            let rows = [(format!("'{uuid}'"), uuid)];
            let rows: Vec<(&str, &str)> = rows
                .iter()
                .map(|(literal, id)| (literal.as_str(), *id))
                .collect();
            super::string_ids_reach_the_index(db, "UUID", &rows).await;
        };
    }
    mariadb {
        every_id_type_is_indexed_not_deleted =>
            async |db| super::every_id_type_is_indexed_not_deleted(db, mariadb_cases()).await;
        check_proves_ids_round_trip => async |db| {
            super::check_proves_ids_round_trip(db, mariadb_cases(), mariadb_bad_cases()).await
        };
        bigint_unsigned_ids_reach_the_index =>
            async |db| super::numeric_ids_reach_the_index(db, "BIGINT UNSIGNED").await;
        decimal_ids_reach_the_index =>
            async |db| super::numeric_ids_reach_the_index(db, "DECIMAL(20,0)").await;
        whitespace_varchar_ids_reach_the_index => async |db| {
            let rows = [
                ("' a'", " a"),
                ("'b '", "b "),
                ("'\\tc\\t'", "\tc\t"),
                ("'d'", "d"),
            ];
            super::string_ids_reach_the_index(db, "VARCHAR(20)", &rows).await;
        };
        char_ids_reach_the_index => async |db| {
            let rows = [("'ab'", "ab"), ("'cd'", "cd      ")];
            super::string_ids_reach_the_index(db, "CHAR(8)", &rows).await;
        };
    }
}
