//! The operations kit in `ops/` against the metrics opsbot really exports:
//! every `opsbot_*` series that the alerting rules
//! (`ops/prometheus/esync.rules.yml`) and the Grafana dashboard
//! (`ops/grafana/esync.json`) name must be one that [`OpsbotMetrics`]
//! registers, with the labels it carries, and every label an opsbot-only
//! expression groups or joins by must be one of them (or a target label).
//! `esync_*` series are checked by `sync/tests/ops_rules.rs`, which skips the
//! `opsbot_*` ones (esync cannot depend on opsbot). Pure: reads files, needs
//! no services.

use opsbot::metrics::{CommandOutcome, OpsbotMetrics, RefusedReason, encode};
use opsbot::roll::{RollSettings, RollState};
use prometheus_client::registry::Registry;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

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
    let text = encode(&registry).expect("encodes");
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let name_end = line.find(['{', ' ']).expect("a sample has a value");
        let labels = series.entry(line[..name_end].to_owned()).or_default();
        if let Some(inner) = line[name_end..].strip_prefix('{') {
            let inner = &inner[..inner.find('}').expect("closed labels")];
            // our label values hold no commas or quotes
            labels.extend(
                inner
                    .split(',')
                    .filter_map(|pair| pair.split_once('=').map(|(name, _)| name.to_owned())),
            );
        }
    }
    series
}

/// Label names of a `{...}` or `(...)` list (values in quotes skipped).
fn label_names(list: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = list.chars().peekable();
    let mut word = String::new();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' {
            for d in chars.by_ref() {
                if d == c {
                    break;
                }
            }
        } else if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            names.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        names.push(word);
    }
    names
}

/// (`opsbot_*` selectors with their labels, grouping labels) of `expr`.
fn references(expr: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut selectors = Vec::new();
    let mut grouping = Vec::new();
    let bytes = expr.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at] as char;
        if c == '"' || c == '\'' {
            at += expr[at + 1..].find(c).map_or(bytes.len(), |end| end + 2);
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_') || (at > 0 && bytes[at - 1] == b'$') {
            at += 1;
            continue;
        }
        let end = expr[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(expr.len(), |end| at + end);
        let word = &expr[at..end];
        let rest = expr[end..].trim_start();
        let after = expr.len() - rest.len();
        let list = |close: char| rest[1..].find(close).map(|close_at| &rest[1..=close_at]);
        if word.starts_with("opsbot_") {
            let labels = match rest.starts_with('{').then(|| list('}')).flatten() {
                Some(inner) => {
                    at = after + inner.len() + 1;
                    label_names(inner)
                }
                None => {
                    at = end;
                    Vec::new()
                }
            };
            selectors.push((word.to_owned(), labels));
        } else if [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ]
        .contains(&word)
            && rest.starts_with('(')
        {
            let inner = list(')').expect("closed grouping");
            grouping.extend(label_names(inner));
            at = after + inner.len() + 1;
        } else {
            at = end;
        }
    }
    (selectors, grouping)
}

/// Problems of one expression against opsbot's series.
fn problems(place: &str, expr: &str, exported: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let (selectors, grouping) = references(expr);
    let mut problems = Vec::new();
    if selectors.is_empty() {
        return problems;
    }
    let mut carried: BTreeSet<&str> = TARGET_LABELS.into_iter().collect();
    for (name, labels) in &selectors {
        let Some(known) = exported.get(name) else {
            problems.push(format!(
                "{place}: {name} is not a series opsbot exports: {expr}"
            ));
            continue;
        };
        carried.extend(known.iter().map(String::as_str));
        for label in labels {
            if !known.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!("{place}: {name} has no label {label}: {expr}"));
            }
        }
    }
    for label in &grouping {
        if !carried.contains(label.as_str()) {
            problems.push(format!(
                "{place}: no opsbot metric of the expression has the label {label}: {expr}"
            ));
        }
    }
    problems
}

/// (name, expr) of every rule that names an `opsbot_*` series.
fn opsbot_rules() -> Vec<(String, String)> {
    let file: Yaml = serde_yaml::from_str(&read("ops/prometheus/esync.rules.yml")).expect("YAML");
    let mut rules = Vec::new();
    for group in file["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .expect("a name");
            let expr = rule["expr"].as_str().expect("expr");
            if expr.contains("opsbot_") {
                rules.push((name.to_owned(), expr.to_owned()));
            }
        }
    }
    rules
}

/// (panel title, expr) of every dashboard target that names an `opsbot_*`
/// series.
fn opsbot_targets() -> Vec<(String, String)> {
    let dashboard: Json = serde_json::from_str(&read("ops/grafana/esync.json")).expect("JSON");
    let mut panels: Vec<&Json> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    let mut targets = Vec::new();
    while let Some(panel) = panels.pop() {
        if let Some(inner) = panel["panels"].as_array() {
            panels.extend(inner);
        }
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
