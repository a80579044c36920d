//! Rolling restarts against real local Elasticsearch API server processes
//! (noida-db, found through `ESYNC_TEST_NOIDA_BIN`). Each test starts its own
//! server on its own port with a temporary data dir; the shell restart action
//! kills that server's process group and starts it again.

use opsbot::cluster::Target;
use opsbot::config::{Config, Secrets};
use opsbot::es::EsClient;
use opsbot::metrics::{OpsbotMetrics, encode};
use opsbot::ops::{ClaimedRoll, Engine, Operations};
use opsbot::roll::{RollState, RollStatus, Step};
use opsbot::slowlog::digest::{DigestFilter, GroupBy};
use prometheus_client::registry::Registry;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn noida_bin() -> PathBuf {
    match std::env::var("ESYNC_TEST_NOIDA_BIN") {
        Ok(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "ESYNC_TEST_NOIDA_BIN is not set: run scripts/services.sh up, or set it to the absolute path of noida-db"
        ),
    }
}

/// A noida-db process group; killed on drop (the pid file follows restarts).
struct Server {
    port: u16,
    dir: tempfile::TempDir,
    /// The first process, reaped on drop (later ones belong to the script).
    first: std::process::Child,
}

impl Server {
    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("noida.pid")
    }

    fn start(port: u16) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        let log = std::fs::File::create(dir.path().join("noida.log")).expect("log");
        let mut command = Command::new(noida_bin());
        command
            .args([
                "start",
                "--only",
                "elasticsearch",
                "--elasticsearch-port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let first = command.spawn().expect("start noida-db");
        let server = Server { port, dir, first };
        std::fs::write(server.pid_file(), server.first.id().to_string()).expect("pid file");
        server.wait_until_up(Duration::from_secs(30));
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_until_up(&self, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.path().join("noida.log")).unwrap_or_default();
        panic!("noida-db on port {} did not start: {log}", self.port);
    }

    /// A restart script: kill the process group, wait, start again in a new
    /// group, record the call.
    fn restart_script(&self) -> PathBuf {
        let script = self.dir.path().join("restart.sh");
        let text = format!(
            r#"#!/bin/bash
set -e
echo "$1 $2" >> "{dir}/calls.log"
PID=$(cat "{pid}")
kill -TERM -- "-$PID" 2>/dev/null || true
# The first server is the test's child and stays a zombie until reaped, so
# wait for its port to close rather than for its pid.
while (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.1; done
setsid "{bin}" start --only elasticsearch --elasticsearch-port {port} --data-dir "{dir}/data" >> "{dir}/noida.log" 2>&1 < /dev/null &
echo $! > "{pid}"
"#,
            dir = self.dir.path().display(),
            pid = self.pid_file().display(),
            port = self.port,
            bin = noida_bin().display(),
        );
        std::fs::write(&script, text).expect("script");
        script
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", pid.trim())])
                .status();
        }
        let _ = self.first.kill();
        let _ = self.first.wait();
    }
}

fn config_for(server: &Server, action_command: &str, state_dir: &Path) -> Config {
    let yaml = format!(
        r#"
cluster:
  url: {url}
  request_timeout: 5s
restart:
  action:
    kind: shell
    command: '{action_command}'
  state_path: {state}/roll.json
  poll_interval: 200ms
  health_timeout: 20s
  api_timeout: 10s
  restart_timeout: 60s
  leave_timeout: 30s
  rejoin_timeout: 60s
  green_timeout: 30s
audit:
  path: {state}/audit.jsonl
"#,
        url = server.url(),
        state = state_dir.display(),
    );
    let config = Config::from_yaml(&yaml).expect("config");
    config.validate().expect("valid config");
    config
}

/// Drives a claimed roll to its end within `timeout`: the final state and
/// the progress lines it printed.
async fn drive(
    engine: &Engine,
    claimed: ClaimedRoll,
    timeout: Duration,
) -> (RollState, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink_lines = lines.clone();
    let progress = move |line: &str| sink_lines.lock().expect("lock").push(line.to_string());
    let finished = tokio::time::timeout(
        timeout,
        engine.run_roll(claimed, &progress, &CancellationToken::new()),
    )
    .await
    .expect("roll ends in time")
    .expect("roll runs");
    let lines = lines.lock().expect("lock").clone();
    (finished, lines)
}

async fn es_for(server: &Server) -> EsClient {
    let config =
        Config::from_yaml(&format!("cluster:\n  url: {}\n", server.url())).expect("config");
    EsClient::new(&config.cluster, &Secrets::default()).expect("client")
}

