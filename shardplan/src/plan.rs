//! The planner: from a [`PlanInput`] to a [`Plan`] with the primary count,
//! the rule that set each factor and why, per-tier load, and findings.
//!
//! Pure: plain data in, plain data out. No I/O, no clock, no environment.
//!
//! The rules, applied in order (see the crate README for worked examples):
//! 1. a multiple of the hot node count;
//! 2. times `growth_factor` (default 2) so the index still spreads evenly
//!    after the hot tier grows;
//! 3. when indexes move to warm (and cold) nodes unshrunk, a multiple of the
//!    least common multiple of the tier node counts;
//! 4. when a warm-phase shrink is asked for, a multiple of the shrink target
//!    (the shrink API needs the target to divide the primary count);
//! 5. the smallest such multiple that keeps every primary at or under
//!    `max_shard_size` and `max_docs_per_shard`.

use serde::Serialize;

use crate::error::PlanError;
use crate::input::{PlanInput, Tier, Workload};
use crate::rules::{ceil_div, lcm, shrink_targets, smallest_multiple_at_least};
use crate::units::ByteSize;

/// Lucene's hard limit of documents in one shard.
pub const LUCENE_MAX_DOCS: u64 = 2_147_483_519;

/// Elasticsearch rejects an index with more primaries than this
/// (`index.number_of_shards`, bounded by `es.index.max_number_of_shards`).
pub const MAX_PRIMARIES_PER_INDEX: u64 = 1024;

/// An LCM that gives at least this many times the primaries the largest
/// single requirement would give on its own is reported as an explosion.
pub const LCM_EXPLOSION_FACTOR: u64 = 3;

/// Which rule a [`RuleStep`] applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleId {
    /// Primaries are a multiple of the hot node count.
    HotMultiple,
    /// The multiple is scaled by the growth factor.
    Growth,
    /// The multiple covers the warm (and cold) node counts: their LCM.
    TierLcm,
    /// The shrink target divides the primary count.
    ShrinkDivides,
    /// The smallest multiple that keeps shards within size and doc limits.
    ShardSize,
}

/// One applied rule: the multiple the primary count must have afterwards,
/// and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleStep {
    /// The rule.
    pub rule: RuleId,
    /// The primary count must be a multiple of this after the step (for
    /// [`RuleId::ShardSize`]: the chosen primary count).
    pub value: u64,
    /// Why, with the numbers.
    pub reason: String,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing breaks.
    Info,
    /// Works, but against the guidance; will hurt later.
    Warning,
    /// Breaks: rejected indexes, full disks, unassigned shards.
    Critical,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// A check result that needs attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// A stable kebab-case code, e.g. `disk-high-watermark`.
    pub code: &'static str,
    /// What and why, with the numbers.
    pub message: String,
}

impl Finding {
    fn new(severity: Severity, code: &'static str, message: String) -> Self {
        Self {
            severity,
            code,
            message,
        }
    }
}

/// Steady-state load of one tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierLoad {
    /// The tier.
    pub tier: Tier,
    /// Data nodes in the tier.
    pub nodes: u32,
    /// Indexes the tier holds at once.
    pub indexes: u64,
    /// Primary shards of each index on this tier (after a shrink on warm/cold).
    pub primaries_per_index: u64,
    /// Size of one primary shard on this tier.
    pub shard_size: ByteSize,
    /// All shard copies (primaries and replicas) on the tier.
    pub total_shards: u64,
    /// Shard copies on the busiest node when balanced (rounded up).
    pub shards_per_node: u64,
    /// Heap guidance: most shards a node of this tier should hold.
    pub heap_shard_limit: u64,
    /// Stored data per node, replicas included.
    pub data_per_node: ByteSize,
    /// Data per node plus merge headroom: the disk a node needs.
    pub disk_needed_per_node: ByteSize,
    /// Disk per node.
    pub disk_per_node: ByteSize,
    /// `disk_needed_per_node / disk_per_node`.
    pub disk_fraction: f64,
    /// Disk needed per node after one node of the tier is lost and its
    /// copies are rebuilt on the others (`None` with one node).
    pub disk_needed_after_node_loss: Option<ByteSize>,
}

/// Node counts that keep the LCM rule sane, suggested when it explodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSuggestion {
    /// Hot nodes.
    pub hot_nodes: u32,
    /// Warm nodes.
    pub warm_nodes: u32,
    /// Cold nodes.
    pub cold_nodes: u32,
    /// The primary count the rules give with these counts.
    pub primaries: u64,
    /// The primary shard size that gives.
    pub shard_size: ByteSize,
}

/// The result of planning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Base name (template `<name>-*`, policy `<name>-policy`).
    pub name: String,
    /// Primary shards per index.
    pub primaries: u64,
    /// Replicas per primary.
    pub replicas: u32,
    /// Primary size of a full index.
    pub index_size: ByteSize,
    /// Size of one primary shard of a full index.
    pub shard_size: ByteSize,
    /// Documents per primary shard, when the document count is known.
    pub docs_per_shard: Option<u64>,
    /// Primaries after the warm-phase shrink, when one is planned.
    pub shrink_to: Option<u64>,
    /// Every valid shrink target for this primary count.
    pub shrink_targets: Vec<u64>,
    /// The rules in the order applied.
    pub rules: Vec<RuleStep>,
    /// Load per tier in use.
    pub tiers: Vec<TierLoad>,
    /// Every check that needs attention, most severe first.
    pub findings: Vec<Finding>,
    /// Node counts that avoid an LCM explosion (empty when there is none).
    pub suggestions: Vec<NodeSuggestion>,
}

