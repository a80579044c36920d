//! The cluster model: plain data about an Elasticsearch cluster (health,
//! nodes, shards, the allocation setting) and which nodes a rolling restart
//! touches, in which order.
//!
//! Pure: the Elasticsearch adapter (`crate::es`) fills these types; the roll
//! state machine (`crate::roll`), the renderings (`crate::format`) and the
//! front ends read them. No I/O, no clock, no environment.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Cluster health colour as Elasticsearch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// All shards assigned.
    Green,
    /// All primaries assigned, some replicas not.
    Yellow,
    /// Some primaries unassigned.
    Red,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Green => "green",
            HealthStatus::Yellow => "yellow",
            HealthStatus::Red => "red",
        })
    }
}

/// A node as seen in `_cat/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Node name (`name` column).
    pub name: String,
    /// Node address (`ip` column); the default `{host}` of a restart action.
    pub ip: String,
    /// Role letters (`node.role` column), e.g. `dim` or `cdfhilmrstw`.
    pub roles: String,
    /// Whether this node is the elected master (`master` column is `*`).
    pub elected_master: bool,
    /// Time since the node process started, when reported.
    pub uptime_ms: Option<u64>,
}

impl ClusterNode {
    /// Whether the node holds data (any of the data role letters).
    pub fn is_data(&self) -> bool {
        self.roles
            .chars()
            .any(|c| matches!(c, 'd' | 'h' | 'w' | 'c' | 'f' | 's'))
    }

    /// Whether the node is master-eligible (role letter `m`).
    pub fn is_master_eligible(&self) -> bool {
        self.roles.contains('m')
    }
}

/// Which nodes to restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every node of the cluster.
    All,
    /// One node, by name.
    Node(String),
}

impl Target {
    /// `all` means every node; anything else names one node.
    pub fn parse(text: &str) -> Target {
        if text == "all" {
            Target::All
        } else {
            Target::Node(text.to_string())
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::Node(name) => f.write_str(name),
        }
    }
}

/// A node in the restart plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedNode {
    /// Node name.
    pub name: String,
    /// Value of `{host}` for the restart action.
    pub host: String,
    /// Role letters, for the plan printout.
    pub roles: String,
    /// Whether it was the elected master when the plan was made.
    pub elected_master: bool,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The named node is not in the cluster.
    #[error("node {0} is not in the cluster")]
    UnknownNode(String),
    /// The cluster reported no nodes.
    #[error("the cluster reported no nodes")]
    NoNodes,
}

/// Orders the nodes to restart: data nodes that are not master-eligible
/// first, then other non-master nodes, then master-eligible nodes, and the
/// elected master last; by name within each group. `host_of` maps a node to
/// the `{host}` of the restart action.
pub fn plan_order(
    nodes: &[ClusterNode],
    target: &Target,
    host_of: impl Fn(&ClusterNode) -> String,
) -> Result<Vec<PlannedNode>, PlanError> {
    if nodes.is_empty() {
        return Err(PlanError::NoNodes);
    }
    let mut chosen: Vec<&ClusterNode> = match target {
        Target::All => nodes.iter().collect(),
        Target::Node(name) => {
            let found = nodes.iter().find(|node| &node.name == name);
            vec![found.ok_or_else(|| PlanError::UnknownNode(name.clone()))?]
        }
    };
    let group = |node: &ClusterNode| -> u8 {
        if node.elected_master {
            3
        } else if node.is_master_eligible() {
            2
        } else if node.is_data() {
            0
        } else {
            1
        }
    };
    chosen.sort_by(|a, b| group(a).cmp(&group(b)).then_with(|| a.name.cmp(&b.name)));
    Ok(chosen
        .into_iter()
        .map(|node| PlannedNode {
            name: node.name.clone(),
            host: host_of(node),
            roles: node.roles.clone(),
            elected_master: node.elected_master,
        })
        .collect())
}

/// The allocation setting as it was before the roll, to put back afterwards.
/// `None` means "not set", which is restored by resetting it (`null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationSetting {
    /// `persistent` value of `cluster.routing.allocation.enable`.
    pub persistent: Option<String>,
    /// `transient` value, which wins over the persistent one when set.
    pub transient: Option<String>,
}

/// `_cluster/health`, the fields opsbot shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterHealth {
    /// Cluster name.
    pub cluster_name: String,
    /// green, yellow or red.
    pub status: HealthStatus,
    /// Nodes in the cluster.
    pub number_of_nodes: u64,
    /// Data nodes in the cluster.
    pub number_of_data_nodes: u64,
    /// Active primary shards.
    pub active_primary_shards: u64,
    /// Active shards.
    pub active_shards: u64,
    /// Relocating shards.
    pub relocating_shards: u64,
    /// Initializing shards.
    pub initializing_shards: u64,
    /// Unassigned shards.
    pub unassigned_shards: u64,
    /// Active shards, percent.
    #[serde(default)]
    pub active_shards_percent_as_number: f64,
}

