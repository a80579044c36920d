//! Dead-letter tooling, the pure part: what a letter on the dead-letter topic
//! is, which letters a filter selects, the summary `esync dlq list` prints and
//! the messages `esync dlq replay` re-publishes.
//!
//! No I/O, no clock (`now` is passed in), no rdkafka: the Kafka side is
//! `dlq_command`. A letter comes in two kinds (see `dead_letter` and
//! `daemon`): an id that could not be written (header `esync.mapping`,
//! key = the id text), which can be replayed because the row is re-read, and
//! an undecodable message (header `esync.topic`), which cannot: it never named
//! a usable id.

use crate::config::MappingConfig;
use crate::decode::{Decoder, EncodedMessage};
use crate::id::Id;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// Samples kept per group in `list`.
pub const SAMPLES_PER_GROUP: usize = 3;

/// One message read from the dead-letter topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Letter {
    /// Partition of the dead-letter topic.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
    /// The Kafka message timestamp in milliseconds since the epoch, if any.
    pub timestamp_ms: Option<i64>,
    /// The message key.
    pub key: Option<Vec<u8>>,
    /// Headers (values as lossy UTF-8; the `esync.*` ones are text).
    pub headers: BTreeMap<String, String>,
}

/// What a letter is, as far as replay is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LetterKind {
    /// An id that could not be written; replayable.
    UnwritableId,
    /// A message that could not be decoded; not replayable.
    Undecodable,
    /// A message without esync's headers, put there by someone else.
    Foreign,
}

impl LetterKind {
    fn as_str(self) -> &'static str {
        match self {
            LetterKind::UnwritableId => "unwritable_id",
            LetterKind::Undecodable => "undecodable",
            LetterKind::Foreign => "foreign",
        }
    }
}

impl Letter {
    /// Header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Which kind of letter this is.
    pub fn kind(&self) -> LetterKind {
        if self.header("esync.mapping").is_some() {
            LetterKind::UnwritableId
        } else if self.header("esync.topic").is_some() {
            LetterKind::Undecodable
        } else {
            LetterKind::Foreign
        }
    }

    /// `esync.reason`, or `-` when absent.
    pub fn reason(&self) -> &str {
        self.header("esync.reason").unwrap_or("-")
    }

    /// The mapping the letter belongs to: `esync.mapping` for an unwritable
    /// id, the mapping reading `esync.topic` for an undecodable message.
    pub fn mapping<'a>(&'a self, mappings: &'a Mappings) -> Option<&'a str> {
        match self.kind() {
            LetterKind::UnwritableId => self.header("esync.mapping"),
            LetterKind::Undecodable => self
                .header("esync.topic")
                .and_then(|topic| mappings.by_topic(topic)),
            LetterKind::Foreign => None,
        }
    }
}

/// The config's mappings, looked up by name and by topic.
#[derive(Debug, Clone)]
pub struct Mappings {
    by_name: BTreeMap<String, ReplayTarget>,
    topic_owner: BTreeMap<String, String>,
}

/// Where and how a mapping's ids are re-published.
#[derive(Debug, Clone)]
struct ReplayTarget {
    /// The mapping's first topic.
    topic: String,
    decoder: Decoder,
    id_type: crate::id::IdType,
}

impl Mappings {
    /// Lookups over `mappings` (from the loaded config).
    pub fn new(mappings: &[MappingConfig]) -> Mappings {
        let mut by_name = BTreeMap::new();
        let mut topic_owner = BTreeMap::new();
        for mapping in mappings {
            let name = mapping.display_name().to_owned();
            for topic in &mapping.topics {
                topic_owner.insert(topic.clone(), name.clone());
            }
            // validation guarantees at least one topic
            if let Some(topic) = mapping.topics.first() {
                by_name.insert(
                    name,
                    ReplayTarget {
                        topic: topic.clone(),
                        decoder: mapping.decoder(),
                        id_type: mapping.id.id_type,
                    },
                );
            }
        }
        Mappings {
            by_name,
            topic_owner,
        }
    }