/// The tiers an index lives on unshrunk, with their node counts (hot first).
fn unshrunk_tiers(input: &PlanInput) -> Vec<(Tier, u64)> {
    let retention = input.retention();
    let mut tiers = vec![(Tier::Hot, u64::from(input.hot.nodes))];
    if input.shrink_to.is_none() {
        for tier in [Tier::Warm, Tier::Cold] {
            if retention.days(tier) > 0 {
                tiers.push((tier, u64::from(input.tier(tier).nodes)));
            }
        }
    }
    tiers
}

/// The primary count and the steps that led to it.
struct PrimaryDerivation {
    steps: Vec<RuleStep>,
    primaries: u64,
    /// The multiple of the hot-node and growth rules alone.
    hot_unit: u64,
    /// The primary count the largest single requirement (hot multiple, a
    /// tier's node count or the shrink target) would give on its own, with
    /// the size rule.
    primaries_without_lcm: u64,
}

impl PrimaryDerivation {
    /// How many times more primaries the least common multiple forces than
    /// the largest single requirement would (1 when it costs nothing).
    fn explosion_factor(&self) -> u64 {
        self.primaries / self.primaries_without_lcm.max(1)
    }
}

const PRIMARY_OVERFLOW: PlanError = PlanError::Overflow {
    what: "the primary count",
};

fn derive_primaries(input: &PlanInput) -> Result<PrimaryDerivation, PlanError> {
    let hot_nodes = u64::from(input.hot.nodes);
    let growth = u64::from(input.growth_factor);
    let mut steps = vec![RuleStep {
        rule: RuleId::HotMultiple,
        value: hot_nodes,
        reason: format!(
            "a multiple of the {hot_nodes} hot nodes gives each hot node the same number of primaries of the index being written"
        ),
    }];
    let hot_unit = hot_nodes.checked_mul(growth).ok_or(PRIMARY_OVERFLOW)?;
    if growth > 1 {
        steps.push(RuleStep {
            rule: RuleId::Growth,
            value: hot_unit,
            reason: format!(
                "x{growth} so the index still spreads evenly when the hot tier grows to {hot_unit} nodes"
            ),
        });
    }
    let mut unit = hot_unit;
    let mut largest_requirement = unit;
    let other_tiers: Vec<(Tier, u64)> = unshrunk_tiers(input).into_iter().skip(1).collect();
    if !other_tiers.is_empty() {
        let before = unit;
        let mut names = vec![format!("{unit}")];
        for (_, nodes) in &other_tiers {
            unit = lcm(unit, *nodes).ok_or(PRIMARY_OVERFLOW)?;
            largest_requirement = largest_requirement.max(*nodes);
            names.push(nodes.to_string());
        }
        let tier_words: Vec<String> = other_tiers
            .iter()
            .map(|(tier, nodes)| format!("the {nodes} {tier} nodes"))
            .collect();
        steps.push(RuleStep {
            rule: RuleId::TierLcm,
            value: unit,
            reason: format!(
                "the index moves unshrunk to {}: a multiple of lcm({}) = {unit} stays balanced on every tier{}",
                tier_words.join(" and "),
                names.join(", "),
                if unit == before { " (already one)" } else { "" }
            ),
        });
    }
    if let Some(shrink_to) = input.shrink_to {
        let shrink_to = u64::from(shrink_to);
        let before = unit;
        unit = lcm(unit, shrink_to).ok_or(PRIMARY_OVERFLOW)?;
        largest_requirement = largest_requirement.max(shrink_to);
        steps.push(RuleStep {
            rule: RuleId::ShrinkDivides,
            value: unit,
            reason: format!(
                "the warm-phase shrink to {shrink_to} shards needs a primary count that {shrink_to} divides: lcm({before}, {shrink_to}) = {unit}"
            ),
        });
    }
    let index_size = input.index_primary_size();
    let for_size = ceil_div(index_size.bytes(), input.max_shard_size.bytes());
    let for_docs = input
        .index_docs()
        .map(|docs| ceil_div(docs, input.max_docs_per_shard))
        .unwrap_or(0);
    let at_least = for_size.max(for_docs);
    let primaries = smallest_multiple_at_least(unit, at_least).ok_or(PRIMARY_OVERFLOW)?;
    let primaries_without_lcm =
        smallest_multiple_at_least(largest_requirement, at_least).ok_or(PRIMARY_OVERFLOW)?;
    let what = match input.workload {
        Workload::TimeBased { .. } => format!("{index_size} a day"),
        Workload::Growing { .. } => format!("an index of {index_size}"),
    };
    let mut need = format!(
        "{what} needs at least {for_size} primaries of at most {}",
        input.max_shard_size
    );
    if for_docs > for_size {
        need = format!(
            "{need}, and {for_docs} to stay under {} docs per shard",
            input.max_docs_per_shard
        );
    }
    steps.push(RuleStep {
        rule: RuleId::ShardSize,
        value: primaries,
        reason: format!(
            "{need}; the smallest multiple of {unit} is {primaries}: {} per shard",
            ByteSize(ceil_div(index_size.bytes(), primaries))
        ),
    });
    Ok(PrimaryDerivation {
        steps,
        primaries,
        hot_unit,
        primaries_without_lcm,
    })
}

