//! Analysis of a live cluster for `check`: parse the `_cat` and `_settings`
//! responses (as JSON values) and report what breaks the shard rules.
//!
//! Pure: the binary fetches `_cat/nodes`, `_cat/nodeattrs`, `_cat/shards`,
//! `_cat/allocation`, `_settings` and `_cluster/settings`; this module never
//! talks to the cluster. It reads only fields of the official REST API that
//! are the same in Elasticsearch 7.17, 8.x, 9.x and OpenSearch 2.x.

//!
//! [`parse`] reads the responses into the types below.

pub mod parse;

pub use parse::{
    add_allocation, add_node_attributes, parse_cat_nodes, parse_cat_shards, parse_index_settings,
    parse_max_shards_per_node,
};

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::input::Tier;
use crate::plan::{Finding, LUCENE_MAX_DOCS, Severity, heap_shard_limit};
use crate::units::ByteSize;

/// `cluster.max_shards_per_node` when the cluster does not report it.
pub const DEFAULT_MAX_SHARDS_PER_NODE: u64 = 1000;

/// A node as `_cat/nodes`, `_cat/nodeattrs` and `_cat/allocation` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Role letters from `_cat/nodes` (`node.role`), e.g. `dim` or `hs`.
    pub roles: String,
    /// Custom attributes (`node.attr.*`).
    pub attributes: BTreeMap<String, String>,
    /// Maximum heap.
    pub heap_max: Option<ByteSize>,
    /// Disk of the data path.
    pub disk_total: Option<ByteSize>,
    /// Disk used, as a percentage.
    pub disk_percent: Option<f64>,
}

impl NodeInfo {
    /// True for a node that holds data (any data role).
    pub fn is_data(&self) -> bool {
        self.roles.chars().any(|role| "dhwcsf".contains(role))
    }

    /// The node's tier label: the value of `tier_attribute` when the node has
    /// it, else its data-tier role (`hot`, `warm`, `cold`, `content`,
    /// `frozen`), else `data` for the generic data role.
    pub fn tier_label(&self, tier_attribute: &str) -> String {
        if let Some(value) = self.attributes.get(tier_attribute) {
            return value.clone();
        }
        for (letter, label) in [
            ('h', "hot"),
            ('w', "warm"),
            ('c', "cold"),
            ('s', "content"),
            ('f', "frozen"),
        ] {
            if self.roles.contains(letter) {
                return label.to_string();
            }
        }
        "data".to_string()
    }

    /// True when the node can hold an index that prefers data tier
    /// `tier_role` (`data_hot`, `data_content`, ...).
    fn has_tier_role(&self, tier_role: &str) -> bool {
        let letter = match tier_role {
            "data_hot" => 'h',
            "data_warm" => 'w',
            "data_cold" => 'c',
            "data_content" => 's',
            "data_frozen" => 'f',
            _ => return false,
        };
        self.roles.contains(letter) || self.roles.contains('d')
    }
}

/// A shard copy as `_cat/shards` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardInfo {
    /// Index name.
    pub index: String,
    /// Shard number.
    pub shard: u32,
    /// Primary (`p`) or replica (`r`).
    pub primary: bool,
    /// `STARTED`, `UNASSIGNED`, `RELOCATING`, `INITIALIZING`.
    pub state: String,
    /// Documents in the copy.
    pub docs: Option<u64>,
    /// Store size of the copy.
    pub store: Option<ByteSize>,
    /// The node holding it (`None` when unassigned).
    pub node: Option<String>,
}

/// An index's shard counts and allocation filters from `_settings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexInfo {
    /// Index name.
    pub name: String,
    /// `index.number_of_shards`.
    pub primaries: u64,
    /// `index.number_of_replicas`.
    pub replicas: u64,
    /// `index.routing.allocation.include._tier_preference`, split on commas.
    pub tier_preference: Vec<String>,
    /// `index.routing.allocation.require.<attribute>` filters.
    pub require: BTreeMap<String, String>,
    /// `index.hidden`.
    pub hidden: bool,
}