    fn by_topic(&self, topic: &str) -> Option<&str> {
        self.topic_owner.get(topic).map(String::as_str)
    }
}

/// Which letters a command works on (all given conditions must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `esync.reason` equals this.
    pub reason: Option<String>,
    /// The letter's mapping (see [`Letter::mapping`]) equals this.
    pub mapping: Option<String>,
    /// The message timestamp is at or after this. A letter without a
    /// timestamp does not match: nothing says it is recent.
    pub since: Option<DateTime<Utc>>,
}

impl Filter {
    /// Whether `letter` is selected.
    pub fn matches(&self, letter: &Letter, mappings: &Mappings) -> bool {
        if let Some(reason) = &self.reason
            && letter.header("esync.reason") != Some(reason.as_str())
        {
            return false;
        }
        if let Some(mapping) = &self.mapping
            && letter.mapping(mappings) != Some(mapping.as_str())
        {
            return false;
        }
        if let Some(since) = self.since {
            return letter
                .timestamp_ms
                .is_some_and(|ms| ms >= since.timestamp_millis());
        }
        true
    }
}

/// Parses `--since`: a duration before `now` (`2h`, `30m`, `1day`) or an
/// RFC 3339 time (`2026-12-01T20:00:00Z`).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let duration = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither a duration (e.g. 2h, 30m) nor an RFC 3339 time (e.g. 2026-12-01T20:00:00Z)")
    })?;
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| now.checked_sub_signed(duration))
        .ok_or_else(|| format!("{text:?} reaches too far back"))
}

fn format_time(ms: Option<i64>) -> String {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
        .map_or_else(|| "-".to_owned(), |time| time.to_rfc3339())
}

fn shorten(text: &str) -> String {
    crate::id::truncate_for_message(text)
}

/// One sample letter in `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Partition of the dead-letter topic.
    pub partition: i32,
    /// Offset there.
    pub offset: i64,
    /// Message time (RFC 3339) or `-`.
    pub time: String,
    /// The key as text (the id for unwritable ids), shortened.
    pub key: String,
    /// `esync.error`, shortened.
    pub error: String,
    /// Where an undecodable message came from (`topic/partition@offset`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Whether the letter was truncated to fit the topic.
    pub truncated: bool,
}

/// Letters of one kind, reason and mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Unwritable id, undecodable or foreign.
    pub kind: LetterKind,
    /// `esync.reason`.
    pub reason: String,
    /// The mapping, `-` when unknown.
    pub mapping: String,
    /// Letters in the group.
    pub count: u64,
    /// Oldest message time (RFC 3339) or `-`.
    pub oldest: String,
    /// Newest message time (RFC 3339) or `-`.
    pub newest: String,
    /// The first few letters.
    pub samples: Vec<Sample>,
}

/// What `esync dlq list` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The dead-letter topic.
    pub topic: String,
    /// Letters read (up to the end offsets at start).
    pub read: u64,
    /// Letters selected by the filter.
    pub matched: u64,
    /// Selected letters that were truncated.
    pub truncated: u64,
    /// Oldest selected message time or `-`.
    pub oldest: String,
    /// Newest selected message time or `-`.
    pub newest: String,
    /// Selected letters by kind, reason and mapping, largest first.
    pub groups: Vec<Group>,
}

#[derive(Debug, Default)]
struct GroupTally {
    count: u64,
    oldest_ms: Option<i64>,
    newest_ms: Option<i64>,
    samples: Vec<Sample>,
}

fn widen(oldest: &mut Option<i64>, newest: &mut Option<i64>, ms: Option<i64>) {
    if let Some(ms) = ms {
        *oldest = Some(oldest.map_or(ms, |old| old.min(ms)));
        *newest = Some(newest.map_or(ms, |new| new.max(ms)));
    }
}