/// Computes the plan. The input is validated first.
pub fn plan_shards(input: &PlanInput) -> Result<Plan, PlanError> {
    input.validate()?;
    let derivation = derive_primaries(input)?;
    let primaries = derivation.primaries;
    let index_size = input.index_primary_size();
    let shard_size = ByteSize(ceil_div(index_size.bytes(), primaries));
    let docs_per_shard = input.index_docs().map(|docs| ceil_div(docs, primaries));
    let shrink_to = input.shrink_to.map(u64::from);
    let mut findings = Vec::new();

    if primaries > MAX_PRIMARIES_PER_INDEX {
        findings.push(Finding::new(
            Severity::Critical,
            "too-many-primaries",
            format!(
                "{primaries} primaries per index: Elasticsearch rejects more than {MAX_PRIMARIES_PER_INDEX} (index.number_of_shards)"
            ),
        ));
    }
    if shard_size < input.min_shard_size {
        findings.push(Finding::new(
            Severity::Info,
            "small-shards",
            format!(
                "primary shards of {shard_size} are under the {} minimum of the guidance: fewer, larger indexes (rollover by size, or fewer node-count constraints) would waste less heap",
                input.min_shard_size
            ),
        ));
    }
    if let Some(docs) = docs_per_shard
        && docs > LUCENE_MAX_DOCS
    {
        findings.push(Finding::new(
            Severity::Critical,
            "lucene-doc-limit",
            format!("{docs} docs per shard exceed Lucene's limit of {LUCENE_MAX_DOCS}"),
        ));
    }
    if let Some(target) = shrink_to {
        let shrunk_size = ByteSize(ceil_div(index_size.bytes(), target));
        if shrunk_size > input.max_shard_size {
            findings.push(Finding::new(
                Severity::Warning,
                "shrunk-shard-size",
                format!(
                    "shrinking to {target} shards makes {shrunk_size} shards, above max_shard_size {}",
                    input.max_shard_size
                ),
            ));
        }
        if let Some(docs) = input.index_docs() {
            let shrunk_docs = ceil_div(docs, target);
            if shrunk_docs > LUCENE_MAX_DOCS {
                findings.push(Finding::new(
                    Severity::Critical,
                    "lucene-doc-limit",
                    format!(
                        "shrinking to {target} shards puts {shrunk_docs} docs in a shard, above Lucene's limit of {LUCENE_MAX_DOCS}"
                    ),
                ));
            } else if shrunk_docs > input.max_docs_per_shard {
                findings.push(Finding::new(
                    Severity::Warning,
                    "docs-per-shard",
                    format!(
                        "shrinking to {target} shards puts {shrunk_docs} docs in a shard, above max_docs_per_shard {}",
                        input.max_docs_per_shard
                    ),
                ));
            }
        }
        if target >= primaries {
            findings.push(Finding::new(
                Severity::Warning,
                "no-shrink",
                format!(
                    "shrink_to {target} is not below the {primaries} primaries: nothing is shrunk"
                ),
            ));
        }
        let retention = input.retention();
        let copies = 1 + u64::from(input.replicas);
        for tier in [Tier::Warm, Tier::Cold] {
            let nodes = u64::from(input.tier(tier).nodes);
            if retention.days(tier) > 0 && nodes > 0 && (target * copies) % nodes != 0 {
                findings.push(Finding::new(
                    Severity::Warning,
                    "shrink-imbalance",
                    format!(
                        "{} copies of {target} shrunk shards cannot spread evenly over {nodes} {tier} nodes; shrink targets of {primaries} primaries that do: {}",
                        target * copies,
                        join_numbers(
                            &valid_shrink_targets(primaries)
                                .into_iter()
                                .filter(|candidate| (candidate * copies) % nodes == 0)
                                .collect::<Vec<_>>()
                        )
                    ),
                ));
            }
        }
    }

    let tiers = tier_loads(input, primaries)?;
    let mut total_shards: u64 = 0;
    let mut data_nodes = 0;
    for load in &tiers {
        total_shards = total_shards.saturating_add(load.total_shards);
        data_nodes += u64::from(load.nodes);
        check_tier(input, load, &mut findings);
    }
    let cluster_limit = u64::from(input.max_shards_per_node) * data_nodes;
    if total_shards > cluster_limit {
        findings.push(Finding::new(
            Severity::Critical,
            "cluster-shard-limit",
            format!(
                "{total_shards} shards exceed the cluster limit of {cluster_limit} (cluster.max_shards_per_node {} x {data_nodes} data nodes): new indexes will be rejected",
                input.max_shards_per_node
            ),
        ));
    }

    let mut suggestions = Vec::new();
    let explosion_factor = derivation.explosion_factor();
    if explosion_factor >= LCM_EXPLOSION_FACTOR {
        suggestions = suggest_node_counts(input);
        let cause = if shrink_to.is_some() {
            "the shrink target and the hot-node multiple share few factors"
        } else {
            "the tier node counts share few factors"
        };
        let mut message = format!(
            "the least common multiple gives {primaries} primaries of {shard_size}, {explosion_factor}x the {} that the largest single requirement alone needs ({cause})",
            derivation.primaries_without_lcm
        );
        if !suggestions.is_empty() {
            let counts: Vec<String> = suggestions
                .iter()
                .map(|suggestion| {
                    let cold = if input.cold.nodes > 0 {
                        format!(" / cold {}", suggestion.cold_nodes)
                    } else {
                        String::new()
                    };
                    format!(
                        "hot {} / warm {}{cold} -> {} primaries",
                        suggestion.hot_nodes, suggestion.warm_nodes, suggestion.primaries
                    )
                })
                .collect();
            message = format!(
                "{message}; node counts that keep it sane: {}",
                counts.join(", ")
            );
        }
        if shrink_to.is_some() {
            let fitting = valid_shrink_targets(derivation.hot_unit);
            message = format!(
                "{message}; shrink targets that divide the hot multiple {} add no primaries: {}",
                derivation.hot_unit,
                join_numbers(&fitting)
            );
        }
        findings.push(Finding::new(Severity::Warning, "lcm-explosion", message));
    }
    // Most severe first; the order within a severity is the order of checks.
    findings.sort_by_key(|finding| std::cmp::Reverse(finding.severity));

    Ok(Plan {
        name: input.name.clone(),
        primaries,
        replicas: input.replicas,
        index_size,
        shard_size,
        docs_per_shard,
        shrink_to,
        shrink_targets: valid_shrink_targets(primaries),
        rules: derivation.steps,
        tiers,
        findings,
        suggestions,
    })
}

