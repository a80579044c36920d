//! Aggregation of slow-log entries per fingerprint, pt-query-digest style.
//!
//! Pure: lines or entries in, a [`DigestReport`] out. Filters (time window,
//! index pattern, kind) apply before aggregation; malformed lines are counted
//! and skipped, never fatal. No file reading here (see `source`), no clock
//! (the window is given as absolute times).
//!
//! Entries are shard executions; the report counts requests (the shard lines
//! of one search grouped, see `request`) or shard executions, as
//! [`Grouping::by`] says, and gives both counts either way.

use super::fingerprint::{fingerprint, fingerprint_hash, fingerprint_id};
use super::parse::{MalformedLine, SlowEntry, SlowLogKind, parse_line};
use super::request::{Execution, group_requests};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;
use xxhash_rust::xxh3::xxh3_64;

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

/// What a report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// Requests: the shard lines of one search grouped (see
    /// `slowlog::request`), a request's time being its slowest shard's.
    #[default]
    Request,
    /// Shard executions: every line on its own, as Elasticsearch writes them.
    Shard,
}

impl GroupBy {
    /// `request` or `shard`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Request => "request",
            GroupBy::Shard => "shard",
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default of [`Grouping::request_window`] (`slowlog.request_window`).
pub const DEFAULT_REQUEST_WINDOW: Duration = Duration::from_secs(2);

/// How entries are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouping {
    /// Requests or shard executions.
    pub by: GroupBy,
    /// Largest gap on one node between the shard executions of one request
    /// (see `slowlog::request`).
    pub request_window: Duration,
}

impl Default for Grouping {
    fn default() -> Self {
        Grouping {
            by: GroupBy::Request,
            request_window: DEFAULT_REQUEST_WINDOW,
        }
    }
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

/// What a request's statistics need of each accepted entry, beside its
/// [`Execution`].
#[derive(Debug, Clone, Copy)]
struct ExecutionFacts {
    group: u32,
    took_ms: u64,
    index: u32,
    node: Option<u32>,
}

/// Names seen, numbered in order (indices and nodes repeat on every line).
#[derive(Debug, Default)]
struct Names {
    numbers: HashMap<String, u32>,
    names: Vec<String>,
}

impl Names {
    fn number(&mut self, name: &str) -> u32 {
        if let Some(number) = self.numbers.get(name) {
            return *number;
        }
        let number = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.numbers.insert(name.to_string(), number);
        self.names.push(name.to_string());
        number
    }

    fn name(&self, number: u32) -> &str {
        self.names.get(number as usize).map_or("", String::as_str)
    }
}

/// Accumulates lines; call [`Digest::finish`] for the report.
#[derive(Debug, Default)]
pub struct Digest {
    filter: DigestFilter,
    grouping: Grouping,
    slots: HashMap<u64, u32>,
    groups: Vec<Group>,
    executions: Vec<Execution>,
    facts: Vec<ExecutionFacts>,
    indices: Names,
    nodes: Names,
    lines: u64,
    entries: u64,
    filtered_out: u64,
    malformed: u64,
    malformed_examples: Vec<String>,
}

/// Statistics of one fingerprint. `count`, `total_ms`, the percentiles and
/// the per-index and per-node counts are of the unit the report counts
/// ([`DigestReport::by`]): requests (a request's time is its slowest
/// shard's) or shard executions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FingerprintStats {
    /// Stable id (16 hex digits).
    pub id: String,
    /// Query, fetch or index.
    pub kind: SlowLogKind,
    /// The query shape.
    pub fingerprint: String,
    /// Number of requests or shard executions, as the report counts.
    pub count: u64,
    /// Requests (shard lines grouped).
    pub requests: u64,
    /// Shard executions (lines).
    pub shard_executions: u64,
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
    /// Count per index, most first.
    pub indices: Vec<(String, u64)>,
    /// Shards seen, as `index[n]`.
    pub shards: Vec<String>,
    /// Count per node, most first.
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
    /// Requests or shard executions in the bucket.
    pub count: u64,
}

/// The finished report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DigestReport {
    /// What `count`, `total_ms`, the percentiles and the latency buckets
    /// count: requests or shard executions.
    pub by: GroupBy,
    /// Largest gap between the shards of one request on a node, ms.
    pub request_window_ms: u64,
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
    /// Entries (shard executions) reported.
    pub reported: u64,
    /// Requests the reported entries make.
    pub requests: u64,
    /// Total time of what the report counts, ms.
    pub total_ms: u64,
    /// Distinct fingerprints.
    pub fingerprints: u64,
    /// Fingerprints by total time, largest first (at most `top`).
    pub top: Vec<FingerprintStats>,
    /// Distribution of all reported latencies (of requests or shard
    /// executions).
    pub latency_buckets: Vec<LatencyBucket>,
}

