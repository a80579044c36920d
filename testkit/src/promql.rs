//! Checks of the operations kit's PromQL (alerting rules, dashboard
//! queries) against the series a registry really exports, shared by
//! `sync/tests/ops_rules.rs` (`esync_*`) and `opsbot/tests/ops_metrics.rs`
//! (`opsbot_*`): a renamed metric or label fails a test rather than leaving
//! an alert that never fires.

use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// Labels Prometheus adds to every scraped series.
pub const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Series name -> label names, from a registry's text encoding (`_total`
/// counters, `_bucket`/`_sum`/`_count` histograms as printed).
pub fn exported_series(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (name, labels) = parse_sample(line);
        series.entry(name).or_default().extend(labels);
    }
    series
}

/// `name{a="x",b="y"} 1` -> (`name`, [`a`, `b`]).
fn parse_sample(line: &str) -> (String, Vec<String>) {
    let name_end = line.find(['{', ' ']).expect("a sample line has a value");
    let name = line[..name_end].to_owned();
    let mut labels = Vec::new();
    if line[name_end..].starts_with('{') {
        let mut rest = &line[name_end + 1..];
        while let Some(equals) = rest.find("=\"") {
            labels.push(rest[..equals].trim_start_matches(',').to_owned());
            // our label values hold no quotes
            let value_end = rest[equals + 2..].find('"').expect("closed value");
            rest = &rest[equals + 2 + value_end + 1..];
            if rest.starts_with('}') {
                break;
            }
        }
    }
    (name, labels)
}

/// What a PromQL expression names of the metrics with one prefix.
#[derive(Debug, Default)]
pub struct References {
    /// Metric names with the prefix, each with the labels of its `{...}`
    /// selector.
    pub selectors: Vec<(String, Vec<String>)>,
    /// Labels in `by`, `without`, `on`, `ignoring`, `group_left/right`.
    pub grouping: Vec<String>,
}

/// A small PromQL scanner: enough for names, selectors and grouping clauses;
/// skips strings, numbers, durations and Grafana variables (`$x`, `${x}`),
/// and the selectors of metrics without `prefix`.
pub fn references(expr: &str, prefix: &str) -> References {
    let chars: Vec<char> = expr.chars().collect();
    let mut references = References::default();
    let mut index = 0;
    let identifier_at = |start: usize| -> usize {
        let mut end = start;
        while end < chars.len() && (chars[end].is_ascii_alphanumeric() || "_:".contains(chars[end]))
        {
            end += 1;
        }
        end
    };
    let skip_space = |mut at: usize| {
        while at < chars.len() && chars[at].is_whitespace() {
            at += 1;
        }
        at
    };
    let is_quote = |c: char| c == '"' || c == '\'' || c == '`';
    // the index after the string literal opening at `start`
    let string_end = |start: usize| {
        let mut at = start + 1;
        while at < chars.len() && chars[at] != chars[start] {
            at += if chars[at] == '\\' { 2 } else { 1 };
        }
        at + 1
    };
    // label names of a `{...}` or `(...)` list starting after its opener
    let label_list = |mut at: usize, close: char| -> (Vec<String>, usize) {
        let mut labels = Vec::new();
        while at < chars.len() && chars[at] != close {
            let c = chars[at];
            if is_quote(c) {
                at = string_end(at);
            } else if c.is_ascii_alphabetic() || c == '_' {
                let end = identifier_at(at);
                labels.push(chars[at..end].iter().collect());
                at = end;
            } else {
                at += 1;
            }
        }
        (labels, at + 1)
    };
    while index < chars.len() {
        let c = chars[index];
        if is_quote(c) {
            index = string_end(index);
        } else if c == '$' {
            index += 1;
            if chars.get(index) == Some(&'{') {
                while index < chars.len() && chars[index] != '}' {
                    index += 1;
                }
                index += 1;
            } else {
                index = identifier_at(index);
            }
        } else if c.is_ascii_digit() {
            // numbers and durations such as 5m, 1.5e3
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric() || chars[index] == '.')
            {
                index += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = identifier_at(index);
            let word: String = chars[index..end].iter().collect();
            let next = skip_space(end);
            let opens = |opener: char| chars.get(next) == Some(&opener);
            if word.starts_with(prefix) {
                let (labels, after) = if opens('{') {
                    label_list(next + 1, '}')
                } else {
                    (Vec::new(), end)
                };
                references.selectors.push((word, labels));
                index = after;
            } else if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
                && opens('(')
            {
                let (labels, after) = label_list(next + 1, ')');
                references.grouping.extend(labels);
                index = after;
            } else if opens('{') {
                // a selector of another metric (up, probe_success, ...)
                index = label_list(next + 1, '}').1;
            } else {
                index = end;
            }
        } else {
            index += 1;
        }
    }
    references
}

