//! `plan`, `template`, `ilm` and `simulate`: read the input, call the pure
//! planner, print. No network.

use std::fmt::Write as _;

use shardplan::chart::{render_svg, simulation_panels};
use shardplan::report::{Table, render_plan};
use shardplan::simulate::Simulation;
use shardplan::template::{ilm_policy, index_template};
use shardplan::{Severity, plan_shards};

use crate::Outcome;
use crate::cli::{PlanArgs, PlanCommand, SimulateCommand};
use crate::output::{emit, print_report, write_chart};

/// `shardplan plan`.
pub fn plan(command: &PlanCommand) -> anyhow::Result<Outcome> {
    let input = command.plan.to_input()?;
    let plan = plan_shards(&input)?;
    print_report(command.format, &plan, || render_plan(&input, &plan))?;
    let serious = plan
        .findings
        .iter()
        .any(|finding| finding.severity >= Severity::Warning);
    Ok(if command.strict && serious {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<Outcome> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    emit(&text)?;
    Ok(Outcome::Clean)
}

/// `shardplan template`.
pub fn template(args: &PlanArgs) -> anyhow::Result<Outcome> {
    let input = args.to_input()?;
    let plan = plan_shards(&input)?;
    print_json(&index_template(&input, &plan))
}

/// `shardplan ilm`.
pub fn ilm(args: &PlanArgs) -> anyhow::Result<Outcome> {
    let input = args.to_input()?;
    let plan = plan_shards(&input)?;
    print_json(&ilm_policy(&input, &plan))
}

/// `shardplan simulate`.
pub fn simulate(command: &SimulateCommand) -> anyhow::Result<Outcome> {
    let input = command.plan.to_input()?;
    let plan = plan_shards(&input)?;
    let simulation = shardplan::simulate::simulate(&input, &plan, command.days)?;
    if let Some(path) = &command.chart {
        let svg = render_svg(&simulation_panels(&simulation), 1000, 420)?;
        write_chart(path, &svg)?;
    }
    print_report(command.format, &simulation, || {
        render_simulation(&simulation, plan.primaries, command.every)
    })?;
    Ok(Outcome::Clean)
}

fn render_simulation(simulation: &Simulation, primaries: u64, every: u32) -> String {
    let mut out = format!(
        "simulation of {} days, {primaries} primaries per daily index (cells: shards / disk)\n\n",
        simulation.days.len()
    );
    let headers = ["day".to_string()]
        .into_iter()
        .chain(simulation.nodes.iter().map(|node| node.name.clone()))
        .chain(["unassigned".to_string()]);
    let mut table = Table::new(headers);
    let last_day = simulation.days.last().map_or(0, |report| report.day);
    for report in &simulation.days {
        if report.day % every.max(1) != 0 && report.day != last_day && report.day != 1 {
            continue;
        }
        let cells = [report.day.to_string()]
            .into_iter()
            .chain(
                report
                    .nodes
                    .iter()
                    .map(|node| format!("{} / {}", node.shards, node.disk)),
            )
            .chain([report.unassigned.to_string()]);
        table.row(cells);
    }
    out.push_str(&table.render());
    out.push('\n');
    if let Some(worst) = &simulation.worst_disk {
        let _ = writeln!(
            out,
            "worst disk imbalance: day {}, {} tier, {} to {} per node (max/mean {:.3})",
            worst.day, worst.tier, worst.min_disk, worst.max_disk, worst.disk_ratio
        );
    }
    if let Some(worst) = &simulation.worst_shards {
        let _ = writeln!(
            out,
            "worst shard imbalance: day {}, {} tier, {} to {} shards per node",
            worst.day, worst.tier, worst.min_shards, worst.max_shards
        );
    }
    let _ = writeln!(
        out,
        "peak disk use of a node: {:.1}%",
        simulation.peak_disk_fraction * 100.0
    );
    out
}
