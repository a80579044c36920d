//! Command-line arguments (clap derive) and their conversion into the
//! library's [`PlanOverrides`], which lays the flags over the YAML planning
//! input. Holds only what the user typed; no I/O beyond reading the
//! `--config` file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use shardplan::{ByteSize, PlanError, PlanInput, PlanOverrides, TierRouting};

/// Shard planning for hot/warm Elasticsearch clusters.
#[derive(Debug, Parser)]
#[command(name = "shardplan", version, about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute the primary count with its reasons, tier loads and warnings.
    Plan(PlanCommand),
    /// Print the index template body for the plan (PUT _index_template/<name>).
    Template(PlanArgs),
    /// Print the ILM policy body for the plan (PUT _ilm/policy/<name>-policy).
    Ilm(PlanArgs),
    /// Place every daily index's shards day by day; report disk and shards per node.
    Simulate(SimulateCommand),
    /// Check a live cluster against the shard rules.
    Check(CheckCommand),
    /// Measure the largest shard that still meets a search latency target.
    Measure(MeasureCommand),
}

/// Output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// Pretty JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `--tier-routing` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TierRoutingArg {
    /// Data tiers (`_tier_preference`, implicit ILM migrate).
    DataTiers,
    /// A custom node attribute (see --tier-attribute) and ILM allocate.
    NodeAttribute,
}

/// The planning input: a YAML file and/or flags (flags win).
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// YAML planning input (every field optional; see the README).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Base name: template `<name>-*`, policy `<name>-policy` [default: logs].
    #[arg(long)]
    pub name: Option<String>,
    /// Hot data nodes.
    #[arg(long)]
    pub hot_nodes: Option<u32>,
    /// Warm data nodes [default: 0].
    #[arg(long)]
    pub warm_nodes: Option<u32>,
    /// Cold data nodes [default: 0].
    #[arg(long)]
    pub cold_nodes: Option<u32>,
    /// Disk per hot node [default: 2tb].
    #[arg(long)]
    pub hot_disk: Option<ByteSize>,
    /// Disk per warm node [default: 2tb].
    #[arg(long)]
    pub warm_disk: Option<ByteSize>,
    /// Disk per cold node [default: 2tb].
    #[arg(long)]
    pub cold_disk: Option<ByteSize>,
    /// Heap per node, all tiers [default: 31gb].
    #[arg(long)]
    pub heap: Option<ByteSize>,
    /// Primary data indexed per day (time-based workload).
    #[arg(long, conflicts_with_all = ["expected_size", "expected_docs"])]
    pub daily_ingest: Option<ByteSize>,
    /// Documents indexed per day (time-based workload).
    #[arg(long)]
    pub daily_docs: Option<u64>,
    /// Days on the hot tier [default: 7].
    #[arg(long)]
    pub hot_days: Option<u32>,
    /// Days on the warm tier [default: 0].
    #[arg(long)]
    pub warm_days: Option<u32>,
    /// Days on the cold tier [default: 0].
    #[arg(long)]
    pub cold_days: Option<u32>,
    /// Expected primary size of one growing index (instead of daily indexes).
    #[arg(long, conflicts_with_all = ["daily_docs", "hot_days", "warm_days", "cold_days"])]
    pub expected_size: Option<ByteSize>,
    /// Expected documents of the growing index.
    #[arg(long)]
    pub expected_docs: Option<u64>,
    /// Replicas per primary [default: 1].
    #[arg(long)]
    pub replicas: Option<u32>,
    /// Largest primary shard wanted [default: 50gb].
    #[arg(long)]
    pub max_shard_size: Option<ByteSize>,
    /// Smallest primary shard before a warning [default: 10gb].
    #[arg(long)]
    pub min_shard_size: Option<ByteSize>,
    /// Most documents per shard [default: 200000000].
    #[arg(long)]
    pub max_docs_per_shard: Option<u64>,
    /// Growth multiplier of the hot-node rule; 1 turns it off [default: 2].
    #[arg(long)]
    pub growth_factor: Option<u32>,
    /// Shrink to this many primaries in the warm phase [default: no shrink].
    #[arg(long)]
    pub shrink_to: Option<u32>,
    /// How indexes move between tiers [default: data-tiers].
    #[arg(long, value_enum)]
    pub tier_routing: Option<TierRoutingArg>,
    /// Node attribute for --tier-routing node-attribute [default: box_type].
    #[arg(long)]
    pub tier_attribute: Option<String>,
    /// Make the template create a data stream [default: alias-based rollover].
    #[arg(long)]
    pub data_stream: bool,
    /// cluster.max_shards_per_node [default: 1000].
    #[arg(long)]
    pub max_shards_per_node: Option<u32>,
    /// Heap guidance in shards per GB of heap [default: 20].
    #[arg(long)]
    pub shards_per_heap_gb: Option<u32>,
    /// Disk reserved for merges, fraction of data [default: 0.1].
    #[arg(long)]
    pub merge_headroom: Option<f64>,
    /// Low disk watermark, fraction [default: 0.85].
    #[arg(long)]
    pub watermark_low: Option<f64>,
    /// High disk watermark, fraction [default: 0.90].
    #[arg(long)]
    pub watermark_high: Option<f64>,
}

/// `shardplan plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanCommand {
    /// The planning input.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Exit with status 1 when there are warning or critical findings.
    #[arg(long)]
    pub strict: bool,
}

