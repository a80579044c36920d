//! The `esync-recover` tests: a config for a table and an index, the
//! recover binary run to the end or watched while it runs, its JSON events
//! and checkpoint.

use crate::daemon::{Daemon, EsyncProcess};
use crate::db::OrdersTable;
use crate::env::{es, kafka, unique};
use crate::es::Index;
use crate::process::tail;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A config file for `table` -> `index` in a temporary directory, and the
/// recover binary to run on it.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub database_url: String,
    /// The mapping's topic (for the daemon).
    pub topic: String,
    binary: PathBuf,
}

impl Setup {
    /// `recover` is the `esync-recover` binary.
    pub fn new(recover: &str, table: &OrdersTable, index: &Index) -> Setup {
        let topic = unique("rec_topic");
        let config = format!(
            r#"source:
  url: ${{ESYNC_TEST_DATABASE_URL}}
  max_connections: 4
kafka:
  brokers: "{kafka}"
  group_id: {group}
  commit_interval: 200ms
  options:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
elasticsearch:
  urls: ["{es}"]
  request_timeout: 10s
mappings:
  - name: orders
    topics: [{topic}]
    table: {table}
    columns: [id, name, amount, version, deleted]
    index: {index}
    version: {{column: version, kind: counter}}
    delete: {{strategy: soft, column: deleted}}
    exclude: [deleted]
retry: {{initial_backoff: 50ms, max_backoff: 1s}}
metrics: {{listen: null}}
batch: {{max_ids: 200, max_wait: 50ms}}
shutdown_grace: 5s
"#,
            group = unique("rec_group"),
            kafka = kafka(),
            es = es(),
            topic = &topic,
            table = table.name,
            index = index.name,
        );
        Setup::write(recover, config, table.db.url(), topic)
    }

    /// A config whose one mapping is `mapping_yaml` (indented as a list item's keys).
    pub fn custom(recover: &str, database_url: &str, mapping_yaml: &str) -> Setup {
        let topic = unique("rec_topic");
        let config = format!(
            "source:\n  url: ${{ESYNC_TEST_DATABASE_URL}}\nkafka:\n  brokers: \"{}\"\nelasticsearch:\n  urls: [\"{}\"]\n\
             metrics: {{listen: null}}\nmappings:\n  - name: items\n    topics: [{topic}]\n{mapping_yaml}",
            kafka(),
            es(),
        );
        Setup::write(recover, config, database_url.to_owned(), topic)
    }

    fn write(recover: &str, config: String, database_url: String, topic: String) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("esync.yaml");
        std::fs::write(&path, config).expect("write config");
        Setup {
            dir,
            config: path,
            database_url,
            topic,
            binary: PathBuf::from(recover),
        }
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.dir.path().join("checkpoint.json")
    }

    /// `esync-recover <args> --config <file>`, stdout and stderr piped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("ESYNC_TEST_DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs to the end.
    pub fn run(&self, args: &[&str]) -> Finished {
        let output = self.command(args).output().expect("run esync-recover");
        Finished {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `esync run` (the workspace's debug build) on this config, logging to
    /// a file in its directory; no metrics endpoint.
    pub fn start_daemon(&self) -> Daemon {
        EsyncProcess::on_config(
            &daemon_binary(),
            "esync run",
            &["run"],
            self.config.clone(),
            self.database_url.clone(),
            0,
            None,
        )
    }
}

/// The `esync` daemon binary of this workspace (`cargo build -p esync`).
pub fn daemon_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/esync");
    assert!(
        path.exists(),
        "{} is missing: build the daemon with `cargo build -p esync`",
        path.display()
    );
    path
}

/// A finished child.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn expect_code(&self, code: i32) -> &Finished {
        assert_eq!(
            self.status.code(),
            Some(code),
            "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            tail(&self.stderr, 40)
        );
        self
    }

    /// JSON events on stderr of kind `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        events(&self.stderr, event)
    }
}

