//! Day-by-day simulation of where the shards of daily indexes land.
//!
//! Each day a new index is created on the hot tier; indexes age into warm and
//! cold (shrunk on entering warm when the plan says so) and are deleted after
//! the retention. Every shard copy is placed the way Elasticsearch's balanced
//! allocator would place it within the tier:
//!
//! - never two copies of the same shard on one node (same-shard decider);
//! - never on a node whose disk would pass the low watermark (disk decider);
//! - otherwise on the node with the lowest weight
//!   `0.45 * shards + 0.55 * shards of this index + 2e-11 * disk bytes`
//!   (`cluster.routing.allocation.balance.shard`, `.index` and, from 8.6,
//!   `.disk_usage` defaults), ties to the first node.
//!
//! Primaries are placed before replicas, as the allocator does. Later
//! rebalancing moves are not modelled: the allocation above already keeps
//! tiers balanced when the rules allow it. Pure: no clock, no I/O.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::PlanError;
use crate::input::{PlanInput, Tier, Workload};
use crate::plan::{MAX_PRIMARIES_PER_INDEX, Plan};
use crate::rules::ceil_div;
use crate::units::ByteSize;

/// The largest simulation (nodes x days) that still reports in seconds.
pub const MAX_NODE_DAYS: u64 = 1_000_000;

const SHARD_BALANCE: f64 = 0.45;
const INDEX_BALANCE: f64 = 0.55;
const DISK_BALANCE_PER_BYTE: f64 = 2e-11;

/// A simulated data node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimNode {
    /// Name, `hot-1`, `warm-2`, ...
    pub name: String,
    /// Tier of the node.
    pub tier: Tier,
    /// Disk of the node.
    pub disk: ByteSize,
}

/// One node at the end of one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeDay {
    /// Shard copies on the node.
    pub shards: u64,
    /// Bytes stored on the node.
    pub disk: ByteSize,
}

/// The state at the end of one day (day 1 = the day the first index is full).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayReport {
    /// Day number, from 1.
    pub day: u32,
    /// One entry per node, in the order of [`Simulation::nodes`].
    pub nodes: Vec<NodeDay>,
    /// Shard copies of live indexes that no node could take (they stay
    /// unassigned until their index moves on or is deleted).
    pub unassigned: u64,
}

/// The spread of one tier on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Imbalance {
    /// Day number.
    pub day: u32,
    /// Tier.
    pub tier: Tier,
    /// Fewest shard copies on a node of the tier.
    pub min_shards: u64,
    /// Most shard copies on a node of the tier.
    pub max_shards: u64,
    /// Least disk used on a node of the tier.
    pub min_disk: ByteSize,
    /// Most disk used on a node of the tier.
    pub max_disk: ByteSize,
    /// Most disk used divided by the tier's mean (1.0 = perfectly even).
    pub disk_ratio: f64,
}

/// The whole simulation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulation {
    /// The nodes, hot first.
    pub nodes: Vec<SimNode>,
    /// One report per simulated day.
    pub days: Vec<DayReport>,
    /// The day and tier with the largest disk ratio.
    pub worst_disk: Option<Imbalance>,
    /// The day and tier with the largest spread of shard counts.
    pub worst_shards: Option<Imbalance>,
    /// Fraction of a node's disk at its highest point over all days.
    pub peak_disk_fraction: f64,
}

#[derive(Debug)]
struct NodeState {
    shards: u64,
    disk: u64,
    /// Copies per live index, keyed by the index's creation day.
    shards_per_index: HashMap<u32, u64>,
}

#[derive(Debug)]
struct SimIndex {
    created_day: u32,
    tier: Option<Tier>,
    shard_size: u64,
    /// For each shard, the nodes holding its copies.
    placements: Vec<Vec<usize>>,
    /// Copies of this index that no node could take.
    unassigned: u64,
}

struct Simulator<'a> {
    input: &'a PlanInput,
    nodes: Vec<SimNode>,
    state: Vec<NodeState>,
}

