//! Command-line arguments (clap derive; the planning flags come from the
//! library's table of override keys) and their conversion into the
//! library's [`PlanOverrides`], which lays the flags over the YAML planning
//! input. Holds only what the user typed; no I/O beyond reading the
//! `--config` file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::builder::PossibleValue;
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use esync_common::telemetry::LogFormat;
use shardplan::{
    ByteSize, OVERRIDE_KEYS, OverrideKey, OverrideValue, PlanError, PlanInput, PlanOverrides,
    ValueKind,
};

/// Shard planning for hot/warm Elasticsearch clusters.
#[derive(Debug, Parser)]
#[command(name = "shardplan", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ESYNC_LOG_FORMAT")]
    pub log_format: LogFormat,
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

/// The planning input: a YAML file and/or flags (flags win). The flags are
/// the library's [`OVERRIDE_KEYS`], one per key, with its help text.
#[derive(Debug, Clone, Default)]
pub struct PlanArgs {
    /// YAML planning input (every field optional; see the README).
    pub config: Option<PathBuf>,
    /// The flags given.
    pub overrides: PlanOverrides,
}

const CONFIG_ARG: &str = "config";

/// The flag of one key, parsed by clap into the key's value type.
fn key_arg(key: &OverrideKey) -> Arg {
    let arg = Arg::new(key.name)
        .long(key.flag())
        .value_name(key.name.to_uppercase())
        .help(key.help);
    let arg = match key.kind() {
        ValueKind::Count => arg.value_parser(clap::value_parser!(u32)),
        ValueKind::Docs => arg.value_parser(clap::value_parser!(u64)),
        ValueKind::Size => arg.value_parser(clap::value_parser!(ByteSize)),
        ValueKind::Fraction => arg.value_parser(clap::value_parser!(f64)),
        ValueKind::Text => arg.value_parser(clap::value_parser!(String)),
        // A flag only ever turns it on.
        ValueKind::Flag => arg.action(ArgAction::SetTrue),
        ValueKind::Routing => arg.value_parser([
            PossibleValue::new("data-tiers")
                .help("Data tiers (`_tier_preference`, implicit ILM migrate)"),
            PossibleValue::new("node-attribute")
                .help("A custom node attribute (see --tier-attribute) and ILM allocate"),
        ]),
    };
    // The two workloads do not mix (the library says so too, after parsing).
    let others: Vec<&str> = OVERRIDE_KEYS
        .iter()
        .filter(|other| other.workload.is_some() && other.workload != key.workload)
        .map(|other| other.name)
        .collect();
    if key.workload.is_some() {
        arg.conflicts_with_all(others)
    } else {
        arg
    }
}

/// The value of one key, if given.
fn key_value(key: &OverrideKey, matches: &ArgMatches) -> Option<OverrideValue> {
    Some(match key.kind() {
        ValueKind::Count => OverrideValue::Count(*matches.get_one::<u32>(key.name)?),
        ValueKind::Docs => OverrideValue::Docs(*matches.get_one::<u64>(key.name)?),
        ValueKind::Size => OverrideValue::Size(*matches.get_one::<ByteSize>(key.name)?),
        ValueKind::Fraction => OverrideValue::Fraction(*matches.get_one::<f64>(key.name)?),
        ValueKind::Text => OverrideValue::Text(matches.get_one::<String>(key.name)?.clone()),
        ValueKind::Flag => OverrideValue::Flag(matches.get_flag(key.name).then_some(true)?),
        ValueKind::Routing => key.kind().parse(matches.get_one::<String>(key.name)?)?,
    })
}

impl FromArgMatches for PlanArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = PlanArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(config) = matches.get_one::<PathBuf>(CONFIG_ARG) {
            self.config = Some(config.clone());
        }
        for key in &OVERRIDE_KEYS {
            if let Some(value) = key_value(key, matches) {
                key.set(&mut self.overrides, value);
            }
        }
        Ok(())
    }
}

impl Args for PlanArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        let config = Arg::new(CONFIG_ARG)
            .long(CONFIG_ARG)
            .short('c')
            .value_name("CONFIG")
            .value_parser(clap::value_parser!(PathBuf))
            .help("YAML planning input (every field optional; see the README)");
        command.arg(config).args(OVERRIDE_KEYS.iter().map(key_arg))
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
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
    /// Cluster URL; credentials come from ESYNC_ES_API_KEY, or
    /// ESYNC_ES_USERNAME with ESYNC_ES_PASSWORD, or the URL (one of them).
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
    PlanInput::from_yaml(&text).map_err(|problems| {
        anyhow::anyhow!(
            "invalid config {}:\n{}",
            path.display(),
            shardplan::yaml_config::problem_list(&problems)
        )
    })
}

impl PlanArgs {
    /// The planning input: the config file (or defaults), then the flags.
    pub fn to_input(&self) -> anyhow::Result<PlanInput> {
        let base = load_config(self.config.as_ref())?;
        self.overrides
            .clone()
            .apply(base)
            .map_err(|error| match error {
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
