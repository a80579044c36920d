//! The planning input: the YAML file (`--config`) and its defaults.
//!
//! Every field has a documented default; unknown fields are rejected so a typo
//! is an error rather than a silently ignored setting. [`PlanInput::validate`]
//! is pure: it checks ranges and never touches the network or the disk.

use serde::{Deserialize, Serialize};

use crate::error::PlanError;
use crate::units::ByteSize;

/// Everything the planner needs, as read from YAML and/or command-line flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanInput {
    /// Base name: the template matches `<name>-*`, the ILM policy is
    /// `<name>-policy` and the rollover alias is `<name>`. Default `logs`.
    pub name: String,
    /// Hot tier: the nodes that receive writes. `nodes` must be at least 1.
    pub hot: TierSpec,
    /// Warm tier; `nodes: 0` (the default) means no warm tier.
    pub warm: TierSpec,
    /// Cold tier; `nodes: 0` (the default) means no cold tier.
    pub cold: TierSpec,
    /// What is indexed: daily time-based indexes or one growing index.
    pub workload: Workload,
    /// Replicas per primary shard. Default 1.
    pub replicas: u32,
    /// Largest primary shard wanted (rollover trigger and size rule). Default
    /// `50gb`, the top of the official 10-50 GB guidance; use a measured value
    /// from `shardplan measure` when you have one.
    pub max_shard_size: ByteSize,
    /// Shards smaller than this are reported as wasteful. Default `10gb`, the
    /// bottom of the official guidance.
    pub min_shard_size: ByteSize,
    /// Most documents wanted per shard. Default 200,000,000 (official guidance).
    pub max_docs_per_shard: u64,
    /// Multiply the hot-node multiple by this, so indexes still spread evenly
    /// when the hot tier grows. Default 2; 1 turns the rule off.
    pub growth_factor: u32,
    /// Shrink each index to this many primaries when it enters the warm phase.
    /// Must divide the primary count (the planner makes sure it does). Default
    /// none (no shrink).
    pub shrink_to: Option<u32>,
    /// How indexes move between tiers: `data_tiers` (node roles `data_hot`,
    /// `data_warm`, ...; ES 7.10+) or `node_attribute` (custom attribute, see
    /// `tier_attribute`; also OpenSearch). Default `data_tiers`.
    pub tier_routing: TierRouting,
    /// Node attribute used when `tier_routing` is `node_attribute`. Default
    /// `box_type` (nodes started with `node.attr.box_type: hot|warm|cold`).
    pub tier_attribute: String,
    /// Make the template create a data stream instead of an alias-based
    /// rollover index series. Default false.
    pub data_stream: bool,
    /// `cluster.max_shards_per_node` of the cluster. Default 1000 (the
    /// Elasticsearch default).
    pub max_shards_per_node: u32,
    /// Heap guidance: at most this many shards per GB of heap. Default 20
    /// (the long-standing rule of thumb; newer versions need less heap per
    /// shard, so treat it as conservative).
    pub shards_per_heap_gb: u32,
    /// Extra disk reserved for segment merges, as a fraction of the stored
    /// data. Default 0.1 (10%).
    pub merge_headroom: f64,
    /// Low disk watermark: no new shards are allocated to a node above it.
    /// Default 0.85 (85%).
    pub watermark_low: f64,
    /// High disk watermark: shards are moved away from a node above it.
    /// Default 0.90 (90%).
    pub watermark_high: f64,
}

impl Default for PlanInput {
    fn default() -> Self {
        Self {
            name: "logs".to_string(),
            hot: TierSpec::default(),
            warm: TierSpec::default(),
            cold: TierSpec::default(),
            workload: Workload::default(),
            replicas: 1,
            max_shard_size: ByteSize::gb(50),
            min_shard_size: ByteSize::gb(10),
            max_docs_per_shard: 200_000_000,
            growth_factor: 2,
            shrink_to: None,
            tier_routing: TierRouting::DataTiers,
            tier_attribute: "box_type".to_string(),
            data_stream: false,
            max_shards_per_node: 1000,
            shards_per_heap_gb: 20,
            merge_headroom: 0.1,
            watermark_low: 0.85,
            watermark_high: 0.90,
        }
    }
}

