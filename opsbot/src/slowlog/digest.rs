//! Aggregation of slow-log entries per fingerprint, pt-query-digest style.
//!
//! Pure: lines or entries in, a [`DigestReport`] out. Filters (time window,
//! index pattern, kind) apply before aggregation; malformed lines are counted
//! and skipped, never fatal. No file reading here (see `source`), no clock
//! (the window is given as absolute times).

use super::fingerprint::{fingerprint, fingerprint_hash, fingerprint_id};
use super::parse::{MalformedLine, SlowEntry, SlowLogKind, parse_line};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// Which entries count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestFilter {
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only indices matching one of these patterns (`*` wildcards).
    pub index_patterns: Vec<String>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<SlowLogKind>,
}

impl DigestFilter {
    /// Whether an entry passes the filter. Entries without a timestamp are
    /// left out as soon as a time window is set.
    pub fn accepts(&self, entry: &SlowEntry) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Some(at) = entry.timestamp else {
                return false;
            };
            if self.since.is_some_and(|since| at < since)
                || self.until.is_some_and(|until| at >= until)
            {
                return false;
            }
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&entry.kind) {
            return false;
        }
        self.index_patterns.is_empty()
            || self
                .index_patterns
                .iter()
                .any(|pattern| glob_match(pattern, &entry.index))
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (position, part) in parts.iter().enumerate() {
        if position == 0 {
            let Some(after) = rest.strip_prefix(part) else {
                return false;
            };
            rest = after;
        } else if position == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(found) = rest.find(part) {
            rest = &rest[found + part.len()..];
        } else {
            return false;
        }
    }
    true
}

/// `15m`, `1h`, `24h`, `7d`, `30s` → a duration.
pub fn parse_window(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        "w" => value * 7 * 86_400,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

#[derive(Debug, Default)]
struct Group {
    kind: Option<SlowLogKind>,
    fingerprint: String,
    latencies_ms: Vec<u64>,
    total_ms: u64,
    indices: BTreeMap<String, u64>,
    shards: BTreeSet<String>,
    nodes: BTreeMap<String, u64>,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    sample: String,
    sample_took_ms: u64,
}

/// Accumulates lines; call [`Digest::finish`] for the report.
#[derive(Debug, Default)]
pub struct Digest {
    filter: DigestFilter,
    groups: HashMap<u64, Group>,
    lines: u64,
    entries: u64,
    filtered_out: u64,
    malformed: u64,
    malformed_examples: Vec<String>,
    all_latencies_ms: Vec<u64>,
}

/// Statistics of one fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FingerprintStats {
    /// Stable id (16 hex digits).
    pub id: String,
    /// Query, fetch or index.
    pub kind: SlowLogKind,
    /// The query shape.
    pub fingerprint: String,
    /// Number of entries.
    pub count: u64,
    /// Sum of time taken, milliseconds.
    pub total_ms: u64,
    /// Share of the total time of all reported entries, percent.
    pub share_percent: f64,
    /// Fastest, ms.
    pub min_ms: u64,
    /// Median, ms.
    pub p50_ms: u64,
    /// 95th percentile, ms.
    pub p95_ms: u64,
    /// 99th percentile, ms.
    pub p99_ms: u64,
    /// Slowest, ms.
    pub max_ms: u64,
    /// Entries per index, most first.
    pub indices: Vec<(String, u64)>,
    /// Shards seen, as `index[n]`.
    pub shards: Vec<String>,
    /// Entries per node, most first.
    pub nodes: Vec<(String, u64)>,
    /// First entry.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last entry.
    pub last_seen: Option<DateTime<Utc>>,
    /// Source of the slowest entry.
    pub sample: String,
}

/// A bucket of the latency distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LatencyBucket {
    /// Upper bound (exclusive) in ms; `None` for the last, open bucket.
    pub below_ms: Option<u64>,
    /// Entries in the bucket.
    pub count: u64,
}

/// The finished report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DigestReport {
    /// Lines read.
    pub lines: u64,
    /// Entries parsed (before filtering).
    pub entries: u64,
    /// Entries left out by the filter.
    pub filtered_out: u64,
    /// Lines that were not slow-log entries.
    pub malformed_lines: u64,
    /// The first few malformed reasons, for diagnosis.
    pub malformed_examples: Vec<String>,
    /// Entries reported.
    pub reported: u64,
    /// Total time of reported entries, ms.
    pub total_ms: u64,
    /// Distinct fingerprints.
    pub fingerprints: u64,
    /// Fingerprints by total time, largest first (at most `top`).
    pub top: Vec<FingerprintStats>,
    /// Distribution of all reported latencies.
    pub latency_buckets: Vec<LatencyBucket>,
}

