//! The operations kit in `ops/` against the metrics the code really exports:
//! every `esync_*` series that the alerting rules and the Grafana dashboard
//! name must be one that `esync run`, `esync publish` or `esync-recover run
//! --metrics-listen` registers, with the labels it carries. `opsbot_*`
//! series are skipped here (esync cannot depend on opsbot):
//! `opsbot/tests/ops_metrics.rs` checks them against opsbot's registry, in
//! the same files. The real names come from encoding the real registries, so
//! a renamed
//! metric or label fails here rather than in a silent dashboard. Pure: reads
//! files, needs no services.

use esync::metrics::{
    DualWriteLabel, Metrics, PartitionLabel, ReasonLabel, RetryLabel, TopicLabel,
};
use esync::publish::metrics::PublishMetrics;
use esync::recover::metrics::{RecoverMetrics, RunLabel};
use esync_testkit::promql::{Exporter, Rule, exported_series, panels, references};
use prometheus_client::registry::Registry;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn ops_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    let path = ops_file(path);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Series name -> label names, as the text encoder prints them (`_total`
/// counters, `_bucket`/`_sum`/`_count` histograms).
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let publish = PublishMetrics::register(&mut registry);
    // esync-recover serves the writer's `Metrics` (above) and these
    let recover = RecoverMetrics::register(&mut registry);
    // A family prints nothing until it has a label set. The patterns name
    // every field, so a metric added to either struct breaks this test's
    // build until it is listed here.
    let Metrics {
        messages,
        ids_received,
        ids_distinct,
        rows_read,
        docs_indexed,
        docs_deleted,
        version_conflicts,
        retries,
        dead_lettered,
        dead_letters_truncated: _,
        batch_duration: _,
        batch_size: _,
        consumer_lag,
        end_to_end_lag: _,
        commit_failures: _,
        dual_writes,
        dual_write_pending,
    } = &*metrics;
    let PublishMetrics {
        ids_published,
        late_ids,
        suppressed,
        rows_scanned,
        poll_duration: _,
        watermark_lag,
        null_timestamp_rows,
        errors,
        outbox_relayed,
    } = &*publish;
    let RecoverMetrics {
        rows,
        failed,
        chunks_done,
        chunks_total,
        rate_limit,
        paused,
    } = &*recover;
    let run = RunLabel { run: "r".into() };
    for family in [rows, failed] {
        family.get_or_create(&run).inc();
    }
    for family in [chunks_done, chunks_total, paused] {
        family.get_or_create(&run).set(1);
    }
    rate_limit.get_or_create(&run).set(1.0);
    let mapping = Metrics::mapping("m");
    for family in [
        ids_received,
        ids_distinct,
        rows_read,
        docs_indexed,
        docs_deleted,
        version_conflicts,
        ids_published,
        late_ids,
        suppressed,
        rows_scanned,
        errors,
        outbox_relayed,
    ] {
        family.get_or_create(&mapping).inc();
    }
    watermark_lag.get_or_create(&mapping).set(1.0);
    dual_write_pending.get_or_create(&mapping).set(1);
    dual_writes
        .get_or_create(&DualWriteLabel {
            mapping: "m".into(),
            outcome: "written",
        })
        .inc();
    null_timestamp_rows.get_or_create(&mapping).set(1);
    messages
        .get_or_create(&TopicLabel { topic: "t".into() })
        .inc();
    retries
        .get_or_create(&RetryLabel {
            stage: "s",
            reason: "r",
        })
        .inc();
    dead_lettered
        .get_or_create(&ReasonLabel { reason: "r".into() })
        .inc();
    consumer_lag
        .get_or_create(&PartitionLabel {
            topic: "t".into(),
            partition: "0".into(),
        })
        .set(1);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    exported_series(&text)
}

/// Problems of one expression against the `esync_*` series; `opsbot_*`
/// ones are checked by `opsbot/tests/ops_metrics.rs`.
fn problems(place: &str, expr: &str, series: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let exporter = Exporter {
        prefix: "esync_",
        name: "esync, esync publish or esync-recover",
        series,
    };
    esync_testkit::promql::problems(place, expr, exporter)
}

fn rules() -> Vec<Rule> {
    esync_testkit::promql::rules(&read("ops/prometheus/esync.rules.yml"))
}

fn dashboard() -> Json {
    serde_json::from_str(&read("ops/grafana/esync.json")).expect("the dashboard is JSON")
}

