//! `shardplan measure`: find the largest shard that still meets a search
//! latency target, on a real cluster.
//!
//! Method: create a one-shard, zero-replica probe index (optionally pinned to
//! one node), keep bulk-indexing documents into it from one task while the
//! main task runs the queries at a steady rate. Each step refreshes the
//! index, reads its primary store size and doc count (`_stats`), then times
//! `--window` queries; the step's latency percentiles are attributed to the
//! size read at its start (the shard only grows during the window, so this
//! errs on the small, safe side). Stop when the watched percentile reaches
//! the target, at the size cap, or after `--max-steps`; then delete the probe
//! index unless `--keep`. The curve analysis is `shardplan::latency`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use esync_common::shutdown::ShutdownSignals;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use shardplan::ByteSize;
use shardplan::chart::{latency_panels, render_svg};
use shardplan::latency::{Crossing, CurvePoint, StopReason, StopRule, find_crossing};
use shardplan::report::Table;
use tracing::{info, warn};

use crate::Outcome;
use crate::cli::MeasureCommand;
use crate::es::EsClient;
use crate::output::{print_report, write_chart};

/// Syllables of the generated vocabulary (12^3 = 1,728 words).
const SYLLABLES: [&str; 12] = [
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "be", "do", "fu", "ga",
];
const VOCABULARY: usize = 1728;
const SERVICES: usize = 20;
const LEVELS: [&str; 4] = ["info", "warn", "error", "debug"];

/// The measurement result.
#[derive(Debug, Serialize)]
pub struct MeasureReport {
    /// The probe index.
    pub index: String,
    /// Whether the probe index was kept.
    pub kept: bool,
    /// The watched percentile.
    pub percentile: f64,
    /// The latency target in ms.
    pub target_ms: f64,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Shard size where the watched percentile reached the target
    /// (interpolated), when it did.
    pub shard_size_at_target: Option<ByteSize>,
    /// Documents at that point.
    pub docs_at_target: Option<u64>,
    /// Where the curve crosses the target.
    pub crossing: Crossing,
    /// Every step.
    pub curve: Vec<CurvePoint>,
}

enum DocSource {
    Samples(Vec<Value>),
    Generated,
}

/// `shardplan measure`.
pub fn run(command: &MeasureCommand) -> anyhow::Result<Outcome> {
    validate(command)?;
    let docs = match &command.docs {
        Some(path) => DocSource::Samples(read_ndjson(path, "documents")?),
        None => DocSource::Generated,
    };
    let queries = match &command.queries {
        Some(path) => read_ndjson(path, "queries")?,
        None => default_queries(),
    };
    let mappings = match &command.mapping {
        Some(path) => Some(read_json(path)?),
        None if command.docs.is_none() => Some(generated_mappings()),
        None => None,
    };
    let index = format!("shardplan-probe-{:08x}", rand::random::<u32>());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let client = Arc::new(EsClient::connect(
        &command.cluster.url,
        Duration::from_secs(command.cluster.request_timeout_secs),
    )?);
    let report = runtime.block_on(measure(client, command, index, docs, queries, mappings))?;
    if let Some(path) = &command.chart {
        let svg = render_svg(&latency_panels(&report.curve, report.target_ms), 1000, 500)?;
        write_chart(path, &svg)?;
    }
    print_report(command.format, &report, || render_measure(&report))?;
    Ok(Outcome::Clean)
}

fn validate(command: &MeasureCommand) -> anyhow::Result<()> {
    if !(command.percentile > 0.0 && command.percentile <= 100.0) {
        anyhow::bail!("--percentile {} is not in (0, 100]", command.percentile);
    }
    if !(command.target_ms > 0.0 && command.target_ms.is_finite()) {
        anyhow::bail!("--target-ms {} must be above 0", command.target_ms);
    }
    if !(command.qps > 0.0 && command.qps.is_finite()) {
        anyhow::bail!("--qps {} must be above 0", command.qps);
    }
    if command.window == 0 || command.bulk_docs == 0 || command.max_steps == 0 {
        anyhow::bail!("--window, --bulk-docs and --max-steps must be at least 1");
    }
    if command.docs.is_some() && command.queries.is_none() {
        anyhow::bail!(
            "--docs needs --queries: the built-in queries only fit the generated documents"
        );
    }
    Ok(())
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("invalid JSON in {}", path.display()))
}

