//! `esync dlq list` and `esync dlq replay` against the real broker: dead
//! letters of both kinds are produced with the same code the daemon uses,
//! then the binary is run and its output and the source topics checked.
//! No database is involved: the dlq commands never connect to one.

use esync::config::{KafkaConfig, LoadedConfig};
use esync::db::Dialect;
use esync::dead_letter::{truncate, undecodable_message, unwritable_id};
use esync::decode::{DecodeError, Decoder};
use esync::id::{Id, IdError};
use esync::kafka::{DeadLetter, build_producer, produce_dead_letter, read_to_end};
use esync::writer::{FailedId, Mapping};
use esync_testkit::prelude::*;
use rdkafka::Message as _;
use std::process::Command;
use std::time::Duration;

/// Kafka connection settings of the dlq code under test for `brokers`.
fn kafka_config(brokers: &str) -> KafkaConfig {
    serde_yaml::from_str(&format!("brokers: \"{brokers}\"")).expect("kafka config")
}

/// The config of the scenario: `orders` (plain integer ids, a second topic
/// that must not receive replays) and `items` (JSON string ids).
fn config_yaml(brokers: &str, dead_letters: &str, orders: &str, items: &str) -> String {
    format!(
        r#"source:
  url: postgres://unused@127.0.0.1:1/unused
kafka:
  brokers: "{brokers}"
elasticsearch:
  urls: ["http://127.0.0.1:1"]
mappings:
  - name: orders
    topics: [{orders}, {orders}_backfill]
    table: orders
    index: orders
    version: {{column: version, kind: counter}}
  - name: items
    topics: [{items}]
    format: {{type: json, field: data.id, from: value}}
    id: {{column: sku, type: string}}
    table: items
    index: items
    version: {{column: version, kind: counter}}
dead_letter: {{topic: {dead_letters}}}
"#
    )
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn esync(config: &std::path::Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_esync"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run esync");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every id on `topic`, decoded as the daemon decodes the mapping's messages.
async fn ids_on(brokers: &str, topic: &str, decoder: &Decoder) -> Vec<Id> {
    let mut ids = Vec::new();
    read_to_end(
        &kafka_config(brokers),
        topic,
        Duration::from_secs(30),
        |message| {
            let decoded = decoder
                .decode(message.key(), message.payload())
                .unwrap_or_else(|error| panic!("replayed message on {topic} undecodable: {error}"));
            ids.extend(decoded);
        },
    )
    .await
    .unwrap_or_else(|error| panic!("read {topic}: {error}"));
    ids.sort();
    ids
}

fn int_ids(ids: impl IntoIterator<Item = i64>) -> Vec<Id> {
    ids.into_iter().map(Id::Int).collect()
}

#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn dlq_list_counts_and_replay_republishes_only_matching_ids() {
    let brokers = kafka();
    let dead_letters = Topic::create(&brokers, "dlq", 2).await;
    let orders = Topic::create(&brokers, "orders", 2).await;
    let items = Topic::create(&brokers, "items", 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("esync.yaml");
    let yaml = config_yaml(&brokers, &dead_letters.name, &orders.name, &items.name);
    std::fs::write(&config_path, &yaml).expect("write config");
    let loaded = LoadedConfig::from_yaml(&yaml, &|_| None).expect("config");
    let mappings = Mapping::all_from_config(&loaded.config, Dialect::Postgres);
    let decoders: Vec<Decoder> = loaded.config.mappings.iter().map(|m| m.decoder()).collect();

    // The letters, built by the functions the daemon and esync-recover use.
    let failed = |mapping: usize, id: Id, reason_code: &'static str| {
        unwritable_id(
            &mappings[mapping],
            &FailedId {
                mapping,
                id,
                reason_code,
                reason: format!("{reason_code} for this test"),
            },
            "esync",
        )
    };
    let mut letters: Vec<DeadLetter> = Vec::new();
    for id in [1, 2, 3, 3, 4, 5] {
        letters.push(failed(0, Id::Int(id), "unmatched_id"));
    }
    // truncated (cut to fit the topic): its key, the id, survives
    letters.push(truncate(&failed(0, Id::Int(6), "unmatched_id"), 1_000));
    for id in [100, 101, 102] {
        letters.push(failed(0, Id::Int(id), "rejected_by_elasticsearch"));
    }
    letters.push(failed(1, Id::Str(" a b ".into()), "unmatched_id"));
    letters.push(failed(1, Id::Str("x\"y".into()), "unmatched_id"));
    let origin = (orders.name.as_str(), 1, 17);
    letters.push(undecodable_message(
        Some(b"not-a-number"),
        Some(b"x"),
        &DecodeError::BadId(IdError::NotInteger("not-a-number".into())),
        origin,
    ));
    letters.push(undecodable_message(
        None,
        Some(b"42"),
        &DecodeError::Tombstone("key"),
        origin,
    ));
    letters.push(undecodable_message(
        Some(&[0xff, 0xfe]),
        None,
        &DecodeError::NotUtf8("key"),
        origin,
    ));
    let producer = build_producer(&kafka_config(&brokers)).expect("producer");
    for letter in &letters {
        produce_dead_letter(&producer, &dead_letters.name, letter)
            .await
            .expect("produce dead letter");
    }

    // list: counts by kind, reason and mapping
    let list = esync(&config_path, &["dlq", "list"]);
    assert_eq!(list.code, Some(0), "{}{}", list.stdout, list.stderr);
    let table = &list.stdout;
    assert!(
        table.contains(&format!(
            "dead-letter topic {}: 15 letter(s) read, 15 selected, 1 truncated",
            dead_letters.name
        )),
        "{table}"
    );
    let row = |count: &str, kind: &str, reason: &str, mapping: &str| {
        table.lines().any(|line| {
            line.split_whitespace().take(4).collect::<Vec<_>>() == [count, kind, reason, mapping]
        })
    };
    assert!(
        row("7", "unwritable_id", "unmatched_id", "orders"),
        "{table}"
    );
    assert!(
        row("3", "unwritable_id", "rejected_by_elasticsearch", "orders"),
        "{table}"
    );
    assert!(
        row("2", "unwritable_id", "unmatched_id", "items"),
        "{table}"
    );
    assert!(row("1", "undecodable", "bad_id", "orders"), "{table}");
    assert!(row("1", "undecodable", "tombstone", "orders"), "{table}");
    assert!(row("1", "undecodable", "not_utf8", "orders"), "{table}");
    assert!(
        table.contains(&format!("from={}/1@17", orders.name)),
        "samples say where undecodable messages came from: {table}"
    );
    assert!(!table.contains('\u{1b}'), "no ANSI escapes: {table:?}");

    let json = esync(
        &config_path,
        &["dlq", "list", "--format", "json", "--mapping", "items"],
    );
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let summary: serde_json::Value = serde_json::from_str(&json.stdout).expect("json output");
    assert_eq!(summary["read"], 15, "{summary}");
    assert_eq!(summary["matched"], 2, "{summary}");
    assert_eq!(summary["groups"][0]["count"], 2, "{summary}");
    assert_eq!(summary["groups"][0]["reason"], "unmatched_id", "{summary}");

    let future = esync(
        &config_path,
        &["dlq", "list", "--since", "2099-01-01T00:00:00Z"],
    );
    assert!(
        future.stdout.contains("15 letter(s) read, 0 selected"),
        "{}",
        future.stdout
    );
    let recent = esync(&config_path, &["dlq", "list", "--since", "1h"]);
    assert!(
        recent.stdout.contains("15 letter(s) read, 15 selected"),
        "{}",
        recent.stdout
    );

    // a dry run produces nothing
    let dry = esync(
        &config_path,
        &["dlq", "replay", "--reason", "unmatched_id", "--dry-run"],
    );
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert!(
        dry.stdout
            .contains(&format!("would replay 6 id(s) to topic {}", orders.name)),
        "{}",
        dry.stdout
    );
    assert!(
        ids_on(&brokers, &orders.name, &decoders[0])
            .await
            .is_empty()
    );

    // replay one reason: exactly its distinct ids, each to its mapping's first topic
    let replay = esync(&config_path, &["dlq", "replay", "--reason", "unmatched_id"]);
    assert_eq!(replay.code, Some(0), "{}{}", replay.stdout, replay.stderr);
    assert!(
        replay
            .stdout
            .contains(&format!("replayed 6 id(s) to topic {}", orders.name)),
        "{}",
        replay.stdout
    );
    assert!(
        replay
            .stdout
            .contains(&format!("replayed 2 id(s) to topic {}", items.name)),
        "{}",
        replay.stdout
    );
    assert!(
        replay.stdout.contains("1 duplicate letter(s)"),
        "{}",
        replay.stdout
    );
    assert_eq!(
        ids_on(&brokers, &orders.name, &decoders[0]).await,
        int_ids(1..=6)
    );
    assert_eq!(
        ids_on(&brokers, &items.name, &decoders[1]).await,
        [Id::Str(" a b ".into()), Id::Str("x\"y".into())]
    );

    // a mapping's undecodable messages are skipped, and the output says so
    let replay = esync(&config_path, &["dlq", "replay", "--mapping", "orders"]);
    assert_eq!(replay.code, Some(0), "{}{}", replay.stdout, replay.stderr);
    assert!(
        replay.stdout.contains("skipped 3 undecodable messages"),
        "{}",
        replay.stdout
    );
    let mut expected = int_ids((1..=6).chain(1..=6).chain(100..=102));
    expected.sort();
    assert_eq!(ids_on(&brokers, &orders.name, &decoders[0]).await, expected);
    assert_eq!(ids_on(&brokers, &items.name, &decoders[1]).await.len(), 2);
}

#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn dlq_errors_name_the_topic_and_broker_and_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("esync.yaml");

    let missing = unique("dlq_missing");
    std::fs::write(
        &config_path,
        config_yaml(&kafka(), &missing, "orders_x", "items_x"),
    )
    .expect("write config");
    let output = esync(&config_path, &["dlq", "list"]);
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains(&format!(
            "topic {missing} does not exist on Kafka brokers {}",
            kafka()
        )),
        "{}",
        output.stderr
    );

    let closed = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        &config_path,
        config_yaml(&closed, &missing, "orders_x", "items_x"),
    )
    .expect("write config");
    let output = esync(&config_path, &["dlq", "replay"]);
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains(&format!(
            "cannot reach Kafka brokers {closed} to read topic {missing}"
        )),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains('\u{1b}'), "{:?}", output.stderr);
}