/// Builds a [`Summary`] one letter at a time (the topic is never held in memory).
#[derive(Debug)]
pub struct SummaryBuilder {
    topic: String,
    filter: Filter,
    mappings: Mappings,
    read: u64,
    matched: u64,
    truncated: u64,
    oldest_ms: Option<i64>,
    newest_ms: Option<i64>,
    groups: BTreeMap<(LetterKind, String, String), GroupTally>,
}

impl SummaryBuilder {
    /// An empty summary of `topic` for the letters `filter` selects.
    pub fn new(topic: &str, filter: Filter, mappings: Mappings) -> SummaryBuilder {
        SummaryBuilder {
            topic: topic.to_owned(),
            filter,
            mappings,
            read: 0,
            matched: 0,
            truncated: 0,
            oldest_ms: None,
            newest_ms: None,
            groups: BTreeMap::new(),
        }
    }

    /// Counts one letter.
    pub fn add(&mut self, letter: &Letter) {
        self.read += 1;
        if !self.filter.matches(letter, &self.mappings) {
            return;
        }
        self.matched += 1;
        let truncated = letter.header("esync.truncated").is_some();
        self.truncated += u64::from(truncated);
        widen(
            &mut self.oldest_ms,
            &mut self.newest_ms,
            letter.timestamp_ms,
        );
        let key = (
            letter.kind(),
            letter.reason().to_owned(),
            letter.mapping(&self.mappings).unwrap_or("-").to_owned(),
        );
        let tally = self.groups.entry(key).or_default();
        tally.count += 1;
        widen(
            &mut tally.oldest_ms,
            &mut tally.newest_ms,
            letter.timestamp_ms,
        );
        if tally.samples.len() < SAMPLES_PER_GROUP {
            let origin = match (
                letter.header("esync.topic"),
                letter.header("esync.partition"),
                letter.header("esync.offset"),
            ) {
                (Some(topic), Some(partition), Some(offset)) => {
                    Some(format!("{topic}/{partition}@{offset}"))
                }
                _ => None,
            };
            tally.samples.push(Sample {
                partition: letter.partition,
                offset: letter.offset,
                time: format_time(letter.timestamp_ms),
                key: letter.key.as_deref().map_or_else(
                    || "(none)".to_owned(),
                    |key| shorten(&String::from_utf8_lossy(key)),
                ),
                error: shorten(letter.header("esync.error").unwrap_or("-")),
                origin,
                truncated,
            });
        }
    }

    /// The finished summary, groups largest first.
    pub fn finish(self) -> Summary {
        let mut groups: Vec<Group> = self
            .groups
            .into_iter()
            .map(|((kind, reason, mapping), tally)| Group {
                kind,
                reason,
                mapping,
                count: tally.count,
                oldest: format_time(tally.oldest_ms),
                newest: format_time(tally.newest_ms),
                samples: tally.samples,
            })
            .collect();
        groups.sort_by_key(|group| std::cmp::Reverse(group.count));
        Summary {
            topic: self.topic,
            read: self.read,
            matched: self.matched,
            truncated: self.truncated,
            oldest: format_time(self.oldest_ms),
            newest: format_time(self.newest_ms),
            groups,
        }
    }
}

