//! Integration tests of `check` and `measure` against a real Elasticsearch
//! API server. Start the services (`scripts/services.sh up`) and export
//! `ESYNC_TEST_ES`, e.g. `http://127.0.0.1:19200`; then
//! `cargo test -p shardplan -- --include-ignored`.
//!
//! Every index name carries a random suffix so parallel runs do not collide,
//! and every index a test creates is deleted when the test ends.

use std::path::PathBuf;
use std::process::{Command, Output};

use elasticsearch::Elasticsearch;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::transport::Transport;
use elasticsearch::http::{Method, StatusCode};
use serde_json::{Value, json};

fn es_url() -> String {
    std::env::var("ESYNC_TEST_ES").unwrap_or_else(|_| {
        panic!(
            "ESYNC_TEST_ES is not set: run scripts/services.sh up and export ESYNC_TEST_ES (e.g. http://127.0.0.1:19200)"
        )
    })
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn random_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A blocking test client; deletes the indexes it created when dropped.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    client: Elasticsearch,
    url: String,
    created: Vec<String>,
}

impl Cluster {
    fn connect() -> Self {
        let url = es_url();
        let transport = Transport::single_node(&url).expect("valid ESYNC_TEST_ES url");
        Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: Elasticsearch::new(transport),
            url,
            created: Vec::new(),
        }
    }

    fn request(&self, method: Method, path: &str, body: Option<String>) -> (StatusCode, Value) {
        self.runtime.block_on(async {
            let mut headers = HeaderMap::new();
            if path.ends_with("_bulk") {
                headers.insert(
                    "content-type",
                    "application/x-ndjson".parse().expect("header"),
                );
            }
            let response = self
                .client
                .send(method, path, headers, Option::<&()>::None, body, None)
                .await
                .unwrap_or_else(|error| panic!("{path}: {error}"));
            let status = response.status_code();
            let text = response.text().await.expect("response body");
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    fn create_index(&mut self, name: &str, primaries: u32, replicas: u32) {
        let body =
            json!({"settings": {"number_of_shards": primaries, "number_of_replicas": replicas}});
        let (status, response) =
            self.request(Method::Put, &format!("/{name}"), Some(body.to_string()));
        assert!(status.is_success(), "create {name}: {response}");
        self.created.push(name.to_string());
    }

    fn index_docs(&self, name: &str, count: usize) {
        let mut body = String::new();
        for number in 0..count {
            body.push_str("{\"index\":{}}\n");
            body.push_str(&json!({"n": number, "text": "a sentence long enough to take some bytes in the shard store"}).to_string());
            body.push('\n');
        }
        let (status, response) = self.request(
            Method::Post,
            &format!("/{name}/_bulk?refresh=true"),
            Some(body),
        );
        assert!(
            status.is_success() && response["errors"] == json!(false),
            "bulk: {response}"
        );
    }

    fn exists(&self, name: &str) -> bool {
        self.request(Method::Head, &format!("/{name}"), None).0 == StatusCode::OK
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.created.is_empty() {
            let names = self.created.join(",");
            let _ = self.request(
                Method::Delete,
                &format!("/{names}?ignore_unavailable=true"),
                None,
            );
        }
    }
}

fn shardplan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardplan"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the shardplan binary runs")
}

fn json_stdout(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}); status {:?}, stderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn findings_with_code<'a>(report: &'a Value, code: &str) -> Vec<&'a str> {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|finding| finding["code"] == code)
        .filter_map(|finding| finding["message"].as_str())
        .collect()
}