/// Upper bounds of the latency buckets, ms.
const BUCKET_BOUNDS_MS: [u64; 9] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

/// Per fingerprint: what requests add to it.
#[derive(Debug, Default)]
struct RequestTotals {
    latencies_ms: Vec<u64>,
    total_ms: u64,
    indices: BTreeMap<String, u64>,
    nodes: BTreeMap<String, u64>,
}

/// The key lines of one request share (see `request`): kind, exact source,
/// id and node. Indexing lines (one per document) and lines without a shard
/// number or a time are requests of their own.
fn request_key(entry: &SlowEntry) -> Option<u64> {
    if entry.kind == SlowLogKind::Index || entry.shard.is_none() || entry.timestamp.is_none() {
        return None;
    }
    // One-shot hashes of each part, then of the parts' hashes: cheaper than
    // streaming the source, and an absent id or node stays apart from an
    // empty one.
    let part = |text: Option<&str>| text.map_or(u64::MAX, |text| xxh3_64(text.as_bytes()));
    let mut key = [0u8; 25];
    key[0] = entry.kind as u8;
    key[1..9].copy_from_slice(&xxh3_64(entry.source.as_bytes()).to_le_bytes());
    key[9..17].copy_from_slice(&part(entry.id.as_deref()).to_le_bytes());
    key[17..25].copy_from_slice(&part(entry.node.as_deref()).to_le_bytes());
    Some(xxh3_64(&key))
}

fn shard_key(index: &str, shard: Option<u32>) -> u64 {
    let mut key = Vec::with_capacity(index.len() + 5);
    key.extend_from_slice(index.as_bytes());
    key.push(0xff);
    key.extend_from_slice(&shard.unwrap_or(u32::MAX).to_le_bytes());
    xxh3_64(&key)
}

impl Digest {
    /// A digest keeping only entries accepted by `filter`, counting requests
    /// with the default window.
    pub fn new(filter: DigestFilter) -> Digest {
        Digest::with_grouping(filter, Grouping::default())
    }