/// The data nodes of one tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierSpec {
    /// Number of data nodes in the tier. Default 0 (hot must be set).
    pub nodes: u32,
    /// Usable data disk per node. Default `2tb`.
    pub disk: ByteSize,
    /// JVM heap per node. Default `31gb` (just under the compressed-oops limit).
    pub heap: ByteSize,
}

impl Default for TierSpec {
    fn default() -> Self {
        Self {
            nodes: 0,
            disk: ByteSize::tb(2),
            heap: ByteSize::gb(31),
        }
    }
}

/// How the indexes are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Workload {
    /// One index per day (rollover at one day or at `max_shard_size`), kept
    /// `hot_days` on hot nodes, then `warm_days` on warm, then `cold_days` on
    /// cold, then deleted.
    TimeBased {
        /// Primary data indexed per day, as stored (index size without
        /// replicas). Required.
        daily_ingest: ByteSize,
        /// Documents indexed per day; enables the docs-per-shard checks.
        /// Default unknown.
        #[serde(default)]
        daily_docs: Option<u64>,
        /// Days on the hot tier. Default 7.
        #[serde(default = "default_hot_days")]
        hot_days: u32,
        /// Days on the warm tier. Default 0.
        #[serde(default)]
        warm_days: u32,
        /// Days on the cold tier. Default 0.
        #[serde(default)]
        cold_days: u32,
    },
    /// One index that grows to `expected_size` and stays on the hot tier.
    Growing {
        /// Expected primary size of the index when full. Required.
        expected_size: ByteSize,
        /// Expected documents; enables the docs-per-shard checks. Default
        /// unknown.
        #[serde(default)]
        expected_docs: Option<u64>,
    },
}

fn default_hot_days() -> u32 {
    7
}

impl Default for Workload {
    fn default() -> Self {
        Self::TimeBased {
            daily_ingest: ByteSize(0),
            daily_docs: None,
            hot_days: default_hot_days(),
            warm_days: 0,
            cold_days: 0,
        }
    }
}

/// How ILM moves an index from hot to warm and cold nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierRouting {
    /// Data tiers: `_tier_preference` and ILM's implicit `migrate` action.
    DataTiers,
    /// A custom node attribute (`box_type` by default) and ILM `allocate`.
    NodeAttribute,
}

/// A data tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Receives writes.
    Hot,
    /// Read-mostly, older data.
    Warm,
    /// Rarely read, oldest data.
    Cold,
}

impl Tier {
    /// All tiers, hottest first.
    pub const ALL: [Tier; 3] = [Tier::Hot, Tier::Warm, Tier::Cold];