/// `shardplan simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateCommand {
    /// The planning input (must be time-based).
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Days to simulate [default: the whole retention].
    #[arg(long)]
    pub days: Option<u32>,
    /// Print every Nth day in the table (the last day is always printed).
    #[arg(long, default_value_t = 1)]
    pub every: u32,
    /// Write an SVG chart of disk and shards per node over time.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Connection to Elasticsearch or OpenSearch.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Cluster URL; basic auth comes from ESYNC_ES_USERNAME / ESYNC_ES_PASSWORD.
    #[arg(long, env = "ESYNC_ES_URL")]
    pub url: String,
    /// Timeout of one request, in seconds.
    #[arg(long, default_value_t = 60)]
    pub request_timeout_secs: u64,
}

/// `shardplan check`.
#[derive(Debug, Clone, Args)]
pub struct CheckCommand {
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Planning YAML: its node counts replace the live ones in the
    /// divisibility check, and its size limits are used.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Shards above this are oversize [default: 50gb, or the config's].
    #[arg(long)]
    pub max_shard_size: Option<ByteSize>,
    /// Shards above this many docs are oversize [default: 200000000].
    #[arg(long)]
    pub max_docs_per_shard: Option<u64>,
    /// Override the cluster's cluster.max_shards_per_node [default: the
    /// cluster's setting, else 1000].
    #[arg(long)]
    pub max_shards_per_node: Option<u64>,
    /// Only indexes whose names start with this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Indexes smaller than this (primaries) are exempt from the
    /// divisibility rule.
    #[arg(long, default_value = "10gb")]
    pub min_index_size: ByteSize,
    /// Include system and hidden indexes (other than data-stream backing indexes).
    #[arg(long)]
    pub include_hidden: bool,
    /// Node attribute that names the tier [default: box_type].
    #[arg(long)]
    pub tier_attribute: Option<String>,
    /// Exit with status 1 when there are warning or critical findings.
    #[arg(long)]
    pub strict: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `shardplan measure`.
#[derive(Debug, Clone, Args)]
pub struct MeasureCommand {
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Sample documents, one JSON object per line [default: generated log events].
    #[arg(long)]
    pub docs: Option<PathBuf>,
    /// Queries, one search body per line [default: a match, a filter and a terms aggregation].
    #[arg(long)]
    pub queries: Option<PathBuf>,
    /// Mappings for the probe index (a JSON object) [default: for generated docs].
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Latency percentile to watch.
    #[arg(long, default_value_t = 95.0)]
    pub percentile: f64,
    /// Stop when the watched percentile reaches this many milliseconds.
    #[arg(long, default_value_t = 200.0)]
    pub target_ms: f64,
    /// Stop when the shard reaches this size.
    #[arg(long, default_value = "50gb")]
    pub size_cap: ByteSize,
    /// Stop after this many measurement steps.
    #[arg(long, default_value_t = 10_000)]
    pub max_steps: usize,
    /// Queries per measurement step.
    #[arg(long, default_value_t = 20)]
    pub window: usize,
    /// Query rate, queries per second.
    #[arg(long, default_value_t = 10.0)]
    pub qps: f64,
    /// Documents per bulk request.
    #[arg(long, default_value_t = 1000)]
    pub bulk_docs: usize,
    /// Put the probe shard on this node [default: wherever it is allocated].
    #[arg(long)]
    pub node: Option<String>,
    /// Keep the probe index afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Write an SVG chart of the latency curve.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Reads the `--config` YAML, or the defaults when there is none.
pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<PlanInput> {
    let Some(path) = path else {
        return Ok(PlanInput::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read config {}", path.display()))?;
    PlanInput::from_yaml(&text).with_context(|| format!("invalid config {}", path.display()))
}

impl PlanArgs {
    /// The flags as library overrides (`--data-stream` only ever turns it on).
    pub fn overrides(&self) -> PlanOverrides {
        PlanOverrides {
            name: self.name.clone(),
            hot_nodes: self.hot_nodes,
            warm_nodes: self.warm_nodes,
            cold_nodes: self.cold_nodes,
            hot_disk: self.hot_disk,
            warm_disk: self.warm_disk,
            cold_disk: self.cold_disk,
            heap: self.heap,
            daily_ingest: self.daily_ingest,
            daily_docs: self.daily_docs,
            hot_days: self.hot_days,
            warm_days: self.warm_days,
            cold_days: self.cold_days,
            expected_size: self.expected_size,
            expected_docs: self.expected_docs,
            replicas: self.replicas,
            max_shard_size: self.max_shard_size,
            min_shard_size: self.min_shard_size,
            max_docs_per_shard: self.max_docs_per_shard,
            growth_factor: self.growth_factor,
            shrink_to: self.shrink_to,
            tier_routing: self.tier_routing.map(|routing| match routing {
                TierRoutingArg::DataTiers => TierRouting::DataTiers,
                TierRoutingArg::NodeAttribute => TierRouting::NodeAttribute,
            }),
            tier_attribute: self.tier_attribute.clone(),
            data_stream: self.data_stream.then_some(true),
            max_shards_per_node: self.max_shards_per_node,
            shards_per_heap_gb: self.shards_per_heap_gb,
            merge_headroom: self.merge_headroom,
            watermark_low: self.watermark_low,
            watermark_high: self.watermark_high,
        }
    }

    /// The planning input: the config file (or defaults), then the flags.
    pub fn to_input(&self) -> anyhow::Result<PlanInput> {
        let base = load_config(self.config.as_ref())?;
        self.overrides().apply(base).map_err(|error| match error {
            PlanError::NeedsGrowingWorkload { field } => {
                anyhow::anyhow!("{} needs a growing workload (--expected-size)", flag(field))
            }
            PlanError::MixedWorkload {
                growing,
                time_based,
            } => anyhow::anyhow!(
                "{} (one growing index) and {} (daily indexes) cannot be used together",
                flag(growing),
                flag(time_based)
            ),
            other => other.into(),
        })
    }
}

/// The flag of a [`PlanOverrides`] field name: `expected_docs` is `--expected-docs`.
fn flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}