/// Everything `check` reads from the cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterState {
    /// All nodes.
    pub nodes: Vec<NodeInfo>,
    /// All shard copies.
    pub shards: Vec<ShardInfo>,
    /// All indexes.
    pub indices: Vec<IndexInfo>,
    /// `cluster.max_shards_per_node` when the cluster reports it.
    pub max_shards_per_node: Option<u64>,
}

/// Node counts the cluster is planned to have; replaces the live counts in
/// the divisibility check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlannedNodes {
    /// Hot (and content) nodes.
    pub hot: u32,
    /// Warm nodes.
    pub warm: u32,
    /// Cold nodes.
    pub cold: u32,
}

/// Thresholds and choices for [`check_cluster`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckOptions {
    /// Shards above this store size are oversize.
    pub max_shard_size: ByteSize,
    /// Shards above this many documents are oversize.
    pub max_docs_per_shard: u64,
    /// Overrides the cluster's `cluster.max_shards_per_node`.
    pub max_shards_per_node: Option<u64>,
    /// Heap guidance in shards per GB of heap.
    pub shards_per_heap_gb: u32,
    /// Node attribute naming the tier (`box_type`).
    pub tier_attribute: String,
    /// Planned node counts, when checking against a plan.
    pub planned_nodes: Option<PlannedNodes>,
    /// Only indexes whose names (or data streams, for `.ds-` backing
    /// indexes) start with this prefix (`None`: all).
    pub index_prefix: Option<String>,
    /// Indexes whose primaries store less than this in total are not held to
    /// the divisibility rule: an index smaller than one minimum-size shard has
    /// no reason to spread. Default `10gb`.
    pub min_index_size: ByteSize,
    /// Include system indexes (names starting with `.` other than `.ds-`,
    /// or `index.hidden`).
    pub include_hidden: bool,
    /// A tier is imbalanced when its busiest node holds more than this times
    /// the mean shard count (and at least 2 more than the least busy).
    pub imbalance_ratio: f64,
    /// A tier is imbalanced when disk use differs by more than this many
    /// percentage points between its nodes.
    pub imbalance_disk_points: f64,
    /// Low disk watermark, percent.
    pub watermark_low_percent: f64,
    /// High disk watermark, percent.
    pub watermark_high_percent: f64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            max_shard_size: ByteSize::gb(50),
            max_docs_per_shard: 200_000_000,
            max_shards_per_node: None,
            shards_per_heap_gb: 20,
            tier_attribute: "box_type".to_string(),
            planned_nodes: None,
            index_prefix: None,
            min_index_size: ByteSize::gb(10),
            include_hidden: false,
            imbalance_ratio: 1.2,
            imbalance_disk_points: 20.0,
            watermark_low_percent: 85.0,
            watermark_high_percent: 90.0,
        }
    }
}

/// One index pattern (`logs-*`) in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatternReport {
    /// The pattern.
    pub pattern: String,
    /// Indexes matching it.
    pub indexes: usize,
    /// Distinct primary counts.
    pub primaries: Vec<u64>,
    /// Distinct replica counts.
    pub replicas: Vec<u64>,
    /// Where the indexes live (tier labels).
    pub tiers: Vec<String>,
    /// Node counts the primaries were checked against.
    pub nodes: Vec<u64>,
    /// Largest shard copy.
    pub largest_shard: ByteSize,
    /// Most documents in a shard copy.
    pub most_docs: u64,
    /// Findings about this pattern.
    pub findings: usize,
}

/// One node in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport {
    /// Node name.
    pub name: String,
    /// Tier label.
    pub tier: String,
    /// Shard copies on it.
    pub shards: u64,
    /// Bytes of shard copies on it.
    pub store: ByteSize,
    /// Disk used, percent.
    pub disk_percent: Option<f64>,
    /// Heap guidance limit, when the heap is known.
    pub heap_shard_limit: Option<u64>,
}

/// The result of [`check_cluster`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The limit used for shards per node.
    pub max_shards_per_node: u64,
    /// Per pattern, sorted by pattern.
    pub patterns: Vec<PatternReport>,
    /// Per data node, sorted by tier then name.
    pub nodes: Vec<NodeReport>,
    /// Every finding, most severe first.
    pub findings: Vec<Finding>,
}