/// Upper bounds of the latency buckets, ms.
const BUCKET_BOUNDS_MS: [u64; 9] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

impl Digest {
    /// A digest keeping only entries accepted by `filter`.
    pub fn new(filter: DigestFilter) -> Digest {
        Digest {
            filter,
            ..Digest::default()
        }
    }

    /// Parses and adds one line; `origin` names it in malformed examples.
    pub fn add_line(&mut self, line: &str, origin: &dyn Fn() -> String) {
        self.lines += 1;
        match parse_line(line) {
            Ok(Some(entry)) => self.add_entry(entry),
            Ok(None) => {}
            Err(reason) => self.add_malformed(reason, origin),
        }
    }

    /// Counts a line that could not be used.
    pub fn add_malformed(&mut self, reason: MalformedLine, origin: &dyn Fn() -> String) {
        self.malformed += 1;
        if self.malformed_examples.len() < 5 {
            self.malformed_examples
                .push(format!("{}: {reason}", origin()));
        }
    }

    /// Adds one parsed entry.
    pub fn add_entry(&mut self, entry: SlowEntry) {
        self.entries += 1;
        if !self.filter.accepts(&entry) {
            self.filtered_out += 1;
            return;
        }
        let shape = fingerprint(&entry.source);
        let key = fingerprint_hash(entry.kind.as_str(), &shape);
        let group = self.groups.entry(key).or_default();
        if group.kind.is_none() {
            group.kind = Some(entry.kind);
            group.fingerprint = shape;
        }
        group.latencies_ms.push(entry.took_ms);
        group.total_ms += entry.took_ms;
        *group.indices.entry(entry.index.clone()).or_default() += 1;
        if let Some(shard) = entry.shard
            && group.shards.len() < 64
        {
            group.shards.insert(format!("{}[{shard}]", entry.index));
        }
        if let Some(node) = entry.node {
            *group.nodes.entry(node).or_default() += 1;
        }
        if let Some(at) = entry.timestamp {
            group.first_seen = Some(group.first_seen.map_or(at, |seen| seen.min(at)));
            group.last_seen = Some(group.last_seen.map_or(at, |seen| seen.max(at)));
        }
        if group.sample.is_empty() || entry.took_ms > group.sample_took_ms {
            group.sample = entry.source;
            group.sample_took_ms = entry.took_ms;
        }
        self.all_latencies_ms.push(entry.took_ms);
    }