/// A row of `_cat/shards`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRow {
    /// Index name.
    pub index: String,
    /// Shard number.
    pub shard: String,
    /// `p` or `r`.
    pub prirep: String,
    /// STARTED, RELOCATING, INITIALIZING, UNASSIGNED.
    pub state: String,
    /// Documents.
    pub docs: Option<String>,
    /// Store size in bytes.
    pub store: Option<String>,
    /// Node name.
    pub node: Option<String>,
}

/// Where one copy of a shard is, read from a `_cat/shards` row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShardCopy<'a> {
    state: &'a str,
    /// The node holding it (the source of a relocation).
    node: Option<&'a str>,
    /// The node a relocating copy moves to.
    target: Option<&'a str>,
}

impl ShardRow {
    /// The copy's node and, while it relocates, its target: `_cat/shards`
    /// writes a relocating copy as `source -> ip id target`.
    fn copy(&self) -> ShardCopy<'_> {
        let node = self
            .node
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let (node, target) = match node.and_then(|text| text.split_once(" -> ")) {
            Some((source, rest)) => (Some(source.trim()), rest.split_whitespace().last()),
            None => (node, None),
        };
        ShardCopy {
            state: self.state.as_str(),
            node,
            target,
        }
    }

    /// `index[shard]`.
    pub fn shard_name(&self) -> String {
        format!("{}[{}]", self.index, self.shard)
    }
}

/// Shards on the move and shards without a home, from `_cat/shards`: what a
/// yellow or red cluster is busy with, per node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardActivity {
    /// Initializing copies per node (recoveries, new replicas).
    pub initializing: BTreeMap<String, u64>,
    /// Relocating copies per (from, to) node.
    pub relocating: BTreeMap<(String, String), u64>,
    /// Unassigned copies.
    pub unassigned: u64,
}

impl ShardActivity {
    /// Counts the activity in a shard table.
    pub fn of(rows: &[ShardRow]) -> ShardActivity {
        let mut activity = ShardActivity::default();
        for row in rows {
            let copy = row.copy();
            let node = copy.node.unwrap_or("?").to_string();
            match copy.state {
                "INITIALIZING" => *activity.initializing.entry(node).or_default() += 1,
                "RELOCATING" => {
                    let target = copy.target.unwrap_or("?").to_string();
                    *activity.relocating.entry((node, target)).or_default() += 1;
                }
                "UNASSIGNED" => activity.unassigned += 1,
                _ => {}
            }
        }
        activity
    }

    /// Whether no shard is initializing or relocating (unassigned ones may
    /// be waiting for good: that is what a settled yellow is).
    pub fn is_quiet(&self) -> bool {
        self.initializing.is_empty() && self.relocating.is_empty()
    }

    /// What moves, busiest node first, at most three places named:
    /// `3 shards initializing on warm-2, 1 shard relocating from hot-1 to hot-2`.
    pub fn describe_moves(&self) -> String {
        let mut moves: Vec<(u64, String)> = self
            .initializing
            .iter()
            .map(|(node, count)| (*count, format!("initializing on {node}")))
            .chain(
                self.relocating
                    .iter()
                    .map(|((from, to), count)| (*count, format!("relocating from {from} to {to}"))),
            )
            .collect();
        moves.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut parts: Vec<String> = moves
            .iter()
            .take(3)
            .map(|(count, what)| format!("{} {what}", shards(*count)))
            .collect();
        if moves.len() > 3 {
            let rest: u64 = moves[3..].iter().map(|(count, _)| count).sum();
            parts.push(format!("{} more elsewhere", shards(rest)));
        }
        parts.join(", ")
    }

    /// What moves and what has no home: `3 shards initializing on warm-2,
    /// 2 shards unassigned`; empty when nothing does.
    pub fn describe(&self) -> String {
        let mut text = self.describe_moves();
        if self.unassigned > 0 {
            if !text.is_empty() {
                text.push_str(", ");
            }
            text.push_str(&format!("{} unassigned", shards(self.unassigned)));
        }
        text
    }
}

/// `1 shard`, `3 shards`.
fn shards(count: u64) -> String {
    format!("{count} shard{}", if count == 1 { "" } else { "s" })
}