impl Summary {
    /// The human table `esync dlq list` prints.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "dead-letter topic {}: {} letter(s) read, {} selected, {} truncated, oldest {}, newest {}",
            self.topic, self.read, self.matched, self.truncated, self.oldest, self.newest
        );
        if self.groups.is_empty() {
            return out;
        }
        let rows: Vec<[String; 6]> = self
            .groups
            .iter()
            .map(|group| {
                [
                    group.count.to_string(),
                    group.kind.as_str().to_owned(),
                    group.reason.clone(),
                    group.mapping.clone(),
                    group.oldest.clone(),
                    group.newest.clone(),
                ]
            })
            .collect();
        let header = ["COUNT", "KIND", "REASON", "MAPPING", "OLDEST", "NEWEST"];
        let widths: Vec<usize> = (0..header.len())
            .map(|column| {
                rows.iter()
                    .map(|row| row[column].chars().count())
                    .chain([header[column].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[&str]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        let _ = writeln!(out, "\n{}", line(&header));
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            let _ = writeln!(out, "{}", line(&cells));
        }
        let _ = writeln!(out, "\nsamples:");
        for group in &self.groups {
            let _ = writeln!(
                out,
                "  {} {} ({}):",
                group.kind.as_str(),
                group.reason,
                group.mapping
            );
            for sample in &group.samples {
                let _ = writeln!(
                    out,
                    "    {}@{} {} key={}{}{} error={}",
                    sample.partition,
                    sample.offset,
                    sample.time,
                    sample.key,
                    sample
                        .origin
                        .as_ref()
                        .map_or_else(String::new, |origin| format!(" from={origin}")),
                    if sample.truncated { " truncated" } else { "" },
                    sample.error
                );
            }
        }
        out
    }
}

/// Why a selected letter is not replayed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    /// A message that could not be decoded: it names no usable id.
    Undecodable,
    /// Not written by esync (no `esync.*` headers).
    Foreign,
    /// `esync.mapping` names a mapping the config does not have.
    UnknownMapping(String),
    /// No key (the id), e.g. cut from a truncated letter.
    MissingId,
    /// The key is not an id of the mapping's id type.
    BadId(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Undecodable => formatter.write_str(
                "undecodable messages (malformed when produced; they name no usable id)",
            ),
            SkipReason::Foreign => formatter.write_str("messages without esync headers"),
            SkipReason::UnknownMapping(name) => {
                write!(
                    formatter,
                    "ids of mapping {name:?}, which the config does not have"
                )
            }
            SkipReason::MissingId => formatter.write_str("letters without an id key (truncated)"),
            SkipReason::BadId(mapping) => {
                write!(
                    formatter,
                    "keys that are not ids of mapping {mapping:?}'s id type"
                )
            }
        }
    }
}

/// One id to re-publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayMessage {
    /// The mapping.
    pub mapping: String,
    /// The id.
    pub id: Id,
    /// Its encoded message.
    pub message: EncodedMessage,
}

/// What `esync dlq replay` re-publishes, and what it skips.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayPlan {
    /// Letters read.
    pub read: u64,
    /// Letters selected by the filter.
    pub matched: u64,
    /// Distinct ids per source topic, in the order first seen.
    pub by_topic: BTreeMap<String, Vec<ReplayMessage>>,
    /// Selected letters whose id was already planned (replayed once).
    pub duplicates: u64,
    /// Selected letters not replayed, by reason.
    pub skipped: BTreeMap<SkipReason, u64>,
}

/// Builds a [`ReplayPlan`] one letter at a time.
#[derive(Debug)]
pub struct ReplayPlanner {
    filter: Filter,
    mappings: Mappings,
    seen: HashSet<(String, Id)>,
    plan: ReplayPlan,
}

impl ReplayPlanner {
    /// An empty plan for the letters `filter` selects.
    pub fn new(filter: Filter, mappings: Mappings) -> ReplayPlanner {
        ReplayPlanner {
            filter,
            mappings,
            seen: HashSet::new(),
            plan: ReplayPlan::default(),
        }
    }

    /// Plans one letter.
    pub fn add(&mut self, letter: &Letter) {
        self.plan.read += 1;
        if !self.filter.matches(letter, &self.mappings) {
            return;
        }
        self.plan.matched += 1;
        match self.target(letter) {
            Ok((topic, replay)) => {
                if self.seen.insert((topic.clone(), replay.id.clone())) {
                    self.plan.by_topic.entry(topic).or_default().push(replay);
                } else {
                    self.plan.duplicates += 1;
                }
            }
            Err(reason) => *self.plan.skipped.entry(reason).or_default() += 1,
        }
    }