#[test]
#[ignore = "needs scripts/services.sh"]
fn check_reports_planted_rule_breaks() {
    let mut cluster = Cluster::connect();
    let prefix = format!("sp-check-{}-", random_suffix());
    let fits = format!("{prefix}fits-000001");
    let odd = format!("{prefix}odd-000001");
    let big = format!("{prefix}big-2024.01.01");
    let replicated = format!("{prefix}replicated");
    cluster.create_index(&fits, 3, 0);
    cluster.create_index(&odd, 4, 0);
    cluster.create_index(&big, 3, 0);
    cluster.create_index(&replicated, 3, 1);
    cluster.index_docs(&big, 300);

    // Against a plan of 3 hot nodes, with 10kb as the largest shard wanted.
    let config = fixture("check_plan.yaml");
    let url = cluster.url.clone();
    let args = [
        "check",
        "--url",
        &url,
        "--config",
        &config,
        "--prefix",
        &prefix,
        "--min-index-size",
        "0",
        "--format",
        "json",
    ];
    let output = shardplan(&args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_stdout(&output);

    let not_multiple = findings_with_code(&report, "primaries-not-multiple");
    assert_eq!(not_multiple.len(), 1, "{not_multiple:?}");
    assert!(
        not_multiple[0].contains(&format!("{prefix}odd-*")),
        "{not_multiple:?}"
    );
    assert!(not_multiple[0].contains("4 primaries, not a multiple of the 3 planned"));

    let oversize = findings_with_code(&report, "oversize-shard");
    assert_eq!(oversize.len(), 1, "{oversize:?}");
    assert!(
        oversize[0].starts_with(&format!("{prefix}big-*")),
        "{oversize:?}"
    );

    let unassigned = findings_with_code(&report, "unassigned-shards");
    assert_eq!(
        unassigned,
        vec![format!("{replicated}: 0 primary and 3 replica shard(s) unassigned").as_str()]
    );

    let patterns: Vec<&str> = report["patterns"]
        .as_array()
        .expect("patterns")
        .iter()
        .filter_map(|pattern| pattern["pattern"].as_str())
        .collect();
    assert_eq!(
        patterns,
        vec![
            format!("{prefix}big-*").as_str(),
            format!("{prefix}fits-*").as_str(),
            format!("{prefix}odd-*").as_str(),
            replicated.as_str()
        ]
    );

    // --strict fails on the findings, and passes where the plan holds. Other
    // tests share the server: its shard count must not fail this run.
    let strict = shardplan(&[&args[..], &["--strict"]].concat());
    assert_eq!(strict.status.code(), Some(1));
    let fits_prefix = format!("{prefix}fits-");
    let clean = shardplan(&[
        "check",
        "--url",
        &url,
        "--config",
        &config,
        "--prefix",
        &fits_prefix,
        "--min-index-size",
        "0",
        "--max-shards-per-node",
        "1000000",
        "--strict",
    ]);
    let clean_stdout = String::from_utf8_lossy(&clean.stdout);
    assert_eq!(clean.status.code(), Some(0), "{clean_stdout}");
    assert!(
        clean_stdout.contains(&format!("{prefix}fits-*")),
        "{clean_stdout}"
    );

    // Without a plan the live single node holds everything: 4 is a multiple of 1.
    let live = json_stdout(&shardplan(&[
        "check",
        "--url",
        &url,
        "--prefix",
        &prefix,
        "--min-index-size",
        "0",
        "--format",
        "json",
    ]));
    assert!(findings_with_code(&live, "primaries-not-multiple").is_empty());
}

#[test]
#[ignore = "needs scripts/services.sh"]
fn check_fails_clearly_on_an_unreachable_cluster() {
    let output = shardplan(&[
        "check",
        "--url",
        "http://127.0.0.1:9",
        "--request-timeout-secs",
        "5",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("failed to read _cat/nodes"), "{stderr}");
}

#[test]
#[ignore = "needs scripts/services.sh"]
fn measure_stops_at_the_target_and_cleans_up() {
    let cluster = Cluster::connect();
    let url = cluster.url.clone();
    let directory = tempfile::tempdir().expect("temp dir");
    let chart = directory.path().join("latency.svg");
    let chart_arg = chart.to_string_lossy().into_owned();
    // A 1 ms target is met at once: the first step already reaches it.
    let output = shardplan(&[
        "measure",
        "--url",
        &url,
        "--target-ms",
        "1",
        "--window",
        "4",
        "--qps",
        "100",
        "--bulk-docs",
        "100",
        "--max-steps",
        "5",
        "--chart",
        &chart_arg,
        "--format",
        "json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_stdout(&output);
    assert_eq!(report["stop_reason"], "target-reached", "{report}");
    let curve = report["curve"].as_array().expect("curve");
    assert!(!curve.is_empty() && curve.len() <= 5);
    assert!(report["shard_size_at_target"].is_string(), "{report}");
    let index = report["index"].as_str().expect("index name");
    assert!(index.starts_with("shardplan-probe-"));
    assert!(
        !cluster.exists(index),
        "probe index {index} was not deleted"
    );
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(svg.contains("search latency as the shard grows"));
}

#[test]
#[ignore = "needs scripts/services.sh"]
fn measure_logs_json_lines_with_log_format_json() {
    let cluster = Cluster::connect();
    let output = Command::new(env!("CARGO_BIN_EXE_shardplan"))
        .args(["--log-format", "json", "measure", "--url", &cluster.url])
        .args(["--target-ms", "1", "--window", "4", "--qps", "100"])
        .args(["--bulk-docs", "100", "--max-steps", "2", "--format", "json"])
        .env_remove("RUST_LOG")
        .output()
        .expect("the shardplan binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .map(|line| {
            assert!(line["level"].is_string(), "{line}");
            line["message"].as_str().expect("message field")
        })
        .collect();
    assert!(messages.contains(&"created probe index"), "{stderr}");
    assert!(messages.contains(&"deleted probe index"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no escape codes off a terminal");
}

#[test]
#[ignore = "needs scripts/services.sh"]
fn measure_grows_the_shard_with_sample_docs_and_keeps_it() {
    let mut cluster = Cluster::connect();
    let url = cluster.url.clone();
    let docs = fixture("measure_docs.ndjson");
    let queries = fixture("measure_queries.ndjson");
    // An unreachable target: the step limit stops it, the shard has grown.
    let output = shardplan(&[
        "measure",
        "--url",
        &url,
        "--docs",
        &docs,
        "--queries",
        &queries,
        "--target-ms",
        "60000",
        "--window",
        "3",
        "--qps",
        "20",
        "--bulk-docs",
        "200",
        "--max-steps",
        "3",
        "--keep",
        "--format",
        "json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_stdout(&output);
    let index = report["index"].as_str().expect("index name").to_string();
    cluster.created.push(index.clone());
    assert_eq!(report["stop_reason"], "step-limit", "{report}");
    assert_eq!(report["kept"], true);
    assert!(cluster.exists(&index), "--keep must keep {index}");
    let docs: Vec<u64> = report["curve"]
        .as_array()
        .expect("curve")
        .iter()
        .map(|point| point["docs"].as_u64().expect("docs"))
        .collect();
    assert_eq!(docs.len(), 3);
    assert!(docs.windows(2).all(|pair| pair[0] <= pair[1]), "{docs:?}");
    assert!(docs[2] > 0, "no documents were indexed: {docs:?}");
    assert!(report["shard_size_at_target"].is_null());
}

#[test]
#[ignore = "needs scripts/services.sh"]
fn measure_reports_why_indexing_failed_and_cleans_up() {
    let cluster = Cluster::connect();
    let url = cluster.url.clone();
    let docs = fixture("measure_docs.ndjson");
    let queries = fixture("measure_queries.ndjson");
    // A strict mapping without the sample documents' fields: every bulk
    // request is rejected, and the error must say why.
    let mapping = fixture("measure_strict_mapping.json");
    let output = shardplan(&[
        "measure",
        "--url",
        &url,
        "--docs",
        &docs,
        "--queries",
        &queries,
        "--mapping",
        &mapping,
        "--window",
        "2",
        "--qps",
        "50",
        "--max-steps",
        "1000",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rejected documents"), "{stderr}");
    assert!(
        stderr.contains("strict_dynamic_mapping_exception"),
        "{stderr}"
    );
    let index = stderr
        .split_whitespace()
        .find(|word| word.starts_with("shardplan-probe-"))
        .expect("the error names the probe index");
    assert!(
        !cluster.exists(index),
        "probe index {index} was not deleted"
    );
}