impl Simulator<'_> {
    fn remove(&mut self, index: &mut SimIndex) {
        for copies in &index.placements {
            for &node in copies {
                let state = &mut self.state[node];
                state.shards -= 1;
                state.disk -= index.shard_size;
                state.shards_per_index.remove(&index.created_day);
            }
        }
        index.placements.clear();
        index.unassigned = 0;
    }

    fn place(&mut self, index: &mut SimIndex, tier: Tier, shards: u64) {
        let index_id = index.created_day;
        let copies = 1 + u64::from(self.input.replicas);
        index.placements = vec![Vec::new(); usize::try_from(shards).unwrap_or(0)];
        let tier_nodes: Vec<usize> = (0..self.nodes.len())
            .filter(|&node| self.nodes[node].tier == tier)
            .collect();
        for _copy in 0..copies {
            for shard in 0..index.placements.len() {
                let chosen = tier_nodes
                    .iter()
                    .copied()
                    .filter(|node| !index.placements[shard].contains(node))
                    .filter(|&node| {
                        let limit = self.nodes[node].disk.bytes() as f64 * self.input.watermark_low;
                        (self.state[node].disk + index.shard_size) as f64 <= limit
                    })
                    .min_by(|&left, &right| {
                        self.weight(left, index_id)
                            .total_cmp(&self.weight(right, index_id))
                            .then(left.cmp(&right))
                    });
                match chosen {
                    Some(node) => {
                        let state = &mut self.state[node];
                        state.shards += 1;
                        state.disk += index.shard_size;
                        *state.shards_per_index.entry(index_id).or_insert(0) += 1;
                        index.placements[shard].push(node);
                    }
                    None => index.unassigned += 1,
                }
            }
        }
    }

    fn weight(&self, node: usize, index_id: u32) -> f64 {
        let state = &self.state[node];
        SHARD_BALANCE * state.shards as f64
            + INDEX_BALANCE * state.shards_per_index.get(&index_id).copied().unwrap_or(0) as f64
            + DISK_BALANCE_PER_BYTE * state.disk as f64
    }
}

/// The simulated nodes for `input`: `hot-1..`, `warm-1..`, `cold-1..`.
pub fn sim_nodes(input: &PlanInput) -> Vec<SimNode> {
    Tier::ALL
        .into_iter()
        .flat_map(|tier| {
            let spec = input.tier(tier);
            (1..=spec.nodes).map(move |number| SimNode {
                name: format!("{tier}-{number}"),
                tier,
                disk: spec.disk,
            })
        })
        .collect()
}

/// Simulates `days` days (the retention when `None`) of daily indexes with
/// the plan's primary count. Only time-based workloads can be simulated.
pub fn simulate(
    input: &PlanInput,
    plan: &Plan,
    days: Option<u32>,
) -> Result<Simulation, PlanError> {
    if !matches!(input.workload, Workload::TimeBased { .. }) {
        return Err(PlanError::invalid(
            "workload",
            "simulate needs a time_based workload (a growing index does not age across tiers)",
        ));
    }
    let retention = input.retention();
    let days = days.unwrap_or(retention.total_days());
    if days == 0 {
        return Err(PlanError::invalid("days", "simulate at least one day"));
    }
    if plan.primaries > MAX_PRIMARIES_PER_INDEX {
        return Err(PlanError::invalid(
            "primaries",
            format!(
                "{} primaries per index cannot be simulated: Elasticsearch rejects more than {MAX_PRIMARIES_PER_INDEX}",
                plan.primaries
            ),
        ));
    }
    let node_count: u64 = Tier::ALL
        .into_iter()
        .map(|tier| u64::from(input.tier(tier).nodes))
        .sum();
    if node_count.saturating_mul(u64::from(days)) > MAX_NODE_DAYS {
        return Err(PlanError::invalid(
            "days",
            format!(
                "{days} days x {node_count} nodes is too large to simulate (at most {MAX_NODE_DAYS} node-days)"
            ),
        ));
    }
    let nodes = sim_nodes(input);
    let state = nodes
        .iter()
        .map(|_| NodeState {
            shards: 0,
            disk: 0,
            shards_per_index: HashMap::new(),
        })
        .collect();
    let mut simulator = Simulator {
        input,
        nodes,
        state,
    };
    let index_size = input.index_primary_size().bytes();
    let mut indexes: Vec<SimIndex> = Vec::new();
    let mut reports = Vec::new();
    for day in 0..days {
        for index in &mut indexes {
            let Some(current) = index.tier else {
                continue;
            };
            let next = retention.tier_at_age(day - index.created_day);
            if next == Some(current) {
                continue;
            }
            simulator.remove(index);
            index.tier = next;
            if let Some(tier) = next {
                // Leaving hot means entering warm or cold; a planned shrink
                // happens on entering warm, which always comes before cold.
                let shards = plan.shrink_to.unwrap_or(plan.primaries);
                index.shard_size = ceil_div(index_size, shards);
                simulator.place(index, tier, shards);
            }
        }
        let mut index = SimIndex {
            created_day: day,
            tier: Some(Tier::Hot),
            shard_size: ceil_div(index_size, plan.primaries),
            placements: Vec::new(),
            unassigned: 0,
        };
        simulator.place(&mut index, Tier::Hot, plan.primaries);
        // Deleted indexes are dropped so each day costs the live ones only.
        indexes.retain(|index| index.tier.is_some());
        indexes.push(index);
        reports.push(DayReport {
            day: day + 1,
            nodes: simulator
                .state
                .iter()
                .map(|state| NodeDay {
                    shards: state.shards,
                    disk: ByteSize(state.disk),
                })
                .collect(),
            unassigned: indexes.iter().map(|index| index.unassigned).sum(),
        });
    }
    let (worst_disk, worst_shards, peak_disk_fraction) = summarize(&simulator.nodes, &reports);
    Ok(Simulation {
        nodes: simulator.nodes,
        days: reports,
        worst_disk,
        worst_shards,
        peak_disk_fraction,
    })
}