    fn target(&self, letter: &Letter) -> Result<(String, ReplayMessage), SkipReason> {
        match letter.kind() {
            LetterKind::UnwritableId => {}
            LetterKind::Undecodable => return Err(SkipReason::Undecodable),
            LetterKind::Foreign => return Err(SkipReason::Foreign),
        }
        let mapping = letter.header("esync.mapping").unwrap_or_default();
        let target = self
            .mappings
            .by_name
            .get(mapping)
            .ok_or_else(|| SkipReason::UnknownMapping(mapping.to_owned()))?;
        let key = letter.key.as_deref().ok_or(SkipReason::MissingId)?;
        // the key is exactly the id text (dead_letter::unwritable_id)
        let id = std::str::from_utf8(key)
            .ok()
            .and_then(|text| Id::parse(text, target.id_type).ok())
            .ok_or_else(|| SkipReason::BadId(mapping.to_owned()))?;
        Ok((
            target.topic.clone(),
            ReplayMessage {
                mapping: mapping.to_owned(),
                message: target.decoder.encode(&id),
                id,
            },
        ))
    }

    /// The finished plan.
    pub fn finish(self) -> ReplayPlan {
        self.plan
    }
}

impl ReplayPlan {
    /// Ids to re-publish, over all topics.
    pub fn ids(&self) -> usize {
        self.by_topic.values().map(Vec::len).sum()
    }