/// The shrink targets of an index that Elasticsearch accepts (none above
/// its primary limit, where the divisor search would also be too slow).
fn valid_shrink_targets(primaries: u64) -> Vec<u64> {
    if primaries > MAX_PRIMARIES_PER_INDEX {
        return Vec::new();
    }
    shrink_targets(primaries)
}

fn join_numbers(numbers: &[u64]) -> String {
    if numbers.is_empty() {
        return "none".to_string();
    }
    numbers
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Disk a node needs for `data` bytes with the merge headroom.
pub fn disk_with_headroom(data: ByteSize, merge_headroom: f64) -> ByteSize {
    // `as` saturates, so an absurd headroom gives u64::MAX, never a panic.
    let headroom = (data.bytes() as f64 * merge_headroom).round() as u64;
    ByteSize(data.bytes().saturating_add(headroom))
}

/// Steady-state load of every tier the workload uses; an error when the
/// counts or sizes do not fit in 64 bits.
pub fn tier_loads(input: &PlanInput, primaries: u64) -> Result<Vec<TierLoad>, PlanError> {
    let copies = 1 + u64::from(input.replicas);
    let index_size = input.index_primary_size().bytes();
    let retention = input.retention();
    let placements: Vec<(Tier, u64, u64)> = match input.workload {
        Workload::Growing { .. } => vec![(Tier::Hot, 1, primaries)],
        Workload::TimeBased { .. } => Tier::ALL
            .into_iter()
            .filter(|tier| retention.days(*tier) > 0)
            .map(|tier| {
                let shards = match (tier, input.shrink_to) {
                    (Tier::Hot, _) | (_, None) => primaries,
                    (_, Some(target)) => u64::from(target),
                };
                (tier, u64::from(retention.days(tier)), shards)
            })
            .collect(),
    };
    placements
        .into_iter()
        .map(|(tier, indexes, primaries_per_index)| {
            let spec = input.tier(tier);
            let nodes = u64::from(spec.nodes).max(1);
            let total_shards = indexes
                .checked_mul(primaries_per_index)
                .and_then(|shards| shards.checked_mul(copies))
                .ok_or(PlanError::Overflow {
                    what: "the shard count of a tier",
                })?;
            let total_data = indexes
                .checked_mul(index_size)
                .and_then(|bytes| bytes.checked_mul(copies))
                .ok_or(PlanError::Overflow {
                    what: "the data size of a tier",
                })?;
            let data_per_node = ByteSize(ceil_div(total_data, nodes));
            let disk_needed_per_node = disk_with_headroom(data_per_node, input.merge_headroom);
            let disk_needed_after_node_loss = (nodes > 1).then(|| {
                disk_with_headroom(
                    ByteSize(ceil_div(total_data, nodes - 1)),
                    input.merge_headroom,
                )
            });
            Ok(TierLoad {
                tier,
                nodes: spec.nodes,
                indexes,
                primaries_per_index,
                shard_size: ByteSize(ceil_div(index_size, primaries_per_index)),
                total_shards,
                shards_per_node: ceil_div(total_shards, nodes),
                heap_shard_limit: heap_shard_limit(spec.heap, input.shards_per_heap_gb),
                data_per_node,
                disk_needed_per_node,
                disk_per_node: spec.disk,
                disk_fraction: disk_needed_per_node.bytes() as f64
                    / spec.disk.bytes().max(1) as f64,
                disk_needed_after_node_loss,
            })
        })
        .collect()
}

/// Most shards a node with `heap` should hold: `shards_per_heap_gb` per GB
/// of heap (rounded down: 512mb at 20 per GB gives 10).
pub fn heap_shard_limit(heap: ByteSize, shards_per_heap_gb: u32) -> u64 {
    let limit = u128::from(heap.bytes()) * u128::from(shards_per_heap_gb)
        / u128::from(ByteSize::gb(1).bytes());
    u64::try_from(limit).unwrap_or(u64::MAX)
}

fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

fn check_tier(input: &PlanInput, load: &TierLoad, findings: &mut Vec<Finding>) {
    let tier = load.tier;
    if u64::from(input.replicas) >= u64::from(load.nodes) {
        findings.push(Finding::new(
            Severity::Critical,
            "unassignable-replicas",
            format!(
                "{} replicas need at least {} {tier} nodes (there are {}): copies of a shard never share a node, so some stay unassigned",
                input.replicas,
                input.replicas + 1,
                load.nodes
            ),
        ));
    }
    if load.shards_per_node > u64::from(input.max_shards_per_node) {
        findings.push(Finding::new(
            Severity::Critical,
            "shards-per-node",
            format!(
                "{} shards per {tier} node exceed cluster.max_shards_per_node {}",
                load.shards_per_node, input.max_shards_per_node
            ),
        ));
    }
    if load.shards_per_node > load.heap_shard_limit {
        findings.push(Finding::new(
            Severity::Warning,
            "heap-per-shard",
            format!(
                "{} shards per {tier} node are more than the {} that {} of heap carries at {} shards per GB",
                load.shards_per_node,
                load.heap_shard_limit,
                input.tier(tier).heap,
                input.shards_per_heap_gb
            ),
        ));
    }
    let needed = format!(
        "{tier} nodes need {} each ({} data + {} merge headroom) of {}",
        load.disk_needed_per_node,
        load.data_per_node,
        percent(input.merge_headroom),
        load.disk_per_node
    );
    if load.disk_fraction > input.watermark_high {
        findings.push(Finding::new(
            Severity::Critical,
            "disk-high-watermark",
            format!(
                "{needed}: {}, above the {} high watermark (shards are moved away)",
                percent(load.disk_fraction),
                percent(input.watermark_high)
            ),
        ));
    } else if load.disk_fraction > input.watermark_low {
        findings.push(Finding::new(
            Severity::Warning,
            "disk-low-watermark",
            format!(
                "{needed}: {}, above the {} low watermark (no new shards are allocated)",
                percent(load.disk_fraction),
                percent(input.watermark_low)
            ),
        ));
    } else if let Some(after_loss) = load.disk_needed_after_node_loss {
        let fraction = after_loss.bytes() as f64 / load.disk_per_node.bytes().max(1) as f64;
        if input.replicas > 0 && fraction > input.watermark_high {
            findings.push(Finding::new(
                Severity::Warning,
                "disk-after-node-loss",
                format!(
                    "after losing one of the {} {tier} nodes the others need {after_loss} each, {} of {}: above the {} high watermark, so the lost copies cannot all be rebuilt",
                    load.nodes,
                    percent(fraction),
                    load.disk_per_node,
                    percent(input.watermark_high)
                ),
            ));
        }
    }
}

/// Node counts near the current ones whose LCM does not explode, nearest
/// first, at most three: hot from the current count up to two more (the hot
/// tier carries the writes, so it is never shrunk), warm within two either
/// way, cold unchanged. Candidates that would fill a disk past the high
/// watermark are left out.
pub fn suggest_node_counts(input: &PlanInput) -> Vec<NodeSuggestion> {
    let retention = input.retention();
    let warm_range: Vec<u32> = if retention.warm_days > 0 {
        (input.warm.nodes.saturating_sub(2).max(1)..=input.warm.nodes.saturating_add(2)).collect()
    } else {
        vec![input.warm.nodes]
    };
    // A tier that already passes the high watermark with the current counts
    // is reported on its own; it must not hide every suggestion.
    let over_watermark = |loads: &[TierLoad], tier: Tier| {
        loads
            .iter()
            .any(|load| load.tier == tier && load.disk_fraction > input.watermark_high)
    };
    let current_loads = derive_primaries(input)
        .and_then(|derivation| tier_loads(input, derivation.primaries))
        .unwrap_or_default();
    let mut candidates = Vec::new();
    for hot_nodes in input.hot.nodes..=input.hot.nodes.saturating_add(2) {
        for &warm_nodes in &warm_range {
            if hot_nodes == input.hot.nodes && warm_nodes == input.warm.nodes {
                continue;
            }
            let mut candidate = input.clone();
            candidate.hot.nodes = hot_nodes;
            candidate.warm.nodes = warm_nodes;
            let Ok(derivation) = derive_primaries(&candidate) else {
                continue;
            };
            if derivation.explosion_factor() >= LCM_EXPLOSION_FACTOR
                || derivation.primaries > MAX_PRIMARIES_PER_INDEX
            {
                continue;
            }
            let Ok(loads) = tier_loads(&candidate, derivation.primaries) else {
                continue;
            };
            if Tier::ALL
                .into_iter()
                .any(|tier| over_watermark(&loads, tier) && !over_watermark(&current_loads, tier))
            {
                continue;
            }
            let distance =
                hot_nodes.abs_diff(input.hot.nodes) + warm_nodes.abs_diff(input.warm.nodes);
            candidates.push((
                distance,
                derivation.primaries,
                NodeSuggestion {
                    hot_nodes,
                    warm_nodes,
                    cold_nodes: input.cold.nodes,
                    primaries: derivation.primaries,
                    shard_size: ByteSize(ceil_div(
                        input.index_primary_size().bytes(),
                        derivation.primaries,
                    )),
                },
            ));
        }
    }
    candidates.sort_by_key(|(distance, primaries, suggestion)| {
        (
            *distance,
            *primaries,
            suggestion.hot_nodes,
            suggestion.warm_nodes,
        )
    });
    candidates
        .into_iter()
        .take(3)
        .map(|(_, _, suggestion)| suggestion)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::TierSpec;
    use proptest::prelude::*;

    fn tier(nodes: u32, disk: ByteSize) -> TierSpec {
        TierSpec {
            nodes,
            disk,
            heap: ByteSize::gb(31),
        }
    }

    /// README example 1: 3 hot, 4 warm, 300gb/day, 7 + 30 days.
    pub(crate) fn example_hot_warm() -> PlanInput {
        PlanInput {
            hot: tier(3, ByteSize::tb(2)),
            warm: tier(4, ByteSize::tb(8)),
            workload: Workload::TimeBased {
                daily_ingest: ByteSize::gb(300),
                daily_docs: Some(600_000_000),
                hot_days: 7,
                warm_days: 30,
                cold_days: 0,
            },
            ..PlanInput::default()
        }
    }

    fn rule_values(plan: &Plan) -> Vec<(RuleId, u64)> {
        plan.rules
            .iter()
            .map(|step| (step.rule, step.value))
            .collect()
    }

    fn codes(plan: &Plan) -> Vec<&'static str> {
        plan.findings.iter().map(|finding| finding.code).collect()
    }

    #[test]
    fn readme_example_hot_warm() {
        let plan = plan_shards(&example_hot_warm()).expect("valid");
        assert_eq!(
            rule_values(&plan),
            vec![
                (RuleId::HotMultiple, 3),
                (RuleId::Growth, 6),
                (RuleId::TierLcm, 12),
                (RuleId::ShardSize, 12)
            ]
        );
        assert_eq!(plan.primaries, 12);
        assert_eq!(plan.shard_size, ByteSize::gb(25));
        assert_eq!(plan.docs_per_shard, Some(50_000_000));
        let hot = &plan.tiers[0];
        assert_eq!(
            (hot.indexes, hot.total_shards, hot.shards_per_node),
            (7, 168, 56)
        );
        assert_eq!(hot.data_per_node, ByteSize::gb(1400));
        assert_eq!(hot.disk_needed_per_node, ByteSize::gb(1540));
        assert_eq!(hot.disk_needed_after_node_loss, Some(ByteSize::gb(2310)));
        let warm = &plan.tiers[1];
        assert_eq!(
            (warm.indexes, warm.total_shards, warm.shards_per_node),
            (30, 720, 180)
        );
        assert_eq!(warm.data_per_node, ByteSize::gb(4500));
        assert_eq!(warm.disk_needed_per_node, ByteSize::gb(4950));
        assert_eq!(warm.heap_shard_limit, 620);
        // Hot disk is 75.2% used, fine, but losing a hot node overfills the others.
        assert_eq!(codes(&plan), vec!["disk-after-node-loss"]);
    }

    #[test]
    fn readme_example_shrink() {
        let mut input = example_hot_warm();
        input.shrink_to = Some(4);
        let plan = plan_shards(&input).expect("valid");
        assert_eq!(
            rule_values(&plan),
            vec![
                (RuleId::HotMultiple, 3),
                (RuleId::Growth, 6),
                (RuleId::ShrinkDivides, 12),
                (RuleId::ShardSize, 12)
            ]
        );
        assert_eq!(plan.shrink_targets, vec![1, 2, 3, 4, 6]);
        assert_eq!(plan.tiers[1].shards_per_node, 60);
        assert_eq!(plan.tiers[1].shard_size, ByteSize::gb(75));
        assert!(codes(&plan).contains(&"shrunk-shard-size"));

        // 3 shrunk shards x 2 copies cannot spread evenly over 4 warm nodes.
        input.shrink_to = Some(3);
        let plan = plan_shards(&input).expect("valid");
        assert_eq!(plan.primaries, 6);
        assert!(codes(&plan).contains(&"shrink-imbalance"));
    }

    #[test]
    fn readme_example_lcm_explosion() {
        let mut input = example_hot_warm();
        input.hot.nodes = 7;
        input.warm.nodes = 5;
        let plan = plan_shards(&input).expect("valid");
        assert_eq!(plan.primaries, 70);
        assert_eq!(plan.shard_size.to_human_string(), "4.3gb");
        assert!(codes(&plan).contains(&"lcm-explosion"));
        assert!(codes(&plan).contains(&"small-shards"));
        let suggested: Vec<(u32, u32, u64)> = plan
            .suggestions
            .iter()
            .map(|suggestion| {
                (
                    suggestion.hot_nodes,
                    suggestion.warm_nodes,
                    suggestion.primaries,
                )
            })
            .collect();
        assert_eq!(suggested, vec![(7, 4, 28), (7, 7, 14), (8, 4, 16)]);
    }

    #[test]
    fn readme_example_growing_index() {
        let input = PlanInput {
            hot: tier(5, ByteSize::tb(4)),
            workload: Workload::Growing {
                expected_size: ByteSize::gb(1200),
                expected_docs: None,
            },
            ..PlanInput::default()
        };
        let plan = plan_shards(&input).expect("valid");
        assert_eq!(
            rule_values(&plan),
            vec![
                (RuleId::HotMultiple, 5),
                (RuleId::Growth, 10),
                (RuleId::ShardSize, 30)
            ]
        );
        assert_eq!(plan.shard_size, ByteSize::gb(40));
        assert_eq!(plan.tiers.len(), 1);
        assert_eq!(plan.tiers[0].shards_per_node, 12);
        assert!(plan.findings.is_empty(), "{:?}", plan.findings);
    }

    #[test]
    fn findings_table() {
        type Mutation = fn(&mut PlanInput);
        let cases: [(&str, Mutation, &str); 8] = [
            (
                "hot disk over high watermark",
                |input| input.hot.disk = ByteSize::gb(1600),
                "disk-high-watermark",
            ),
            (
                "hot disk over low watermark",
                |input| input.hot.disk = ByteSize::gb(1750),
                "disk-low-watermark",
            ),
            (
                "too many shards for the cluster",
                |input| input.max_shards_per_node = 100,
                "cluster-shard-limit",
            ),
            (
                "too many shards per warm node",
                |input| input.max_shards_per_node = 150,
                "shards-per-node",
            ),
            (
                "small heap",
                |input| input.warm.heap = ByteSize::gb(8),
                "heap-per-shard",
            ),
            (
                "more primaries than Elasticsearch accepts",
                |input| {
                    // 600 hot x 2 = 1200 primaries; big disks keep the rest quiet.
                    input.hot.nodes = 600;
                    input.warm.nodes = 600;
                },
                "too-many-primaries",
            ),
            (
                "more replicas than nodes",
                |input| input.replicas = 3,
                "unassignable-replicas",
            ),
            (
                "docs beyond the Lucene limit after shrink",
                |input| {
                    input.shrink_to = Some(1);
                    input.max_docs_per_shard = 10_000_000_000;
                    input.workload = Workload::TimeBased {
                        daily_ingest: ByteSize::gb(300),
                        daily_docs: Some(3_000_000_000),
                        hot_days: 7,
                        warm_days: 30,
                        cold_days: 0,
                    };
                },
                "lucene-doc-limit",
            ),
        ];
        for (name, mutate, code) in cases {
            let mut input = example_hot_warm();
            mutate(&mut input);
            let plan = plan_shards(&input).expect(name);
            assert!(codes(&plan).contains(&code), "{name}: {:?}", plan.findings);
        }
    }

    #[test]
    fn lcm_explosion_is_relative_to_the_size_rule() {
        // 7 hot / 5 warm at 5tb a day: the size rule alone needs a multiple
        // of 14 >= 103, i.e. 112; the LCM gives 140 (1.25x): not an explosion.
        let mut input = example_hot_warm();
        input.hot = tier(7, ByteSize::tb(40));
        input.warm = tier(5, ByteSize::tb(100));
        input.workload = Workload::TimeBased {
            daily_ingest: ByteSize::tb(5),
            daily_docs: None,
            hot_days: 7,
            warm_days: 30,
            cold_days: 0,
        };
        let plan = plan_shards(&input).expect("valid");
        assert_eq!(plan.primaries, 140);
        assert!(
            !codes(&plan).contains(&"lcm-explosion"),
            "{:?}",
            plan.findings
        );
        assert!(plan.suggestions.is_empty());
    }

    #[test]
    fn undersized_disks_do_not_hide_node_suggestions() {
        // 6 hot / 9 warm, 500gb a day on default 2tb disks: warm is over the
        // high watermark whatever the counts, and lcm(12, 9) = 36 is 3x the
        // 12 primaries the hot multiple alone gives.
        let input = PlanInput {
            hot: tier(6, ByteSize::tb(2)),
            warm: tier(9, ByteSize::tb(2)),
            workload: Workload::TimeBased {
                daily_ingest: ByteSize::gb(500),
                daily_docs: None,
                hot_days: 7,
                warm_days: 30,
                cold_days: 0,
            },
            ..PlanInput::default()
        };
        let plan = plan_shards(&input).expect("valid");
        assert_eq!(plan.primaries, 36);
        // 7 x 500gb x 2 / 6 = 1166.7gb (1,252,698,794,667 bytes rounded up)
        // per hot node, + 10% merge headroom = 1283.3gb.
        assert_eq!(plan.tiers[0].shards_per_node, 84);
        assert_eq!(plan.tiers[0].data_per_node.bytes(), 1_252_698_794_667);
        assert_eq!(
            plan.tiers[0].disk_needed_per_node.bytes(),
            1_252_698_794_667 + 125_269_879_467
        );
        // 30 x 36 x 2 / 9 = 240 shards per warm node.
        assert_eq!(plan.tiers[1].shards_per_node, 240);
        assert!(codes(&plan).contains(&"disk-high-watermark"));
        assert!(codes(&plan).contains(&"lcm-explosion"));
        let suggested: Vec<(u32, u32, u64)> = plan
            .suggestions
            .iter()
            .map(|suggestion| {
                (
                    suggestion.hot_nodes,
                    suggestion.warm_nodes,
                    suggestion.primaries,
                )
            })
            .collect();
        assert_eq!(suggested, vec![(6, 8, 24), (7, 7, 14), (8, 8, 16)]);
    }

    #[test]
    fn shrink_explosion_suggests_shrink_targets() {
        let mut input = example_hot_warm();
        input.hot.nodes = 6;
        input.shrink_to = Some(9);
        let plan = plan_shards(&input).expect("valid");
        // lcm(12, 9) = 36 against 12 for the hot multiple alone.
        assert_eq!(plan.primaries, 36);
        let explosion = plan
            .findings
            .iter()
            .find(|finding| finding.code == "lcm-explosion")
            .expect("an explosion");
        assert!(
            explosion
                .message
                .ends_with("divide the hot multiple 12 add no primaries: 1, 2, 3, 4, 6"),
            "{}",
            explosion.message
        );
    }

    #[test]
    fn absurd_inputs_are_errors_not_panics() {
        let mut input = example_hot_warm();
        input.replicas = u32::MAX;
        assert_eq!(
            plan_shards(&input),
            Err(PlanError::Overflow {
                what: "the data size of a tier"
            })
        );
        let mut input = example_hot_warm();
        input.hot.nodes = u32::MAX;
        input.warm.nodes = u32::MAX - 1;
        input.growth_factor = u32::MAX;
        assert_eq!(
            plan_shards(&input),
            Err(PlanError::Overflow {
                what: "the primary count"
            })
        );
    }

    #[test]
    fn docs_limit_raises_primaries() {
        let mut input = example_hot_warm();
        input.workload = Workload::TimeBased {
            daily_ingest: ByteSize::gb(100),
            daily_docs: Some(3_000_000_000),
            hot_days: 7,
            warm_days: 30,
            cold_days: 0,
        };
        let plan = plan_shards(&input).expect("valid");
        // 3e9 docs / 200M = 15 primaries, rounded up to a multiple of 12.
        assert_eq!(plan.primaries, 24);
    }

    #[test]
    fn growth_factor_one_skips_the_rule() {
        let mut input = example_hot_warm();
        input.growth_factor = 1;
        let plan = plan_shards(&input).expect("valid");
        assert!(plan.rules.iter().all(|step| step.rule != RuleId::Growth));
        assert_eq!(plan.primaries, 12);
    }

    proptest! {
        #[test]
        fn rules_hold_for_any_cluster(
            hot in 1_u32..12,
            warm in 0_u32..12,
            cold in 0_u32..6,
            growth in 1_u32..4,
            shrink in proptest::option::of(1_u32..8),
            daily_gb in 1_u64..3000,
            docs in proptest::option::of(1_u64..5_000_000_000),
            replicas in 0_u32..3,
        ) {
            let warm_days = if warm > 0 { 10 } else { 0 };
            let cold_days = if cold > 0 { 20 } else { 0 };
            let shrink = if warm_days > 0 { shrink } else { None };
            let input = PlanInput {
                hot: tier(hot, ByteSize::tb(4)),
                warm: tier(warm, ByteSize::tb(8)),
                cold: tier(cold, ByteSize::tb(16)),
                growth_factor: growth,
                shrink_to: shrink,
                replicas,
                workload: Workload::TimeBased {
                    daily_ingest: ByteSize::gb(daily_gb),
                    daily_docs: docs,
                    hot_days: 3,
                    warm_days,
                    cold_days,
                },
                ..PlanInput::default()
            };
            let plan = plan_shards(&input).expect("valid input");
            let primaries = plan.primaries;
            let hot_unit = u64::from(hot) * u64::from(growth);
            prop_assert_eq!(primaries % u64::from(hot), 0);
            prop_assert_eq!(primaries % hot_unit, 0);
            match shrink {
                Some(target) => prop_assert_eq!(primaries % u64::from(target), 0),
                None => {
                    if warm_days > 0 { prop_assert_eq!(primaries % u64::from(warm), 0); }
                    if cold_days > 0 { prop_assert_eq!(primaries % u64::from(cold), 0); }
                }
            }
            prop_assert!(plan.shard_size <= input.max_shard_size);
            if let Some(per_shard) = plan.docs_per_shard {
                prop_assert!(per_shard <= input.max_docs_per_shard);
            }
            // Minimal: one multiple fewer would break the size or docs limit.
            let unit = plan.rules[plan.rules.len() - 2].value;
            if primaries > unit {
                let fewer = primaries - unit;
                let size_ok = ceil_div(daily_gb << 30, fewer) <= input.max_shard_size.bytes();
                let docs_ok = docs.is_none_or(|docs| ceil_div(docs, fewer) <= input.max_docs_per_shard);
                prop_assert!(!(size_ok && docs_ok));
            }
            // Disk maths: every copy of every index sits on some node.
            for load in &plan.tiers {
                let copies = 1 + u64::from(replicas);
                let total = load.indexes * (daily_gb << 30) * copies;
                prop_assert!(load.data_per_node.bytes() * u64::from(load.nodes) >= total);
                prop_assert!(load.data_per_node.bytes() * u64::from(load.nodes) < total + u64::from(load.nodes));
                prop_assert!(load.disk_needed_per_node >= load.data_per_node);
                prop_assert_eq!(load.total_shards, load.indexes * load.primaries_per_index * copies);
            }
        }

        #[test]
        fn more_replicas_never_need_less_disk(replicas in 0_u32..4, daily_gb in 1_u64..2000) {
            let mut input = example_hot_warm();
            input.workload = Workload::TimeBased {
                daily_ingest: ByteSize::gb(daily_gb),
                daily_docs: None,
                hot_days: 7,
                warm_days: 30,
                cold_days: 0,
            };
            input.replicas = replicas;
            let fewer = plan_shards(&input).expect("valid");
            input.replicas = replicas + 1;
            let more = plan_shards(&input).expect("valid");
            for (left, right) in fewer.tiers.iter().zip(&more.tiers) {
                prop_assert!(right.disk_needed_per_node > left.disk_needed_per_node);
            }
        }

        #[test]
        fn any_counts_plan_or_fail_cleanly(
            hot in 1_u32..=u32::MAX,
            warm in 0_u32..=u32::MAX,
            growth in 1_u32..=u32::MAX,
            replicas in 0_u32..=u32::MAX,
            shrink in proptest::option::of(1_u32..=u32::MAX),
            daily_bytes in 1_u64..=u64::MAX,
            days in 1_u32..=u32::MAX,
        ) {
            let input = PlanInput {
                hot: tier(hot, ByteSize(u64::MAX)),
                warm: tier(warm, ByteSize(u64::MAX)),
                growth_factor: growth,
                replicas,
                shrink_to: if warm > 0 { shrink } else { None },
                workload: Workload::TimeBased {
                    daily_ingest: ByteSize(daily_bytes),
                    daily_docs: None,
                    hot_days: days,
                    warm_days: if warm > 0 { days } else { 0 },
                    cold_days: 0,
                },
                ..PlanInput::default()
            };
            // Ok or a typed error; never a panic or a hang.
            if let Err(error) = plan_shards(&input) {
                prop_assert!(matches!(error, PlanError::Overflow { .. }), "{error}");
            }
        }

        #[test]
        fn suggestions_do_not_explode(hot in 1_u32..10, warm in 1_u32..10) {
            let mut input = example_hot_warm();
            input.hot.nodes = hot;
            input.warm.nodes = warm;
            for suggestion in suggest_node_counts(&input) {
                let mut candidate = input.clone();
                candidate.hot.nodes = suggestion.hot_nodes;
                candidate.warm.nodes = suggestion.warm_nodes;
                let derivation = derive_primaries(&candidate).expect("valid");
                prop_assert!(derivation.explosion_factor() < LCM_EXPLOSION_FACTOR);
                prop_assert_eq!(derivation.primaries, suggestion.primaries);
            }
        }
    }
}