/// Tier spreads per day, reduced to the worst disk ratio and the worst shard
/// spread; also the peak disk fraction of any node.
pub fn summarize(
    nodes: &[SimNode],
    days: &[DayReport],
) -> (Option<Imbalance>, Option<Imbalance>, f64) {
    let mut worst_disk: Option<Imbalance> = None;
    let mut worst_shards: Option<Imbalance> = None;
    let mut peak = 0.0_f64;
    for report in days {
        for tier in Tier::ALL {
            let members: Vec<(&SimNode, &NodeDay)> = nodes
                .iter()
                .zip(&report.nodes)
                .filter(|(node, _)| node.tier == tier)
                .collect();
            if members.is_empty() {
                continue;
            }
            for (node, day) in &members {
                peak = peak.max(day.disk.bytes() as f64 / node.disk.bytes().max(1) as f64);
            }
            let shards = members.iter().map(|(_, day)| day.shards);
            let disks = members.iter().map(|(_, day)| day.disk.bytes());
            let total_disk: u64 = disks.clone().sum();
            if total_disk == 0 {
                continue;
            }
            let mean_disk = total_disk as f64 / members.len() as f64;
            let imbalance = Imbalance {
                day: report.day,
                tier,
                min_shards: shards.clone().min().unwrap_or(0),
                max_shards: shards.max().unwrap_or(0),
                min_disk: ByteSize(disks.clone().min().unwrap_or(0)),
                max_disk: ByteSize(disks.max().unwrap_or(0)),
                disk_ratio: (disks_max(&members) as f64 / mean_disk * 1000.0).round() / 1000.0,
            };
            if worst_disk
                .as_ref()
                .is_none_or(|worst| imbalance.disk_ratio > worst.disk_ratio)
            {
                worst_disk = Some(imbalance.clone());
            }
            let spread = imbalance.max_shards - imbalance.min_shards;
            if worst_shards
                .as_ref()
                .is_none_or(|worst| spread > worst.max_shards - worst.min_shards)
            {
                worst_shards = Some(imbalance);
            }
        }
    }
    (worst_disk, worst_shards, peak)
}