    /// What was (or, with `dry_run`, would be) done, one line per topic and
    /// skip reason.
    pub fn report(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would replay" } else { "replayed" };
        let mut out = format!("{} letter(s) read, {} selected\n", self.read, self.matched);
        for (topic, messages) in &self.by_topic {
            let _ = writeln!(out, "{verb} {} id(s) to topic {topic}", messages.len());
        }
        if self.by_topic.is_empty() {
            let _ = writeln!(out, "{verb} 0 ids");
        }
        if self.duplicates > 0 {
            let _ = writeln!(
                out,
                "{} duplicate letter(s) of an id already replayed",
                self.duplicates
            );
        }
        for (reason, count) in &self.skipped {
            let _ = writeln!(out, "skipped {count} {reason}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn mappings() -> Mappings {
        let yaml = r#"
- name: orders
  topics: [shop.orders, shop.orders.backfill]
  table: orders
  index: orders
  version: {column: version, kind: counter}
- name: skus
  topics: [shop.skus]
  format: {type: json, field: data.sku, from: value}
  id: {column: sku, type: string}
  table: skus
  index: skus
  version: {column: updated_at, kind: timestamp}
"#;
        let configs: Vec<MappingConfig> = serde_yaml::from_str(yaml).expect("mappings");
        Mappings::new(&configs)
    }

    fn unwritable(mapping: &str, id: &str, reason: &str, ms: i64) -> Letter {
        Letter {
            partition: 0,
            offset: ms,
            timestamp_ms: Some(ms),
            key: Some(id.as_bytes().to_vec()),
            headers: [
                ("esync.reason", reason),
                ("esync.error", "failed"),
                ("esync.mapping", mapping),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        }
    }

    fn undecodable(topic: &str, reason: &str, key: Option<&[u8]>, ms: i64) -> Letter {
        Letter {
            partition: 1,
            offset: ms,
            timestamp_ms: Some(ms),
            key: key.map(<[u8]>::to_vec),
            headers: [
                ("esync.reason", reason),
                ("esync.error", "cannot decode"),
                ("esync.topic", topic),
                ("esync.partition", "0"),
                ("esync.offset", "7"),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        }
    }

    fn letters() -> Vec<Letter> {
        vec![
            unwritable("orders", "1", "unmatched_id", 1_000),
            unwritable("orders", "2", "rejected_by_elasticsearch", 2_000),
            unwritable("orders", "1", "unmatched_id", 3_000),
            unwritable("orders", "3", "unmatched_id", 4_000),
            unwritable("skus", " a\"b ", "unmatched_id", 5_000),
            unwritable("gone", "9", "unmatched_id", 6_000),
            unwritable("orders", "x", "unmatched_id", 7_000),
            undecodable("shop.orders.backfill", "bad_id", Some(b"nope"), 8_000),
            undecodable("shop.orders", "tombstone", None, 9_000),
            undecodable("elsewhere", "not_utf8", Some(&[0xff]), 10_000),
            Letter {
                key: Some(b"5".to_vec()),
                ..Letter::default()
            },
        ]
    }

    fn filter(reason: Option<&str>, mapping: Option<&str>, since_ms: Option<i64>) -> Filter {
        Filter {
            reason: reason.map(str::to_owned),
            mapping: mapping.map(str::to_owned),
            since: since_ms.map(|ms| Utc.timestamp_millis_opt(ms).unwrap()),
        }
    }

    #[test]
    fn letters_are_classified_by_their_headers() {
        let kinds: Vec<LetterKind> = letters().iter().map(Letter::kind).collect();
        use LetterKind::*;
        assert_eq!(
            kinds,
            [
                UnwritableId,
                UnwritableId,
                UnwritableId,
                UnwritableId,
                UnwritableId,
                UnwritableId,
                UnwritableId,
                Undecodable,
                Undecodable,
                Undecodable,
                Foreign
            ]
        );
        let mappings = mappings();
        let letters = letters();
        let owners: Vec<Option<&str>> = letters[7..]
            .iter()
            .map(|letter| letter.mapping(&mappings))
            .collect();
        assert_eq!(owners, [Some("orders"), Some("orders"), None, None]);
    }

    #[test]
    fn filters_by_reason_mapping_and_time() {
        let mappings = mappings();
        let offsets = |filter: Filter| -> Vec<i64> {
            letters()
                .iter()
                .filter(|letter| filter.matches(letter, &mappings))
                .map(|letter| letter.offset)
                .collect()
        };
        assert_eq!(offsets(Filter::default()).len(), 11);
        assert_eq!(
            offsets(filter(Some("unmatched_id"), None, None)),
            [1_000, 3_000, 4_000, 5_000, 6_000, 7_000]
        );
        assert_eq!(
            offsets(filter(None, Some("orders"), None)),
            [1_000, 2_000, 3_000, 4_000, 7_000, 8_000, 9_000],
            "undecodable messages belong to the mapping reading their topic"
        );
        assert_eq!(
            offsets(filter(Some("unmatched_id"), Some("orders"), Some(3_000))),
            [3_000, 4_000, 7_000]
        );
        let mut untimed = unwritable("orders", "1", "unmatched_id", 0);
        untimed.timestamp_ms = None;
        assert!(!filter(None, None, Some(0)).matches(&untimed, &mappings));
        assert!(filter(None, None, None).matches(&untimed, &mappings));
    }

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 20, 0, 0).unwrap();
        assert_eq!(
            parse_since("2h", now),
            Ok(Utc.with_ymd_and_hms(2026, 12, 1, 18, 0, 0).unwrap())
        );
        assert_eq!(
            parse_since("2026-11-30T10:00:00+01:00", now),
            Ok(Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap())
        );
        let error = parse_since("yesterday", now).unwrap_err();
        assert!(error.contains("\"yesterday\""), "{error}");
    }

    #[test]
    fn summary_counts_by_kind_reason_and_mapping() {
        let mut builder = SummaryBuilder::new("dlq", Filter::default(), mappings());
        for letter in letters() {
            builder.add(&letter);
        }
        let summary = builder.finish();
        assert_eq!((summary.read, summary.matched), (11, 11));
        assert_eq!(summary.oldest, "1970-01-01T00:00:01+00:00");
        assert_eq!(summary.newest, "1970-01-01T00:00:10+00:00");
        let counts: Vec<(&str, &str, &str, u64)> = summary
            .groups
            .iter()
            .map(|group| {
                (
                    group.kind.as_str(),
                    group.reason.as_str(),
                    group.mapping.as_str(),
                    group.count,
                )
            })
            .collect();
        assert_eq!(
            counts,
            [
                ("unwritable_id", "unmatched_id", "orders", 4),
                ("unwritable_id", "rejected_by_elasticsearch", "orders", 1),
                ("unwritable_id", "unmatched_id", "gone", 1),
                ("unwritable_id", "unmatched_id", "skus", 1),
                ("undecodable", "bad_id", "orders", 1),
                ("undecodable", "not_utf8", "-", 1),
                ("undecodable", "tombstone", "orders", 1),
                ("foreign", "-", "-", 1),
            ]
        );
        let orders = &summary.groups[0];
        assert_eq!(orders.samples.len(), SAMPLES_PER_GROUP);
        assert_eq!(
            (orders.oldest.as_str(), orders.newest.as_str()),
            ("1970-01-01T00:00:01+00:00", "1970-01-01T00:00:07+00:00")
        );
        let table = summary.to_table();
        assert!(table.contains("11 letter(s) read, 11 selected"), "{table}");
        assert!(
            table
                .lines()
                .any(|line| line.starts_with("4      unwritable_id  unmatched_id")),
            "{table}"
        );
        assert!(table.contains("from=shop.orders.backfill/0@7"), "{table}");
        let json = serde_json::to_value(&summary).expect("json");
        assert_eq!(json["groups"][0]["count"], 4);
        assert_eq!(json["groups"][0]["kind"], "unwritable_id");
    }

    #[test]
    fn replay_plans_distinct_ids_to_the_first_topic_and_says_what_it_skips() {
        let mut planner = ReplayPlanner::new(Filter::default(), mappings());
        let mut truncated = unwritable("orders", "4", "unmatched_id", 11_000);
        truncated.key = None;
        truncated
            .headers
            .insert("esync.truncated".into(), "2000000".into());
        for letter in letters().iter().chain([&truncated]) {
            planner.add(letter);
        }
        let plan = planner.finish();
        let planned: BTreeMap<&str, Vec<(String, Option<String>)>> = plan
            .by_topic
            .iter()
            .map(|(topic, messages)| {
                (
                    topic.as_str(),
                    messages
                        .iter()
                        .map(|replay| {
                            (
                                replay.id.to_string(),
                                replay
                                    .message
                                    .value
                                    .as_ref()
                                    .map(|value| String::from_utf8_lossy(value).into_owned()),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            planned,
            BTreeMap::from([
                (
                    "shop.orders",
                    vec![
                        ("1".to_owned(), Some("1".to_owned())),
                        ("2".to_owned(), Some("2".to_owned())),
                        ("3".to_owned(), Some("3".to_owned())),
                    ]
                ),
                (
                    "shop.skus",
                    vec![(
                        " a\"b ".to_owned(),
                        Some(r#"{"data":{"sku":" a\"b "}}"#.to_owned())
                    )]
                ),
            ])
        );
        assert_eq!(plan.duplicates, 1);
        assert_eq!(
            plan.skipped,
            BTreeMap::from([
                (SkipReason::Undecodable, 3),
                (SkipReason::Foreign, 1),
                (SkipReason::UnknownMapping("gone".into()), 1),
                (SkipReason::MissingId, 1),
                (SkipReason::BadId("orders".into()), 1),
            ])
        );
        let report = plan.report(false);
        assert!(
            report.contains("replayed 3 id(s) to topic shop.orders"),
            "{report}"
        );
        assert!(
            report.contains("skipped 3 undecodable messages"),
            "{report}"
        );
        assert!(
            plan.report(true)
                .contains("would replay 1 id(s) to topic shop.skus")
        );
    }

    #[test]
    fn replay_by_reason_skips_nothing_else() {
        let mut planner = ReplayPlanner::new(
            filter(Some("rejected_by_elasticsearch"), None, None),
            mappings(),
        );
        for letter in letters() {
            planner.add(&letter);
        }
        let plan = planner.finish();
        assert_eq!((plan.read, plan.matched, plan.ids()), (11, 1, 1));
        assert!(plan.skipped.is_empty());
    }
}
