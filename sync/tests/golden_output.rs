//! `esync`'s whole output for a bad config and for unreachable services.

use esync_testkit::golden::{Printed, closed_port, run, run_with_file};

const ESYNC: &str = env!("CARGO_BIN_EXE_esync");

#[test]
fn a_bad_config_is_reported_whole_and_once() {
    let printed = run_with_file(
        ESYNC,
        "esync.yaml",
        r#"
source: {url: "sqlite://x.db"}
kafka: {brokers: "127.0.0.1:9092", colour: blue}
elasticsearch: {urls: ["http://127.0.0.1:9200"], request_timeout: fast}
workers: -1
batch: {max_ids: 0}
mappings:
  - topics: []
    id: {type: integr}
    table: orders
    index: orders
    version: {column: version, kind: counter}
"#,
        &["check", "--config", "esync.yaml"],
        0,
    );
    assert_eq!(printed.code, Some(2));
    assert_eq!(printed.stdout, "");
    assert_eq!(
        printed.stderr,
        "esync: invalid config file esync.yaml:
  - kafka.colour: unknown key
  - elasticsearch.request_timeout: invalid value: string \"fast\", expected a duration
  - workers: invalid value: integer `-1`, expected usize
  - mappings[0].id.type: unknown variant `integr`, expected `integer` or `string`
  - batch.max_ids: must be at least 1
  - mappings[0].topics: must list at least one topic
"
    );
    let directory = tempfile::tempdir().expect("temp dir");
    let missing = run(
        ESYNC,
        &["run", "--config", "missing.yaml"],
        directory.path(),
        0,
    );
    assert_eq!(
        (missing.code, missing.stderr.as_str()),
        (
            Some(2),
            "esync: cannot read config file missing.yaml: No such file or directory (os error 2)\n"
        )
    );
}

#[test]
fn unreachable_services_give_one_line_each_and_no_log_noise() {
    let port = closed_port();
    let Printed {
        code,
        stdout,
        stderr,
    } = run_with_file(
        ESYNC,
        "esync.yaml",
        &format!(
            r#"
source: {{url: "postgres://esync@127.0.0.1:{port}/db", connect_timeout: 1s}}
kafka: {{brokers: "127.0.0.1:{port}", options: {{socket.timeout.ms: "1000"}}}}
elasticsearch: {{urls: ["http://127.0.0.1:{port}"], request_timeout: 1s}}
mappings:
  - {{topics: [orders], table: orders, index: orders, version: {{column: version, kind: counter}}}}
"#
        ),
        &["check", "--config", "esync.yaml"],
        port,
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        stdout,
        "[ok  ] config: 1 mapping(s), valid
[FAIL] database: cannot connect to postgres://esync@127.0.0.1:PORT/db: pool timed out while waiting for an open connection
[FAIL] elasticsearch: elasticsearch request / failed: error sending request for url (http://127.0.0.1:PORT/)
[FAIL] kafka: Meta data fetch error: BrokerTransportFailure (Local: Broker transport failure)
3 check(s) failed
"
    );
    assert_eq!(stderr, "");
}
