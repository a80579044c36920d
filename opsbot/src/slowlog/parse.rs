//! Parsing of Elasticsearch search and indexing slow-log lines.
//!
//! Pure: one line of text in, one [`SlowEntry`] (or the reason it is not one)
//! out. Understands the JSON lines of 7.x (`took_millis`, `message`,
//! `node.name`, ...), the ECS JSON of 8.x and 9.x (`elasticsearch.slowlog.*`,
//! `elasticsearch.node.name`), the same fields nested as objects (documents of
//! a slow-log index), and the older plain-text format
//! (`[ts][LEVEL][index.search.slowlog.query] [node] [index][0] took[..], ...`).
//! It must not read files or decide what is reported; see `digest`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Which slow log an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowLogKind {
    /// Search slow log, query phase.
    Query,
    /// Search slow log, fetch phase.
    Fetch,
    /// Indexing slow log.
    Index,
}

impl SlowLogKind {
    /// Short name: `query`, `fetch` or `index`.
    pub fn as_str(self) -> &'static str {
        match self {
            SlowLogKind::Query => "query",
            SlowLogKind::Fetch => "fetch",
            SlowLogKind::Index => "index",
        }
    }
}

/// One slow-log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowEntry {
    /// When it was logged (UTC); plain-text lines without a zone are taken as UTC.
    pub timestamp: Option<DateTime<Utc>>,
    /// Query, fetch or index.
    pub kind: SlowLogKind,
    /// Index name (without the uuid of indexing records).
    pub index: String,
    /// Shard number, for search records.
    pub shard: Option<u32>,
    /// Node name.
    pub node: Option<String>,
    /// Time taken in milliseconds.
    pub took_ms: u64,
    /// Hits, for search records (`10000+ hits` counts as 10000).
    pub total_hits: Option<u64>,
    /// Query source (search) or document source (indexing), possibly
    /// truncated by Elasticsearch.
    pub source: String,
    /// The record's `id`: the `X-Opaque-Id` header of the search (7.x `id`,
    /// 8.x/9.x `elasticsearch.slowlog.id`, 6.x `id[...]`), the document id
    /// of an indexing record; `None` when absent or empty.
    pub id: Option<String>,
}

/// Why a line is not a slow-log entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedLine {
    /// Not valid JSON.
    #[error("invalid json")]
    InvalidJson,
    /// A JSON record without the time taken.
    #[error("no took_millis")]
    MissingTook,
    /// A JSON record without `[index]` in its message.
    #[error("no [index] in message")]
    MissingIndex,
    /// Text that does not look like a slow-log line.
    #[error("not a slow-log line")]
    NotSlowLog,
}

/// Parses one line; blank lines give `Ok(None)`.
pub fn parse_line(line: &str) -> Result<Option<SlowEntry>, MalformedLine> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.starts_with('{') {
        parse_json_line(trimmed).map(Some)
    } else if trimmed.starts_with('[') {
        parse_plain_line(trimmed).map(Some)
    } else {
        Err(MalformedLine::NotSlowLog)
    }
}

/// A number that some versions write as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText<'a> {
    Number(f64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

impl NumberOrText<'_> {
    fn as_u64(&self) -> Option<u64> {
        match self {
            NumberOrText::Number(value) if *value >= 0.0 => Some(*value as u64),
            NumberOrText::Number(_) => None,
            NumberOrText::Text(text) => leading_u64(text),
        }
    }
}

/// The fields of every supported JSON layout, each under its own name so a
/// record that carries two spellings never fails to parse.
#[derive(Deserialize, Default)]
struct JsonRecord<'a> {
    #[serde(rename = "@timestamp", borrow)]
    at_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    record_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    component: Option<Cow<'a, str>>,
    #[serde(rename = "event.dataset", borrow)]
    event_dataset: Option<Cow<'a, str>>,
    #[serde(rename = "log.logger", borrow)]
    logger: Option<Cow<'a, str>>,
    #[serde(rename = "node.name", borrow)]
    node_name: Option<Cow<'a, str>>,
    #[serde(rename = "elasticsearch.node.name", borrow)]
    ecs_node_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "elasticsearch.slowlog.message", borrow)]
    ecs_message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    took_millis: Option<NumberOrText<'a>>,
    #[serde(rename = "elasticsearch.slowlog.took_millis", borrow)]
    ecs_took_millis: Option<NumberOrText<'a>>,
    #[serde(borrow)]
    took: Option<Cow<'a, str>>,
    #[serde(rename = "elasticsearch.slowlog.took", borrow)]
    ecs_took: Option<Cow<'a, str>>,
    #[serde(borrow)]
    total_hits: Option<NumberOrText<'a>>,
    #[serde(rename = "elasticsearch.slowlog.total_hits", borrow)]
    ecs_total_hits: Option<NumberOrText<'a>>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(rename = "elasticsearch.slowlog.source", borrow)]
    ecs_source: Option<Cow<'a, str>>,
    #[serde(rename = "elasticsearch.index.name", borrow)]
    index_name: Option<Cow<'a, str>>,
    #[serde(rename = "elasticsearch.shard.id", borrow)]
    shard_id: Option<NumberOrText<'a>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "elasticsearch.slowlog.id", borrow)]
    ecs_id: Option<Cow<'a, str>>,
}