/// The pattern an index belongs to: its name with the trailing date or
/// counter replaced by `*` (`logs-2024.01.05` and `logs-000003` give
/// `logs-*`); names without one are their own pattern.
pub fn index_pattern(name: &str) -> String {
    let suffix_start = name
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit() || matches!(c, '-' | '.' | '_'))
        .last()
        .map(|(index, _)| index);
    match suffix_start {
        Some(start) if name[start..].chars().any(|c| c.is_ascii_digit()) && start > 0 => {
            let keep = if name[start..].starts_with(['-', '.', '_']) {
                start + 1
            } else {
                start
            };
            format!("{}*", &name[..keep])
        }
        _ => name.to_string(),
    }
}

/// Where an index can live: the nodes that pass its allocation filters, and
/// a label for them.
fn eligible_nodes<'a>(
    index: &IndexInfo,
    data_nodes: &[&'a NodeInfo],
) -> (String, Vec<&'a NodeInfo>) {
    let mut candidates: Vec<&NodeInfo> = data_nodes
        .iter()
        .copied()
        .filter(|node| {
            index
                .require
                .iter()
                .all(|(attribute, wanted)| node.attributes.get(attribute) == Some(wanted))
        })
        .collect();
    let mut label = index
        .require
        .values()
        .next()
        .cloned()
        .unwrap_or_else(|| "all".to_string());
    // _tier_preference: the first tier in the list that has a node.
    for tier_role in &index.tier_preference {
        let in_tier: Vec<&NodeInfo> = candidates
            .iter()
            .copied()
            .filter(|node| node.has_tier_role(tier_role))
            .collect();
        if !in_tier.is_empty() {
            candidates = in_tier;
            if index.require.is_empty() {
                label = tier_role.trim_start_matches("data_").to_string();
            }
            break;
        }
    }
    (label, candidates)
}

fn planned_count(planned: PlannedNodes, label: &str) -> u64 {
    let tier = match label {
        "warm" => Tier::Warm,
        "cold" => Tier::Cold,
        _ => Tier::Hot,
    };
    u64::from(match tier {
        Tier::Hot => planned.hot,
        Tier::Warm => planned.warm,
        Tier::Cold => planned.cold,
    })
}

fn is_system(index: &IndexInfo) -> bool {
    index.hidden && !index.name.starts_with(".ds-")
        || index.name.starts_with('.') && !index.name.starts_with(".ds-")
}