fn disks_max(members: &[(&SimNode, &NodeDay)]) -> u64 {
    members
        .iter()
        .map(|(_, day)| day.disk.bytes())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::TierSpec;
    use crate::plan::plan_shards;
    use proptest::prelude::*;

    fn input(hot: u32, warm: u32, shrink_to: Option<u32>) -> PlanInput {
        PlanInput {
            hot: TierSpec {
                nodes: hot,
                ..TierSpec::default()
            },
            warm: TierSpec {
                nodes: warm,
                disk: ByteSize::tb(8),
                ..TierSpec::default()
            },
            shrink_to,
            workload: Workload::TimeBased {
                daily_ingest: ByteSize::gb(300),
                daily_docs: None,
                hot_days: 7,
                warm_days: 30,
                cold_days: 0,
            },
            ..PlanInput::default()
        }
    }

    #[test]
    fn planned_cluster_stays_balanced() {
        let input = input(3, 4, None);
        let plan = plan_shards(&input).expect("valid");
        let simulation = simulate(&input, &plan, None).expect("time based");
        assert_eq!(simulation.days.len(), 37);
        let last = simulation.days.last().expect("37 days");
        let shards: Vec<u64> = last.nodes.iter().map(|node| node.shards).collect();
        assert_eq!(shards, vec![56, 56, 56, 180, 180, 180, 180]);
        assert_eq!(last.nodes[0].disk, ByteSize::gb(1400));
        assert_eq!(last.nodes[3].disk, ByteSize::gb(4500));
        assert_eq!(last.unassigned, 0);
        let worst = simulation.worst_disk.expect("some data");
        assert_eq!(worst.disk_ratio, 1.0);
    }

    #[test]
    fn unplanned_count_is_imbalanced() {
        // 5 primaries x 2 copies cannot spread evenly over 3 hot nodes.
        let input = input(3, 4, None);
        let mut plan = plan_shards(&input).expect("valid");
        plan.primaries = 5;
        let simulation = simulate(&input, &plan, None).expect("time based");
        let worst = simulation.worst_disk.expect("some data");
        assert!(worst.disk_ratio > 1.0, "{worst:?}");
        let worst_shards = simulation.worst_shards.expect("some data");
        assert!(worst_shards.max_shards > worst_shards.min_shards);
    }

    #[test]
    fn shrink_changes_warm_shards_and_growing_is_rejected() {
        let input_with_shrink = input(3, 4, Some(4));
        let plan = plan_shards(&input_with_shrink).expect("valid");
        let simulation = simulate(&input_with_shrink, &plan, Some(10)).expect("time based");
        let last = simulation.days.last().expect("10 days");
        // 3 indexes on warm, 4 shards x 2 copies each, over 4 nodes: 6 each.
        let warm: Vec<u64> = last.nodes[3..].iter().map(|node| node.shards).collect();
        assert_eq!(warm, vec![6, 6, 6, 6]);

        let mut growing = input(3, 0, None);
        growing.workload = Workload::Growing {
            expected_size: ByteSize::gb(10),
            expected_docs: None,
        };
        let plan = plan_shards(&growing).expect("valid");
        assert!(simulate(&growing, &plan, None).is_err());
    }

    #[test]
    fn replicas_beyond_nodes_stay_unassigned() {
        let mut input = input(2, 0, None);
        input.workload = Workload::TimeBased {
            daily_ingest: ByteSize::gb(10),
            daily_docs: None,
            hot_days: 2,
            warm_days: 0,
            cold_days: 0,
        };
        input.replicas = 2;
        let plan = plan_shards(&input).expect("valid");
        let simulation = simulate(&input, &plan, None).expect("time based");
        // One replica of each shard finds no third node; yesterday's index
        // still misses its copies on day 2.
        assert_eq!(simulation.days[0].unassigned, plan.primaries);
        assert_eq!(simulation.days[1].unassigned, 2 * plan.primaries);
    }

    proptest! {
        #[test]
        fn every_copy_is_placed_or_counted(hot in 1_u32..6, warm in 1_u32..6, replicas in 0_u32..3, primaries in 1_u64..13) {
            let mut input = input(hot, warm, None);
            input.replicas = replicas;
            input.workload = Workload::TimeBased {
                daily_ingest: ByteSize::gb(10),
                daily_docs: None,
                hot_days: 2,
                warm_days: 3,
                cold_days: 0,
            };
            let mut plan = plan_shards(&input).expect("valid");
            plan.primaries = primaries;
            let simulation = simulate(&input, &plan, Some(8)).expect("time based");
            let copies = primaries * (1 + u64::from(replicas));
            for report in &simulation.days {
                let live_indexes = u64::from(report.day.min(5));
                let placed: u64 = report.nodes.iter().map(|node| node.shards).sum();
                // Unassigned copies are counted for the day they were tried.
                prop_assert!(placed <= live_indexes * copies);
                for (node, day) in simulation.nodes.iter().zip(&report.nodes) {
                    prop_assert!(day.disk.bytes() as f64 <= node.disk.bytes() as f64 * input.watermark_low);
                }
            }
            if u64::from(replicas) < u64::from(hot.min(warm)) {
                let last = simulation.days.last().expect("8 days");
                let placed: u64 = last.nodes.iter().map(|node| node.shards).sum();
                prop_assert_eq!(placed, 5 * copies);
                prop_assert_eq!(last.unassigned, 0);
            }
        }
    }
}