fn parse_json_line(line: &str) -> Result<SlowEntry, MalformedLine> {
    let record: JsonRecord<'_> =
        serde_json::from_str(line).map_err(|_| MalformedLine::InvalidJson)?;
    entry_from_record(record)
}

fn entry_from_record(record: JsonRecord<'_>) -> Result<SlowEntry, MalformedLine> {
    let took_ms = record
        .ecs_took_millis
        .as_ref()
        .or(record.took_millis.as_ref())
        .and_then(NumberOrText::as_u64)
        .or_else(|| {
            record
                .ecs_took
                .as_deref()
                .or(record.took.as_deref())
                .and_then(parse_took)
        });
    let message = record.ecs_message.as_deref().or(record.message.as_deref());
    let Some(took_ms) = took_ms else {
        // A raw plain-text line shipped as `message` (documents of a
        // slow-log index filled by a log shipper without parsing).
        if let Some(text) = message
            && text.starts_with('[')
            && text.contains("took_millis[")
        {
            return parse_plain_line(text);
        }
        return Err(MalformedLine::MissingTook);
    };
    let (index, shard) = match message.and_then(parse_index_shard) {
        Some(found) => found,
        None => match record.index_name.as_deref() {
            Some(name) => (
                name.to_string(),
                record
                    .shard_id
                    .as_ref()
                    .and_then(NumberOrText::as_u64)
                    .map(|s| s as u32),
            ),
            None => return Err(MalformedLine::MissingIndex),
        },
    };
    let kind_hint = record
        .logger
        .as_deref()
        .or(record.component.as_deref())
        .or(record.event_dataset.as_deref())
        .or(record.record_type.as_deref())
        .unwrap_or("");
    let timestamp = record
        .at_timestamp
        .as_deref()
        .or(record.timestamp.as_deref())
        .and_then(parse_timestamp);
    Ok(SlowEntry {
        timestamp,
        kind: kind_from_hint(kind_hint),
        index,
        shard,
        node: record
            .ecs_node_name
            .or(record.node_name)
            .map(Cow::into_owned),
        took_ms,
        total_hits: record
            .ecs_total_hits
            .as_ref()
            .or(record.total_hits.as_ref())
            .and_then(NumberOrText::as_u64),
        source: record
            .ecs_source
            .or(record.source)
            .map(Cow::into_owned)
            .unwrap_or_default(),
        id: record
            .ecs_id
            .or(record.id)
            .filter(|id| !id.is_empty())
            .map(Cow::into_owned),
    })
}

/// Parses a document of a slow-log index: fields flat (`a.b.c`) or nested
/// (`{"a":{"b":...}}`) are both accepted.
pub fn parse_document(document: &serde_json::Value) -> Result<SlowEntry, MalformedLine> {
    let mut flat = serde_json::Map::new();
    flatten_into("", document, &mut flat);
    let text = serde_json::Value::Object(flat).to_string();
    parse_json_line(&text)
}