fn read_ndjson(path: &Path, what: &str) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {what} from {}", path.display()))?;
    let mut values = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).with_context(|| {
            format!("invalid JSON on line {} of {}", number + 1, path.display())
        })?;
        if !value.is_object() {
            anyhow::bail!(
                "line {} of {} is not a JSON object",
                number + 1,
                path.display()
            );
        }
        values.push(value);
    }
    if values.is_empty() {
        anyhow::bail!("no {what} in {}", path.display());
    }
    Ok(values)
}

fn word(index: usize) -> String {
    let mut word = String::new();
    let mut rest = index % VOCABULARY;
    for _ in 0..3 {
        word.push_str(SYLLABLES[rest % SYLLABLES.len()]);
        rest /= SYLLABLES.len();
    }
    word
}

/// An index skewed towards 0 (a few very common values, a long tail), as in
/// real text and real service names.
fn skewed(rng: &mut StdRng, count: usize) -> usize {
    let uniform: f64 = rng.random();
    ((uniform.powi(3) * count as f64) as usize).min(count - 1)
}

fn generated_doc(rng: &mut StdRng, timestamp_ms: u64) -> Value {
    let words: Vec<String> = (0..12).map(|_| word(skewed(rng, VOCABULARY))).collect();
    json!({
        "@timestamp": timestamp_ms,
        "service": format!("svc-{}", skewed(rng, SERVICES)),
        "level": LEVELS[skewed(rng, LEVELS.len())],
        "user_id": rng.random_range(0..1_000_000_u32),
        "latency_ms": rng.random_range(1..2000_u32),
        "message": words.join(" "),
    })
}

fn generated_mappings() -> Value {
    json!({
        "properties": {
            "@timestamp": { "type": "date", "format": "epoch_millis" },
            "service": { "type": "keyword" },
            "level": { "type": "keyword" },
            "user_id": { "type": "long" },
            "latency_ms": { "type": "long" },
            "message": { "type": "text" }
        }
    })
}

fn default_queries() -> Vec<Value> {
    vec![
        json!({ "query": { "match": { "message": format!("{} {}", word(0), word(3)) } }, "size": 10 }),
        json!({
            "query": { "bool": { "filter": [
                { "term": { "service": "svc-1" } },
                { "range": { "latency_ms": { "gte": 1000 } } }
            ] } },
            "size": 10,
            "sort": [ { "@timestamp": { "order": "desc" } } ]
        }),
        json!({
            "size": 0,
            "aggs": { "services": {
                "terms": { "field": "service", "size": 10 },
                "aggs": { "latency": { "avg": { "field": "latency_ms" } } }
            } }
        }),
    ]
}