    /// A digest keeping only entries accepted by `filter`, counting as
    /// `grouping` says.
    pub fn with_grouping(filter: DigestFilter, grouping: Grouping) -> Digest {
        Digest {
            filter,
            grouping,
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
        let end_ms = entry.timestamp.map_or(0, |at| at.timestamp_millis());
        let took = i64::try_from(entry.took_ms).unwrap_or(i64::MAX);
        self.executions.push(Execution {
            request_key: request_key(&entry),
            start_ms: end_ms.saturating_sub(took),
            end_ms,
            shard_key: shard_key(&entry.index, entry.shard),
        });
        let shape = fingerprint(&entry.source);
        let key = fingerprint_hash(entry.kind.as_str(), &shape);
        let next_slot = u32::try_from(self.groups.len()).unwrap_or(u32::MAX);
        let slot = *self.slots.entry(key).or_insert(next_slot);
        if slot == next_slot {
            self.groups.push(Group {
                kind: Some(entry.kind),
                fingerprint: shape,
                ..Group::default()
            });
        }
        self.facts.push(ExecutionFacts {
            group: slot,
            took_ms: entry.took_ms,
            index: self.indices.number(&entry.index),
            node: entry.node.as_deref().map(|node| self.nodes.number(node)),
        });
        let group = &mut self.groups[slot as usize];
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
    }

    /// Groups the entries into requests: per fingerprint slot, the requests'
    /// latencies (the slowest shard of each) and counts per index and node.
    fn request_totals(&self) -> Vec<RequestTotals> {
        let window_ms = i64::try_from(self.grouping.request_window.as_millis()).unwrap_or(i64::MAX);
        let grouped = group_requests(&self.executions, window_ms);
        let requests = grouped.requests as usize;
        let mut slowest_ms = vec![0u64; requests];
        let mut group_of = vec![0u32; requests];
        let mut node_of: Vec<Option<u32>> = vec![None; requests];
        // (request, index) packed in one number: sorts fast, dedups to one
        // count per index of a request.
        let mut request_indices: Vec<u64> = Vec::with_capacity(self.facts.len());
        for (facts, &request) in self.facts.iter().zip(&grouped.request_of) {
            let slot = request as usize;
            slowest_ms[slot] = slowest_ms[slot].max(facts.took_ms);
            // Every line of a request has the same fingerprint and node (both
            // are part of its key).
            group_of[slot] = facts.group;
            node_of[slot] = facts.node;
            request_indices.push((u64::from(request) << 32) | u64::from(facts.index));
        }
        let mut totals: Vec<RequestTotals> = (0..self.groups.len())
            .map(|_| RequestTotals::default())
            .collect();
        // Counted by number first, named once at the end.
        let mut node_counts: HashMap<(u32, u32), u64> = HashMap::new();
        for request in 0..requests {
            let group = group_of[request];
            let totals = &mut totals[group as usize];
            totals.latencies_ms.push(slowest_ms[request]);
            totals.total_ms += slowest_ms[request];
            if let Some(node) = node_of[request] {
                *node_counts.entry((group, node)).or_default() += 1;
            }
        }
        request_indices.sort_unstable();
        request_indices.dedup();
        let mut index_counts: HashMap<(u32, u32), u64> = HashMap::new();
        for packed in request_indices {
            let request = (packed >> 32) as usize;
            let index = (packed & u64::from(u32::MAX)) as u32;
            *index_counts.entry((group_of[request], index)).or_default() += 1;
        }
        for ((group, node), count) in node_counts {
            totals[group as usize]
                .nodes
                .insert(self.nodes.name(node).to_string(), count);
        }
        for ((group, index), count) in index_counts {
            totals[group as usize]
                .indices
                .insert(self.indices.name(index).to_string(), count);
        }
        totals
    }

    /// Ranks fingerprints by total time of what the report counts and keeps
    /// the `top` largest.
    pub fn finish(self, top: usize) -> DigestReport {
        let request_totals = self.request_totals();
        let requests: u64 = request_totals
            .iter()
            .map(|totals| totals.latencies_ms.len() as u64)
            .sum();
        let by = self.grouping.by;
        let mut all_latencies_ms: Vec<u64> = Vec::new();
        let mut rows: Vec<(Group, RequestTotals)> =
            self.groups.into_iter().zip(request_totals).collect();
        for (group, requests) in &rows {
            match by {
                GroupBy::Request => all_latencies_ms.extend(&requests.latencies_ms),
                GroupBy::Shard => all_latencies_ms.extend(&group.latencies_ms),
            }
        }
        let counted_total = |(group, requests): &(Group, RequestTotals)| match by {
            GroupBy::Request => requests.total_ms,
            GroupBy::Shard => group.total_ms,
        };
        let total_ms: u64 = rows.iter().map(counted_total).sum();
        let fingerprints = rows.len() as u64;
        rows.sort_by(|a, b| {
            counted_total(b)
                .cmp(&counted_total(a))
                .then_with(|| a.0.fingerprint.cmp(&b.0.fingerprint))
        });
        let top: Vec<FingerprintStats> = rows
            .into_iter()
            .take(top)
            .map(|(group, requests)| stats_of(group, requests, by, total_ms))
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
        for took in &all_latencies_ms {
            let slot = BUCKET_BOUNDS_MS
                .iter()
                .position(|bound| took < bound)
                .unwrap_or(BUCKET_BOUNDS_MS.len());
            buckets[slot].count += 1;
        }
        DigestReport {
            by,
            request_window_ms: u64::try_from(self.grouping.request_window.as_millis())
                .unwrap_or(u64::MAX),
            lines: self.lines,
            entries: self.entries,
            filtered_out: self.filtered_out,
            malformed_lines: self.malformed,
            malformed_examples: self.malformed_examples,
            reported: self.facts.len() as u64,
            requests,
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

fn stats_of(
    group: Group,
    requests: RequestTotals,
    by: GroupBy,
    all_total_ms: u64,
) -> FingerprintStats {
    let request_count = requests.latencies_ms.len() as u64;
    let shard_count = group.latencies_ms.len() as u64;
    let (mut latencies, total_ms, indices, nodes) = match by {
        GroupBy::Request => (
            requests.latencies_ms,
            requests.total_ms,
            requests.indices,
            requests.nodes,
        ),
        GroupBy::Shard => (
            group.latencies_ms,
            group.total_ms,
            group.indices,
            group.nodes,
        ),
    };
    latencies.sort_unstable();
    let kind = group.kind.unwrap_or(SlowLogKind::Query);
    FingerprintStats {
        id: fingerprint_id(kind.as_str(), &group.fingerprint),
        kind,
        count: latencies.len() as u64,
        requests: request_count,
        shard_executions: shard_count,
        total_ms,
        share_percent: if all_total_ms == 0 {
            0.0
        } else {
            (total_ms as f64 * 1000.0 / all_total_ms as f64).round() / 10.0
        },
        min_ms: latencies.first().copied().unwrap_or(0),
        p50_ms: percentile(&latencies, 50.0),
        p95_ms: percentile(&latencies, 95.0),
        p99_ms: percentile(&latencies, 99.0),
        max_ms: latencies.last().copied().unwrap_or(0),
        indices: by_count_desc(indices),
        shards: group.shards.into_iter().collect(),
        nodes: by_count_desc(nodes),
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
            id: None,
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
