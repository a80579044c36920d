//! `opsbot`'s whole output for a bad config and for an unreachable cluster.

use esync_testkit::golden::{closed_port, run_with_file};

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
