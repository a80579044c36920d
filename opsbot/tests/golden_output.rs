//! `opsbot`'s whole output for a bad config, an unreachable cluster, a
//! slow-log report by request and by shard, and a roll that waits on a
//! yellow cluster.

use esync_testkit::golden::{closed_port, run, run_with_file};
use std::path::{Path, PathBuf};

const OPSBOT: &str = env!("CARGO_BIN_EXE_opsbot");

#[test]
fn a_bad_config_is_reported_whole_and_once() {
    let printed = run_with_file(
        OPSBOT,
        "opsbot.yaml",
        "cluster:\n  url: localhost:9200\n  urll: x\n  request_timeout: fast\nslowlog: {top: 0}\ntelegram:\n  users: [{id: 1, role: admin}]\n",
        &["--config", "opsbot.yaml", "health"],
        0,
    );
    assert_eq!(printed.code, Some(2));
    assert_eq!(printed.stdout, "");
    assert_eq!(
        printed.stderr,
        "opsbot: invalid config opsbot.yaml:
  - cluster.urll: unknown field `urll`, expected one of `url`, `username`, `request_timeout`
  - cluster.request_timeout: invalid value: string \"fast\", expected a duration
  - telegram.users[0].role: unknown variant `admin`, expected `viewer` or `operator`
  - cluster.url: must start with http:// or https://
  - slowlog.top: must be at least 1
"
    );
}

#[test]
fn an_unreachable_cluster_is_one_line() {
    let port = closed_port();
    let printed = run_with_file(
        OPSBOT,
        "opsbot.yaml",
        &format!("cluster: {{url: \"http://127.0.0.1:{port}\", request_timeout: 1s}}\n"),
        &["--config", "opsbot.yaml", "health"],
        port,
    );
    assert_eq!(printed.code, Some(2));
    assert_eq!(printed.stdout, "");
    assert_eq!(
        printed.stderr,
        "opsbot: failed to get health of http://127.0.0.1:PORT: cluster unreachable for GET /_cluster/health: error sending request for url (http://127.0.0.1:PORT/_cluster/health)\n"
    );
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Issue 12 item 3: requests by default (a request's time is its slowest
/// shard's), shard executions with `--by shard`, both counts either way.
#[test]
fn slowlog_counts_requests_or_shard_executions() {
    let directory = tempfile::tempdir().expect("temp dir");
    let requests = fixture("es8_requests.json");
    let printed = run(
        OPSBOT,
        &["slowlog", "--top", "2", &requests],
        directory.path(),
        0,
    );
    assert_eq!((printed.code, printed.stderr.as_str()), (Some(0), ""));
    assert_eq!(
        printed.stdout,
        r#"slow log by request: 7 requests (17 shard executions), 4 fingerprints, total 15.6s
#1 query 34% total 5.3s 2 requests (2 shard executions) p50 2.6s p95 2.7s max 2.7s
   {"size":?,"query":{"range":{"@timestamp":{"gte":?,"boost":?}}},"aggregations":{"by_host":{"terms":{"field":?,"size":?}}}}
   indices: metrics-2024.12(2)  nodes: es-warm-1(1), es-warm-2(1)
#2 query 23.1% total 3.6s 2 requests (8 shard executions) p50 1.2s p95 2.4s max 2.4s
   {"size":?,"query":{"terms":{"event.type":[?],"boost":?}},"sort":[{"_doc":{"order":?}}]}
   indices: events(2)  nodes: es-hot-1(2)

"#
    );
    let printed = run(
        OPSBOT,
        &["slowlog", "--top", "2", "--by", "shard", &requests],
        directory.path(),
        0,
    );
    assert_eq!((printed.code, printed.stderr.as_str()), (Some(0), ""));
    assert_eq!(
        printed.stdout,
        r#"slow log by shard: 17 shard executions (7 requests), 4 fingerprints, total 30.9s
#1 query 43% total 13.3s 8 shard executions (2 requests) p50 1.7s p95 2.4s max 2.4s
   {"size":?,"query":{"terms":{"event.type":[?],"boost":?}},"sort":[{"_doc":{"order":?}}]}
   indices: events(8)  nodes: es-hot-1(8)
#2 query 24.3% total 7.5s 4 shard executions (1 request) p50 1.2s p95 3.4s max 3.4s
   {"size":?,"query":{"bool":{"filter":[{"range":{"@timestamp":{"gte":?,"boost":?}}},{"term":{"service.name":{"value":?,"boost":?}}}],"boost":?}},"aggregations":{"per_minute":{"date_histogram":{"field":?…
   indices: logs-2024.12.21(4)  nodes: es-hot-1(4)

"#
    );
}

/// The roll's id (its start time) in a text, from the saved state.
fn without_roll_id(text: &str, state_path: &Path) -> String {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path).expect("roll state"))
            .expect("roll state json");
    let id = state["id"].as_str().expect("roll id");
    text.replace(id, "ID")
}

/// Issue 12 item 4: a roll on a yellow cluster says, on stdout as it goes,
/// what it waits for, and why it stopped. The cluster is a private
/// Elasticsearch API server with an index whose replicas one node cannot
/// place: yellow, quiet, and its only node holds the only started copies.
#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn a_roll_on_a_yellow_cluster_says_what_it_waits_for() {
    let server = esync_testkit::es::private_yellow_server().await;
    let directory = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        directory.path().join("opsbot.yaml"),
        format!(
            "cluster: {{url: \"{}\"}}\nrestart:\n  action: {{kind: shell, command: \"echo restarting {{node}}\"}}\n  state_path: roll.json\n  poll_interval: 100ms\n  settled_polls: 2\n  health_timeout: 2s\naudit: {{path: audit.jsonl}}\n",
            server.url()
        ),
    )
    .expect("config");
    let printed = tokio::task::spawn_blocking({
        let directory = directory.path().to_path_buf();
        move || {
            run(
                OPSBOT,
                &[
                    "--config",
                    "opsbot.yaml",
                    "restart",
                    "all",
                    "--allow-yellow",
                ],
                &directory,
                0,
            )
        }
    })
    .await
    .expect("opsbot ran");
    let state_path = directory.path().join("roll.json");
    assert_eq!(printed.code, Some(2), "{printed:?}");
    assert_eq!(
        without_roll_id(&printed.stdout, &state_path),
        "rolling restart of 1 node(s), one at a time (green or settled yellow required):
1. noida-db on 127.0.0.1 [cdfhilmrstw, elected master]
per node: check health, allocation=primaries, flush, restart, wait leave/rejoin, restore allocation, wait for green
waiting (noida-db, check health): cluster is yellow, settling: no shard initializing or relocating for 1 of 2 polls (2 shards unassigned)
waiting (noida-db, check health): noida-db holds the only started copy of 2 shards: orders[0], orders[1]
roll ID stopped at node noida-db step 'check health': timed out after 2s (noida-db holds the only started copy of 2 shards: orders[0], orders[1]); allocation restored
"
    );
    // Log lines (time-stamped) aside, stderr is the one error line.
    let errors: Vec<String> = without_roll_id(&printed.stderr, &state_path)
        .lines()
        .filter(|line| !line.starts_with("20"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        errors,
        [
            "opsbot: roll ID stopped at node noida-db step 'check health': timed out after 2s (noida-db holds the only started copy of 2 shards: orders[0], orders[1]); allocation restored"
        ]
    );
}