async fn measure(
    client: Arc<EsClient>,
    command: &MeasureCommand,
    index: String,
    docs: DocSource,
    queries: Vec<Value>,
    mappings: Option<Value>,
) -> anyhow::Result<MeasureReport> {
    let mut settings = json!({
        "index.number_of_shards": 1,
        "index.number_of_replicas": 0,
    });
    if let Some(node) = &command.node {
        settings["index.routing.allocation.require._name"] = json!(node);
    }
    let mut body = json!({ "settings": settings });
    if let Some(mappings) = mappings {
        body["mappings"] = mappings;
    }
    client
        .put(&format!("/{index}"), &body)
        .await
        .with_context(|| format!("failed to create the probe index {index}"))?;
    info!(index, "created probe index");
    let result = probe(&client, command, &index, docs, &queries).await;
    if command.keep {
        info!(index, "keeping probe index");
    } else {
        let deleted = client.delete(&format!("/{index}")).await;
        match (&result, deleted) {
            (_, Ok(_)) => info!(index, "deleted probe index"),
            (Ok(_), Err(error)) => {
                return Err(error.context(format!("failed to delete the probe index {index}")));
            }
            (Err(_), Err(error)) => {
                warn!(index, error = %format!("{error:#}"), "failed to delete the probe index");
            }
        }
    }
    let (curve, stop_reason) = result?;
    let crossing = find_crossing(&curve, command.target_ms);
    let reached = stop_reason == StopReason::TargetReached;
    Ok(MeasureReport {
        index,
        kept: command.keep,
        percentile: command.percentile,
        target_ms: command.target_ms,
        stop_reason,
        shard_size_at_target: crossing.estimated_bytes.filter(|_| reached).map(ByteSize),
        docs_at_target: crossing.estimated_docs.filter(|_| reached),
        crossing,
        curve,
    })
}

async fn probe(
    client: &Arc<EsClient>,
    command: &MeasureCommand,
    index: &str,
    docs: DocSource,
    queries: &[Value],
) -> anyhow::Result<(Vec<CurvePoint>, StopReason)> {
    let stop = Arc::new(AtomicBool::new(false));
    let indexer = tokio::spawn(index_loop(
        Arc::clone(client),
        index.to_string(),
        docs,
        command.bulk_docs,
        Arc::clone(&stop),
    ));
    // Ctrl-C or SIGTERM ends the measurement like an error: the indexer is
    // stopped first, then the probe index is deleted (unless --keep).
    let outcome = match ShutdownSignals::listen() {
        Ok(mut signals) => tokio::select! {
            outcome = query_loop(client, command, index, queries, &indexer) => outcome,
            signal = signals.recv() => Err(anyhow::anyhow!("interrupted by {signal}")),
        },
        Err(error) => Err(error.into()),
    };
    stop.store(true, Ordering::Relaxed);
    let indexed = indexer.await.context("the indexing task panicked")?;
    match (outcome, indexed) {
        (Ok(result), Ok(total)) => {
            info!(docs = total, "indexing stopped");
            Ok(result)
        }
        // A failed indexer is the root cause even when the query loop
        // noticed it first.
        (_, Err(error)) => Err(error),
        (Err(error), Ok(_)) => Err(error),
    }
}

async fn query_loop(
    client: &EsClient,
    command: &MeasureCommand,
    index: &str,
    queries: &[Value],
    indexer: &tokio::task::JoinHandle<anyhow::Result<u64>>,
) -> anyhow::Result<(Vec<CurvePoint>, StopReason)> {
    let rule = StopRule {
        percentile: command.percentile,
        target_ms: command.target_ms,
        size_cap: command.size_cap,
        max_steps: command.max_steps,
    };
    let search_path = format!("/{index}/_search");
    let mut curve = Vec::new();
    let mut query_number = 0;
    loop {
        if indexer.is_finished() {
            anyhow::bail!("indexing stopped early");
        }
        client
            .post(&format!("/{index}/_refresh"), None)
            .await
            .with_context(|| format!("failed to refresh {index}"))?;
        let stats = client
            .get(&format!("/{index}/_stats/store,docs"), &[])
            .await
            .with_context(|| format!("failed to read _stats of {index}"))?;
        let primaries = &stats["_all"]["primaries"];
        let store_bytes = primaries["store"]["size_in_bytes"].as_u64().unwrap_or(0);
        let doc_count = primaries["docs"]["count"].as_u64().unwrap_or(0);
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / command.qps));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut samples = Vec::with_capacity(command.window);
        for _ in 0..command.window {
            ticker.tick().await;
            let query = &queries[query_number % queries.len()];
            query_number += 1;
            let started = Instant::now();
            client
                .post(&search_path, Some(query))
                .await
                .with_context(|| format!("search {} on {index} failed", query_number))?;
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let point = CurvePoint::from_samples(doc_count, store_bytes, &samples, command.percentile)
            .context("no query was timed")?;
        info!(
            step = curve.len() + 1,
            docs = point.docs,
            store = %ByteSize(point.store_bytes),
            p50_ms = format!("{:.1}", point.p50_ms),
            watched_ms = format!("{:.1}", point.chosen_ms),
            "measured"
        );
        curve.push(point);
        if let Some(reason) = rule.should_stop(&curve) {
            return Ok((curve, reason));
        }
    }
}

