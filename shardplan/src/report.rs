//! Plain-text tables for people; `--format json|yaml` output is serde.
//!
//! Returns strings; printing is the binary's job.

use std::fmt::Write as _;

use crate::input::{PlanInput, Workload};
use crate::plan::{Finding, Plan};

/// A text table: left-aligned columns separated by two spaces, no trailing
/// blanks.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are blank, extra cells are kept).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// True when no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders the table, header first, each line ending in `\n`.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (index, cell) in line.iter().enumerate() {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (index, cell) in line.iter().enumerate() {
                if index > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                let pad = widths[index] - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Renders findings as a table, or `no findings` when there are none.
pub fn render_findings(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings\n".to_string();
    }
    let mut table = Table::new(["severity", "code", "message"]);
    for finding in findings {
        table.row([
            finding.severity.to_string(),
            finding.code.to_string(),
            finding.message.clone(),
        ]);
    }
    table.render()
}

fn describe_workload(input: &PlanInput) -> String {
    match input.workload {
        Workload::TimeBased {
            daily_ingest,
            hot_days,
            warm_days,
            cold_days,
            ..
        } => {
            let mut days = format!("{hot_days} hot");
            if warm_days > 0 {
                let _ = write!(days, " + {warm_days} warm");
            }
            if cold_days > 0 {
                let _ = write!(days, " + {cold_days} cold");
            }
            format!("daily indexes of {daily_ingest}, {days} days")
        }
        Workload::Growing { expected_size, .. } => {
            format!("one growing index of {expected_size}")
        }
    }
}

/// The human-readable plan: summary, rules with reasons, tier loads,
/// findings and suggestions.
pub fn render_plan(input: &PlanInput, plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan for {}-*: {}, {} replica(s)\n",
        plan.name,
        describe_workload(input),
        plan.replicas
    );
    let mut summary = Table::new(["primaries per index", &plan.primaries.to_string()]);
    summary.row([
        "primary shard size".to_string(),
        format!("{} (max {})", plan.shard_size, input.max_shard_size),
    ]);
    if let Some(docs) = plan.docs_per_shard {
        summary.row([
            "docs per shard".to_string(),
            format!("{docs} (max {})", input.max_docs_per_shard),
        ]);
    }
    if let Some(target) = plan.shrink_to {
        summary.row(["warm shrink to".to_string(), target.to_string()]);
    }
    let targets: Vec<String> = plan.shrink_targets.iter().map(u64::to_string).collect();
    summary.row([
        "valid shrink targets".to_string(),
        if targets.is_empty() {
            "none".to_string()
        } else {
            targets.join(", ")
        },
    ]);
    out.push_str(&summary.render());
    out.push('\n');

    let mut rules = Table::new(["rule", "value", "reason"]);
    for step in &plan.rules {
        let name = serde_json::to_value(step.rule)
            .ok()
            .and_then(|value| value.as_str().map(str::to_string))
            .unwrap_or_default();
        rules.row([name, step.value.to_string(), step.reason.clone()]);
    }
    out.push_str(&rules.render());
    out.push('\n');

    let mut tiers = Table::new([
        "tier",
        "nodes",
        "indexes",
        "shards/index",
        "shard size",
        "shards",
        "shards/node",
        "heap limit",
        "disk/node",
        "of",
        "used",
        "after node loss",
    ]);
    for load in &plan.tiers {
        let after_loss = load
            .disk_needed_after_node_loss
            .map(|needed| {
                format!(
                    "{needed} ({:.1}%)",
                    needed.bytes() as f64 / load.disk_per_node.bytes().max(1) as f64 * 100.0
                )
            })
            .unwrap_or_else(|| "-".to_string());
        tiers.row([
            load.tier.to_string(),
            load.nodes.to_string(),
            load.indexes.to_string(),
            load.primaries_per_index.to_string(),
            load.shard_size.to_string(),
            load.total_shards.to_string(),
            load.shards_per_node.to_string(),
            load.heap_shard_limit.to_string(),
            load.disk_needed_per_node.to_string(),
            load.disk_per_node.to_string(),
            format!("{:.1}%", load.disk_fraction * 100.0),
            after_loss,
        ]);
    }
    out.push_str(&tiers.render());
    out.push('\n');
    out.push_str(&render_findings(&plan.findings));
    if !plan.suggestions.is_empty() {
        out.push('\n');
        let mut suggestions =
            Table::new(["suggested hot", "warm", "cold", "primaries", "shard size"]);
        for suggestion in &plan.suggestions {
            suggestions.row([
                suggestion.hot_nodes.to_string(),
                suggestion.warm_nodes.to_string(),
                suggestion.cold_nodes.to_string(),
                suggestion.primaries.to_string(),
                suggestion.shard_size.to_string(),
            ]);
        }
        out.push_str(&suggestions.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(["a", "long header", "c"]);
        table.row(["wide cell", "x", ""]);
        table.row(["y"]);
        assert_eq!(
            table.render(),
            "a          long header  c\nwide cell  x\ny\n"
        );
    }
}