#[test]
fn alerting_rules_use_only_exported_metrics_and_labels() {
    let exported = exported();
    let rules = rules();
    assert!(rules.len() >= 10, "rules: {}", rules.len());
    let mut problems_found = Vec::new();
    for rule in &rules {
        problems_found.extend(problems(&rule.name, &rule.expr, &exported));
    }
    assert!(problems_found.is_empty(), "{problems_found:#?}");
}

#[test]
fn every_alert_has_its_section_in_operating_md() {
    let operating = read("ops/OPERATING.md");
    let headings: BTreeSet<&str> = operating
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .collect();
    for Rule { name, runbook, .. } in rules() {
        assert!(
            headings.contains(name.as_str()),
            "ops/OPERATING.md has no `### {name}` section"
        );
        // GitHub's anchor of a heading made of one word
        let expected = format!("ops/OPERATING.md#{}", name.to_lowercase());
        assert_eq!(runbook.as_deref(), Some(expected.as_str()), "{name}");
    }
}

#[test]
fn dashboard_is_importable_and_uses_only_exported_metrics() {
    let exported = exported();
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().is_some(),
        "schemaVersion"
    );
    assert!(dashboard["uid"].as_str().is_some(), "uid");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables
            .iter()
            .any(|variable| variable["name"] == "datasource"
                && variable["type"] == "datasource"
                && variable["query"] == "prometheus"),
        "a templated Prometheus datasource named datasource"
    );

    let mut problems_found = Vec::new();
    for variable in variables
        .iter()
        .filter(|variable| variable["type"] == "query")
    {
        let name = variable["name"].as_str().unwrap_or("?");
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .expect("a query variable has a query");
        problems_found.extend(problems(&format!("variable {name}"), query, &exported));
    }

    let mut ids = BTreeSet::new();
    let mut metric_panels = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64()),
            "panel id of {title} reused"
        );
        for key in ["h", "w", "x", "y"] {
            assert!(
                panel["gridPos"][key].as_u64().is_some(),
                "{title}: gridPos.{key}"
            );
        }
        let Some(targets) = panel["targets"].as_array() else {
            continue;
        };
        metric_panels += 1;
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().expect("every target has an expr");
            let names_ours = ["esync_", "opsbot_"]
                .iter()
                .any(|prefix| !references(expr, prefix).selectors.is_empty());
            if !expr.contains("up{") && !expr.contains("probe_success{") {
                assert!(
                    names_ours,
                    "{title}: {expr} names no esync or opsbot metric"
                );
            }
            problems_found.extend(problems(title, expr, &exported));
        }
    }
    assert!(metric_panels >= 15, "metric panels: {metric_panels}");
    assert!(problems_found.is_empty(), "{problems_found:#?}");
}

/// The check above is only worth something if it catches mistakes.
#[test]
fn the_check_catches_unknown_metrics_and_labels() {
    let exported = exported();
    assert!(exported.contains_key("esync_retries_total"));
    assert!(exported.contains_key("esync_end_to_end_lag_seconds_bucket"));
    assert!(exported["esync_end_to_end_lag_seconds_bucket"].contains("le"));
    assert!(exported.contains_key("esync_publish_ids_total"));
    assert!(exported.contains_key("esync_publish_null_timestamp_rows"));
    assert!(exported["esync_recover_rows_total"].contains("run"));
    assert!(exported.contains_key("esync_recover_rate_limit_rows_per_second"));

    let fine = r#"sum by (job, topic) (rate(esync_messages_total{instance=~"$instance", topic!="x"}[$__rate_interval])) > 0
        unless on (job, instance) histogram_quantile(0.99, sum by (le) (rate(esync_batch_ids_bucket[5m])))
        or label_replace(esync_messages_total offset 1h, "dst", "esync_in_a_string", "topic", "(.*)")"#;
    assert_eq!(problems("fine", fine, &exported), Vec::<String>::new());

    for wrong in [
        "rate(esync_messages[5m])",
        "esync_end_to_end_lag_seconds > 1",
        "esync_restarts_total",
        r#"esync_messages_total{mapping="orders"}"#,
        "sum by (reason) (esync_docs_indexed_total)",
        r#"esync_retries_total{stage="database", reasons="x"}"#,
        "esync_recover_rows",
        "sum by (mapping) (esync_recover_paused)",
    ] {
        assert_eq!(
            problems("wrong", wrong, &exported).len(),
            1,
            "not caught: {wrong}"
        );
    }
}
