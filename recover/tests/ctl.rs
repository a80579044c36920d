//! `esync-recover ctl` against real runs (issue 12 item 2): a new rate, a
//! pause and a resume reach a running recovery without a restart, through
//! the control file beside its checkpoint, its checkpoint table, or the lease
//! tables of a coordinated run. Run once per database.

use esync_testkit::es::CountSample;
use esync_testkit::prelude::*;
use esync_testkit::recover::*;
use std::time::{Duration, Instant};

const RECOVER: &str = env!("CARGO_BIN_EXE_esync-recover");

/// What the operator's commands must take at most to reach every process.
const OBEY_WITHIN: Duration = Duration::from_secs(1);

/// `esync-recover ctl <location> <command>`.
fn ctl(setup: &Setup, location: &[String], command: &[&str]) -> Finished {
    let mut args = vec!["ctl"];
    args.extend(location.iter().map(String::as_str));
    args.extend_from_slice(command);
    setup.run(&args)
}

/// `esync-recover run <options> <location>`.
fn run_command(setup: &Setup, options: &[&str], location: &[String]) -> std::process::Command {
    let mut args = vec!["run"];
    args.extend_from_slice(options);
    args.extend(location.iter().map(String::as_str));
    setup.command(&args)
}

/// A fresh run name and where its checkpoint is kept: the file beside the
/// setup's config, or `checkpoint_table` in the database.
fn run_location(setup: &Setup, checkpoint_table: Option<&str>) -> Vec<String> {
    let mut location = vec!["--run-name".to_owned(), unique("run")];
    match checkpoint_table {
        Some(checkpoint_table) => location.extend([
            "--checkpoint-store".to_owned(),
            "db".to_owned(),
            "--checkpoint-table".to_owned(),
            checkpoint_table.to_owned(),
        ]),
        None => location.extend([
            "--checkpoint".to_owned(),
            setup.checkpoint().to_string_lossy().into_owned(),
        ]),
    }
    location
}

/// Rows per second between two JSON progress (or summary) events.
fn rate_between(earlier: &serde_json::Value, later: &serde_json::Value) -> f64 {
    let rows = later["rows"].as_f64().unwrap() - earlier["rows"].as_f64().unwrap();
    let seconds = later["elapsed_s"].as_f64().unwrap() - earlier["elapsed_s"].as_f64().unwrap();
    rows / seconds
}

/// Fails unless the last write seen landed within [`OBEY_WITHIN`] of
/// `paused_at` and the count then held for at least 3 s; returns the count
/// it held at. Both bounds are conservative, so slow samples on a loaded
/// machine cannot fail a run that obeyed: a change between two samples
/// means a write after the earlier one started, and the final count held
/// at least from the moment the first sample showing it was taken.
fn assert_writes_stopped(samples: &[CountSample], paused_at: Instant) -> u64 {
    let timeline: Vec<(Duration, u64)> = samples
        .iter()
        .map(|sample| {
            (
                sample.taken.saturating_duration_since(paused_at),
                sample.count,
            )
        })
        .collect();
    let last_change = samples
        .windows(2)
        .rev()
        .find(|pair| pair[0].count != pair[1].count);
    if let Some(pair) = last_change {
        assert!(
            pair[0].started <= paused_at + OBEY_WITHIN,
            "documents were still written {:?} after the pause: {timeline:?}",
            pair[0].started.duration_since(paused_at)
        );
    }
    let held_from = last_change.map_or(samples[0].taken, |pair| pair[1].taken);
    let last = samples.last().expect("samples");
    assert!(
        last.taken.duration_since(held_from) >= Duration::from_secs(3),
        "the count held for only {:?}: {timeline:?}",
        last.taken.duration_since(held_from)
    );
    last.count
}