    /// Lowercase name (`hot`, `warm`, `cold`).
    pub fn name(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The days an index spends on each tier (0 where the tier is not used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days on hot.
    pub hot_days: u32,
    /// Days on warm.
    pub warm_days: u32,
    /// Days on cold.
    pub cold_days: u32,
}

impl Retention {
    /// Total days before deletion.
    pub fn total_days(self) -> u32 {
        self.hot_days + self.warm_days + self.cold_days
    }

    /// Days on `tier`.
    pub fn days(self, tier: Tier) -> u32 {
        match tier {
            Tier::Hot => self.hot_days,
            Tier::Warm => self.warm_days,
            Tier::Cold => self.cold_days,
        }
    }

    /// The tier an index of age `age_days` (0 = created today) lives on, or
    /// `None` once it has been deleted.
    pub fn tier_at_age(self, age_days: u32) -> Option<Tier> {
        if age_days < self.hot_days {
            Some(Tier::Hot)
        } else if age_days < self.hot_days + self.warm_days {
            Some(Tier::Warm)
        } else if age_days < self.total_days() {
            Some(Tier::Cold)
        } else {
            None
        }
    }
}

impl PlanInput {
    /// Parses a YAML document (unknown fields are an error), reporting
    /// every problem serde finds, each at its path.
    pub fn from_yaml(text: &str) -> Result<Self, Vec<crate::yaml_config::ConfigProblem>> {
        crate::yaml_config::parse(text).into_result()
    }

    /// The spec of `tier`.
    pub fn tier(&self, tier: Tier) -> &TierSpec {
        match tier {
            Tier::Hot => &self.hot,
            Tier::Warm => &self.warm,
            Tier::Cold => &self.cold,
        }
    }

    /// Days per tier; a growing index stays on hot forever (`hot_days` 0 here,
    /// meaning "not time-based").
    pub fn retention(&self) -> Retention {
        match self.workload {
            Workload::TimeBased {
                hot_days,
                warm_days,
                cold_days,
                ..
            } => Retention {
                hot_days,
                warm_days,
                cold_days,
            },
            Workload::Growing { .. } => Retention {
                hot_days: 0,
                warm_days: 0,
                cold_days: 0,
            },
        }
    }

    /// Primary size of one index when it is full (one day of ingest, or the
    /// expected size of the growing index).
    pub fn index_primary_size(&self) -> ByteSize {
        match self.workload {
            Workload::TimeBased { daily_ingest, .. } => daily_ingest,
            Workload::Growing { expected_size, .. } => expected_size,
        }
    }

    /// Documents in one full index, when known.
    pub fn index_docs(&self) -> Option<u64> {
        match self.workload {
            Workload::TimeBased { daily_docs, .. } => daily_docs,
            Workload::Growing { expected_docs, .. } => expected_docs,
        }
    }

    /// Checks ranges and combinations; pure. Every problem is reported:
    /// one as itself, several as [`PlanError::Several`].
    pub fn validate(&self) -> Result<(), PlanError> {
        let mut problems = self.problems();
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(PlanError::Several(problems)),
        }
    }

    /// Every range or combination problem of the input; pure.
    pub fn problems(&self) -> Vec<PlanError> {
        let mut problems = Vec::new();
        if self.name.is_empty()
            || self.name.starts_with(['_', '-', '+'])
            || self
                .name
                .chars()
                .any(|c| c.is_ascii_uppercase() || " \"*\\<|,>/?#:".contains(c))
        {
            problems.push(PlanError::invalid(
                "name",
                format!("{:?} is not a valid lowercase index name prefix", self.name),
            ));
        }
        if self.hot.nodes == 0 {
            problems.push(PlanError::invalid(
                "hot.nodes",
                "at least one hot data node is needed (set hot.nodes or --hot-nodes)",
            ));
        }
        if self.growth_factor == 0 {
            problems.push(PlanError::invalid(
                "growth_factor",
                "must be at least 1 (1 turns the growth rule off)",
            ));
        }
        if self.max_shard_size.bytes() == 0 {
            problems.push(PlanError::invalid("max_shard_size", "must be above 0"));
        }
        if self.max_docs_per_shard == 0 {
            problems.push(PlanError::invalid("max_docs_per_shard", "must be above 0"));
        }
        if self.shrink_to == Some(0) {
            problems.push(PlanError::invalid("shrink_to", "must be at least 1"));
        }
        for (field, value) in [
            ("watermark_low", self.watermark_low),
            ("watermark_high", self.watermark_high),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                problems.push(PlanError::invalid(
                    field,
                    format!("{value} is not a fraction in (0, 1]"),
                ));
            }
        }
        if self.watermark_low > self.watermark_high {
            problems.push(PlanError::invalid(
                "watermark_low",
                format!(
                    "{} is above watermark_high {}",
                    self.watermark_low, self.watermark_high
                ),
            ));
        }
        if !(self.merge_headroom >= 0.0 && self.merge_headroom.is_finite()) {
            problems.push(PlanError::invalid(
                "merge_headroom",
                format!("{} is not a fraction of 0 or more", self.merge_headroom),
            ));
        }
        for tier in Tier::ALL {
            if self.tier(tier).nodes > 0 && self.tier(tier).disk.bytes() == 0 {
                problems.push(PlanError::invalid(
                    "disk",
                    format!("the {tier} tier has nodes but no disk"),
                ));
            }
        }
        match self.workload {
            Workload::TimeBased {
                daily_ingest,
                hot_days,
                warm_days,
                cold_days,
                ..
            } => {
                if daily_ingest.bytes() == 0 {
                    problems.push(PlanError::invalid(
                        "workload.daily_ingest",
                        "a time-based workload needs the primary size indexed per day (e.g. 300gb)",
                    ));
                }
                if hot_days == 0 {
                    problems.push(PlanError::invalid(
                        "workload.hot_days",
                        "an index spends at least one day on the hot tier",
                    ));
                }
                if warm_days > 0 && self.warm.nodes == 0 {
                    problems.push(PlanError::invalid(
                        "workload.warm_days",
                        format!("{warm_days} warm days but warm.nodes is 0"),
                    ));
                }
                if cold_days > 0 && self.cold.nodes == 0 {
                    problems.push(PlanError::invalid(
                        "workload.cold_days",
                        format!("{cold_days} cold days but cold.nodes is 0"),
                    ));
                }
                if self.shrink_to.is_some() && warm_days == 0 {
                    problems.push(PlanError::invalid(
                        "shrink_to",
                        "the shrink happens in the warm phase, which needs warm_days above 0",
                    ));
                }
            }
            Workload::Growing { expected_size, .. } => {
                if expected_size.bytes() == 0 {
                    problems.push(PlanError::invalid(
                        "workload.expected_size",
                        "a growing index needs its expected primary size (e.g. 600gb)",
                    ));
                }
                if self.shrink_to.is_some() {
                    problems.push(PlanError::invalid(
                        "shrink_to",
                        "a growing index stays on the hot tier and is never shrunk",
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_yaml() {
        let yaml = r#"
name: weblogs
hot: { nodes: 3, disk: 2tb, heap: 31gb }
warm: { nodes: 4, disk: 8tb }
workload:
  kind: time_based
  daily_ingest: 300gb
  daily_docs: 600000000
  hot_days: 7
  warm_days: 30
replicas: 1
shrink_to: 4
tier_routing: node_attribute
"#;
        let input = PlanInput::from_yaml(yaml).expect("valid yaml");
        assert_eq!(input.name, "weblogs");
        assert_eq!(input.warm.nodes, 4);
        assert_eq!(input.warm.heap, ByteSize::gb(31));
        assert_eq!(input.shrink_to, Some(4));
        assert_eq!(input.tier_routing, TierRouting::NodeAttribute);
        assert_eq!(input.retention().total_days(), 37);
        assert_eq!(input.validate(), Ok(()));
    }

    #[test]
    fn rejects_unknown_fields() {
        for yaml in [
            "hot: { nodes: 3 }\nreplica: 1\n",
            "hot: { nodes: 3, disks: 1tb }\n",
            "workload: { kind: time_based, daily_ingest: 1gb, hot_dayz: 3 }\n",
        ] {
            assert!(PlanInput::from_yaml(yaml).is_err(), "{yaml}");
        }
    }

    #[test]
    fn validation_table() {
        let valid = PlanInput {
            hot: TierSpec {
                nodes: 3,
                ..TierSpec::default()
            },
            workload: Workload::TimeBased {
                daily_ingest: ByteSize::gb(100),
                daily_docs: None,
                hot_days: 7,
                warm_days: 0,
                cold_days: 0,
            },
            ..PlanInput::default()
        };
        assert_eq!(valid.validate(), Ok(()));
        type Mutation = Box<dyn Fn(&mut PlanInput)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("hot.nodes", Box::new(|input| input.hot.nodes = 0)),
            ("growth_factor", Box::new(|input| input.growth_factor = 0)),
            ("name", Box::new(|input| input.name = "Logs".into())),
            (
                "watermark_low",
                Box::new(|input| input.watermark_low = 0.95),
            ),
            (
                "watermark_high",
                Box::new(|input| input.watermark_high = 1.5),
            ),
            ("shrink_to", Box::new(|input| input.shrink_to = Some(2))),
            (
                "workload.warm_days",
                Box::new(|input| {
                    input.workload = Workload::TimeBased {
                        daily_ingest: ByteSize::gb(1),
                        daily_docs: None,
                        hot_days: 1,
                        warm_days: 3,
                        cold_days: 0,
                    }
                }),
            ),
            (
                "workload.expected_size",
                Box::new(|input| {
                    input.workload = Workload::Growing {
                        expected_size: ByteSize(0),
                        expected_docs: None,
                    }
                }),
            ),
        ];
        for (field, mutate) in cases {
            let mut input = valid.clone();
            mutate(&mut input);
            match input.validate() {
                Err(PlanError::InvalidInput { field: actual, .. }) => assert_eq!(actual, field),
                other => panic!("{field}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn tier_at_age() {
        let retention = Retention {
            hot_days: 2,
            warm_days: 3,
            cold_days: 1,
        };
        let tiers: Vec<_> = (0..7).map(|age| retention.tier_at_age(age)).collect();
        assert_eq!(
            tiers,
            vec![
                Some(Tier::Hot),
                Some(Tier::Hot),
                Some(Tier::Warm),
                Some(Tier::Warm),
                Some(Tier::Warm),
                Some(Tier::Cold),
                None
            ]
        );
    }
}