    /// Ranks fingerprints by total time and keeps the `top` largest.
    pub fn finish(self, top: usize) -> DigestReport {
        let total_ms: u64 = self.groups.values().map(|group| group.total_ms).sum();
        let fingerprints = self.groups.len() as u64;
        let mut groups: Vec<Group> = self.groups.into_values().collect();
        groups.sort_by(|a, b| {
            b.total_ms
                .cmp(&a.total_ms)
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        let top: Vec<FingerprintStats> = groups
            .into_iter()
            .take(top)
            .map(|group| stats_of(group, total_ms))
            .collect();
        let mut buckets: Vec<LatencyBucket> = BUCKET_BOUNDS_MS
            .iter()
            .map(|bound| LatencyBucket {
                below_ms: Some(*bound),
                count: 0,
            })
            .collect();
        buckets.push(LatencyBucket {
            below_ms: None,
            count: 0,
        });
        for took in &self.all_latencies_ms {
            let slot = BUCKET_BOUNDS_MS
                .iter()
                .position(|bound| took < bound)
                .unwrap_or(BUCKET_BOUNDS_MS.len());
            buckets[slot].count += 1;
        }
        DigestReport {
            lines: self.lines,
            entries: self.entries,
            filtered_out: self.filtered_out,
            malformed_lines: self.malformed,
            malformed_examples: self.malformed_examples,
            reported: self.all_latencies_ms.len() as u64,
            total_ms,
            fingerprints,
            top,
            latency_buckets: buckets,
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], percent: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn by_count_desc(map: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut list: Vec<(String, u64)> = map.into_iter().collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list
}

fn stats_of(mut group: Group, all_total_ms: u64) -> FingerprintStats {
    group.latencies_ms.sort_unstable();
    let latencies = &group.latencies_ms;
    let kind = group.kind.unwrap_or(SlowLogKind::Query);
    FingerprintStats {
        id: fingerprint_id(kind.as_str(), &group.fingerprint),
        kind,
        count: latencies.len() as u64,
        total_ms: group.total_ms,
        share_percent: if all_total_ms == 0 {
            0.0
        } else {
            (group.total_ms as f64 * 1000.0 / all_total_ms as f64).round() / 10.0
        },
        min_ms: latencies.first().copied().unwrap_or(0),
        p50_ms: percentile(latencies, 50.0),
        p95_ms: percentile(latencies, 95.0),
        p99_ms: percentile(latencies, 99.0),
        max_ms: latencies.last().copied().unwrap_or(0),
        indices: by_count_desc(group.indices),
        shards: group.shards.into_iter().collect(),
        nodes: by_count_desc(group.nodes),
        first_seen: group.first_seen,
        last_seen: group.last_seen,
        sample: group.sample,
        fingerprint: group.fingerprint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: &str, took_ms: u64, source: &str, minute: u32) -> SlowEntry {
        SlowEntry {
            timestamp: Some(
                DateTime::parse_from_rfc3339(&format!("2026-01-01T10:{minute:02}:00Z"))
                    .expect("valid")
                    .with_timezone(&Utc),
            ),
            kind: SlowLogKind::Query,
            index: index.to_string(),
            shard: Some(0),
            node: Some("n1".into()),
            took_ms,
            total_hits: None,
            source: source.to_string(),
        }
    }

    #[test]
    fn groups_by_shape_and_ranks_by_total_time() {
        let mut digest = Digest::new(DigestFilter::default());
        for (value, took) in [("a", 100), ("b", 200), ("c", 300)] {
            digest.add_entry(entry(
                "logs",
                took,
                &format!(r#"{{"term":{{"user":"{value}"}}}}"#),
                1,
            ));
        }
        digest.add_entry(entry("logs", 1_000, r#"{"match_all":{}}"#, 2));
        let report = digest.finish(10);
        assert_eq!(report.fingerprints, 2);
        assert_eq!(report.top[0].fingerprint, r#"{"match_all":{}}"#);
        let term = &report.top[1];
        assert_eq!(
            (term.count, term.total_ms, term.min_ms, term.max_ms),
            (3, 600, 100, 300)
        );
        assert_eq!((term.p50_ms, term.p95_ms, term.p99_ms), (200, 300, 300));
        assert_eq!(term.sample, r#"{"term":{"user":"c"}}"#);
        assert_eq!(term.share_percent, 37.5);
        assert_eq!(report.total_ms, 1_600);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 95.0), 95);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn filters_window_index_and_kind() {
        let at = |minute: u32| {
            DateTime::parse_from_rfc3339(&format!("2026-01-01T10:{minute:02}:00Z"))
                .expect("valid")
                .with_timezone(&Utc)
        };
        let filter = DigestFilter {
            since: Some(at(10)),
            until: Some(at(20)),
            index_patterns: vec!["logs-*".into()],
            kinds: vec![SlowLogKind::Query],
        };
        let mut digest = Digest::new(filter);
        digest.add_entry(entry("logs-1", 5, "{}", 5));
        digest.add_entry(entry("logs-1", 5, "{}", 10));
        digest.add_entry(entry("logs-2", 5, "{}", 19));
        digest.add_entry(entry("logs-2", 5, "{}", 20));
        digest.add_entry(entry("metrics", 5, "{}", 15));
        let mut fetch = entry("logs-1", 5, "{}", 15);
        fetch.kind = SlowLogKind::Fetch;
        digest.add_entry(fetch);
        let mut undated = entry("logs-1", 5, "{}", 15);
        undated.timestamp = None;
        digest.add_entry(undated);
        let report = digest.finish(5);
        assert_eq!(
            (report.entries, report.reported, report.filtered_out),
            (7, 2, 5)
        );
    }

    #[test]
    fn glob_and_window() {
        assert!(glob_match("logs-*", "logs-2026"));
        assert!(glob_match("*-2026", "logs-2026"));
        assert!(glob_match("l*s-*6", "logs-2026"));
        assert!(!glob_match("logs-*", "metrics"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert_eq!(parse_window("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_window("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_window("0h"), None);
        assert_eq!(parse_window("soon"), None);
    }

    #[test]
    fn malformed_lines_are_counted_not_fatal() {
        let mut digest = Digest::new(DigestFilter::default());
        let origin = || "test:1".to_string();
        digest.add_line("garbage", &origin);
        digest.add_line("", &origin);
        digest.add_line(
            r#"{"took_millis":"5","message":"[i][0]","source":"{}"}"#,
            &origin,
        );
        let report = digest.finish(5);
        assert_eq!(
            (report.lines, report.malformed_lines, report.reported),
            (3, 1, 1)
        );
        assert_eq!(report.malformed_examples, ["test:1: not a slow-log line"]);
        let slot = report
            .latency_buckets
            .iter()
            .find(|b| b.count == 1)
            .expect("bucket");
        assert_eq!(slot.below_ms, Some(100));
    }
}
