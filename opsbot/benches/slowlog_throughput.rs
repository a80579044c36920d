//! Slow-log throughput: parse + fingerprint + aggregate on one core.
//!
//! Writes a synthetic slow log (a mix of 7.x JSON, 8.x/9.x ECS JSON and the
//! plain-text format, ~1 KB lines with varying literal values, 1% malformed)
//! to a temporary file, then reads it with `slowlog::source::read_files` on
//! this thread, counting by request (the default: shard lines grouped).
//! Prints MB/s and MB/min against the 500 MB/min target. Size:
//! `OPSBOT_BENCH_MB` (default 200). Run with
//! `cargo bench -p opsbot --bench slowlog_throughput`.

use opsbot::slowlog::digest::{Digest, DigestFilter};
use opsbot::slowlog::source::read_files;
use std::io::{BufWriter, Write};
use std::time::Instant;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn source(random: &mut Lcg) -> String {
    let user = random.next() % 100_000;
    let gte = random.next() % 48;
    let shape = random.next() % 20;
    let terms: Vec<String> = (0..(random.next() % 8 + 1))
        .map(|i| format!("\"sku-{}\"", i * user))
        .collect();
    format!(
        r#"{{"size":{},"query":{{"bool":{{"filter":[{{"term":{{"user.id{shape}":{{"value":"u-{user}","boost":1.0}}}}}},{{"terms":{{"sku":[{}],"boost":1.0}}}},{{"range":{{"@timestamp":{{"gte":"now-{gte}h","lt":"now","boost":1.0}}}}}}],"must":[{{"match":{{"title":{{"query":"red running shoes size {}","operator":"AND","fuzziness":"AUTO","boost":1.0}}}}}}],"boost":1.0}}}},"sort":[{{"price":{{"order":"desc"}}}}],"aggregations":{{"by_brand":{{"terms":{{"field":"brand.keyword","size":{}}}}}}}}}"#,
        random.next() % 100,
        terms.join(","),
        random.next() % 50,
        random.next() % 100,
    )
}

fn line(random: &mut Lcg) -> String {
    let took = random.next() % 5_000;
    let shard = random.next() % 6;
    let node = random.next() % 12;
    let index = format!("logs-2026.11.{:02}", random.next() % 28 + 1);
    let source = source(random);
    match random.next() % 100 {
        0 => "{\"type\":\"index_search_slowlog\",\"took_millis\":".to_string(),
        1..=30 => {
            let escaped = serde_json::to_string(&source).expect("string");
            format!(
                r#"{{"type": "index_search_slowlog", "timestamp": "2026-11-20T10:{:02}:{:02},123+00:00", "level": "WARN", "component": "i.s.s.query", "cluster.name": "prod", "node.name": "es-hot-{node}", "message": "[{index}][{shard}]", "took": "{took}ms", "took_millis": "{took}", "total_hits": "{} hits", "stats": "[]", "search_type": "QUERY_THEN_FETCH", "total_shards": "6", "source": {escaped}, "cluster.uuid": "Pl8u5cMZS3GZFkBR1kuNpQ", "node.id": "AbTB9WKhQjSP0KKcN2IZLw"}}"#,
                random.next() % 60,
                random.next() % 60,
                random.next() % 10_000,
            )
        }
        31..=85 => {
            let escaped = serde_json::to_string(&source).expect("string");
            format!(
                r#"{{"@timestamp":"2026-11-20T10:{:02}:{:02}.255Z","log.level":"WARN","elasticsearch.slowlog.id":"svc-{}","elasticsearch.slowlog.message":"[{index}][{shard}]","elasticsearch.slowlog.search_type":"QUERY_THEN_FETCH","elasticsearch.slowlog.source":{escaped},"elasticsearch.slowlog.stats":"[]","elasticsearch.slowlog.took":"{took}ms","elasticsearch.slowlog.took_millis":{took},"elasticsearch.slowlog.total_hits":"{} hits","elasticsearch.slowlog.total_shards":6,"ecs.version":"1.2.0","service.name":"ES_ECS","event.dataset":"elasticsearch.index_search_slowlog","process.thread.name":"elasticsearch[es-hot-{node}][search][T#5]","log.logger":"index.search.slowlog.query","elasticsearch.cluster.uuid":"q3zRfE7qT0m0y1nG1bV0Xg","elasticsearch.node.id":"gQ1sUo3yQG2oJ3hA9w2NkQ","elasticsearch.node.name":"es-hot-{node}","elasticsearch.cluster.name":"prod"}}"#,
                random.next() % 60,
                random.next() % 60,
                random.next() % 10,
                random.next() % 10_000,
            )
        }
        _ => format!(
            "[2026-11-20T10:{:02}:{:02},355][WARN ][index.search.slowlog.query] [es-hot-{node}] [{index}][{shard}] took[{took}ms], took_millis[{took}], total_hits[{} hits], types[], stats[], search_type[QUERY_THEN_FETCH], total_shards[6], source[{source}], id[], ",
            random.next() % 60,
            random.next() % 60,
            random.next() % 10_000,
        ),
    }
}

fn main() {
    let megabytes: u64 = std::env::var("OPSBOT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let target_bytes = megabytes * 1024 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("slowlog.json");
    let mut writer = BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut random = Lcg(42);
    let mut written: u64 = 0;
    let mut lines: u64 = 0;
    while written < target_bytes {
        let text = line(&mut random);
        writer.write_all(text.as_bytes()).expect("write");
        writer.write_all(b"\n").expect("write");
        written += text.len() as u64 + 1;
        lines += 1;
    }
    writer.flush().expect("flush");
    drop(writer);

    let started = Instant::now();
    let mut digest = Digest::new(DigestFilter::default());
    read_files(&[path], &mut digest).expect("read");
    let report = digest.finish(10);
    let seconds = started.elapsed().as_secs_f64();
    let mb = written as f64 / (1024.0 * 1024.0);
    let per_minute = mb / seconds * 60.0;
    println!(
        "slowlog_throughput: {mb:.0} MB, {lines} lines ({} entries, {} requests, {} malformed, {} fingerprints) in {seconds:.2} s on one thread",
        report.reported, report.requests, report.malformed_lines, report.fingerprints
    );
    println!(
        "slowlog_throughput: {:.1} MB/s = {per_minute:.0} MB/min; target 500 MB/min; ratio {:.2}x",
        mb / seconds,
        per_minute / 500.0
    );
}