async fn index_loop(
    client: Arc<EsClient>,
    index: String,
    docs: DocSource,
    bulk_docs: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<u64> {
    let mut rng = StdRng::from_os_rng();
    let bulk_path = format!("/{index}/_bulk");
    let mut total = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        let mut body = String::new();
        for _ in 0..bulk_docs {
            let doc = match &docs {
                DocSource::Samples(samples) => samples[rng.random_range(0..samples.len())].clone(),
                DocSource::Generated => generated_doc(&mut rng, now_ms),
            };
            body.push_str("{\"index\":{}}\n");
            body.push_str(&doc.to_string());
            body.push('\n');
        }
        let response = client
            .post_ndjson(&bulk_path, body)
            .await
            .with_context(|| format!("bulk indexing into {index} failed"))?;
        if response["errors"].as_bool() == Some(true) {
            let first_error = response["items"]
                .as_array()
                .and_then(|items| {
                    items
                        .iter()
                        .find_map(|item| item["index"].get("error").cloned())
                })
                .unwrap_or(Value::Null);
            anyhow::bail!("bulk indexing into {index} rejected documents: {first_error}");
        }
        total += bulk_docs as u64;
    }
    Ok(total)
}

fn render_measure(report: &MeasureReport) -> String {
    let mut out = String::new();
    let watched = format!("p{}", report.percentile);
    let _ = writeln!(
        out,
        "probe index {}{}; watched {watched}, target {} ms; stopped: {}",
        report.index,
        if report.kept { " (kept)" } else { " (deleted)" },
        report.target_ms,
        match report.stop_reason {
            StopReason::TargetReached => "target reached",
            StopReason::SizeCap => "size cap reached before the target",
            StopReason::StepLimit => "step limit reached before the target",
        }
    );
    match (report.shard_size_at_target, report.docs_at_target) {
        (Some(size), Some(docs)) => {
            let _ = writeln!(
                out,
                "max shard size for {watched} <= {} ms: {size} ({docs} docs)",
                report.target_ms
            );
        }
        _ => {
            if let Some(last) = &report.crossing.last_under {
                let _ = writeln!(
                    out,
                    "target not reached: shards of at least {} ({} docs) meet it",
                    ByteSize(last.store_bytes),
                    last.docs
                );
            }
        }
    }
    out.push('\n');
    // The watched percentile gets its own column unless it is p50/p95/p99.
    let extra_column = ![50.0, 95.0, 99.0].contains(&report.percentile);
    let mut headers: Vec<String> = [
        "step",
        "docs",
        "shard size",
        "queries",
        "p50 ms",
        "p95 ms",
        "p99 ms",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    if extra_column {
        headers.push(format!("{watched} ms"));
    }
    let mut table = Table::new(headers);
    for (number, point) in report.curve.iter().enumerate() {
        let mut cells = vec![
            (number + 1).to_string(),
            point.docs.to_string(),
            ByteSize(point.store_bytes).to_string(),
            point.queries.to_string(),
            format!("{:.1}", point.p50_ms),
            format!("{:.1}", point.p95_ms),
            format!("{:.1}", point.p99_ms),
        ];
        if extra_column {
            cells.push(format!("{:.1}", point.chosen_ms));
        }
        table.row(cells);
    }
    out.push_str(&table.render());
    out
}