fn flatten_into(
    prefix: &str,
    value: &serde_json::Value,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(&path, inner, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn kind_from_hint(hint: &str) -> SlowLogKind {
    if hint.contains("indexing") || hint.starts_with("i.i.") {
        SlowLogKind::Index
    } else if hint.ends_with("fetch") {
        SlowLogKind::Fetch
    } else {
        SlowLogKind::Query
    }
}

/// `[index][3]` → (`index`, 3); `[index/uuid]` → (`index`, none).
pub fn parse_index_shard(message: &str) -> Option<(String, Option<u32>)> {
    let rest = message.trim_start().strip_prefix('[')?;
    let close = rest.find(']')?;
    let inside = &rest[..close];
    let index = inside.split('/').next().unwrap_or(inside);
    if index.is_empty() {
        return None;
    }
    let after = &rest[close + 1..];
    let shard = after
        .strip_prefix('[')
        .and_then(|tail| tail.split(']').next())
        .and_then(|digits| digits.parse::<u32>().ok());
    Some((index.to_string(), shard))
}

/// Leading decimal digits of a text: `1523 hits` → 1523, `10000+ hits` → 10000.
fn leading_u64(text: &str) -> Option<u64> {
    let text = text.trim();
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text[..end].parse().ok()
}

/// `1.4s`, `812.3ms`, `747.3micros`, `120nanos`, `2m`, `1h` → milliseconds.
pub fn parse_took(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let millis = match unit {
        "nanos" => value / 1_000_000.0,
        "micros" => value / 1_000.0,
        "ms" => value,
        "s" => value * 1_000.0,
        "m" => value * 60_000.0,
        "h" => value * 3_600_000.0,
        "d" => value * 86_400_000.0,
        _ => return None,
    };
    Some(millis as u64)
}

/// Timestamps as the versions write them: `2024-12-21T12:42:37.255Z`,
/// `2021-03-04T19:38:22,164+02:00`, `2017-09-10T12:35:53,355` (UTC assumed),
/// `2012-10-19 19:59:54,085`.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let normalized: Cow<'_, str> = if text.contains(',') {
        Cow::Owned(text.replace(',', "."))
    } else {
        Cow::Borrowed(text)
    };
    if let Ok(parsed) = DateTime::parse_from_rfc3339(&normalized) {
        return Some(parsed.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&normalized, format) {
            return Some(naive.and_utc());
        }
    }
    None
}

/// Splits `[a][b] rest` into the bracketed head fields.
fn take_bracket(text: &str) -> Option<(&str, &str)> {
    let rest = text.trim_start().strip_prefix('[')?;
    let close = rest.find(']')?;
    Some((&rest[..close], &rest[close + 1..]))
}

/// Value of `name[...]` among the comma-separated fields before `source[`.
fn field<'a>(fields: &'a str, name: &str) -> Option<&'a str> {
    let mut search_from = 0;
    while let Some(found) = fields[search_from..].find(name) {
        let start = search_from + found;
        let preceded_ok = start == 0 || matches!(fields.as_bytes()[start - 1], b' ' | b',');
        let after = &fields[start + name.len()..];
        if preceded_ok && let Some(value) = after.strip_prefix('[') {
            return value.find(']').map(|end| &value[..end]);
        }
        search_from = start + name.len();
    }
    None
}

/// The text inside `source[...]`, matching brackets outside JSON strings,
/// and the text after its closing bracket (empty when the source is
/// truncated: then it runs to the end of the line).
fn bracketed_source(text: &str) -> Option<(&str, &str)> {
    let start = text.find("source[")? + "source[".len();
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &byte) in bytes[start..].iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' => depth += 1,
            b']' if depth == 0 => {
                let end = start + offset;
                return Some((&text[start..end], &text[end + 1..]));
            }
            b']' => depth -= 1,
            _ => {}
        }
    }
    // Truncated: take the rest of the line.
    Some((&text[start..], ""))
}

