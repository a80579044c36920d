//! Child processes of tests (logs, signals), private noida-db servers, and
//! what is read from processes: HTTP endpoints, metrics, CPU time.

use crate::env::{free_port, noida_binary};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Sends `signal` (e.g. `-TERM`) to a process; whether `kill` succeeded.
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process of a test, its stderr appended to a log file; killed
/// (SIGKILL) when dropped.
pub struct LoggedChild {
    pub name: &'static str,
    pub child: Option<Child>,
    pub log_path: PathBuf,
}

impl LoggedChild {
    pub fn new(name: &'static str, log_path: PathBuf) -> LoggedChild {
        LoggedChild {
            name,
            child: None,
            log_path,
        }
    }

    /// Starts `command` with stdout and stderr to the log and
    /// `RUST_LOG` from `ESYNC_TEST_RUST_LOG` (default `info,librdkafka=warn`).
    pub fn start(&mut self, command: &mut Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let rust_log =
            std::env::var("ESYNC_TEST_RUST_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into());
        let stdout = log.try_clone().expect("log file handle");
        let child = command
            .env("RUST_LOG", rust_log)
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", self.name));
        self.child = Some(child);
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(
            &std::fs::read_to_string(&self.log_path).unwrap_or_default(),
            lines,
        )
    }

    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "{} exited early with {status}\n--- log ---\n{}",
                self.name,
                self.log_tail(60)
            );
        }
    }

    /// Polls `http://127.0.0.1:<port>/healthz` until it answers `ok`.
    pub async fn wait_healthy(&mut self, port: u16, timeout: Duration) {
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{port}/healthz");
        while started.elapsed() < timeout {
            self.assert_running();
            if http_get(&url).await.starts_with("ok") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "{} not healthy within {timeout:?}\n{}",
            self.name,
            self.log_tail(40)
        );
    }

    /// SIGKILL: no chance to commit, checkpoint or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and returns at once; `terminate` waits for the exit.
    pub fn signal_terminate(&self) {
        if let Some(child) = &self.child {
            send_signal(child.id(), "-TERM");
        }
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal_terminate();
        let mut child = self.child.take().expect("a running process");
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!(
                    "{} did not stop within 20 s of SIGTERM\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tiny HTTP GET over loopback: the body, empty when nothing answers.
pub async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(host, path)| {
            (host, format!("/{path}"))
        });
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Body of `http://127.0.0.1:<port>/metrics`.
pub async fn metrics(port: u16) -> String {
    http_get(&format!("http://127.0.0.1:{port}/metrics")).await
}

/// Sum of a Prometheus counter over all its label sets.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// User plus system CPU seconds in a `/proc/<pid>/stat` or
/// `/proc/<pid>/task/<tid>/stat` file; `None` when it cannot be read.
pub fn cpu_seconds(stat_path: &Path) -> Option<f64> {
    // /proc reports CPU time in USER_HZ ticks, fixed at 100 per second on Linux
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // fields after the parenthesised command name; utime and stime are 14th and 15th overall
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// A private noida-db server (one service) that a test can stop, start,
/// freeze and thaw.
pub struct PrivateNoida {
    pub service: &'static str,
    pub port: u16,
    pub data_dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A private Elasticsearch API server.
pub type PrivateEs = PrivateNoida;

impl PrivateNoida {
    /// An Elasticsearch API server on a free port (`url()` is its address).
    pub async fn start() -> PrivateNoida {
        PrivateNoida::start_service("elasticsearch").await
    }

    /// A Kafka broker on a free port (`brokers()` is its address).
    pub async fn start_kafka() -> PrivateNoida {
        PrivateNoida::start_service("kafka").await
    }

    async fn start_service(service: &'static str) -> PrivateNoida {
        let mut server = PrivateNoida {
            service,
            port: free_port(),
            data_dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it answers.
    pub async fn spawn(&mut self) {
        let binary = noida_binary();
        let child = Command::new(&binary)
            .args([
                "start",
                "--only",
                self.service,
                &format!("--{}-port", self.service),
                &self.port.to_string(),
                "--data-dir",
            ])
            .arg(self.data_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start {binary}: {error}"));
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            let ready = match self.service {
                "elasticsearch" => http_get(&format!("{}/", self.url()))
                    .await
                    .contains("number"),
                _ => tokio::net::TcpStream::connect(self.brokers()).await.is_ok(),
            };
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "private {} server on {} did not start",
            self.service, self.port
        );
    }

    /// Freezes the server (SIGSTOP): connections stay open and requests hang
    /// until the client's time-out, as behind a network partition. Unlike a
    /// restart, nothing acknowledged can be lost on the server side (noida-db
    /// was seen losing writes acknowledged just before a SIGTERM).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("a running server");
        assert!(send_signal(child.id(), signal), "kill {signal} failed");
    }

    /// SIGTERM (noida-db loses acknowledged writes on SIGKILL), SIGKILL
    /// after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), "-CONT");
            send_signal(child.id(), "-TERM");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNoida {
    fn drop(&mut self) {
        self.stop();
    }
}
