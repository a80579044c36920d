//! Renderings of a [`DigestReport`]: short text for a chat, Markdown and JSON
//! for tools. Pure: report in, string out.

use super::digest::{DigestReport, FingerprintStats, GroupBy};
use crate::format::humanize_ms;

/// Output format of a slow-log report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// Plain text, short enough for a chat.
    Text,
    /// Markdown tables.
    Markdown,
    /// JSON (the whole report).
    Json,
}

/// Renders the report in the given format.
pub fn render(report: &DigestReport, format: ReportFormat) -> String {
    match format {
        ReportFormat::Text => render_text(report, 200),
        ReportFormat::Markdown => render_markdown(report),
        ReportFormat::Json => render_json(report),
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let cut: String = text.chars().take(max_chars).collect();
    format!("{cut}…")
}

fn counted(list: &[(String, u64)], max_items: usize) -> String {
    let mut parts: Vec<String> = list
        .iter()
        .take(max_items)
        .map(|(name, count)| format!("{name}({count})"))
        .collect();
    if list.len() > max_items {
        parts.push(format!("+{} more", list.len() - max_items));
    }
    parts.join(", ")
}

/// `3 requests` or `1 request`.
fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// The count of what the report counts, with the other one after it:
/// `2 requests (6 shard executions)` or `6 shard executions (2 requests)`.
fn both_counts(by: GroupBy, requests: u64, shard_executions: u64) -> String {
    let requests = plural(requests, "request", "requests");
    let shards = plural(shard_executions, "shard execution", "shard executions");
    match by {
        GroupBy::Request => format!("{requests} ({shards})"),
        GroupBy::Shard => format!("{shards} ({requests})"),
    }
}

fn header(report: &DigestReport) -> String {
    let mut line = format!(
        "slow log by {}: {}, {}, total {}",
        report.by,
        both_counts(report.by, report.requests, report.reported),
        plural(report.fingerprints, "fingerprint", "fingerprints"),
        humanize_ms(report.total_ms)
    );
    if report.filtered_out > 0 {
        line.push_str(&format!(", {} filtered out", report.filtered_out));
    }
    if report.malformed_lines > 0 {
        line.push_str(&format!(
            ", {} malformed lines skipped",
            report.malformed_lines
        ));
    }
    line
}

/// How the report counts, in a sentence (Markdown).
fn counting(report: &DigestReport) -> String {
    match report.by {
        GroupBy::Request => format!(
            "Counted by request: the slow-log lines of one search (same source, X-Opaque-Id and node, shards starting within {} of each other) are one request, whose time is its slowest shard's.",
            humanize_ms(report.request_window_ms)
        ),
        GroupBy::Shard => {
            "Counted by shard execution: every slow-log line on its own, as Elasticsearch writes them (one per shard).".to_string()
        }
    }
}

/// Plain text: one block per fingerprint, fingerprints cut to
/// `max_fingerprint_chars`.
pub fn render_text(report: &DigestReport, max_fingerprint_chars: usize) -> String {
    let mut text = header(report);
    text.push('\n');
    if report.top.is_empty() {
        text.push_str("no slow queries in this window\n");
        return text;
    }
    for (rank, stats) in report.top.iter().enumerate() {
        text.push_str(&format!(
            "#{} {} {}% total {} {} p50 {} p95 {} max {}\n   {}\n   indices: {}  nodes: {}\n",
            rank + 1,
            stats.kind.as_str(),
            stats.share_percent,
            humanize_ms(stats.total_ms),
            both_counts(report.by, stats.requests, stats.shard_executions),
            humanize_ms(stats.p50_ms),
            humanize_ms(stats.p95_ms),
            humanize_ms(stats.max_ms),
            shorten(&stats.fingerprint, max_fingerprint_chars),
            counted(&stats.indices, 3),
            counted(&stats.nodes, 3),
        ));
    }
    text
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn time_or_dash(stats: &FingerprintStats, first: bool) -> String {
    let at = if first {
        stats.first_seen
    } else {
        stats.last_seen
    };
    at.map(|time| time.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_string())
}

/// Markdown: a summary table and a section per fingerprint.
pub fn render_markdown(report: &DigestReport) -> String {
    let mut text = format!(
        "# Slow-log report\n\n{}\n\n{}\n\n",
        header(report),
        counting(report)
    );
    text.push_str("| # | id | kind | requests | shard executions | total ms | share % | min | p50 | p95 | p99 | max | indices | nodes |\n");
    text.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
    for (rank, stats) in report.top.iter().enumerate() {
        text.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            rank + 1,
            stats.id,
            stats.kind.as_str(),
            stats.requests,
            stats.shard_executions,
            stats.total_ms,
            stats.share_percent,
            stats.min_ms,
            stats.p50_ms,
            stats.p95_ms,
            stats.p99_ms,
            stats.max_ms,
            cell(&counted(&stats.indices, 5)),
            cell(&counted(&stats.nodes, 5)),
        ));
    }
    for (rank, stats) in report.top.iter().enumerate() {
        text.push_str(&format!(
            "\n## #{} `{}` ({})\n\n- first seen: {}\n- last seen: {}\n- shards: {}\n\nFingerprint:\n\n```json\n{}\n```\n\nSlowest sample ({} ms):\n\n```json\n{}\n```\n",
            rank + 1,
            stats.id,
            stats.kind.as_str(),
            time_or_dash(stats, true),
            time_or_dash(stats, false),
            if stats.shards.is_empty() { "-".to_string() } else { stats.shards.join(", ") },
            stats.fingerprint,
            stats.max_ms,
            stats.sample,
        ));
    }
    text.push_str(&format!(
        "\n## Latency distribution\n\n| below | {} |\n|---|---:|\n",
        match report.by {
            GroupBy::Request => "requests",
            GroupBy::Shard => "shard executions",
        }
    ));
    for bucket in &report.latency_buckets {
        let bound = bucket
            .below_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "more".to_string());
        text.push_str(&format!("| {bound} | {} |\n", bucket.count));
    }
    text
}

/// JSON of the whole report.
pub fn render_json(report: &DigestReport) -> String {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string_pretty(report).expect("report serializes to json")
}