/// Checks the cluster against the shard rules.
pub fn check_cluster(state: &ClusterState, options: &CheckOptions) -> CheckReport {
    let max_shards_per_node = options
        .max_shards_per_node
        .or(state.max_shards_per_node)
        .unwrap_or(DEFAULT_MAX_SHARDS_PER_NODE);
    let data_nodes: Vec<&NodeInfo> = state.nodes.iter().filter(|node| node.is_data()).collect();
    let selected: Vec<&IndexInfo> = state
        .indices
        .iter()
        .filter(|index| options.include_hidden || !is_system(index))
        .filter(|index| {
            // A data stream's backing indexes (`.ds-<stream>-...`) belong to
            // the stream's prefix.
            let unprefixed = index.name.strip_prefix(".ds-").unwrap_or(&index.name);
            options.index_prefix.as_deref().is_none_or(|prefix| {
                index.name.starts_with(prefix) || unprefixed.starts_with(prefix)
            })
        })
        .collect();
    let selected_names: BTreeSet<&str> = selected.iter().map(|index| index.name.as_str()).collect();
    let mut findings = Vec::new();
    let mut patterns: BTreeMap<String, PatternReport> = BTreeMap::new();
    // (pattern, primaries, nodes, label) -> offending index names
    let mut not_multiple: BTreeMap<(String, u64, u64, String), Vec<String>> = BTreeMap::new();

    let mut primary_store: BTreeMap<&str, u64> = BTreeMap::new();
    for shard in state.shards.iter().filter(|shard| shard.primary) {
        *primary_store.entry(shard.index.as_str()).or_default() +=
            shard.store.map_or(0, ByteSize::bytes);
    }

    for index in &selected {
        let pattern = index_pattern(&index.name);
        let (label, eligible) = eligible_nodes(index, &data_nodes);
        let nodes = match options.planned_nodes {
            Some(planned) => planned_count(planned, &label),
            None => eligible.len() as u64,
        };
        let report = patterns
            .entry(pattern.clone())
            .or_insert_with(|| PatternReport {
                pattern: pattern.clone(),
                indexes: 0,
                primaries: Vec::new(),
                replicas: Vec::new(),
                tiers: Vec::new(),
                nodes: Vec::new(),
                largest_shard: ByteSize(0),
                most_docs: 0,
                findings: 0,
            });
        report.indexes += 1;
        push_unique(&mut report.primaries, index.primaries);
        push_unique(&mut report.replicas, index.replicas);
        push_unique(&mut report.tiers, label.clone());
        push_unique(&mut report.nodes, nodes);
        let big_enough = primary_store.get(index.name.as_str()).copied().unwrap_or(0)
            >= options.min_index_size.bytes();
        if big_enough && nodes > 0 && index.primaries % nodes != 0 {
            not_multiple
                .entry((pattern, index.primaries, nodes, label))
                .or_default()
                .push(index.name.clone());
        }
    }
    for ((pattern, primaries, nodes, label), names) in not_multiple {
        let planned = if options.planned_nodes.is_some() {
            "planned "
        } else {
            ""
        };
        findings.push((
            Some(pattern.clone()),
            Finding {
                severity: Severity::Warning,
                code: "primaries-not-multiple",
                message: format!(
                    "{pattern}: {} index(es) have {primaries} primaries, not a multiple of the {nodes} {planned}{label} nodes that hold them (e.g. {})",
                    names.len(),
                    names[0]
                ),
            },
        ));
    }

    // Shards: sizes, unassigned copies, per-node counts.
    let mut oversize: BTreeMap<String, (usize, ShardInfo)> = BTreeMap::new();
    let mut unassigned: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut per_node: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for shard in &state.shards {
        if let Some(node) = &shard.node {
            let entry = per_node.entry(node.as_str()).or_default();
            entry.0 += 1;
            entry.1 += shard.store.map_or(0, ByteSize::bytes);
        }
        if !selected_names.contains(shard.index.as_str()) {
            continue;
        }
        let pattern = index_pattern(&shard.index);
        if let Some(report) = patterns.get_mut(&pattern) {
            report.largest_shard = report.largest_shard.max(shard.store.unwrap_or_default());
            report.most_docs = report.most_docs.max(shard.docs.unwrap_or(0));
        }
        if shard.state == "UNASSIGNED" {
            let entry = unassigned.entry(pattern.clone()).or_default();
            if shard.primary {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
        let too_big = shard
            .store
            .is_some_and(|store| store > options.max_shard_size)
            || shard
                .docs
                .is_some_and(|docs| docs > options.max_docs_per_shard);
        if too_big && shard.primary {
            let entry = oversize.entry(pattern).or_insert((0, shard.clone()));
            entry.0 += 1;
            if shard.store > entry.1.store {
                entry.1 = shard.clone();
            }
        }
    }
    for (pattern, (count, largest)) in oversize {
        let docs = largest.docs.unwrap_or(0);
        findings.push((
            Some(pattern.clone()),
            Finding {
                severity: if docs > LUCENE_MAX_DOCS {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                code: "oversize-shard",
                message: format!(
                    "{pattern}: {count} primary shard(s) over {} or {} docs; largest {}[{}] with {} and {docs} docs",
                    options.max_shard_size,
                    options.max_docs_per_shard,
                    largest.index,
                    largest.shard,
                    largest.store.unwrap_or_default()
                ),
            },
        ));
    }
    for (pattern, (primaries, replicas)) in unassigned {
        findings.push((
            Some(pattern.clone()),
            Finding {
                severity: if primaries > 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                code: "unassigned-shards",
                message: format!(
                    "{pattern}: {primaries} primary and {replicas} replica shard(s) unassigned"
                ),
            },
        ));
    }

    // Nodes: shard limit, heap guidance, disk watermarks.
    let mut nodes: Vec<NodeReport> = data_nodes
        .iter()
        .map(|node| {
            let (shards, store) = per_node.get(node.name.as_str()).copied().unwrap_or((0, 0));
            NodeReport {
                name: node.name.clone(),
                tier: node.tier_label(&options.tier_attribute),
                shards,
                store: ByteSize(store),
                disk_percent: node.disk_percent,
                heap_shard_limit: node
                    .heap_max
                    .map(|heap| heap_shard_limit(heap, options.shards_per_heap_gb)),
            }
        })
        .collect();
    nodes.sort_by(|left, right| (&left.tier, &left.name).cmp(&(&right.tier, &right.name)));
    let total_shards: u64 = nodes.iter().map(|node| node.shards).sum();
    let cluster_limit = max_shards_per_node * nodes.len() as u64;
    if !nodes.is_empty() && total_shards > cluster_limit {
        findings.push((
            None,
            Finding {
                severity: Severity::Critical,
                code: "cluster-shard-limit",
                message: format!(
                    "{total_shards} shards exceed the cluster limit of {cluster_limit} ({max_shards_per_node} per node x {} data nodes): new indexes will be rejected",
                    nodes.len()
                ),
            },
        ));
    }
    for node in &nodes {
        if node.shards > max_shards_per_node {
            findings.push((
                None,
                Finding {
                    severity: Severity::Critical,
                    code: "shards-per-node",
                    message: format!(
                        "node {} holds {} shards, over the limit of {max_shards_per_node} per node",
                        node.name, node.shards
                    ),
                },
            ));
        }
        if let Some(limit) = node.heap_shard_limit
            && node.shards > limit
        {
            findings.push((
                None,
                Finding {
                    severity: Severity::Warning,
                    code: "heap-per-shard",
                    message: format!(
                        "node {} holds {} shards, more than the {limit} its heap carries at {} shards per GB",
                        node.name, node.shards, options.shards_per_heap_gb
                    ),
                },
            ));
        }
        if let Some(percent) = node.disk_percent {
            let (severity, watermark, name) = if percent >= options.watermark_high_percent {
                (Severity::Critical, options.watermark_high_percent, "high")
            } else if percent >= options.watermark_low_percent {
                (Severity::Warning, options.watermark_low_percent, "low")
            } else {
                continue;
            };
            findings.push((
                None,
                Finding {
                    severity,
                    code: "disk-watermark",
                    message: format!(
                        "node {} disk is {percent}% used, at or over the {watermark}% {name} watermark",
                        node.name
                    ),
                },
            ));
        }
    }
    let mut tiers: BTreeMap<&str, Vec<&NodeReport>> = BTreeMap::new();
    for node in &nodes {
        tiers.entry(node.tier.as_str()).or_default().push(node);
    }
    for (tier, members) in tiers {
        if members.len() < 2 {
            continue;
        }
        let counts: Vec<u64> = members.iter().map(|node| node.shards).collect();
        let (min, max) = (
            counts.iter().copied().min().unwrap_or(0),
            counts.iter().copied().max().unwrap_or(0),
        );
        let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
        if max >= min + 2 && max as f64 > mean * options.imbalance_ratio {
            findings.push((
                None,
                Finding {
                    severity: Severity::Warning,
                    code: "tier-imbalance",
                    message: format!(
                        "{tier} tier: nodes hold {min} to {max} shards (mean {mean:.1})"
                    ),
                },
            ));
        }
        let disks: Vec<f64> = members
            .iter()
            .filter_map(|node| node.disk_percent)
            .collect();
        if disks.len() >= 2 {
            let low = disks.iter().copied().fold(f64::INFINITY, f64::min);
            let high = disks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if high - low > options.imbalance_disk_points {
                findings.push((
                    None,
                    Finding {
                        severity: Severity::Warning,
                        code: "tier-imbalance",
                        message: format!("{tier} tier: disk use ranges from {low}% to {high}%"),
                    },
                ));
            }
        }
    }

    for (pattern, _) in &findings {
        if let Some(report) = pattern
            .as_ref()
            .and_then(|pattern| patterns.get_mut(pattern))
        {
            report.findings += 1;
        }
    }
    let mut findings: Vec<Finding> = findings.into_iter().map(|(_, finding)| finding).collect();
    findings.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    CheckReport {
        max_shards_per_node,
        patterns: patterns.into_values().collect(),
        nodes,
        findings,
    }
}

fn push_unique<T: PartialEq + Ord>(values: &mut Vec<T>, value: T) {
    if !values.contains(&value) {
        values.push(value);
        values.sort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use serde_json::json;

    fn state() -> ClusterState {
        let mut nodes = parse_cat_nodes(&json!([
            {"name": "hot-1", "node.role": "hims", "heap.max": "1073741824"},
            {"name": "hot-2", "node.role": "hims", "heap.max": "1073741824"},
            {"name": "hot-3", "node.role": "hims", "heap.max": "1073741824"},
            {"name": "warm-1", "node.role": "w", "heap.max": "32212254720"},
            {"name": "warm-2", "node.role": "w", "heap.max": "32212254720"},
            {"name": "master", "node.role": "m", "heap.max": "1073741824"}
        ]))
        .expect("nodes");
        add_node_attributes(
            &mut nodes,
            &json!([{"node": "hot-1", "attr": "xpack.installed", "value": "true"}]),
        )
        .expect("attrs");
        add_allocation(
            &mut nodes,
            &json!([
                {"node": "hot-1", "disk.percent": "40", "disk.total": "1000"},
                {"node": "hot-2", "disk.percent": "41", "disk.total": "1000"},
                {"node": "hot-3", "disk.percent": "87", "disk.total": "1000"},
                {"node": "warm-1", "disk.percent": "10"},
                {"node": "warm-2", "disk.percent": "95"},
                {"node": "UNASSIGNED", "shards": "1", "disk.percent": null}
            ]),
        )
        .expect("allocation");
        let mut shard_rows = Vec::new();
        // logs-2024.01.01: 6 primaries on hot (fits 3 nodes), 1 replica.
        for shard in 0..6 {
            for (prirep, offset) in [("p", 0), ("r", 1)] {
                shard_rows.push(json!({
                    "index": "logs-2024.01.01", "shard": shard.to_string(), "prirep": prirep,
                    "state": "STARTED", "docs": "1000", "store": "1000",
                    "node": format!("hot-{}", (shard + offset) % 3 + 1)
                }));
            }
        }
        // logs-2023.12.01: 3 primaries on 2 warm nodes, one oversize.
        for shard in 0..3 {
            shard_rows.push(json!({
                "index": "logs-2023.12.01", "shard": shard, "prirep": "p", "state": "STARTED",
                "docs": "5", "store": if shard == 1 { "60000000000" } else { "10" },
                "node": "warm-1"
            }));
        }
        // orders: one primary with an unassigned replica.
        shard_rows.push(json!({"index": "orders", "shard": "0", "prirep": "p", "state": "STARTED", "docs": "1", "store": "1", "node": "hot-1 -> 10.0.0.2 abc hot-2"}));
        shard_rows.push(json!({"index": "orders", "shard": "0", "prirep": "r", "state": "UNASSIGNED", "docs": null, "store": null, "node": null}));
        let shards = parse_cat_shards(&Value::Array(shard_rows)).expect("shards");
        let indices = parse_index_settings(&json!({
            "logs-2024.01.01": {"settings": {"index.number_of_shards": "6", "index.number_of_replicas": "1",
                "index.routing.allocation.include._tier_preference": "data_hot"}},
            "logs-2023.12.01": {"settings": {"index.number_of_shards": "3", "index.number_of_replicas": "0",
                "index.routing.allocation.include._tier_preference": "data_warm,data_hot"}},
            "orders": {"settings": {"index.number_of_shards": "1", "index.number_of_replicas": "1",
                "index.routing.allocation.include._tier_preference": "data_content"}},
            ".kibana_1": {"settings": {"index.number_of_shards": "7", "index.hidden": "true"}}
        }))
        .expect("settings");
        ClusterState {
            nodes,
            shards,
            indices,
            max_shards_per_node: parse_max_shards_per_node(&json!({
                "persistent": {"cluster.max_shards_per_node": "500"}, "transient": {},
                "defaults": {"cluster.max_shards_per_node": "1000"}
            })),
        }
    }

    fn codes(report: &CheckReport) -> Vec<&'static str> {
        report.findings.iter().map(|finding| finding.code).collect()
    }

    #[test]
    fn patterns_table() {
        let cases = [
            ("logs-2024.01.05", "logs-*"),
            ("logs-000003", "logs-*"),
            ("logs-app-000001", "logs-app-*"),
            (".ds-logs-2024.01.01-000001", ".ds-logs-*"),
            ("orders", "orders"),
            ("orders_v2", "orders_v*"),
            ("2024", "2024"),
        ];
        for (name, pattern) in cases {
            assert_eq!(index_pattern(name), pattern, "{name}");
        }
    }

    #[test]
    fn finds_rule_breaks() {
        let state = state();
        assert_eq!(state.max_shards_per_node, Some(500));
        let report = check_cluster(&state, &CheckOptions::default());
        let mut found = codes(&report);
        found.sort();
        assert_eq!(
            found,
            vec![
                "disk-watermark",
                "disk-watermark",
                "oversize-shard",
                "primaries-not-multiple",
                "tier-imbalance",
                "tier-imbalance",
                "tier-imbalance",
                "unassigned-shards"
            ],
            "{:#?}",
            report.findings
        );
        assert!(report.findings[0].severity == Severity::Critical);
        let patterns: Vec<(&str, &[u64], &[u64])> = report
            .patterns
            .iter()
            .map(|pattern| {
                (
                    pattern.pattern.as_str(),
                    pattern.primaries.as_slice(),
                    pattern.nodes.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            patterns,
            vec![
                ("logs-*", &[3_u64, 6][..], &[2_u64, 3][..]),
                ("orders", &[1][..], &[3][..])
            ]
        );
        let hot_1 = report
            .nodes
            .iter()
            .find(|node| node.name == "hot-1")
            .expect("hot-1");
        // 4 logs copies plus the relocating orders primary.
        assert_eq!(hot_1.shards, 5);
    }

    #[test]
    fn shard_limits_and_planned_nodes() {
        let state = state();
        let options = CheckOptions {
            max_shards_per_node: Some(2),
            planned_nodes: Some(PlannedNodes {
                hot: 4,
                warm: 3,
                cold: 0,
            }),
            include_hidden: true,
            min_index_size: ByteSize(0),
            ..CheckOptions::default()
        };
        let report = check_cluster(&state, &options);
        let found = codes(&report);
        assert!(found.contains(&"cluster-shard-limit"));
        assert!(found.contains(&"shards-per-node"));
        // 6 primaries are not a multiple of 4 planned hot nodes; 3 are a
        // multiple of 3 planned warm nodes; hidden .kibana_1 now counts.
        let messages: Vec<&str> = report
            .findings
            .iter()
            .filter(|finding| finding.code == "primaries-not-multiple")
            .map(|finding| finding.message.as_str())
            .collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages.iter().any(|message| message.contains("6 primaries, not a multiple of the 4 planned hot")));
    }

    #[test]
    fn prefix_selects_data_stream_backing_indexes() {
        let mut state = state();
        state.indices.push(IndexInfo {
            name: ".ds-logs-web-2024.01.01-000001".to_string(),
            primaries: 2,
            replicas: 0,
            tier_preference: vec!["data_hot".to_string()],
            require: BTreeMap::new(),
            hidden: true,
        });
        let options = CheckOptions {
            index_prefix: Some("logs-web".to_string()),
            ..CheckOptions::default()
        };
        let report = check_cluster(&state, &options);
        let patterns: Vec<&str> = report
            .patterns
            .iter()
            .map(|pattern| pattern.pattern.as_str())
            .collect();
        assert_eq!(patterns, vec![".ds-logs-web-*"]);
    }

    #[test]
    fn heap_guidance() {
        let mut state = state();
        for node in &mut state.nodes {
            node.heap_max = Some(ByteSize::mb(100));
        }
        let report = check_cluster(&state, &CheckOptions::default());
        assert!(codes(&report).contains(&"heap-per-shard"));
    }

    #[test]
    fn rejects_malformed_responses() {
        assert!(parse_cat_nodes(&json!({"error": "x"})).is_err());
        assert!(parse_cat_shards(&json!([{"index": "a", "shard": "x", "prirep": "p"}])).is_err());
        assert!(parse_index_settings(&json!({"a": {"settings": {}}})).is_err());
        assert_eq!(parse_max_shards_per_node(&json!({"persistent": {}})), None);
    }
}