/// Whose series an expression is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Exporter<'a> {
    /// The metric names' prefix, e.g. `esync_`.
    pub prefix: &'a str,
    /// Who exports them, for the messages.
    pub name: &'a str,
    /// Series name -> label names ([`exported_series`]).
    pub series: &'a BTreeMap<String, BTreeSet<String>>,
}

/// Problems of one expression (at `place`, for the messages) against
/// `exporter`'s series: unknown metric names, unknown selector labels, and
/// grouping labels that none of its metrics of the expression carries. An
/// expression naming none of them has none; one that mixes two exporters'
/// metrics is not supported.
pub fn problems(place: &str, expr: &str, exporter: Exporter<'_>) -> Vec<String> {
    let references = references(expr, exporter.prefix);
    let mut problems = Vec::new();
    if references.selectors.is_empty() {
        return problems;
    }
    let mut carried: BTreeSet<&str> = TARGET_LABELS.into_iter().collect();
    for (name, labels) in &references.selectors {
        let Some(known) = exporter.series.get(name) else {
            problems.push(format!(
                "{place}: {name} is not a series {} exports: {expr}",
                exporter.name
            ));
            continue;
        };
        carried.extend(known.iter().map(String::as_str));
        for label in labels {
            if !known.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!(
                    "{place}: {name} has no label {label} (it has {known:?}): {expr}"
                ));
            }
        }
    }
    for label in &references.grouping {
        if !carried.contains(label.as_str()) {
            problems.push(format!(
                "{place}: no metric of the expression has the label {label}: {expr}"
            ));
        }
    }
    problems
}

/// An alerting or recording rule of a Prometheus rules file.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The alert's or the recorded series' name.
    pub name: String,
    pub expr: String,
    /// The `runbook` annotation, if any.
    pub runbook: Option<String>,
}

/// Every rule of a rules file, from its text.
pub fn rules(text: &str) -> Vec<Rule> {
    let file: serde_yaml::Value = serde_yaml::from_str(text).expect("the rules file is YAML");
    let mut rules = Vec::new();
    for group in file["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .expect("alert or record name");
            rules.push(Rule {
                name: name.to_owned(),
                expr: rule["expr"].as_str().expect("expr").to_owned(),
                runbook: rule["annotations"]["runbook"].as_str().map(str::to_owned),
            });
        }
    }
    rules
}

/// Every panel of a Grafana dashboard, those inside rows included, in order.
pub fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut all = Vec::new();
    let top = dashboard["panels"].as_array().expect("panels");
    let mut pending: Vec<&Json> = top.iter().rev().collect();
    while let Some(panel) = pending.pop() {
        all.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            pending.extend(inner.iter().rev());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_give_names_and_label_names() {
        let series = exported_series(
            "# HELP x\nesync_a_total{mapping=\"m\",reason=\"r\"} 1\nesync_b 2\nesync_a_total{mapping=\"n\"} 3\n",
        );
        let labels = |name: &str| series[name].iter().cloned().collect::<Vec<_>>();
        assert_eq!(labels("esync_a_total"), ["mapping", "reason"]);
        assert!(labels("esync_b").is_empty());
    }

    #[test]
    fn other_prefixes_strings_and_variables_are_skipped() {
        let found = references(
            r#"sum by (job) (rate(esync_x_total{a="esync_y"}[5m])) * on (instance) opsbot_z{b="1"} > $limit"#,
            "esync_",
        );
        assert_eq!(
            found.selectors,
            vec![("esync_x_total".to_owned(), vec!["a".to_owned()])]
        );
        assert_eq!(found.grouping, ["job", "instance"]);
    }
}
