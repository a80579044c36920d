//! Slow-log parsing and grouping against real-format samples of each
//! Elasticsearch version (tests/fixtures), including malformed lines.

use opsbot::slowlog::digest::{Digest, DigestFilter, DigestReport, GroupBy, Grouping};
use opsbot::slowlog::parse::{SlowLogKind, parse_line};
use opsbot::slowlog::source::read_files;
use std::io::Write;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn entries(name: &str) -> (Vec<opsbot::slowlog::SlowEntry>, usize) {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture");
    let mut good = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        match parse_line(line) {
            Ok(Some(entry)) => good.push(entry),
            Ok(None) => {}
            Err(_) => bad += 1,
        }
    }
    (good, bad)
}

#[test]
fn es6_plain_text() {
    let (entries, malformed) = entries("es6_slowlog.log");
    assert_eq!((entries.len(), malformed), (4, 2));
    let first = &entries[0];
    assert_eq!(first.index, "orders");
    assert_eq!(first.shard, Some(0));
    assert_eq!(first.node.as_deref(), Some("GOgO9TD"));
    assert_eq!(first.took_ms, 1200);
    assert_eq!(first.kind, SlowLogKind::Query);
    assert!(first.source.starts_with(r#"{"query":{"match""#));
    assert!(first.source.ends_with(r#"}}]}"#), "{}", first.source);
    assert_eq!(
        first.timestamp.expect("ts").to_rfc3339(),
        "2017-09-10T12:35:53.355+00:00"
    );
    assert_eq!(entries[2].kind, SlowLogKind::Fetch);
    let indexing = &entries[3];
    assert_eq!(
        (indexing.kind, indexing.index.as_str(), indexing.shard),
        (SlowLogKind::Index, "orders", None)
    );
    assert_eq!(indexing.took_ms, 2100);
}

#[test]
fn es7_json() {
    let (entries, malformed) = entries("es7_slowlog.json");
    assert_eq!((entries.len(), malformed), (4, 2));
    let first = &entries[0];
    assert_eq!(
        (first.index.as_str(), first.shard),
        ("logs-2021.03.04", Some(2))
    );
    assert_eq!(first.node.as_deref(), Some("es-hot-1"));
    assert_eq!((first.took_ms, first.total_hits), (1432, Some(1523)));
    assert_eq!(
        first.timestamp.expect("ts").to_rfc3339(),
        "2021-03-04T17:38:22.164+00:00"
    );
    assert!(first.source.contains(r#""user.id":{"value":"u-1029""#));
    assert_eq!(first.id.as_deref(), Some("dashboard-7"), "X-Opaque-Id");
    assert_eq!(entries[1].id, None);
    assert_eq!(entries[2].kind, SlowLogKind::Fetch);
    assert_eq!(entries[2].total_hits, Some(10000));
    assert_eq!(entries[3].kind, SlowLogKind::Index);
    assert_eq!(entries[3].index, "logs-2021.03.04");
}

#[test]
fn es8_ecs_json() {
    let (entries, malformed) = entries("es8_slowlog.json");
    assert_eq!((entries.len(), malformed), (3, 2));
    let first = &entries[0];
    assert_eq!((first.index.as_str(), first.shard), ("products", Some(0)));
    assert_eq!(first.node.as_deref(), Some("es-warm-1"));
    assert_eq!((first.took_ms, first.total_hits), (812, Some(3)));
    assert_eq!(first.id.as_deref(), Some("tomcat-123"), "X-Opaque-Id");
    assert_eq!(entries[1].id, None);
    assert_eq!(entries[2].kind, SlowLogKind::Index);
    assert_eq!(entries[2].took_ms, 1204, "took_millis as a string");
}

#[test]
fn es9_ecs_json() {
    let (entries, malformed) = entries("es9_slowlog.json");
    assert_eq!((entries.len(), malformed), (4, 1));
    assert_eq!(entries[0].index, "orders-000042");
    assert_eq!(entries[0].shard, Some(3));
    assert_eq!(entries[0].node.as_deref(), Some("es-hot-3"));
    assert_eq!(entries[0].id.as_deref(), Some("checkout-svc"));
    assert_eq!(entries[2].kind, SlowLogKind::Fetch);
    assert_eq!(entries[3].kind, SlowLogKind::Index);
}

#[test]
fn same_query_shape_groups_across_values_in_each_version() {
    for name in [
        "es6_slowlog.log",
        "es7_slowlog.json",
        "es8_slowlog.json",
        "es9_slowlog.json",
    ] {
        let mut digest = Digest::new(DigestFilter::default());
        read_files(&[fixture(name)], &mut digest).expect("read");
        let report = digest.finish(10);
        let biggest = report
            .top
            .iter()
            .max_by_key(|stats| stats.count)
            .expect("groups");
        assert_eq!(biggest.count, 2, "{name}: the two same-shape queries group");
        assert!(!biggest.fingerprint.contains("Nariko") && !biggest.fingerprint.contains("u-1029"));
        assert_eq!(report.fingerprints as usize, report.top.len());
        assert!(report.malformed_lines >= 1, "{name}");
    }
}

#[test]
fn several_files_plain_and_gzip_with_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz_path = dir.path().join("es8_slowlog.json.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz_path).expect("create"),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(&std::fs::read(fixture("es8_slowlog.json")).expect("fixture"))
        .expect("write");
    encoder.finish().expect("finish");

    let files = [
        fixture("es7_slowlog.json"),
        gz_path,
        fixture("es9_slowlog.json"),
    ];
    let mut digest = Digest::new(DigestFilter::default());
    read_files(&files, &mut digest).expect("read");
    let report = digest.finish(100);
    assert_eq!(report.reported, 4 + 3 + 4);
    assert_eq!(report.malformed_lines, 2 + 2 + 1);

    let filter = DigestFilter {
        index_patterns: vec!["products*".into()],
        kinds: vec![SlowLogKind::Query],
        ..DigestFilter::default()
    };
    let mut digest = Digest::new(filter);
    read_files(&files, &mut digest).expect("read");
    let report = digest.finish(100);
    assert_eq!(report.reported, 2);
    let stats = &report.top[0];
    assert_eq!(stats.shards, ["products[0]", "products[1]"]);
    assert_eq!(stats.nodes, [("es-warm-1".to_string(), 2)]);
    assert_eq!(
        stats.sample,
        r#"{"query":{"terms":{"sku":["Z-9"],"boost":1.0}},"from":50,"size":25}"#
    );
    assert_eq!(
        stats.first_seen.expect("first").to_rfc3339(),
        "2024-12-21T12:42:37.255+00:00"
    );
    assert_eq!(
        stats.last_seen.expect("last").to_rfc3339(),
        "2024-12-21T12:43:10.010+00:00"
    );

    let missing = read_files(&[dir.path().join("nope.log")], &mut Digest::default());
    let error = missing.expect_err("missing file");
    assert!(error.to_string().contains("nope.log"), "{error}");
}

fn report_of(lines: &[&str], by: GroupBy) -> DigestReport {
    let mut digest = Digest::with_grouping(
        DigestFilter::default(),
        Grouping {
            by,
            ..Grouping::default()
        },
    );
    for line in lines {
        digest.add_line(line, &|| "es8_requests.json".to_string());
    }
    digest.finish(10)
}

/// Per fingerprint, named by its index: requests, shard executions, total
/// and slowest time, in the report's order.
fn ranking(report: &DigestReport) -> Vec<(&str, u64, u64, u64, u64)> {
    report
        .top
        .iter()
        .map(|stats| {
            (
                stats.indices[0].0.as_str(),
                stats.requests,
                stats.shard_executions,
                stats.total_ms,
                stats.max_ms,
            )
        })
        .collect()
}

/// Issue 12 item 3: Elasticsearch writes a slow-log line per shard, so a
/// search slow on several shards used to count (and rank) as several
/// queries. `tests/fixtures/es8_requests.json` holds, in 8.x ECS lines:
/// - `logs-*`: one request on 4 shards of es-hot-1, logged over 2.6 s
///   (each line is written when its shard finishes);
/// - `metrics-*`: the same query on the same shard on es-warm-1 and
///   es-warm-2, 100 ms apart: two requests;
/// - `orders`: the same query on es-hot-3 at the same moment, twice with
///   `X-Opaque-Id: billing-report` (two shards) and once without: two
///   requests;
/// - `events`: one request on 7 shards of es-hot-1, 5 at once and 2 queued
///   behind them, across a minute boundary and over more than the 2 s
///   window from first start to last end; then the same query again 1.2 s
///   later on shard 0 (a shard runs once per request): a second request.
#[test]
fn shard_lines_of_one_request_are_one_request() {
    let text = std::fs::read_to_string(fixture("es8_requests.json")).expect("fixture");
    let lines: Vec<&str> = text.lines().collect();
    let report = report_of(&lines, GroupBy::Request);
    assert_eq!(
        (
            report.by,
            report.reported,
            report.requests,
            report.fingerprints
        ),
        (GroupBy::Request, 17, 7, 4)
    );
    // A request's time is its slowest shard's: the wide `logs-*` search
    // drops below the two single-shard `metrics-*` requests.
    assert_eq!(
        ranking(&report),
        [
            ("metrics-2024.12", 2, 2, 5_300, 2_700),
            ("events", 2, 8, 3_600, 2_400),
            ("logs-2024.12.21", 1, 4, 3_400, 3_400),
            ("orders", 2, 3, 3_300, 1_700),
        ]
    );
    assert_eq!(report.total_ms, 15_600);
    let metrics = &report.top[0];
    assert_eq!(
        metrics.nodes,
        [("es-warm-1".to_string(), 1), ("es-warm-2".to_string(), 1)]
    );
    let orders = &report.top[3];
    assert_eq!((orders.count, orders.p50_ms), (2, 1_600));
    assert_eq!(orders.nodes, [("es-hot-3".to_string(), 2)]);
    let events = &report.top[1];
    assert_eq!(events.indices, [("events".to_string(), 2)]);
    assert_eq!((events.min_ms, events.max_ms), (1_200, 2_400));
    let buckets: u64 = report.latency_buckets.iter().map(|b| b.count).sum();
    assert_eq!(buckets, 7, "the distribution counts requests");

    // The same lines in another order (files of several nodes, read one
    // after the other) make the same requests.
    let mut shuffled = lines.clone();
    shuffled.reverse();
    shuffled.rotate_left(5);
    assert_eq!(report_of(&shuffled, GroupBy::Request), report);
}

#[test]
fn by_shard_counts_every_line_as_before() {
    let text = std::fs::read_to_string(fixture("es8_requests.json")).expect("fixture");
    let lines: Vec<&str> = text.lines().collect();
    let report = report_of(&lines, GroupBy::Shard);
    assert_eq!(
        (report.by, report.reported, report.requests, report.total_ms),
        (GroupBy::Shard, 17, 7, 30_900)
    );
    assert_eq!(
        ranking(&report),
        [
            ("events", 2, 8, 13_300, 2_400),
            ("logs-2024.12.21", 1, 4, 7_500, 3_400),
            ("metrics-2024.12", 2, 2, 5_300, 2_700),
            ("orders", 2, 3, 4_800, 1_700),
        ]
    );
    assert_eq!(report.top[0].count, 8);
    assert_eq!(report.top[3].nodes, [("es-hot-3".to_string(), 3)]);
}

/// Issue 9 ("logs without ANSI escape codes"): the binary's log lines, with
/// stderr redirected (a pipe here, a file or journal in production), carry no
/// terminal colour codes.
#[test]
fn cli_logs_carry_no_ansi_codes_when_stderr_is_not_a_terminal() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .args(["slowlog", "--format", "json"])
        .arg(fixture("es8_slowlog.json"))
        .env("RUST_LOG", "info")
        .env_remove("OPSBOT_LOG_FORMAT")
        .output()
        .expect("run opsbot");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped malformed slow-log line"),
        "a log line is written: {stderr}"
    );
    assert!(!stderr.contains("\x1b["), "ANSI escape codes: {stderr:?}");
}