/// (a) A run started with a low `--max-rate` is raised with `ctl rate` and
/// speeds up at once, without a restart; progress says why.
async fn ctl_rate_speeds_up_a_running_run(db: Db) {
    let table = OrdersTable::create_with(db, OrdersSpec::RECOVER).await;
    let ids: Vec<i64> = (1..=3000).collect();
    table.insert(ids.clone()).await;
    let index = Index::named(&es(), "rec_idx");
    index.create().await;
    let setup = Setup::new(RECOVER, &table, &index);
    let checkpoint = setup.checkpoint().to_string_lossy().into_owned();
    let location = vec![
        "--run-name".to_owned(),
        unique("run"),
        "--checkpoint".to_owned(),
        checkpoint,
    ];
    let options = [
        "--chunk-size",
        "500",
        "--batch-size",
        "50",
        "--parallel",
        "2",
        "--max-rate",
        "40",
        // a loaded test machine must not slow the run down on its own
        "--db-latency-threshold",
        "30s",
        "--progress",
        "json",
        "--progress-interval",
        "250ms",
    ];
    let mut running = Running::start(run_command(&setup, &options, &location));
    let (slow, _) = running.wait_for_event("progress", 0, Duration::from_secs(60), |event| {
        event["elapsed_s"].as_f64() >= Some(3.0)
    });
    assert_eq!(slow["limit_rows_per_s"], 40.0, "{slow}");
    assert_eq!(slow["limit_reason"], "start: max rate 40 rows/s", "{slow}");
    assert!(slow["rows"].as_u64().unwrap() < 1000, "still early: {slow}");

    let from_line = running.line_count();
    let raised = ctl(&setup, &location, &["rate", "5000"]);
    let sent = Instant::now();
    raised.expect_code(0);
    assert!(
        raised
            .stdout
            .contains("control: running, limit 5000 rows/s; operator: rate 5000 via ctl at "),
        "{}",
        raised.stdout
    );
    let (change, arrived) =
        running.wait_for_event("throttle", from_line, Duration::from_secs(10), |event| {
            event["direction"] == "up"
        });
    let latency = arrived.saturating_duration_since(sent);
    assert!(latency <= OBEY_WITHIN, "obeyed after {latency:?}");
    assert_eq!(change["limit_rows_per_s"], 5000.0, "{change}");
    assert!(
        change["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("operator: rate 5000 via ctl at "),
        "{change}"
    );
    assert!(
        change["changed_by"]
            .as_str()
            .unwrap_or_default()
            .contains('@'),
        "{change}"
    );

    let status = running.wait(Duration::from_secs(120));
    assert!(status.success(), "{status}");
    let change_line = running
        .stderr
        .iter()
        .position(|line| {
            line.contains(r#""direction":"up""#) && line.contains("operator: rate 5000")
        })
        .expect("the throttle event");
    let progress = events(&running.stderr[..change_line].join("\n"), "progress");
    // until the change, the start limit held: at most one second of burst
    // plus 40 rows/s (a page of 50 of slack for timing)
    for event in &progress {
        let (rows, elapsed) = (
            event["rows"].as_f64().unwrap(),
            event["elapsed_s"].as_f64().unwrap(),
        );
        assert!(
            rows <= 40.0 + 40.0 * elapsed + 50.0,
            "over the start limit: {event}"
        );
    }
    let last_slow = progress.last().expect("progress before the change");
    let summary = &running.events("summary")[0];
    assert_eq!(summary["rows"], 3000, "{summary}");
    // the operator's limit, or below it if the adaptive rule saw push-back
    assert!(
        summary["limit_rows_per_s"].as_f64() <= Some(5000.0)
            && !summary["limit_reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("start:"),
        "{summary}"
    );
    let rate_before =
        last_slow["rows"].as_f64().unwrap() / last_slow["elapsed_s"].as_f64().unwrap();
    let rate_after = rate_between(last_slow, summary);
    eprintln!(
        "{db:?}: {rate_before:.0} rows/s at --max-rate 40 (burst included), {rate_after:.0} rows/s after ctl rate 5000 (obeyed after {latency:?})"
    );
    assert!(
        rate_after >= 10.0 * 40.0,
        "a measurable speed-up: {rate_before:.0} -> {rate_after:.0} rows/s"
    );
    index.assert_equal(&table, &ids).await;
    index.drop_index().await;
    table.drop_table().await;
}

/// (b) `pause` stops every write within a second and holds; `status` says
/// so; `resume` lets the run finish with every id indexed. `checkpoint` is
/// the run's checkpoint options (a file, or a table whose control record is
/// in `<table>_control`).
async fn pause_holds_and_resume_finishes(db: Db, checkpoint_table: Option<String>) {
    let table = OrdersTable::create_with(db, OrdersSpec::RECOVER).await;
    let ids: Vec<i64> = (1..=2000).collect();
    table.insert(ids.clone()).await;
    let index = Index::named(&es(), "rec_idx");
    index.create().await;
    let setup = Setup::new(RECOVER, &table, &index);
    let location = run_location(&setup, checkpoint_table.as_deref());
    let options = [
        "--chunk-size",
        "200",
        "--batch-size",
        "50",
        "--parallel",
        "2",
        "--max-rate",
        "300",
        "--progress",
        "json",
        "--progress-interval",
        "250ms",
    ];
    let mut running = Running::start(run_command(&setup, &options, &location));
    running.wait_for_chunks(1, Duration::from_secs(60));

    let from_line = running.line_count();
    let paused = ctl(&setup, &location, &["pause"]);
    let sent = Instant::now();
    paused.expect_code(0);
    assert!(
        paused.stdout.contains("control: paused (limit after resume: each process's own --max-rate); operator: pause via ctl at "),
        "{}",
        paused.stdout
    );
    let (change, arrived) =
        running.wait_for_event("throttle", from_line, Duration::from_secs(10), |event| {
            event["direction"] == "pause"
        });
    let latency = arrived.saturating_duration_since(sent);
    assert!(latency <= OBEY_WITHIN, "obeyed after {latency:?}");
    assert_eq!(
        (&change["paused"], &change["limit_rows_per_s"]),
        (&serde_json::json!(true), &serde_json::json!(0.0)),
        "{change}"
    );

    let samples = index
        .count_samples(sent + Duration::from_secs(5), Duration::from_millis(200))
        .await;
    let held = assert_writes_stopped(&samples, sent);
    assert!(held < 2000, "paused before the end: {held}");
    let progress = running.events("progress");
    let last = progress.last().expect("progress while paused");
    assert_eq!(last["paused"], true, "{last}");
    assert!(
        last["limit_reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("operator: pause via ctl at "),
        "{last}"
    );
    let status = ctl(&setup, &location, &["status"]);
    status.expect_code(0);
    assert!(
        status
            .stdout
            .contains("chunks done, not finished\ncontrol: paused"),
        "{}",
        status.stdout
    );
    eprintln!(
        "{db:?}: paused after {latency:?}, {held} documents held for {:?}",
        samples
            .last()
            .unwrap()
            .taken
            .duration_since(samples[0].taken)
    );

    ctl(&setup, &location, &["resume"]).expect_code(0);
    let exit = running.wait(Duration::from_secs(120));
    assert!(exit.success(), "{exit}");
    let summary = &running.events("summary")[0];
    assert_eq!(
        (summary["outcome"].as_str(), summary["rows"].as_u64()),
        (Some("finished"), Some(2000)),
        "{summary}"
    );
    index.assert_equal(&table, &ids).await;
    let finished = ctl(&setup, &location, &["pause"]);
    finished.expect_code(2);
    assert!(
        finished
            .stderr
            .contains("already finished; nothing to pause"),
        "{}",
        finished.stderr
    );
    if let Some(checkpoint_table) = checkpoint_table {
        table
            .execute(&format!("DROP TABLE {checkpoint_table}_control"))
            .await;
        table
            .execute(&format!("DROP TABLE {checkpoint_table}"))
            .await;
    }
    index.drop_index().await;
    table.drop_table().await;
}

/// A pause outlives the process: a run interrupted while paused starts
/// paused again on `--resume` (writing nothing), and only a fresh start
/// (`--force`) clears the operator's record. Same checkpoint options as (b).
async fn a_pause_outlives_the_process_until_a_fresh_start(
    db: Db,
    checkpoint_table: Option<String>,
) {
    use esync_testkit::process::send_signal;
    let table = OrdersTable::create_with(db, OrdersSpec::RECOVER).await;
    let ids: Vec<i64> = (1..=1000).collect();
    table.insert(ids.clone()).await;
    let index = Index::named(&es(), "rec_idx");
    index.create().await;
    let setup = Setup::new(RECOVER, &table, &index);
    let location = run_location(&setup, checkpoint_table.as_deref());
    let options = [
        "--chunk-size",
        "100",
        "--batch-size",
        "50",
        "--max-rate",
        "200",
        "--progress",
        "json",
        "--progress-interval",
        "250ms",
    ];
    let mut first = Running::start(run_command(&setup, &options, &location));
    first.wait_for_chunks(1, Duration::from_secs(60));
    let from_line = first.line_count();
    ctl(&setup, &location, &["pause"]).expect_code(0);
    first.wait_for_event("throttle", from_line, Duration::from_secs(10), |event| {
        event["direction"] == "pause"
    });
    // SIGTERM while paused: a clean interruption
    assert!(send_signal(first.child.id(), "-TERM"));
    let exit = first.wait(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(2), "interrupted");
    let held = index.count().await;

    let mut resumed_options = options.to_vec();
    resumed_options.push("--resume");
    let mut second = Running::start(run_command(&setup, &resumed_options, &location));
    let (start, _) = second.wait_for_event("throttle", 0, Duration::from_secs(30), |event| {
        event["direction"] == "pause"
    });
    assert!(
        start["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("operator: pause via ctl at "),
        "the stored pause holds from the start: {start}"
    );
    let (idle, _) = second.wait_for_event("progress", 0, Duration::from_secs(30), |event| {
        event["elapsed_s"].as_f64() >= Some(1.5)
    });
    assert_eq!(
        (&idle["rows"], &idle["paused"]),
        (&serde_json::json!(0), &serde_json::json!(true)),
        "{idle}"
    );
    assert_eq!(index.count().await, held, "nothing written while paused");
    assert!(send_signal(second.child.id(), "-TERM"));
    assert_eq!(second.wait(Duration::from_secs(30)).code(), Some(2));

    let mut forced_options = options.to_vec();
    forced_options.push("--force");
    let mut fresh = Running::start(run_command(&setup, &forced_options, &location));
    let exit = fresh.wait(Duration::from_secs(120));
    assert!(exit.success(), "a fresh start is not paused: {exit}");
    assert!(
        fresh.events("throttle").is_empty(),
        "no operator record left: {:?}",
        fresh.events("throttle")
    );
    index.assert_equal(&table, &ids).await;
    let status = ctl(&setup, &location, &["status"]);
    assert!(
        status.stdout.contains("control: never changed by ctl"),
        "{}",
        status.stdout
    );
    if let Some(checkpoint_table) = checkpoint_table {
        table
            .execute(&format!("DROP TABLE {checkpoint_table}_control"))
            .await;
        table
            .execute(&format!("DROP TABLE {checkpoint_table}"))
            .await;
    }
    index.drop_index().await;
    table.drop_table().await;
}

/// (c) With `--coordinate db` and two processes, a new rate and a pause
/// reach both within a second; paused workers keep their leases through a
/// pause longer than the lease time-out, and `resume` finishes the run with
/// every chunk walked once.
async fn coordinated_workers_obey_within_a_second(db: Db) {
    let table = OrdersTable::create_with(db, OrdersSpec::RECOVER).await;
    let ids: Vec<i64> = (1..=3000).collect();
    table.insert(ids.clone()).await;
    let index = Index::named(&es(), "rec_idx");
    index.create().await;
    let setup = Setup::new(RECOVER, &table, &index);
    let prefix = unique("rec_lease");
    let run_name = unique("run");
    let location = vec![
        "--coordinate".to_owned(),
        "db".to_owned(),
        "--lease-table-prefix".to_owned(),
        prefix.clone(),
        "--run-name".to_owned(),
        run_name.clone(),
    ];
    let start = |worker: &str| {
        let options = [
            "--lease-timeout",
            "2s",
            "--chunk-size",
            "500",
            "--batch-size",
            "50",
            "--parallel",
            "2",
            // slow enough that neither finishes before the commands below
            "--max-rate",
            "150",
            "--db-latency-threshold",
            "30s",
            "--progress",
            "json",
            "--progress-interval",
            "250ms",
            "--worker-id",
            worker,
        ];
        Running::start(run_command(&setup, &options, &location))
    };
    let mut workers = [start("worker-a"), start("worker-b")];
    for worker in &mut workers {
        worker.wait_for_event("progress", 0, Duration::from_secs(60), |event| {
            event["rows"].as_u64() > Some(0)
        });
    }

    // every command reaches both processes within a second
    let mut latencies = Vec::new();
    let mut paused_at = Instant::now();
    // (command, the limit it sets now, paused)
    for (command, limit, paused) in [
        (&["rate", "100"][..], 100.0, false),
        (&["rate", "0"][..], 0.0, true),
    ] {
        let from_lines: Vec<usize> = workers.iter_mut().map(Running::line_count).collect();
        let done = ctl(&setup, &location, command);
        let sent = Instant::now();
        paused_at = sent;
        done.expect_code(0);
        let reason = format!("operator: {} via ctl at ", command.join(" "));
        for (worker, from_line) in workers.iter_mut().zip(from_lines) {
            let (change, arrived) =
                worker.wait_for_event("throttle", from_line, Duration::from_secs(10), |event| {
                    event["reason"]
                        .as_str()
                        .is_some_and(|text| text.starts_with(&reason))
                });
            let latency = arrived.saturating_duration_since(sent);
            assert!(
                latency <= OBEY_WITHIN,
                "{command:?} obeyed after {latency:?}"
            );
            assert_eq!(
                (
                    change["limit_rows_per_s"].as_f64(),
                    change["paused"].as_bool()
                ),
                (Some(limit), Some(paused)),
                "{change}"
            );
            latencies.push(latency);
        }
    }

    // nothing is written while paused, and no lease is lost (2 s time-out)
    let samples = index
        .count_samples(
            paused_at + Duration::from_secs(5),
            Duration::from_millis(200),
        )
        .await;
    let held = assert_writes_stopped(&samples, paused_at);
    assert!(held < 3000, "paused before the end: {held}");
    let chunks = format!("{prefix}_chunks WHERE run_name = '{run_name}'");
    let leased = table
        .scalar(&format!(
            "SELECT COUNT(*) FROM {chunks} AND state = 'leased'"
        ))
        .await;
    assert!(leased >= 1, "paused workers hold their chunks");
    let expired = table
        .scalar(&format!(
            "SELECT COUNT(*) FROM {chunks} AND state = 'leased' AND lease_until < {}",
            db.now_sql()
        ))
        .await;
    assert_eq!(expired, 0, "leases are renewed while paused");
    let status = ctl(&setup, &location, &["status"]);
    status.expect_code(0);
    assert!(
        status.stdout.contains("of 6 chunks done, not finished\ncontrol: paused (limit after resume: 100 rows/s); operator: rate 0 via ctl at "),
        "{}",
        status.stdout
    );
    eprintln!(
        "{db:?}: two processes obeyed after {latencies:?}; {leased} leases held through the pause"
    );

    ctl(&setup, &location, &["resume"]).expect_code(0);
    for worker in &mut workers {
        let exit = worker.wait(Duration::from_secs(120));
        assert!(exit.success(), "{exit}");
    }
    assert_eq!(
        table
            .scalar(&format!(
                "SELECT COUNT(*) FROM {chunks} AND state = 'done' AND attempts = 1"
            ))
            .await,
        6,
        "every chunk walked once: no lease was taken over"
    );
    index.assert_equal(&table, &ids).await;

    // the tables exist, the run name does not
    let other = ctl(
        &setup,
        &[
            "--coordinate".to_owned(),
            "db".to_owned(),
            "--lease-table-prefix".to_owned(),
            prefix.clone(),
            "--run-name".to_owned(),
            "no-such-run".to_owned(),
        ],
        &["status"],
    );
    other.expect_code(2);
    assert!(
        other.stderr.contains(&format!(
            "no recovery run named \"no-such-run\" in lease table {prefix}_runs"
        )),
        "{}",
        other.stderr
    );
    for suffix in ["chunks", "runs", "control"] {
        table
            .execute(&format!("DROP TABLE {prefix}_{suffix}"))
            .await;
    }
    index.drop_index().await;
    table.drop_table().await;
}

/// (d) `ctl` for a run that does not exist fails with a message naming the
/// run and where it was looked for, and creates nothing.
async fn ctl_for_an_unknown_run_fails_clearly(db: Db) {
    let table = OrdersTable::create_with(db, OrdersSpec::RECOVER).await;
    let index = Index::named(&es(), "rec_idx");
    let setup = Setup::new(RECOVER, &table, &index);
    let checkpoint = setup.dir.path().join("nope.json");
    let in_file = ctl(
        &setup,
        &[
            "--run-name".to_owned(),
            "nope".to_owned(),
            "--checkpoint".to_owned(),
            checkpoint.to_string_lossy().into_owned(),
        ],
        &["pause"],
    );
    in_file.expect_code(2);
    assert_eq!(
        in_file.stderr,
        format!(
            "esync-recover: no recovery run named \"nope\" in checkpoint file {}; give ctl the --run-name, \
             --checkpoint-store/--checkpoint/--checkpoint-table and --coordinate/--lease-table-prefix the run was started with\n",
            checkpoint.display()
        )
    );
    assert!(!setup.dir.path().join("nope.json.ctl").exists());

    let prefix = unique("rec_lease");
    let leased = ctl(
        &setup,
        &[
            "--run-name".to_owned(),
            "nope".to_owned(),
            "--coordinate".to_owned(),
            "db".to_owned(),
            "--lease-table-prefix".to_owned(),
            prefix.clone(),
        ],
        &["rate", "500"],
    );
    leased.expect_code(2);
    assert!(
        leased.stderr.starts_with(&format!(
            "esync-recover: no recovery run named \"nope\" in lease table {prefix}_runs;"
        )),
        "{}",
        leased.stderr
    );
    let created = table
        .scalar(&format!(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name LIKE '{prefix}%'"
        ))
        .await;
    assert_eq!(created, 0, "no lease or control table created");

    let checkpoint_table = unique("rec_checkpoints");
    let in_table = ctl(
        &setup,
        &[
            "--run-name".to_owned(),
            "nope".to_owned(),
            "--checkpoint-store".to_owned(),
            "db".to_owned(),
            "--checkpoint-table".to_owned(),
            checkpoint_table.clone(),
        ],
        &["status"],
    );
    in_table.expect_code(2);
    assert!(
        in_table.stderr.starts_with(&format!(
            "esync-recover: no recovery run named \"nope\" in checkpoint table {checkpoint_table};"
        )),
        "{}",
        in_table.stderr
    );
    table.drop_table().await;
}

esync_testkit::per_database! {
    both {
        ctl_rate_speeds_up_a_running_run;
        coordinated_workers_obey_within_a_second;
        ctl_for_an_unknown_run_fails_clearly;
    }
    postgres {
        pause_holds_and_resume_finishes_with_a_checkpoint_file =>
            async |db| super::pause_holds_and_resume_finishes(db, None).await;
        a_pause_outlives_the_process_with_a_checkpoint_file =>
            async |db| super::a_pause_outlives_the_process_until_a_fresh_start(db, None).await;
    }
    mariadb {
        pause_holds_and_resume_finishes_with_a_checkpoint_table =>
            async |db| super::pause_holds_and_resume_finishes(db, Some(unique("rec_checkpoints"))).await;
        a_pause_outlives_the_process_with_a_checkpoint_table =>
            async |db| super::a_pause_outlives_the_process_until_a_fresh_start(db, Some(unique("rec_checkpoints"))).await;
    }
}