/// JSON lines of `{"event": event}` in `text`.
pub fn events(text: &str, event: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|value| value["event"] == json!(event))
        .collect()
}

/// Chunk numbers of `chunk_done` events.
pub fn done_chunks(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|event| event["chunk"].as_u64().expect("chunk number"))
        .collect()
}

/// A running child whose stderr lines are collected as they come, each with
/// the moment it arrived.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    pub stderr: Vec<String>,
    arrivals: Vec<Instant>,
}

impl Running {
    pub fn start(mut command: Command) -> Running {
        let mut child = command.spawn().expect("start esync-recover");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            stderr: Vec::new(),
            arrivals: Vec::new(),
        }
    }

    fn push(&mut self, (at, line): (Instant, String)) {
        self.arrivals.push(at);
        self.stderr.push(line);
    }

    /// Takes the lines printed so far.
    pub fn poll(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.push(line);
        }
    }

    /// JSON events of kind `event` printed so far.
    pub fn events(&mut self, event: &str) -> Vec<Value> {
        self.poll();
        events(&self.stderr.join("\n"), event)
    }

    /// Waits for the first JSON event of kind `event` (printed at or after
    /// line number `from`) that `matches`; returns it with the moment its
    /// line arrived. Fails after `timeout` or when the child exits first.
    pub fn wait_for_event(
        &mut self,
        event: &str,
        from: usize,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> (Value, Instant) {
        let started = Instant::now();
        let mut checked = from;
        loop {
            while checked < self.stderr.len() {
                let line = &self.stderr[checked];
                if let Ok(value) = serde_json::from_str::<Value>(line)
                    && value["event"] == json!(event)
                    && matches(&value)
                {
                    return (value, self.arrivals[checked]);
                }
                checked += 1;
            }
            assert!(
                started.elapsed() < timeout,
                "no matching {event:?} event within {timeout:?}:\n{}",
                tail(&self.stderr.join("\n"), 40)
            );
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.push(line);
            } else if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                if checked == self.stderr.len() {
                    panic!(
                        "esync-recover exited with {status} before a matching {event:?} event:\n{}",
                        tail(&self.stderr.join("\n"), 40)
                    );
                }
            }
        }
    }

    /// Lines printed so far (after [`Running::poll`]).
    pub fn line_count(&mut self) -> usize {
        self.poll();
        self.stderr.len()
    }

    /// Waits until `count` `chunk_done` events were printed.
    pub fn wait_for_chunks(&mut self, count: usize, timeout: Duration) {
        let started = Instant::now();
        while events(&self.stderr.join("\n"), "chunk_done").len() < count {
            assert!(
                started.elapsed() < timeout,
                "fewer than {count} chunks done within {timeout:?}:\n{}",
                self.stderr.join("\n")
            );
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.push(line);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                panic!(
                    "esync-recover exited early with {status}:\n{}",
                    self.stderr.join("\n")
                );
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.push(line);
        }
    }

    /// SIGKILL: no chance to save anything more.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain();
    }

    /// Waits for the exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            self.poll();
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                return status;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                self.drain();
                panic!(
                    "esync-recover did not finish within {timeout:?}:\n{}",
                    tail(&self.stderr.join("\n"), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Chunk numbers of the `chunk_done` events so far.
    pub fn done_chunks(&self) -> Vec<u64> {
        done_chunks(&events(&self.stderr.join("\n"), "chunk_done"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chunk numbers recorded done in a checkpoint file.
pub fn checkpoint_done(path: &Path) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(path).expect("read checkpoint");
    let checkpoint: Value = serde_json::from_str(&text).expect("checkpoint JSON");
    let mut done = BTreeSet::new();
    for runs in checkpoint["done"].as_object().expect("done map").values() {
        for run in runs.as_array().expect("runs") {
            let (start, end) = (run[0].as_u64().unwrap(), run[1].as_u64().unwrap());
            done.extend(start..=end);
        }
    }
    done
}