#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn rolling_restart_restarts_the_node_and_restores_allocation() {
    let server = Server::start(19310);
    let script = server.restart_script();
    let state_dir = tempfile::tempdir().expect("tempdir");
    let config = config_for(
        &server,
        &format!("bash {} {{node}} {{host}}", script.display()),
        state_dir.path(),
    );
    let es = es_for(&server).await;
    es.set_allocation(Some("all"))
        .await
        .expect("set allocation");
    let nodes_before = es.nodes().await.expect("nodes");
    assert_eq!(nodes_before.len(), 1);
    let node_name = nodes_before[0].name.clone();

    let mut registry = Registry::default();
    let metrics = OpsbotMetrics::register(&mut registry);
    let engine = Engine::new(config, &Secrets::default(), CancellationToken::new())
        .expect("engine")
        .with_metrics(metrics);
    let plan = engine.plan_restart(&Target::All).await.expect("plan");
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].host, "127.0.0.1");
    let claimed = engine
        .new_roll(&Target::All, false, false)
        .await
        .expect("roll");
    let pid_before = std::fs::read_to_string(server.pid_file()).expect("pid");
    let roll_started = Instant::now();
    let (finished, lines) = drive(&engine, claimed, Duration::from_secs(120)).await;
    assert_eq!(finished.status, RollStatus::Done, "{}", finished.summary());
    assert_eq!(finished.completed, std::slice::from_ref(&node_name));

    // The action ran once with {node} and {host} filled in, and the server
    // really restarted (fresh uptime).
    assert_eq!(server.calls().trim(), format!("{node_name} 127.0.0.1"));
    let nodes_after = es.nodes().await.expect("nodes after");
    let uptime_after = nodes_after[0].uptime_ms.expect("uptime");
    let roll_ms = u64::try_from(roll_started.elapsed().as_millis()).expect("fits");
    assert!(
        uptime_after <= roll_ms + 1_000,
        "fresh process: uptime {uptime_after} ms, roll took {roll_ms} ms"
    );
    let pid_after = std::fs::read_to_string(server.pid_file()).expect("pid");
    assert_ne!(pid_before, pid_after, "a new server process");
    assert_eq!(
        es.allocation()
            .await
            .expect("allocation")
            .persistent
            .as_deref(),
        Some("all")
    );

    assert!(
        lines.iter().any(|l| l.starts_with("restarting node")),
        "{lines:?}"
    );
    assert!(lines.last().expect("lines").contains("done"), "{lines:?}");
    let saved = engine
        .restart_status()
        .await
        .expect("status")
        .expect("saved");
    assert_eq!(saved.status, RollStatus::Done);

    // The driver recorded the roll: one node, no failure, no wait left.
    let metrics = encode(&registry).expect("encodes");
    for line in [
        "opsbot_roll_nodes_restarted_total 1",
        "opsbot_roll_failures_total 0",
        "opsbot_rolls_finished_total{outcome=\"done\"} 1",
        "opsbot_roll_running 0",
        "opsbot_roll_wait_started_timestamp_seconds 0",
        "opsbot_roll_waiting{reason=\"node_rejoining\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn failed_restart_action_stops_and_restores_allocation() {
    let server = Server::start(19311);
    let state_dir = tempfile::tempdir().expect("tempdir");
    let config = config_for(
        &server,
        "echo cannot reach {host} >&2; exit 3",
        state_dir.path(),
    );
    let es = es_for(&server).await;
    es.set_allocation(None).await.expect("reset allocation");

    let mut registry = Registry::default();
    let metrics = OpsbotMetrics::register(&mut registry);
    let engine = Engine::new(config, &Secrets::default(), CancellationToken::new())
        .expect("engine")
        .with_metrics(metrics);
    let claimed = engine
        .new_roll(&Target::All, false, false)
        .await
        .expect("roll");
    let finished = tokio::time::timeout(
        Duration::from_secs(60),
        engine.run_roll(claimed, &|_: &str| {}, &CancellationToken::new()),
    )
    .await
    .expect("in time")
    .expect("runs");
    assert_eq!(finished.status, RollStatus::Failed);
    let failure = finished.failure.clone().expect("failure");
    assert_eq!(failure.step, Step::Restart);
    assert!(failure.reason.contains("exited"), "{}", failure.reason);
    assert!(
        finished.summary().contains("allocation restored"),
        "{}",
        finished.summary()
    );
    // Allocation was unset before: it is reset, not left at primaries.
    let allocation = es.allocation().await.expect("allocation");
    assert_eq!(allocation.persistent, None);
    // one failure (restoring, then failed, counts once), no node restarted
    let metrics = encode(&registry).expect("encodes");
    for line in [
        "opsbot_roll_failures_total 1",
        "opsbot_roll_nodes_restarted_total 0",
        "opsbot_rolls_finished_total{outcome=\"failed\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }

    // The failed roll can be resumed from the node where it stopped.
    let resumed = engine.resumable_roll().await.expect("resumable");
    assert_eq!(resumed.state.status, RollStatus::Running);
    assert_eq!(resumed.state.step, Step::CheckHealth);
    assert!(resumed.state.completed.is_empty());
}

/// The incident this guards against: opsbot dies while a node restarts, so
/// allocation stays at `primaries` and replicas are never re-allocated.
#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn second_roll_is_refused_and_a_crashed_roll_resumes_and_restores_allocation() {
    let server = Server::start(19313);
    let script = server.restart_script();
    let state_dir = tempfile::tempdir().expect("tempdir");
    let es = es_for(&server).await;
    es.set_allocation(Some("all"))
        .await
        .expect("set allocation");

    // First driver: its restart action hangs, as a stuck ssh would.
    let hanging = config_for(&server, "sleep 120", state_dir.path());
    let engine = Arc::new(
        Engine::new(hanging, &Secrets::default(), CancellationToken::new()).expect("engine"),
    );
    let claimed = engine
        .new_roll(&Target::All, false, false)
        .await
        .expect("roll");
    let driver_engine = engine.clone();
    let driver = tokio::spawn(async move {
        driver_engine
            .run_roll(claimed, &|_: &str| {}, &CancellationToken::new())
            .await
    });
    let started = Instant::now();
    loop {
        let saved = engine
            .restart_status()
            .await
            .expect("status")
            .expect("saved");
        if saved.step == Step::Restart {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never reached restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        es.allocation()
            .await
            .expect("allocation")
            .persistent
            .as_deref(),
        Some("primaries")
    );

    // A second roll, even with --force, and a resume are refused while the
    // first one is driven; so is a second engine (another process).
    let other = Engine::new(
        config_for(&server, "true", state_dir.path()),
        &Secrets::default(),
        CancellationToken::new(),
    )
    .expect("engine");
    assert!(matches!(
        other.new_roll(&Target::All, false, true).await,
        Err(opsbot::ops::OpsError::RollLocked)
    ));
    assert!(matches!(
        other.resumable_roll().await,
        Err(opsbot::ops::OpsError::RollLocked)
    ));

    // The driver dies (its lock goes with it); the state on disk says running.
    driver.abort();
    let _ = driver.await;
    let saved = engine
        .restart_status()
        .await
        .expect("status")
        .expect("saved");
    assert_eq!(saved.status, RollStatus::Running);
    assert!(saved.allocation_changed);
    assert!(matches!(
        other.abort_restart().await,
        Err(opsbot::ops::OpsError::RollOrphaned)
    ));

    // Another opsbot resumes it: the node is restarted, allocation restored.
    let working = config_for(
        &server,
        &format!("bash {} {{node}} {{host}}", script.display()),
        state_dir.path(),
    );
    let engine =
        Engine::new(working, &Secrets::default(), CancellationToken::new()).expect("engine");
    let resumed = engine
        .resumable_roll()
        .await
        .expect("resumable after a crash");
    assert_eq!(resumed.state.step, Step::Restart, "continues where it was");
    let finished = tokio::time::timeout(
        Duration::from_secs(120),
        engine.run_roll(resumed, &|_: &str| {}, &CancellationToken::new()),
    )
    .await
    .expect("in time")
    .expect("runs");
    assert_eq!(finished.status, RollStatus::Done, "{}", finished.summary());
    assert_eq!(server.calls().lines().count(), 1);
    assert_eq!(
        es.allocation()
            .await
            .expect("allocation")
            .persistent
            .as_deref(),
        Some("all")
    );
}

#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn cli_reports_health_nodes_plan_and_slowlog_index() {
    let server = Server::start(19312);
    let state_dir = tempfile::tempdir().expect("tempdir");
    let config_path = state_dir.path().join("opsbot.yml");
    std::fs::write(
        &config_path,
        format!(
            "cluster:\n  url: {}\nrestart:\n  state_path: {}/roll.json\nslowlog:\n  index: opsbot-slowlog-test\naudit:\n  path: {}/audit.jsonl\n",
            server.url(),
            state_dir.path().display(),
            state_dir.path().display()
        ),
    )
    .expect("config");
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_opsbot"))
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .output()
            .expect("run opsbot");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["health"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(": green"), "{out}");
    let (code, out, _) = run(&["nodes", "--json"]);
    assert_eq!(code, Some(0));
    let nodes: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(nodes.as_array().map(Vec::len), Some(1));
    let (code, out, _) = run(&["restart", "all", "--dry-run"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("rolling restart of 1 node(s)"), "{out}");
    let (code, out, _) = run(&["status"]);
    assert_eq!((code, out.trim()), (Some(0), "no restart recorded"));
    let (code, _, err) = run(&["abort"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no restart recorded"), "{err}");
    let (code, _, err) = run(&["restart", "no-such-node", "--dry-run"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("node no-such-node is not in the cluster"),
        "{err}"
    );

    // Slow-log documents in an index, as a shipper would store the lines.
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/es8_slowlog.json");
    let mut bulk = String::new();
    for line in std::fs::read_to_string(fixture).expect("fixture").lines() {
        // Valid JSON only, and not the record whose took_millis is text
        // (the index maps that field as a number).
        if serde_json::from_str::<serde_json::Value>(line).is_ok() && !line.contains("soon") {
            bulk.push_str("{\"index\":{}}\n");
            bulk.push_str(line);
            bulk.push('\n');
        }
    }
    bulk.push_str("{\"index\":{}}\n{\"@timestamp\":\"2024-12-21T12:50:00Z\",\"message\":\"not a slow-log record\"}\n");
    let client = reqwest_like_post(&server, "/opsbot-slowlog-test/_bulk?refresh=true", &bulk);
    assert!(client.contains("\"errors\":false"), "{client}");
    let config = Config::load(&config_path).expect("config");
    let engine =
        Engine::new(config, &Secrets::default(), CancellationToken::new()).expect("engine");
    let report = engine
        .slowlog_report(Vec::new(), DigestFilter::default(), GroupBy::Request, 10)
        .await
        .expect("report");
    assert_eq!(report.reported, 3, "{report:?}");
    assert_eq!(report.malformed_lines, 1);
    let (code, out, err) = run(&["slowlog", "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(json["reported"], 3);
}

/// A tiny HTTP/1.1 POST over a raw socket (the test needs no HTTP client).
fn reqwest_like_post(server: &Server, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

/// Issue 12 item 4: on a yellow cluster (a replica a one-node cluster
/// cannot place), `--allow-yellow` used to restart the node at once, taking
/// down the only started copy of every shard. Now the roll waits for the
/// yellow to settle, then refuses to stop the node and says why, in the
/// progress and in the failure once the health check times out; the
/// restart action never runs and allocation is never touched.
#[tokio::test]
#[ignore = "needs scripts/services.sh"]
async fn settled_yellow_never_stops_the_node_holding_the_only_started_copy() {
    let server = esync_testkit::es::private_yellow_server().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let calls = state_dir.path().join("calls.log");
    let yaml = format!(
        r#"
cluster:
  url: {url}
  request_timeout: 5s
restart:
  action:
    kind: shell
    command: 'echo {{node}} >> {calls}'
  state_path: {state}/roll.json
  poll_interval: 100ms
  settled_polls: 2
  health_timeout: 3s
audit:
  path: {state}/audit.jsonl
"#,
        url = server.url(),
        calls = calls.display(),
        state = state_dir.path().display(),
    );
    let config = Config::from_yaml(&yaml).expect("config");
    config.validate().expect("valid");
    let es = EsClient::new(&config.cluster, &Secrets::default()).expect("client");
    let health = es.health().await.expect("health");
    assert_eq!(health.status, opsbot::cluster::HealthStatus::Yellow);
    let node = es.nodes().await.expect("nodes")[0].name.clone();
    let allocation_before = es.allocation().await.expect("allocation");

    let engine =
        Engine::new(config, &Secrets::default(), CancellationToken::new()).expect("engine");
    let claimed = engine
        .new_roll(&Target::All, true, false)
        .await
        .expect("roll");
    let (finished, lines) = drive(&engine, claimed, Duration::from_secs(60)).await;

    assert_eq!(
        finished.status,
        RollStatus::Failed,
        "{}",
        finished.summary()
    );
    let failure = finished.failure.clone().expect("failure");
    assert_eq!(failure.step, Step::CheckHealth);
    let only_copy = format!("{node} holds the only started copy of 2 shards: orders[0], orders[1]");
    assert_eq!(failure.reason, format!("timed out after 3s ({only_copy})"));
    assert!(!calls.exists(), "the restart action never ran");
    assert_eq!(
        es.allocation().await.expect("allocation"),
        allocation_before,
        "allocation untouched"
    );
    assert_eq!(
        lines[..2],
        [
            format!(
                "waiting ({node}, check health): cluster is yellow, settling: no shard initializing or relocating for 1 of 2 polls (2 shards unassigned)"
            ),
            format!("waiting ({node}, check health): {only_copy}"),
        ],
        "{lines:?}"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[2].contains("stopped at node"), "{lines:?}");
}
