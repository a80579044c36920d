//! The operations kit in `ops/` against the metrics opsbot really exports:
//! every `opsbot_*` series that the alerting rules
//! (`ops/prometheus/esync.rules.yml`) and the Grafana dashboard
//! (`ops/grafana/esync.json`) name must be one that [`OpsbotMetrics`]
//! registers, with the labels it carries, and every label an opsbot-only
//! expression groups or joins by must be one of them (or a target label).
//! `esync_*` series are checked by `sync/tests/ops_rules.rs`, which skips the
//! `opsbot_*` ones (esync cannot depend on opsbot). Pure: reads files, needs
//! no services.

use esync_testkit::promql::{Exporter, exported_series, panels};
use opsbot::metrics::{CommandOutcome, OpsbotMetrics, RefusedReason, encode};
use opsbot::roll::{RollSettings, RollState};
use prometheus_client::registry::Registry;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Series name -> label names, as the text encoder prints them.
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let mut registry = Registry::default();
    let metrics = OpsbotMetrics::register(&mut registry);
    // every family gets a label set (a family prints nothing without one)
    metrics.command("health", CommandOutcome::Ok);
    metrics.refused("restart", RefusedReason::Role);
    metrics.roll_stopped(&RollState::new(
        Vec::new(),
        RollSettings::default(),
        chrono::Utc::now(),
    ));
    exported_series(&encode(&registry).expect("encodes"))
}

/// Problems of one expression against opsbot's series.
fn problems(place: &str, expr: &str, series: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let exporter = Exporter {
        prefix: "opsbot_",
        name: "opsbot",
        series,
    };
    esync_testkit::promql::problems(place, expr, exporter)
}

/// (name, expr) of every rule that names an `opsbot_*` series.
fn opsbot_rules() -> Vec<(String, String)> {
    esync_testkit::promql::rules(&read("ops/prometheus/esync.rules.yml"))
        .into_iter()
        .filter(|rule| rule.expr.contains("opsbot_"))
        .map(|rule| (rule.name, rule.expr))
        .collect()
}

/// (panel title, expr) of every dashboard target that names an `opsbot_*`
/// series.
fn opsbot_targets() -> Vec<(String, String)> {
    let dashboard: Json = serde_json::from_str(&read("ops/grafana/esync.json")).expect("JSON");
    let mut targets = Vec::new();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            if expr.contains("opsbot_") {
                let title = panel["title"].as_str().unwrap_or("?");
                targets.push((title.to_owned(), expr.to_owned()));
            }
        }
    }
    targets
}

#[test]
fn alerting_rules_use_only_exported_opsbot_metrics_and_labels() {
    let exported = exported();
    let rules = opsbot_rules();
    assert!(
        rules.iter().any(|(name, _)| name == "OpsbotRollStuck"),
        "{rules:?}"
    );
    let found: Vec<String> = rules
        .iter()
        .flat_map(|(name, expr)| problems(name, expr, &exported))
        .collect();
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn dashboard_uses_only_exported_opsbot_metrics_and_labels() {
    let exported = exported();
    let targets = opsbot_targets();
    // commands by outcome, refused chat users, rolls, current wait
    for metric in [
        "opsbot_commands_total",
        "opsbot_refused_chat_users_total",
        "opsbot_roll_nodes_restarted_total",
        "opsbot_roll_failures_total",
        "opsbot_roll_waiting",
    ] {
        assert!(
            targets.iter().any(|(_, expr)| expr.contains(metric)),
            "no dashboard panel shows {metric}"
        );
    }
    let found: Vec<String> = targets
        .iter()
        .flat_map(|(title, expr)| problems(title, expr, &exported))
        .collect();
    assert!(found.is_empty(), "{found:#?}");
}

/// The checks above are only worth something if they catch mistakes.
#[test]
fn the_check_catches_unknown_opsbot_metrics_and_labels() {
    let exported = exported();
    let fine = r#"sum by (instance, command, outcome) (increase(opsbot_commands_total{outcome!="ok", instance=~"$x"}[5m]))
        * on (job, instance) group_left (reason) (opsbot_roll_waiting{reason="a,b"} == 1)"#;
    assert_eq!(problems("fine", fine, &exported), Vec::<String>::new());
    for wrong in [
        "rate(opsbot_commands[5m])",
        "opsbot_restarts_total",
        r#"opsbot_commands_total{reason="x"}"#,
        "sum by (mapping) (opsbot_roll_failures_total)",
        "opsbot_roll_wait_seconds > 1800",
    ] {
        assert_eq!(
            problems("wrong", wrong, &exported).len(),
            1,
            "not caught: {wrong}"
        );
    }
}