fn parse_plain_line(line: &str) -> Result<SlowEntry, MalformedLine> {
    let (timestamp_text, rest) = take_bracket(line).ok_or(MalformedLine::NotSlowLog)?;
    let (_level, rest) = take_bracket(rest).ok_or(MalformedLine::NotSlowLog)?;
    let (logger, rest) = take_bracket(rest).ok_or(MalformedLine::NotSlowLog)?;
    if !logger.contains("slowlog") {
        return Err(MalformedLine::NotSlowLog);
    }
    let (node, rest) = take_bracket(rest).ok_or(MalformedLine::NotSlowLog)?;
    let (index, shard) = parse_index_shard(rest).ok_or(MalformedLine::MissingIndex)?;
    let head = match rest.find("source[") {
        Some(position) => &rest[..position],
        None => rest,
    };
    let took_ms = field(head, "took_millis")
        .and_then(leading_u64)
        .or_else(|| field(head, "took").and_then(parse_took))
        .ok_or(MalformedLine::MissingTook)?;
    let (source, after_source) = bracketed_source(rest).unwrap_or(("", ""));
    // `id[...]` (the X-Opaque-Id, 6.x) follows the source.
    let id = field(head, "id")
        .or_else(|| field(after_source, "id"))
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    Ok(SlowEntry {
        timestamp: parse_timestamp(timestamp_text.trim()),
        kind: kind_from_hint(logger.trim()),
        index,
        shard,
        node: Some(node.to_string()).filter(|name| !name.is_empty()),
        took_ms,
        total_hits: field(head, "total_hits").and_then(leading_u64),
        source: source.to_string(),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_shard_from_message() {
        assert_eq!(
            parse_index_shard("[logs][2]"),
            Some(("logs".into(), Some(2)))
        );
        assert_eq!(
            parse_index_shard("[logs/uuidX]"),
            Some(("logs".into(), None))
        );
        assert_eq!(parse_index_shard("no"), None);
        assert_eq!(parse_index_shard("[]"), None);
    }

    #[test]
    fn took_units() {
        assert_eq!(parse_took("1.4s"), Some(1400));
        assert_eq!(parse_took("812.3ms"), Some(812));
        assert_eq!(parse_took("747.3micros"), Some(0));
        assert_eq!(parse_took("2m"), Some(120_000));
        assert_eq!(parse_took("soon"), None);
    }

    #[test]
    fn timestamps_of_each_version() {
        let expected = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("valid")
                .with_timezone(&Utc)
        };
        assert_eq!(
            parse_timestamp("2021-03-04T19:38:22,164+02:00"),
            Some(expected("2021-03-04T17:38:22.164Z"))
        );
        assert_eq!(
            parse_timestamp("2017-09-10T12:35:53,355"),
            Some(expected("2017-09-10T12:35:53.355Z"))
        );
        assert_eq!(
            parse_timestamp("2012-10-19 19:59:54,085"),
            Some(expected("2012-10-19T19:59:54.085Z"))
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn plain_line_with_nested_brackets_in_source() {
        let line = r#"[2017-09-10T12:35:53,355][WARN ][index.search.slowlog.query] [n1] [orders][0] took[1.2s], took_millis[1200], total_hits[5 hits], types[], stats[], search_type[QUERY_THEN_FETCH], total_shards[5], source[{"sort":[{"a":"b]"}]}], extra_source[], "#;
        let entry = parse_line(line).expect("parsed").expect("entry");
        assert_eq!(entry.source, r#"{"sort":[{"a":"b]"}]}"#);
        assert_eq!(entry.took_ms, 1200);
        assert_eq!(entry.total_hits, Some(5));
        assert_eq!(entry.node.as_deref(), Some("n1"));
        assert_eq!(entry.id, None);
    }

    #[test]
    fn plain_line_x_opaque_id_after_the_source() {
        let line = r#"[2018-06-29T10:06:14,933][INFO ][index.search.slowlog.query] [n1] [orders][2] took[4.5ms], took_millis[4], total_hits[19435], types[], stats[], search_type[QUERY_THEN_FETCH], total_shards[1], source[{"query":{"match_all":{"boost":1.0}}}], id[report-9], "#;
        let entry = parse_line(line).expect("parsed").expect("entry");
        assert_eq!(entry.id.as_deref(), Some("report-9"));
        assert_eq!(entry.source, r#"{"query":{"match_all":{"boost":1.0}}}"#);
        let empty = line.replace("id[report-9]", "id[]");
        let entry = parse_line(&empty).expect("parsed").expect("entry");
        assert_eq!(entry.id, None);
    }

    #[test]
    fn nested_document_from_an_index() {
        let document = serde_json::json!({
            "@timestamp": "2024-12-21T12:42:37.255Z",
            "elasticsearch": {
                "node": {"name": "n2"},
                "slowlog": {"message": "[products][4]", "took_millis": 33, "source": "{}"}
            },
            "log": {"logger": "index.search.slowlog.fetch"}
        });
        let entry = parse_document(&document).expect("entry");
        assert_eq!(entry.index, "products");
        assert_eq!(entry.shard, Some(4));
        assert_eq!(entry.kind, SlowLogKind::Fetch);
        assert_eq!(entry.took_ms, 33);
    }

    #[test]
    fn raw_line_in_message_field() {
        let document = serde_json::json!({
            "message": "[2017-09-10T12:35:53,355][WARN ][index.search.slowlog.query] [n1] [orders][1] took[3ms], took_millis[3], source[{}]"
        });
        let entry = parse_document(&document).expect("entry");
        assert_eq!(
            (entry.index.as_str(), entry.shard, entry.took_ms),
            ("orders", Some(1), 3)
        );
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line("hello"), Err(MalformedLine::NotSlowLog));
        assert_eq!(
            parse_line("{\"took_millis\":"),
            Err(MalformedLine::InvalidJson)
        );
        assert_eq!(
            parse_line(r#"{"type":"server","message":"started"}"#),
            Err(MalformedLine::MissingTook)
        );
        assert_eq!(
            parse_line(r#"{"took_millis":"5","message":"no index"}"#),
            Err(MalformedLine::MissingIndex)
        );
        assert_eq!(
            parse_line("[2020-01-01T00:00:00,000][INFO ][o.e.n.Node] [n1] started"),
            Err(MalformedLine::NotSlowLog)
        );
    }
}
