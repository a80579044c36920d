//! Short text renderings of cluster data, shared by the CLI and the bot.
//! Pure: domain types in, text out.

use crate::cluster::{ClusterHealth, ClusterNode, PlannedNode, ShardRow};
use std::collections::BTreeMap;

/// One paragraph on cluster health.
pub fn health_text(health: &ClusterHealth) -> String {
    format!(
        "cluster {}: {}\nnodes {} (data {}), shards {} active ({} primary), {} relocating, {} initializing, {} unassigned, {:.1}% active",
        health.cluster_name,
        health.status,
        health.number_of_nodes,
        health.number_of_data_nodes,
        health.active_shards,
        health.active_primary_shards,
        health.relocating_shards,
        health.initializing_shards,
        health.unassigned_shards,
        health.active_shards_percent_as_number,
    )
}

/// A table of nodes: name, ip, roles, master flag, uptime.
pub fn nodes_text(nodes: &[ClusterNode]) -> String {
    let mut sorted: Vec<&ClusterNode> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let width = sorted
        .iter()
        .map(|node| node.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut text = format!(
        "{:width$}  {:15}  {:12}  master  uptime\n",
        "name", "ip", "roles"
    );
    for node in sorted {
        let uptime = node
            .uptime_ms
            .map(humanize_ms)
            .unwrap_or_else(|| "-".to_string());
        text.push_str(&format!(
            "{:width$}  {:15}  {:12}  {:6}  {}\n",
            node.name,
            node.ip,
            node.roles,
            if node.elected_master { "*" } else { "-" },
            uptime
        ));
    }
    text.push_str(&format!("{} node(s)", nodes.len()));
    text
}

/// Shards: counts by state, then the rows (not started first), at most
/// `max_rows` of them.
pub fn shards_text(rows: &[ShardRow], max_rows: usize) -> String {
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows {
        *by_state.entry(row.state.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = by_state
        .iter()
        .map(|(state, count)| format!("{state} {count}"))
        .collect();
    let mut text = format!("{} shard(s): {}\n", rows.len(), counts.join(", "));
    let mut sorted: Vec<&ShardRow> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        (a.state == "STARTED")
            .cmp(&(b.state == "STARTED"))
            .then_with(|| a.index.cmp(&b.index))
            .then_with(|| {
                a.shard
                    .parse::<u32>()
                    .unwrap_or(0)
                    .cmp(&b.shard.parse::<u32>().unwrap_or(0))
            })
            .then_with(|| a.prirep.cmp(&b.prirep))
    });
    for row in sorted.iter().take(max_rows) {
        text.push_str(&format!(
            "{} {} {} {} docs={} bytes={} node={}\n",
            row.index,
            row.shard,
            row.prirep,
            row.state,
            row.docs.as_deref().unwrap_or("-"),
            row.store.as_deref().unwrap_or("-"),
            row.node.as_deref().unwrap_or("-"),
        ));
    }
    if rows.len() > max_rows {
        text.push_str(&format!("... {} more\n", rows.len() - max_rows));
    }
    text.trim_end().to_string()
}

/// Formats milliseconds as `250ms`, `5.6s`, `1m30s`, `1h`.
pub fn humanize_ms(millis: u64) -> String {
    if millis < 1000 {
        return format!("{millis}ms");
    }
    if millis < 60_000 {
        return if millis.is_multiple_of(1000) {
            format!("{}s", millis / 1000)
        } else {
            format!("{:.1}s", millis as f64 / 1000.0)
        };
    }
    let seconds = millis / 1000;
    let (hours, minutes, rest) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if rest > 0 {
        text.push_str(&format!("{rest}s"));
    }
    text
}

/// The plan as text lines, for `--dry-run` and the confirmation question.
pub fn describe_plan(nodes: &[PlannedNode], allow_yellow: bool) -> String {
    let mut text = format!(
        "rolling restart of {} node(s), one at a time ({} required):\n",
        nodes.len(),
        if allow_yellow {
            "green or settled yellow"
        } else {
            "green"
        }
    );
    for (position, node) in nodes.iter().enumerate() {
        let master = if node.elected_master {
            ", elected master"
        } else {
            ""
        };
        text.push_str(&format!(
            "{}. {} on {} [{}{}]\n",
            position + 1,
            node.name,
            node.host,
            node.roles,
            master
        ));
    }
    text.push_str("per node: check health, allocation=primaries, flush, restart, wait leave/rejoin, restore allocation, wait for green");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tests::cluster_nodes;
    use crate::cluster::{HealthStatus, Target, plan_order};
    use crate::roll::RollSettings;

    #[test]
    fn renders_health_nodes_and_shards() {
        let health = ClusterHealth {
            cluster_name: "prod".into(),
            status: HealthStatus::Yellow,
            number_of_nodes: 3,
            number_of_data_nodes: 2,
            active_primary_shards: 5,
            active_shards: 9,
            relocating_shards: 0,
            initializing_shards: 0,
            unassigned_shards: 1,
            active_shards_percent_as_number: 90.0,
        };
        assert!(health_text(&health).starts_with("cluster prod: yellow\nnodes 3 (data 2)"));
        let nodes = vec![ClusterNode {
            name: "es-1".into(),
            ip: "10.0.0.1".into(),
            roles: "dim".into(),
            elected_master: true,
            uptime_ms: Some(90_000),
        }];
        let text = nodes_text(&nodes);
        assert!(
            text.contains("es-1") && text.contains("1m30s") && text.ends_with("1 node(s)"),
            "{text}"
        );
        let row = |state: &str, shard: &str| ShardRow {
            index: "logs".into(),
            shard: shard.into(),
            prirep: "p".into(),
            state: state.into(),
            docs: None,
            store: None,
            node: None,
        };
        let text = shards_text(
            &[
                row("STARTED", "0"),
                row("UNASSIGNED", "1"),
                row("STARTED", "2"),
            ],
            2,
        );
        assert!(
            text.starts_with("3 shard(s): STARTED 2, UNASSIGNED 1\nlogs 1 p UNASSIGNED"),
            "{text}"
        );
        assert!(text.ends_with("... 1 more"), "{text}");
    }

    #[test]
    fn humanize_and_plan_text() {
        assert_eq!(humanize_ms(90_000), "1m30s");
        assert_eq!(humanize_ms(1_800_000), "30m");
        assert_eq!(humanize_ms(250), "250ms");
        assert_eq!(humanize_ms(5_600), "5.6s");
        assert_eq!(humanize_ms(3_600_000), "1h");
        let plan = plan_order(&cluster_nodes(), &Target::All, |n| n.ip.clone()).expect("plan");
        let text = describe_plan(&plan, RollSettings::default().allow_yellow);
        assert!(
            text.contains("6. master-1 on 10.0.0.8 [m, elected master]"),
            "{text}"
        );
    }
}
