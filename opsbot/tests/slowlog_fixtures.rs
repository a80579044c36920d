//! Slow-log parsing and grouping against real-format samples of each
//! Elasticsearch version (tests/fixtures), including malformed lines.

use opsbot::slowlog::digest::{Digest, DigestFilter};
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
