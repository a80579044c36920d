//! `shardplan`'s whole output for a bad config and for an unreachable
//! cluster.

use esync_testkit::golden::{closed_port, run, run_with_file};

const SHARDPLAN: &str = env!("CARGO_BIN_EXE_shardplan");

#[test]
fn a_bad_config_is_reported_whole_and_once() {
    let printed = run_with_file(
        SHARDPLAN,
        "plan.yaml",
        "name: logs\nhot: {nodes: -3, disk: lots}\nreplica: 1\nworkload: {kind: time_based, daily_ingest: 300gb, hot_days: 7}\n",
        &["plan", "--config", "plan.yaml"],
        0,
    );
    assert_eq!(printed.code, Some(2));
    assert_eq!(printed.stdout, "");
    assert_eq!(
        printed.stderr,
        "shardplan: error: invalid config plan.yaml:
  - hot.nodes: invalid value: integer `-3`, expected u32
  - hot.disk: invalid byte size \"lots\": expected a number with a unit such as 50gb
  - replica: unknown field `replica`, expected one of `name`, `hot`, `warm`, `cold`, `workload`, `replicas`, `max_shard_size`, `min_shard_size`, `max_docs_per_shard`, `growth_factor`, `shrink_to`, `tier_routing`, `tier_attribute`, `data_stream`, `max_shards_per_node`, `shards_per_heap_gb`, `merge_headroom`, `watermark_low`, `watermark_high`
"
    );
}

#[test]
fn an_unreachable_cluster_is_one_line() {
    let directory = tempfile::tempdir().expect("temp dir");
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let printed = run(
        SHARDPLAN,
        &["check", "--url", &url, "--request-timeout-secs", "1"],
        directory.path(),
        port,
    );
    assert_eq!(printed.code, Some(2));
    assert_eq!(printed.stdout, "");
    assert_eq!(
        printed.stderr,
        "shardplan: error: failed to read _cat/nodes: request Get /_cat/nodes failed: error sending request for url (http://127.0.0.1:PORT/_cat/nodes?format=json&bytes=b&h=name%2Cnode.role%2Cheap.max%2Cdisk.total): client error (Connect): tcp connect error: Connection refused (os error 111)\n"
    );
}