/// The shards `node` holds the only started copy of while another copy of
/// the same shard exists but is not started (unassigned, initializing): what
/// a yellow cluster would lose, as `index[shard]`, sorted. A shard of an
/// index without replicas has a single copy by design and is not listed
/// (a green cluster rolls as it always did).
pub fn only_started_copies(rows: &[ShardRow], node: &str) -> Vec<String> {
    // Per shard: (copies, active copies, whether one active copy is on `node`).
    let mut shards: BTreeMap<(&str, &str), (u32, u32, bool)> = BTreeMap::new();
    for row in rows {
        let copy = row.copy();
        let entry = shards
            .entry((row.index.as_str(), row.shard.as_str()))
            .or_default();
        entry.0 += 1;
        // A relocating copy still serves until its target has started.
        if matches!(copy.state, "STARTED" | "RELOCATING") {
            entry.1 += 1;
            entry.2 |= copy.node == Some(node);
        }
    }
    let mut only: Vec<(&str, u32, String)> = shards
        .into_iter()
        .filter(|(_, (copies, active, here))| *here && *active == 1 && *copies > 1)
        .map(|((index, shard), _)| {
            (
                index,
                shard.parse::<u32>().unwrap_or(u32::MAX),
                format!("{index}[{shard}]"),
            )
        })
        .collect();
    only.sort();
    only.into_iter().map(|(_, _, name)| name).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A node with a fixed uptime and an ip derived from its name.
    pub(crate) fn node(name: &str, roles: &str, elected: bool) -> ClusterNode {
        ClusterNode {
            name: name.to_string(),
            ip: format!("10.0.0.{}", name.len()),
            roles: roles.to_string(),
            elected_master: elected,
            uptime_ms: Some(1_000_000),
        }
    }

    /// Six nodes of every kind, the elected master among them.
    pub(crate) fn cluster_nodes() -> Vec<ClusterNode> {
        vec![
            node("master-1", "m", true),
            node("master-2", "m", false),
            node("warm-1", "w", false),
            node("coord-1", "", false),
            node("hot-2", "hs", false),
            node("hot-1", "dh", false),
        ]
    }

    #[test]
    fn plan_puts_data_nodes_first_and_elected_master_last() {
        let plan = plan_order(&cluster_nodes(), &Target::All, |n| n.ip.clone()).expect("plan");
        let names: Vec<&str> = plan.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "hot-1", "hot-2", "warm-1", "coord-1", "master-2", "master-1"
            ]
        );
    }

    #[test]
    fn plan_of_unknown_node_is_an_error() {
        let error = plan_order(&cluster_nodes(), &Target::Node("nope".into()), |n| {
            n.ip.clone()
        });
        assert_eq!(error, Err(PlanError::UnknownNode("nope".into())));
        assert_eq!(
            plan_order(&[], &Target::All, |n| n.ip.clone()),
            Err(PlanError::NoNodes)
        );
    }

    /// A `_cat/shards` row without docs and store.
    pub(crate) fn row(
        index: &str,
        shard: &str,
        prirep: &str,
        state: &str,
        node: Option<&str>,
    ) -> ShardRow {
        ShardRow {
            index: index.to_string(),
            shard: shard.to_string(),
            prirep: prirep.to_string(),
            state: state.to_string(),
            docs: None,
            store: None,
            node: node.map(str::to_string),
        }
    }

    #[test]
    fn activity_names_the_nodes_shards_move_on() {
        let rows = [
            row("logs", "0", "p", "STARTED", Some("hot-1")),
            row("logs", "0", "r", "INITIALIZING", Some("warm-2")),
            row("logs", "1", "r", "INITIALIZING", Some("warm-2")),
            row("logs", "2", "r", "INITIALIZING", Some("warm-2")),
            row("logs", "3", "r", "INITIALIZING", Some("hot-1")),
            row(
                "logs",
                "4",
                "p",
                "RELOCATING",
                Some("hot-1 -> 10.0.0.7 Kd0xY2tBQqm hot-2"),
            ),
            row("logs", "5", "r", "UNASSIGNED", None),
        ];
        let activity = ShardActivity::of(&rows);
        assert!(!activity.is_quiet());
        assert_eq!(activity.unassigned, 1);
        assert_eq!(
            activity.describe_moves(),
            "3 shards initializing on warm-2, 1 shard initializing on hot-1, 1 shard relocating from hot-1 to hot-2"
        );
        assert!(
            activity
                .describe()
                .ends_with("to hot-2, 1 shard unassigned")
        );
        let quiet = ShardActivity::of(&[rows[0].clone(), rows[6].clone()]);
        assert!(quiet.is_quiet());
        assert_eq!(quiet.describe(), "1 shard unassigned");
    }

    #[test]
    fn only_started_copy_is_a_started_copy_whose_others_are_not() {
        let rows = [
            // replica unassigned: hot-1 holds the only started copy
            row("logs", "10", "p", "STARTED", Some("hot-1")),
            row("logs", "10", "r", "UNASSIGNED", None),
            // replica recovering from hot-1: still the only started copy
            row("logs", "2", "p", "STARTED", Some("hot-1")),
            row("logs", "2", "r", "INITIALIZING", Some("hot-2")),
            // both copies started: safe
            row("logs", "1", "p", "STARTED", Some("hot-1")),
            row("logs", "1", "r", "STARTED", Some("hot-2")),
            // no replicas configured: one copy by design, not listed
            row("single", "0", "p", "STARTED", Some("hot-1")),
            // relocating away from hot-1, replica unassigned: still only here
            row(
                "metrics",
                "0",
                "p",
                "RELOCATING",
                Some("hot-1 -> 10.0.0.9 abc hot-3"),
            ),
            row("metrics", "0", "r", "UNASSIGNED", None),
            // the only started copy is elsewhere
            row("other", "0", "r", "STARTED", Some("hot-2")),
            row("other", "0", "p", "UNASSIGNED", None),
        ];
        assert_eq!(
            only_started_copies(&rows, "hot-1"),
            ["logs[2]", "logs[10]", "metrics[0]"]
        );
        assert_eq!(only_started_copies(&rows, "hot-2"), ["other[0]"]);
        assert!(only_started_copies(&rows, "hot-3").is_empty());
    }
}
