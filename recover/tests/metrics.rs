//! `esync-recover run --metrics-listen` (issue 12 item 1): a running
//! recovery serves Prometheus `/metrics` with its progress, its effective
//! limit and pause, and the writer's own `esync_*` counters, which the
//! dashboard and the `EsyncRecoverStalled` alert read.

use esync_testkit::prelude::*;
use esync_testkit::process::{metrics, send_signal};
use esync_testkit::recover::*;
use std::time::{Duration, Instant};

const RECOVER: &str = env!("CARGO_BIN_EXE_esync-recover");

/// Polls `/metrics` until `done` holds for its body; fails after `timeout`
/// with the last body.
async fn wait_for_metrics(
    port: u16,
    running: &mut Running,
    what: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let started = Instant::now();
    loop {
        let body = metrics(port).await;
        if done(&body) {
            return body;
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            running.poll();
            panic!(
                "esync-recover exited ({status}) before {what}:\n{}\n{body}",
                running.stderr.join("\n")
            );
        }
        assert!(
            started.elapsed() < timeout,
            "no {what} on /metrics within {timeout:?}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the series `name{run="<run>"}`, when served.
fn run_value(body: &str, name: &str, run: &str) -> Option<f64> {
    let prefix = format!("{name}{{run=\"{run}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// A run at `--max-rate 100` serves its limit and chunk count, `ctl pause`
/// turns the paused gauge to 1 (and the limit to 0), `resume` turns them
/// back, and the counters reach the table's row count: rows walked, chunks
/// done, and the writer's documents indexed.
async fn a_run_serves_its_progress_limit_and_pause(db: Db) {
    let table = OrdersTable::create_with(db, OrdersSpec::RECOVER).await;
    table.insert(1..=1000).await;
    let index = Index::named(&es(), "rec_idx");
    index.create().await;
    let setup = Setup::new(RECOVER, &table, &index);
    let run = unique("run");
    let checkpoint = setup.checkpoint().to_string_lossy().into_owned();
    let location = ["--run-name", &run, "--checkpoint", &checkpoint];
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "run",
        "--chunk-size",
        "200",
        "--batch-size",
        "50",
        "--parallel",
        "2",
        "--max-rate",
        "100",
        // a loaded test machine must not lower the limit on its own
        "--db-latency-threshold",
        "30s",
        "--progress",
        "json",
        "--metrics-listen",
        &listen,
        "--metrics-linger",
        "120s",
    ];
    args.extend_from_slice(&location);
    let mut running = Running::start(setup.command(&args));
    let limit = "esync_recover_rate_limit_rows_per_second";
    let paused = "esync_recover_paused";

    let body = wait_for_metrics(
        port,
        &mut running,
        "rows walked",
        Duration::from_secs(60),
        |body| run_value(body, "esync_recover_rows_total", &run).is_some_and(|rows| rows > 0.0),
    )
    .await;
    assert_eq!(run_value(&body, limit, &run), Some(100.0), "{body}");
    assert_eq!(run_value(&body, paused, &run), Some(0.0), "{body}");
    assert_eq!(
        run_value(&body, "esync_recover_chunks_total", &run),
        Some(5.0),
        "{body}"
    );

    let location: Vec<&str> = location.to_vec();
    setup
        .run(&[["ctl"].as_slice(), &location, &["pause"]].concat())
        .expect_code(0);
    let body = wait_for_metrics(
        port,
        &mut running,
        "paused gauge at 1",
        Duration::from_secs(10),
        |body| run_value(body, paused, &run) == Some(1.0),
    )
    .await;
    assert_eq!(run_value(&body, limit, &run), Some(0.0), "{body}");
    let rows_paused = run_value(&body, "esync_recover_rows_total", &run).expect("rows");
    assert!(rows_paused < 1000.0, "paused after the end: {body}");

    setup
        .run(&[["ctl"].as_slice(), &location, &["resume"]].concat())
        .expect_code(0);
    wait_for_metrics(
        port,
        &mut running,
        "paused gauge back at 0",
        Duration::from_secs(10),
        |body| run_value(body, paused, &run) == Some(0.0),
    )
    .await;

    // the endpoint stays up after the end (--metrics-linger), with the
    // final values
    let body = wait_for_metrics(
        port,
        &mut running,
        "every row and chunk",
        Duration::from_secs(120),
        |body| {
            run_value(body, "esync_recover_rows_total", &run) == Some(1000.0)
                && run_value(body, "esync_recover_chunks_done", &run) == Some(5.0)
        },
    )
    .await;
    assert_eq!(run_value(&body, limit, &run), Some(100.0), "{body}");
    assert_eq!(
        run_value(&body, "esync_recover_failed_total", &run),
        Some(0.0),
        "{body}"
    );
    // the writer's own metrics, under the daemon's names
    assert_eq!(
        metric_sum(&body, "esync_docs_indexed_total"),
        1000.0,
        "{body}"
    );
    assert_eq!(http_get(&format!("http://{listen}/healthz")).await, "ok\n");

    // a signal ends the lingering at once; the run itself finished
    assert!(send_signal(running.child.id(), "-TERM"));
    let status = running.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    assert_eq!(index.count().await, 1000);
    assert_eq!(metrics(port).await, "", "the endpoint is closed");
    index.drop_index().await;
    table.drop_table().await;
}

esync_testkit::per_database! {
    postgres {
        a_run_serves_its_progress_limit_and_pause;
    }
}
