//! `esync-recover`'s whole output for a bad config and for an unreachable
//! Elasticsearch.

use esync_testkit::golden::{closed_port, run_with_file};

const RECOVER: &str = env!("CARGO_BIN_EXE_esync-recover");

#[test]
fn a_bad_config_is_reported_whole_and_once() {
    let printed = run_with_file(
        RECOVER,
        "esync.yaml",
        r#"
source: {url: "sqlite://x.db", max_connections: none}
kafka: {brokers: ""}
elasticsearch: {urls: ["http://127.0.0.1:9200"], request_timeout: fast}
mappings:
  - {topics: [orders], table: orders, index: orders, version: {column: version, kind: sometimes}}
"#,
        &["verify", "--config", "esync.yaml"],
        0,
    );
    assert_eq!(printed.code, Some(2));
    assert_eq!(printed.stdout, "");
    assert_eq!(
        printed.stderr,
        "esync-recover: invalid config file esync.yaml:
  - source.max_connections: invalid type: string \"none\", expected u32
  - elasticsearch.request_timeout: invalid value: string \"fast\", expected a duration
  - mappings[0].version.kind: unknown variant `sometimes`, expected `counter` or `timestamp`
  - kafka.brokers: must name at least one broker
"
    );
}

#[test]
fn an_unreachable_elasticsearch_is_one_line() {
    let port = closed_port();
    let printed = run_with_file(
        RECOVER,
        "esync.yaml",
        &format!(
            r#"
source: {{url: "sqlite://x.db?mode=rwc"}}
kafka: {{brokers: "127.0.0.1:{port}"}}
elasticsearch: {{urls: ["http://127.0.0.1:{port}"], request_timeout: 1s}}
mappings:
  - {{topics: [orders], table: orders, index: orders, version: {{column: version, kind: counter}}}}
"#
        ),
        &["run", "--config", "esync.yaml"],
        port,
    );
    assert_eq!(printed.code, Some(2));
    assert_eq!(printed.stdout, "");
    assert_eq!(
        printed.stderr,
        "esync-recover: elasticsearch does not answer: elasticsearch request / failed: error sending request for url (http://127.0.0.1:PORT/): client error (Connect): tcp connect error: Connection refused (os error 111)\n"
    );
}
