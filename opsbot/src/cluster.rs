//! The cluster model: plain data about an Elasticsearch cluster (health,
//! nodes, shards, the allocation setting) and which nodes a rolling restart
//! touches, in which order.
//!
//! Pure: the Elasticsearch adapter (`crate::es`) fills these types; the roll
//! state machine (`crate::roll`), the renderings (`crate::format`) and the
//! front ends read them. No I/O, no clock, no environment.

use serde::{Deserialize, Serialize};
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
}
