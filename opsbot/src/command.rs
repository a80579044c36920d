//! Chat commands: parsing, authorization and confirmations.
//!
//! Pure: text and ids in, decisions out; no async, no clock (`now` is passed
//! in), no network. The bot front end (`crate::bot`) and the CLI share these
//! definitions. Rules:
//! - only allow-listed chats *and* users are answered; anyone else gets no
//!   reply at all (not even "denied"), so the bot does not reveal itself;
//! - `viewer` may read (health, nodes, shards, status, slow logs, help);
//!   `operator` may also restart, resume and abort;
//! - anything that changes a cluster needs a confirmation by the same user in
//!   the same chat before it expires.

use crate::roll::Target;
use crate::slowlog::digest::parse_window;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

/// A parsed chat command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// `/health`: cluster health.
    Health,
    /// `/nodes`: nodes with roles.
    Nodes,
    /// `/shards [index]`: shard table, optionally of one index (pattern).
    Shards {
        /// Index or pattern.
        index: Option<String>,
    },
    /// `/restart <node|all> [yellow] [dry]`: rolling restart.
    Restart {
        /// Node name or all.
        target: Target,
        /// Accept yellow where green is required.
        allow_yellow: bool,
        /// Only show the plan.
        dry_run: bool,
    },
    /// `/restart_status`: progress of the current or last roll.
    RestartStatus,
    /// `/resume`: continue a stopped roll.
    Resume,
    /// `/abort`: stop a roll before its next node.
    Abort,
    /// `/slowlog [window] [index]`: slow-log digest.
    Slowlog {
        /// Time window back from now, e.g. `1h`.
        #[serde(with = "humantime_serde")]
        window: Option<Duration>,
        /// Index or pattern.
        index: Option<String>,
    },
    /// `/plan key=value ...`: shard planning with `shardplan` (read-only).
    Plan {
        /// The usage text, or checked settings.
        request: PlanRequest,
    },
    /// `/help` or `/start`.
    Help,
}

impl Command {
    /// The command word, for logs and the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Health => "health",
            Command::Nodes => "nodes",
            Command::Shards { .. } => "shards",
            Command::Restart { .. } => "restart",
            Command::RestartStatus => "restart_status",
            Command::Resume => "resume",
            Command::Abort => "abort",
            Command::Slowlog { .. } => "slowlog",
            Command::Plan { .. } => "plan",
            Command::Help => "help",
        }
    }

    /// The least role that may run the command.
    pub fn required_role(&self) -> Role {
        match self {
            Command::Restart { dry_run: true, .. } => Role::Viewer,
            Command::Restart { .. } | Command::Resume | Command::Abort => Role::Operator,
            _ => Role::Viewer,
        }
    }

    /// Whether the command changes a cluster and so needs a confirmation.
    /// Abort only stops a roll between nodes, which is always safe.
    pub fn needs_confirmation(&self) -> bool {
        matches!(
            self,
            Command::Restart { dry_run: false, .. } | Command::Resume
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Shards { index: Some(index) } => write!(f, "/shards {index}"),
            Command::Restart {
                target,
                allow_yellow,
                dry_run,
            } => {
                write!(f, "/restart {target}")?;
                if *allow_yellow {
                    f.write_str(" yellow")?;
                }
                if *dry_run {
                    f.write_str(" dry")?;
                }
                Ok(())
            }
            Command::Slowlog { window, index } => {
                f.write_str("/slowlog")?;
                if let Some(window) = window {
                    write!(f, " {}", humantime::format_duration(*window))?;
                }
                if let Some(index) = index {
                    write!(f, " {index}")?;
                }
                Ok(())
            }
            Command::Plan {
                request: PlanRequest::Settings(settings),
            } => {
                f.write_str("/plan")?;
                for setting in settings {
                    write!(f, " {setting}")?;
                }
                Ok(())
            }
            other => write!(f, "/{}", other.name()),
        }
    }
}

/// Why a text is not a command the bot runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Plain text, not starting with `/`.
    #[error("not a command")]
    NotACommand,
    /// A command addressed to another bot (`/cmd@otherbot`).
    #[error("command for another bot")]
    OtherBot,
    /// An unknown command word.
    #[error("unknown command /{0}, see /help")]
    Unknown(String),
    /// Wrong arguments; the usage line.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// A `/plan` argument that is unknown, malformed or out of range; the
    /// message names the key and value.
    #[error("/plan: {0} (see /plan help)")]
    Plan(String),
}

/// Usage lines, also the `/help` text.
pub const HELP: &str = "\
/health - cluster health
/nodes - nodes, roles, elected master
/shards [index] - shards (of one index or pattern)
/restart <node|all> [yellow] [dry] - rolling restart (operator); dry shows the plan
/restart_status - progress of the current or last restart
/resume - continue a stopped restart (operator)
/abort - stop the restart before its next node (operator)
/slowlog [window] [index] - slow queries, e.g. /slowlog 1h logs-*
/plan hot=N ingest=SIZE [key=value ...] - primary shard count (shardplan); /plan help
/help - this text";

/// Parses a chat message. `bot_username` lets `/cmd@thisbot` through and
/// rejects `/cmd@otherbot` in groups.
pub fn parse_command(text: &str, bot_username: Option<&str>) -> Result<Command, CommandError> {
    let text = text.trim();
    let Some(rest) = text.strip_prefix('/') else {
        return Err(CommandError::NotACommand);
    };
    let mut words = rest.split_whitespace();
    let head = words.next().unwrap_or("");
    let (word, addressee) = match head.split_once('@') {
        Some((word, name)) => (word, Some(name)),
        None => (head, None),
    };
    if let (Some(addressee), Some(ours)) = (addressee, bot_username)
        && !addressee.eq_ignore_ascii_case(ours)
    {
        return Err(CommandError::OtherBot);
    }
    let args: Vec<&str> = words.collect();
    let word = word.to_ascii_lowercase();
    let command = match word.as_str() {
        "health" => no_args(&args, Command::Health, "/health")?,
        "nodes" => no_args(&args, Command::Nodes, "/nodes")?,
        "shards" => match args.as_slice() {
            [] => Command::Shards { index: None },
            [index] => Command::Shards {
                index: Some(valid_index(index).ok_or(CommandError::Usage("/shards [index]"))?),
            },
            _ => return Err(CommandError::Usage("/shards [index]")),
        },
        "restart" => parse_restart(&args)?,
        "restart_status" | "status" => no_args(&args, Command::RestartStatus, "/restart_status")?,
        "resume" => no_args(&args, Command::Resume, "/resume")?,
        "abort" => no_args(&args, Command::Abort, "/abort")?,
        "slowlog" => parse_slowlog(&args)?,
        "plan" => Command::Plan {
            request: parse_plan(&args)?,
        },
        "help" | "start" => Command::Help,
        other => return Err(CommandError::Unknown(other.chars().take(32).collect())),
    };
    Ok(command)
}

fn no_args(args: &[&str], command: Command, usage: &'static str) -> Result<Command, CommandError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Usage(usage))
    }
}

/// Index names and patterns: letters, digits and `-_.*,+` only, at most 255
/// characters (Elasticsearch's own limit), so nothing else reaches a URL.
fn valid_index(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= 255
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | ',' | '+'));
    ok.then(|| text.to_string())
}

/// Node names: the same characters as index names without wildcards.
fn valid_node(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= 255
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then(|| text.to_string())
}

fn parse_restart(args: &[&str]) -> Result<Command, CommandError> {
    const USAGE: &str = "/restart <node|all> [yellow] [dry]";
    let Some((first, options)) = args.split_first() else {
        return Err(CommandError::Usage(USAGE));
    };
    let target = Target::parse(&valid_node(first).ok_or(CommandError::Usage(USAGE))?);
    let mut allow_yellow = false;
    let mut dry_run = false;
    for option in options {
        match *option {
            "yellow" | "--allow-yellow" => allow_yellow = true,
            "dry" | "--dry-run" => dry_run = true,
            _ => return Err(CommandError::Usage(USAGE)),
        }
    }
    Ok(Command::Restart {
        target,
        allow_yellow,
        dry_run,
    })
}

fn parse_slowlog(args: &[&str]) -> Result<Command, CommandError> {
    const USAGE: &str = "/slowlog [window] [index], e.g. /slowlog 1h logs-*";
    let (window, index) = match args {
        [] => (None, None),
        [one] => match parse_window(one) {
            Some(window) => (Some(window), None),
            None => (None, Some(*one)),
        },
        [window, index] => (
            Some(parse_window(window).ok_or(CommandError::Usage(USAGE))?),
            Some(*index),
        ),
        _ => return Err(CommandError::Usage(USAGE)),
    };
    let index = match index {
        Some(index) => Some(valid_index(index).ok_or(CommandError::Usage(USAGE))?),
        None => None,
    };
    Ok(Command::Slowlog { window, index })
}

/// What `/plan` was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanRequest {
    /// `/plan` or `/plan help`: the usage text.
    Usage,
    /// `key=value` settings that were checked by [`plan_input`] when parsed.
    Settings(Vec<PlanSetting>),
}

/// One `/plan` setting: a key and its value as typed (checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanSetting {
    /// Which planning input it sets.
    pub key: PlanKey,
    /// The value as typed, e.g. `500gb`.
    pub value: String,
}

impl fmt::Display for PlanSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key.name(), self.value)
    }
}

/// A `/plan` key. Each one is a flag of `shardplan plan` (the name is the
/// flag with `_` for `-`: `hot_nodes` for `--hot-nodes`) and sets the same
/// field of [`shardplan::PlanInput`]; short aliases suit a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKey {
    /// `--name`.
    Name,
    /// `--hot-nodes` (`hot`).
    HotNodes,
    /// `--warm-nodes` (`warm`).
    WarmNodes,
    /// `--cold-nodes` (`cold`).
    ColdNodes,
    /// `--hot-disk`.
    HotDisk,
    /// `--warm-disk`.
    WarmDisk,
    /// `--cold-disk`.
    ColdDisk,
    /// `--heap` (all tiers).
    Heap,
    /// `--daily-ingest` (`ingest`).
    DailyIngest,
    /// `--daily-docs` (`docs`).
    DailyDocs,
    /// `--hot-days`.
    HotDays,
    /// `--warm-days`.
    WarmDays,
    /// `--cold-days`.
    ColdDays,
    /// `--expected-size` (`expected`): one growing index.
    ExpectedSize,
    /// `--expected-docs`.
    ExpectedDocs,
    /// `--replicas`.
    Replicas,
    /// `--max-shard-size` (`max_shard`).
    MaxShardSize,
    /// `--min-shard-size` (`min_shard`).
    MinShardSize,
    /// `--max-docs-per-shard` (`max_docs`).
    MaxDocsPerShard,
    /// `--growth-factor` (`growth`).
    GrowthFactor,
    /// `--shrink-to` (`shrink`).
    ShrinkTo,
    /// `--tier-routing`.
    TierRouting,
    /// `--tier-attribute`.
    TierAttribute,
    /// `--data-stream`.
    DataStream,
    /// `--max-shards-per-node`.
    MaxShardsPerNode,
    /// `--shards-per-heap-gb`.
    ShardsPerHeapGb,
    /// `--merge-headroom`.
    MergeHeadroom,
    /// `--watermark-low`.
    WatermarkLow,
    /// `--watermark-high`.
    WatermarkHigh,
}

/// The kind of value a [`PlanKey`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlanValueKind {
    /// A whole number that fits `u32` (nodes, days, replicas, ...).
    Count,
    /// A whole number that fits `u64` (documents).
    Docs,
    /// An Elasticsearch byte size with a unit (`500gb`).
    Size,
    /// A decimal number (`0.85`).
    Fraction,
    /// A name: lowercase letters, digits, `_`, `-`, `.`.
    Text,
    /// `true` or `false`.
    Flag,
    /// `data_tiers` or `node_attribute`.
    Routing,
}

impl PlanKey {
    /// Every key, in the order of the usage text.
    pub const ALL: [PlanKey; 29] = [
        PlanKey::HotNodes,
        PlanKey::WarmNodes,
        PlanKey::ColdNodes,
        PlanKey::HotDisk,
        PlanKey::WarmDisk,
        PlanKey::ColdDisk,
        PlanKey::Heap,
        PlanKey::DailyIngest,
        PlanKey::DailyDocs,
        PlanKey::HotDays,
        PlanKey::WarmDays,
        PlanKey::ColdDays,
        PlanKey::ExpectedSize,
        PlanKey::ExpectedDocs,
        PlanKey::Replicas,
        PlanKey::MaxShardSize,
        PlanKey::MinShardSize,
        PlanKey::MaxDocsPerShard,
        PlanKey::GrowthFactor,
        PlanKey::ShrinkTo,
        PlanKey::Name,
        PlanKey::TierRouting,
        PlanKey::TierAttribute,
        PlanKey::DataStream,
        PlanKey::MaxShardsPerNode,
        PlanKey::ShardsPerHeapGb,
        PlanKey::MergeHeadroom,
        PlanKey::WatermarkLow,
        PlanKey::WatermarkHigh,
    ];

    /// The canonical name: the `shardplan plan` flag with `_` for `-`.
    pub fn name(self) -> &'static str {
        match self {
            PlanKey::Name => "name",
            PlanKey::HotNodes => "hot_nodes",
            PlanKey::WarmNodes => "warm_nodes",
            PlanKey::ColdNodes => "cold_nodes",
            PlanKey::HotDisk => "hot_disk",
            PlanKey::WarmDisk => "warm_disk",
            PlanKey::ColdDisk => "cold_disk",
            PlanKey::Heap => "heap",
            PlanKey::DailyIngest => "daily_ingest",
            PlanKey::DailyDocs => "daily_docs",
            PlanKey::HotDays => "hot_days",
            PlanKey::WarmDays => "warm_days",
            PlanKey::ColdDays => "cold_days",
            PlanKey::ExpectedSize => "expected_size",
            PlanKey::ExpectedDocs => "expected_docs",
            PlanKey::Replicas => "replicas",
            PlanKey::MaxShardSize => "max_shard_size",
            PlanKey::MinShardSize => "min_shard_size",
            PlanKey::MaxDocsPerShard => "max_docs_per_shard",
            PlanKey::GrowthFactor => "growth_factor",
            PlanKey::ShrinkTo => "shrink_to",
            PlanKey::TierRouting => "tier_routing",
            PlanKey::TierAttribute => "tier_attribute",
            PlanKey::DataStream => "data_stream",
            PlanKey::MaxShardsPerNode => "max_shards_per_node",
            PlanKey::ShardsPerHeapGb => "shards_per_heap_gb",
            PlanKey::MergeHeadroom => "merge_headroom",
            PlanKey::WatermarkLow => "watermark_low",
            PlanKey::WatermarkHigh => "watermark_high",
        }
    }

    /// The short chat alias, if any.
    pub fn alias(self) -> Option<&'static str> {
        match self {
            PlanKey::HotNodes => Some("hot"),
            PlanKey::WarmNodes => Some("warm"),
            PlanKey::ColdNodes => Some("cold"),
            PlanKey::DailyIngest => Some("ingest"),
            PlanKey::DailyDocs => Some("docs"),
            PlanKey::ExpectedSize => Some("expected"),
            PlanKey::MaxShardSize => Some("max_shard"),
            PlanKey::MinShardSize => Some("min_shard"),
            PlanKey::MaxDocsPerShard => Some("max_docs"),
            PlanKey::GrowthFactor => Some("growth"),
            PlanKey::ShrinkTo => Some("shrink"),
            _ => None,
        }
    }

    /// The key for a typed name: canonical or alias, any case, `-` or `_`,
    /// with or without a leading `--` (a pasted `shardplan plan` flag).
    pub fn parse(text: &str) -> Option<PlanKey> {
        let normalized = text
            .trim_start_matches("--")
            .to_ascii_lowercase()
            .replace('-', "_");
        PlanKey::ALL
            .into_iter()
            .find(|key| key.name() == normalized || key.alias() == Some(normalized.as_str()))
    }

    fn kind(self) -> PlanValueKind {
        match self {
            PlanKey::Name | PlanKey::TierAttribute => PlanValueKind::Text,
            PlanKey::HotDisk
            | PlanKey::WarmDisk
            | PlanKey::ColdDisk
            | PlanKey::Heap
            | PlanKey::DailyIngest
            | PlanKey::ExpectedSize
            | PlanKey::MaxShardSize
            | PlanKey::MinShardSize => PlanValueKind::Size,
            PlanKey::DailyDocs | PlanKey::ExpectedDocs | PlanKey::MaxDocsPerShard => {
                PlanValueKind::Docs
            }
            PlanKey::MergeHeadroom | PlanKey::WatermarkLow | PlanKey::WatermarkHigh => {
                PlanValueKind::Fraction
            }
            PlanKey::DataStream => PlanValueKind::Flag,
            PlanKey::TierRouting => PlanValueKind::Routing,
            _ => PlanValueKind::Count,
        }
    }

    /// The `/plan` key for a field named by [`shardplan::PlanError`]
    /// (`hot.nodes`, `workload.daily_ingest`, ...), so errors use the names
    /// the operator typed.
    fn for_input_field(field: &str) -> String {
        let field = field.strip_prefix("workload.").unwrap_or(field);
        field.replace('.', "_")
    }
}

/// Usage of `/plan`: `/plan` and `/plan help` answer it.
pub const PLAN_HELP: &str = "\
/plan key=value ... - primary shards per index, with the reason of each rule and the findings (shardplan)
e.g. /plan hot=6 warm=9 ingest=500gb hot_days=7 warm_days=30 replicas=1 max_shard=50gb
required: hot=N and ingest=SIZE a day (daily indexes), or expected=SIZE (one growing index)
nodes: hot warm cold; disk per node: hot_disk warm_disk cold_disk (2tb); heap (31gb)
daily indexes: ingest docs hot_days (7) warm_days cold_days; growing index: expected expected_docs
rules: replicas (1) max_shard (50gb) min_shard (10gb) max_docs (200000000) growth (2) shrink
limits: max_shards_per_node (1000) shards_per_heap_gb (20) merge_headroom (0.1) watermark_low (0.85) watermark_high (0.9)
also: name tier_routing tier_attribute data_stream; the long names of the shardplan plan flags work too (hot_nodes, daily_ingest, ...)
sizes need a unit (500gb, 2tb; 1gb = 1024^3 bytes)";

fn parse_plan(args: &[&str]) -> Result<PlanRequest, CommandError> {
    if args.is_empty() || (args.len() == 1 && args[0].eq_ignore_ascii_case("help")) {
        return Ok(PlanRequest::Usage);
    }
    let mut settings: Vec<PlanSetting> = Vec::new();
    for arg in args {
        let shown: String = arg.chars().take(40).collect();
        let Some((key_text, value)) = arg.split_once('=') else {
            return Err(CommandError::Plan(format!(
                "{shown:?} is not key=value, e.g. hot=3"
            )));
        };
        let key = PlanKey::parse(key_text).ok_or_else(|| {
            CommandError::Plan(format!(
                "unknown key {:?}",
                key_text.chars().take(40).collect::<String>()
            ))
        })?;
        if settings.iter().any(|setting| setting.key == key) {
            return Err(CommandError::Plan(format!("{} is given twice", key.name())));
        }
        let value = value.trim();
        check_plan_value(key, value)?;
        settings.push(PlanSetting {
            key,
            value: value.to_string(),
        });
    }
    plan_input(&settings)?;
    Ok(PlanRequest::Settings(settings))
}

fn bad_value(key: PlanKey, value: &str, expected: &str) -> CommandError {
    let shown: String = value.chars().take(40).collect();
    CommandError::Plan(format!(
        "bad value {}={shown:?}: expected {expected}",
        key.name()
    ))
}

/// The typed values of one setting.
enum PlanValue {
    Count(u32),
    Docs(u64),
    Size(shardplan::ByteSize),
    Fraction(f64),
    Text(String),
    Flag(bool),
    Routing(shardplan::TierRouting),
}

fn check_plan_value(key: PlanKey, value: &str) -> Result<PlanValue, CommandError> {
    let plan_value = match key.kind() {
        PlanValueKind::Count => PlanValue::Count(
            value
                .parse()
                .map_err(|_| bad_value(key, value, "a whole number such as 3"))?,
        ),
        PlanValueKind::Docs => PlanValue::Docs(
            value
                .replace('_', "")
                .parse()
                .map_err(|_| bad_value(key, value, "a whole number such as 600000000"))?,
        ),
        PlanValueKind::Size => {
            // A bare number would be bytes, which in a chat is nearly always
            // a slip for gigabytes: ask for the unit.
            let has_unit = value.ends_with(['b', 'B']);
            match value.parse::<shardplan::ByteSize>() {
                Ok(size) if has_unit => PlanValue::Size(size),
                _ => return Err(bad_value(key, value, "a size with a unit such as 500gb")),
            }
        }
        PlanValueKind::Fraction => PlanValue::Fraction(
            value
                .parse::<f64>()
                .ok()
                .filter(|number| number.is_finite())
                .ok_or_else(|| bad_value(key, value, "a decimal number such as 0.85"))?,
        ),
        PlanValueKind::Text => {
            let ok = !value.is_empty()
                && value.len() <= 64
                && value.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
                });
            if !ok {
                return Err(bad_value(
                    key,
                    value,
                    "lowercase letters, digits, '_', '-' or '.'",
                ));
            }
            PlanValue::Text(value.to_string())
        }
        PlanValueKind::Flag => PlanValue::Flag(match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => true,
            "false" | "no" | "off" | "0" => false,
            _ => return Err(bad_value(key, value, "true or false")),
        }),
        PlanValueKind::Routing => PlanValue::Routing(
            match value.to_ascii_lowercase().replace('-', "_").as_str() {
                "data_tiers" => shardplan::TierRouting::DataTiers,
                "node_attribute" => shardplan::TierRouting::NodeAttribute,
                _ => return Err(bad_value(key, value, "data_tiers or node_attribute")),
            },
        ),
    };
    Ok(plan_value)
}

/// Builds the planning input from `/plan` settings: the same
/// [`shardplan::PlanOverrides`] that `shardplan plan` builds from its flags,
/// laid over the defaults (shardplan owns the rules and the validation). The
/// error names the bad key and value.
pub fn plan_input(settings: &[PlanSetting]) -> Result<shardplan::PlanInput, CommandError> {
    plan_overrides(settings)?
        .apply(shardplan::PlanInput::default())
        .map_err(plan_error)
}

/// The `/plan` settings as shardplan overrides (each key is the field of the
/// same name).
fn plan_overrides(settings: &[PlanSetting]) -> Result<shardplan::PlanOverrides, CommandError> {
    let mut o = shardplan::PlanOverrides::default();
    for setting in settings {
        let value = check_plan_value(setting.key, &setting.value)?;
        match (setting.key, value) {
            (PlanKey::Name, PlanValue::Text(name)) => o.name = Some(name),
            (PlanKey::TierAttribute, PlanValue::Text(name)) => o.tier_attribute = Some(name),
            (PlanKey::HotNodes, PlanValue::Count(n)) => o.hot_nodes = Some(n),
            (PlanKey::WarmNodes, PlanValue::Count(n)) => o.warm_nodes = Some(n),
            (PlanKey::ColdNodes, PlanValue::Count(n)) => o.cold_nodes = Some(n),
            (PlanKey::HotDisk, PlanValue::Size(size)) => o.hot_disk = Some(size),
            (PlanKey::WarmDisk, PlanValue::Size(size)) => o.warm_disk = Some(size),
            (PlanKey::ColdDisk, PlanValue::Size(size)) => o.cold_disk = Some(size),
            (PlanKey::Heap, PlanValue::Size(size)) => o.heap = Some(size),
            (PlanKey::DailyIngest, PlanValue::Size(size)) => o.daily_ingest = Some(size),
            (PlanKey::DailyDocs, PlanValue::Docs(n)) => o.daily_docs = Some(n),
            (PlanKey::HotDays, PlanValue::Count(n)) => o.hot_days = Some(n),
            (PlanKey::WarmDays, PlanValue::Count(n)) => o.warm_days = Some(n),
            (PlanKey::ColdDays, PlanValue::Count(n)) => o.cold_days = Some(n),
            (PlanKey::ExpectedSize, PlanValue::Size(size)) => o.expected_size = Some(size),
            (PlanKey::ExpectedDocs, PlanValue::Docs(n)) => o.expected_docs = Some(n),
            (PlanKey::Replicas, PlanValue::Count(n)) => o.replicas = Some(n),
            (PlanKey::MaxShardSize, PlanValue::Size(size)) => o.max_shard_size = Some(size),
            (PlanKey::MinShardSize, PlanValue::Size(size)) => o.min_shard_size = Some(size),
            (PlanKey::MaxDocsPerShard, PlanValue::Docs(n)) => o.max_docs_per_shard = Some(n),
            (PlanKey::GrowthFactor, PlanValue::Count(n)) => o.growth_factor = Some(n),
            (PlanKey::ShrinkTo, PlanValue::Count(n)) => o.shrink_to = Some(n),
            (PlanKey::TierRouting, PlanValue::Routing(routing)) => o.tier_routing = Some(routing),
            (PlanKey::DataStream, PlanValue::Flag(flag)) => o.data_stream = Some(flag),
            (PlanKey::MaxShardsPerNode, PlanValue::Count(n)) => o.max_shards_per_node = Some(n),
            (PlanKey::ShardsPerHeapGb, PlanValue::Count(n)) => o.shards_per_heap_gb = Some(n),
            (PlanKey::MergeHeadroom, PlanValue::Fraction(x)) => o.merge_headroom = Some(x),
            (PlanKey::WatermarkLow, PlanValue::Fraction(x)) => o.watermark_low = Some(x),
            (PlanKey::WatermarkHigh, PlanValue::Fraction(x)) => o.watermark_high = Some(x),
            // check_plan_value gives each key the value kind matched above.
            (key, _) => {
                return Err(CommandError::Plan(format!("bad value for {}", key.name())));
            }
        }
    }
    Ok(o)
}

/// A shardplan error as a chat message, with `/plan` key names.
pub fn plan_error(error: shardplan::PlanError) -> CommandError {
    match error {
        shardplan::PlanError::InvalidInput {
            field: "hot.nodes", ..
        } => CommandError::Plan("hot_nodes is required and at least 1, e.g. hot=3".to_string()),
        shardplan::PlanError::InvalidInput { field, reason } => CommandError::Plan(format!(
            "invalid {}: {reason}",
            PlanKey::for_input_field(field)
        )),
        other => CommandError::Plan(other.to_string()),
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only commands.
    Viewer,
    /// Read-only commands and cluster changes.
    Operator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        })
    }
}

/// The allow-list: chats the bot answers in, and users with their roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Chat ids (private chats have the user's id; groups are negative).
    pub chats: BTreeSet<i64>,
    /// User ids and roles.
    pub users: BTreeMap<u64, Role>,
}

/// The outcome of an authorization check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Unlisted chat or user: no reply at all.
    Ignore,
    /// Listed, but the role is too low: a short refusal.
    Forbidden(Role),
    /// Go ahead with this role.
    Allowed(Role),
}

impl AccessPolicy {
    /// The role of a user in a chat, when both are listed.
    pub fn role_of(&self, chat_id: i64, user_id: u64) -> Option<Role> {
        if !self.chats.contains(&chat_id) {
            return None;
        }
        self.users.get(&user_id).copied()
    }

    /// Decides whether a user may run a command in a chat.
    pub fn authorize(&self, chat_id: i64, user_id: u64, command: &Command) -> Decision {
        match self.role_of(chat_id, user_id) {
            None => Decision::Ignore,
            Some(role) if role >= command.required_role() => Decision::Allowed(role),
            Some(role) => Decision::Forbidden(role),
        }
    }
}

/// A change waiting for its confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingConfirmation {
    /// The command to run once confirmed.
    pub command: Command,
    /// Chat it was asked in.
    pub chat_id: i64,
    /// User who asked; only they may confirm.
    pub user_id: u64,
    /// After this, confirming fails.
    pub expires_at: DateTime<Utc>,
}

/// Why a confirmation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    /// No such pending confirmation (already used, cancelled or never made).
    #[error("nothing to confirm")]
    Unknown,
    /// Too late.
    #[error("confirmation expired, run the command again")]
    Expired,
    /// Another user or chat pressed the button.
    #[error("only the user who asked can confirm")]
    WrongUser,
}

/// Pending confirmations by token.
#[derive(Debug, Default)]
pub struct Confirmations {
    pending: HashMap<String, PendingConfirmation>,
}

impl Confirmations {
    /// Registers a command under `token` (random, chosen by the caller) that
    /// expires `ttl` after `now`. Expired entries are dropped on the way.
    pub fn request(
        &mut self,
        token: String,
        command: Command,
        chat_id: i64,
        user_id: u64,
        now: DateTime<Utc>,
        ttl: Duration,
    ) {
        self.pending.retain(|_, pending| pending.expires_at > now);
        let ttl = ChronoDuration::from_std(ttl).unwrap_or(ChronoDuration::minutes(2));
        self.pending.insert(
            token,
            PendingConfirmation {
                command,
                chat_id,
                user_id,
                expires_at: now + ttl,
            },
        );
    }

    /// Takes the command for `token` if the same user confirms in time. A
    /// token is used at most once.
    pub fn confirm(
        &mut self,
        token: &str,
        chat_id: i64,
        user_id: u64,
        now: DateTime<Utc>,
    ) -> Result<Command, ConfirmError> {
        let pending = self.pending.get(token).ok_or(ConfirmError::Unknown)?;
        if pending.chat_id != chat_id || pending.user_id != user_id {
            return Err(ConfirmError::WrongUser);
        }
        let pending = self.pending.remove(token).ok_or(ConfirmError::Unknown)?;
        if now >= pending.expires_at {
            return Err(ConfirmError::Expired);
        }
        Ok(pending.command)
    }

    /// Drops a pending confirmation (the Cancel button); same rules as confirm.
    pub fn cancel(
        &mut self,
        token: &str,
        chat_id: i64,
        user_id: u64,
    ) -> Result<Command, ConfirmError> {
        let pending = self.pending.get(token).ok_or(ConfirmError::Unknown)?;
        if pending.chat_id != chat_id || pending.user_id != user_id {
            return Err(ConfirmError::WrongUser);
        }
        self.pending
            .remove(token)
            .map(|pending| pending.command)
            .ok_or(ConfirmError::Unknown)
    }

    /// Number of pending confirmations (for tests and status).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let cases: Vec<(&str, Command)> = vec![
            ("/health", Command::Health),
            ("/nodes@opsbot", Command::Nodes),
            ("  /shards  ", Command::Shards { index: None }),
            (
                "/shards logs-*",
                Command::Shards {
                    index: Some("logs-*".into()),
                },
            ),
            (
                "/restart all",
                Command::Restart {
                    target: Target::All,
                    allow_yellow: false,
                    dry_run: false,
                },
            ),
            (
                "/restart es-hot-1 yellow dry",
                Command::Restart {
                    target: Target::Node("es-hot-1".into()),
                    allow_yellow: true,
                    dry_run: true,
                },
            ),
            ("/restart_status", Command::RestartStatus),
            ("/resume", Command::Resume),
            ("/ABORT", Command::Abort),
            (
                "/slowlog",
                Command::Slowlog {
                    window: None,
                    index: None,
                },
            ),
            (
                "/slowlog 1h",
                Command::Slowlog {
                    window: Some(Duration::from_secs(3600)),
                    index: None,
                },
            ),
            (
                "/slowlog orders",
                Command::Slowlog {
                    window: None,
                    index: Some("orders".into()),
                },
            ),
            (
                "/slowlog 30m logs-*",
                Command::Slowlog {
                    window: Some(Duration::from_secs(1800)),
                    index: Some("logs-*".into()),
                },
            ),
            (
                "/plan",
                Command::Plan {
                    request: PlanRequest::Usage,
                },
            ),
            (
                "/plan hot=3 ingest=300gb",
                Command::Plan {
                    request: PlanRequest::Settings(vec![
                        PlanSetting {
                            key: PlanKey::HotNodes,
                            value: "3".into(),
                        },
                        PlanSetting {
                            key: PlanKey::DailyIngest,
                            value: "300gb".into(),
                        },
                    ]),
                },
            ),
            ("/help", Command::Help),
            ("/start", Command::Help),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_command(text, Some("opsbot")),
                Ok(expected),
                "text {text}"
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_command("hello", None), Err(CommandError::NotACommand));
        assert_eq!(
            parse_command("/health@otherbot", Some("opsbot")),
            Err(CommandError::OtherBot)
        );
        assert_eq!(
            parse_command("/drop_index x", None),
            Err(CommandError::Unknown("drop_index".into()))
        );
        assert!(matches!(
            parse_command("/restart", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/restart a now", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/restart ../etc", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/restart a;rm", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/shards a/b", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/slowlog 1h x y", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/slowlog soon logs", None),
            Err(CommandError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/health now", None),
            Err(CommandError::Usage(_))
        ));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "/restart all yellow",
            "/shards logs",
            "/slowlog 1h logs-*",
            "/abort",
        ] {
            let command = parse_command(text, None).expect("parses");
            assert_eq!(command.to_string(), text);
        }
    }

    fn plan_settings(text: &str) -> Vec<PlanSetting> {
        match parse_command(text, None) {
            Ok(Command::Plan {
                request: PlanRequest::Settings(settings),
            }) => settings,
            other => panic!("{text}: expected plan settings, got {other:?}"),
        }
    }

    #[test]
    fn plan_usage() {
        for text in ["/plan", "/plan help", "/plan HELP", "/plan@opsbot  "] {
            assert_eq!(
                parse_command(text, Some("opsbot")),
                Ok(Command::Plan {
                    request: PlanRequest::Usage
                }),
                "{text}"
            );
        }
        // Every key of the usage text parses.
        for key in PlanKey::ALL {
            assert_eq!(PlanKey::parse(key.name()), Some(key));
            assert!(
                PLAN_HELP.contains(key.alias().unwrap_or(key.name())),
                "{key:?}"
            );
        }
    }

    #[test]
    fn plan_keys_map_onto_the_shardplan_input() {
        use shardplan::{ByteSize, TierRouting, Workload};
        // Aliases, long names, pasted flags and any case all reach the same field.
        type Check = Box<dyn Fn(&shardplan::PlanInput) -> bool>;
        let cases: Vec<(&str, Check)> = vec![
            ("hot=6", Box::new(|i| i.hot.nodes == 6)),
            ("hot_nodes=6", Box::new(|i| i.hot.nodes == 6)),
            ("--hot-nodes=6", Box::new(|i| i.hot.nodes == 6)),
            ("HOT-NODES=6", Box::new(|i| i.hot.nodes == 6)),
            ("warm=9 warm_days=30", Box::new(|i| i.warm.nodes == 9)),
            ("cold=2 cold_days=90", Box::new(|i| i.cold.nodes == 2)),
            ("hot_disk=4tb", Box::new(|i| i.hot.disk == ByteSize::tb(4))),
            (
                "warm=4 warm_disk=8tb",
                Box::new(|i| i.warm.disk == ByteSize::tb(8)),
            ),
            (
                "heap=16gb",
                Box::new(|i| i.hot.heap == ByteSize::gb(16) && i.cold.heap == ByteSize::gb(16)),
            ),
            (
                "docs=600_000_000 hot_days=3",
                Box::new(|i| {
                    i.workload
                        == Workload::TimeBased {
                            daily_ingest: ByteSize::gb(300),
                            daily_docs: Some(600_000_000),
                            hot_days: 3,
                            warm_days: 0,
                            cold_days: 0,
                        }
                }),
            ),
            ("replicas=2", Box::new(|i| i.replicas == 2)),
            (
                "max_shard=30gb min_shard=1gb",
                Box::new(|i| {
                    i.max_shard_size == ByteSize::gb(30) && i.min_shard_size == ByteSize::gb(1)
                }),
            ),
            ("max_docs=1000", Box::new(|i| i.max_docs_per_shard == 1000)),
            ("growth=1", Box::new(|i| i.growth_factor == 1)),
            (
                "warm=4 warm_days=30 shrink=4",
                Box::new(|i| i.shrink_to == Some(4)),
            ),
            ("name=weblogs", Box::new(|i| i.name == "weblogs")),
            (
                "tier_routing=node-attribute tier_attribute=zone",
                Box::new(|i| {
                    i.tier_routing == TierRouting::NodeAttribute && i.tier_attribute == "zone"
                }),
            ),
            ("data_stream=yes", Box::new(|i| i.data_stream)),
            (
                "max_shards_per_node=3000 shards_per_heap_gb=40",
                Box::new(|i| i.max_shards_per_node == 3000 && i.shards_per_heap_gb == 40),
            ),
            (
                "merge_headroom=0.2 watermark_low=0.8 watermark_high=0.95",
                Box::new(|i| {
                    i.merge_headroom == 0.2 && i.watermark_low == 0.8 && i.watermark_high == 0.95
                }),
            ),
        ];
        for (args, check) in cases {
            let mut text = format!("/plan {args}");
            let has_hot = args.split_whitespace().any(|arg| {
                arg.split_once('=').and_then(|(key, _)| PlanKey::parse(key))
                    == Some(PlanKey::HotNodes)
            });
            if !has_hot {
                text.push_str(" hot=3");
            }
            text.push_str(" ingest=300gb");
            let input = plan_input(&plan_settings(&text)).expect("valid input");
            assert!(check(&input), "{text}: {input:?}");
        }
        // expected_size selects one growing index, as --expected-size does.
        let input = plan_input(&plan_settings(
            "/plan hot=5 hot_disk=4tb expected=1200gb expected_docs=10",
        ))
        .expect("valid");
        assert_eq!(
            input.workload,
            Workload::Growing {
                expected_size: ByteSize::gb(1200),
                expected_docs: Some(10)
            }
        );
    }

    #[test]
    fn plan_rejects_bad_keys_and_values() {
        // (arguments, a piece of the reply naming the key or value)
        let cases = [
            ("hot 3", "\"hot\" is not key=value"),
            ("hot=3 ingest=300gb hots=4", "unknown key \"hots\""),
            ("hot=3 ingest=300gb =4", "unknown key \"\""),
            (
                "hot=three ingest=300gb",
                "hot_nodes=\"three\": expected a whole number",
            ),
            ("hot=-1 ingest=300gb", "hot_nodes=\"-1\""),
            ("hot=99999999999 ingest=300gb", "hot_nodes=\"99999999999\""),
            ("hot= ingest=300gb", "hot_nodes=\"\""),
            (
                "hot=3 ingest=300",
                "daily_ingest=\"300\": expected a size with a unit",
            ),
            ("hot=3 ingest=lots", "daily_ingest=\"lots\""),
            ("hot=3 ingest=5zb", "daily_ingest=\"5zb\""),
            ("hot=3 ingest=1e400gb", "daily_ingest=\"1e400gb\""),
            ("hot=3 ingest=300gb docs=many", "daily_docs=\"many\""),
            (
                "hot=3 ingest=300gb watermark_low=high",
                "watermark_low=\"high\"",
            ),
            (
                "hot=3 ingest=300gb merge_headroom=NaN",
                "merge_headroom=\"NaN\"",
            ),
            (
                "hot=3 ingest=300gb data_stream=maybe",
                "data_stream=\"maybe\": expected true or false",
            ),
            (
                "hot=3 ingest=300gb tier_routing=zones",
                "tier_routing=\"zones\"",
            ),
            ("hot=3 ingest=300gb name=Logs", "name=\"Logs\""),
            ("hot=3 ingest=300gb name=a/b", "name=\"a/b\""),
            ("hot=3 hot=4 ingest=300gb", "hot_nodes is given twice"),
            ("hot=3 hot_nodes=4 ingest=300gb", "hot_nodes is given twice"),
            // shardplan's own validation, with the /plan key names
            ("ingest=300gb", "hot_nodes is required"),
            ("hot=0 ingest=300gb", "hot_nodes is required"),
            ("hot=3", "invalid daily_ingest"),
            (
                "hot=3 ingest=300gb warm_days=30",
                "invalid warm_days: 30 warm days but warm.nodes is 0",
            ),
            ("hot=3 ingest=300gb hot_days=0", "invalid hot_days"),
            ("hot=3 ingest=300gb growth=0", "invalid growth_factor"),
            ("hot=3 ingest=300gb shrink=2", "invalid shrink_to"),
            (
                "hot=3 ingest=300gb watermark_low=0.95",
                "invalid watermark_low",
            ),
            (
                "hot=3 ingest=300gb watermark_high=1.5",
                "invalid watermark_high",
            ),
            ("hot=3 ingest=300gb max_shard=0gb", "invalid max_shard_size"),
            ("hot=3 ingest=300gb hot_disk=0b", "invalid disk"),
            // the workload kinds of shardplan plan's flags do not mix
            (
                "hot=3 ingest=300gb expected=1tb",
                "expected_size (one growing index) and daily_ingest",
            ),
            (
                "hot=3 expected_docs=10",
                "expected_docs needs expected_size",
            ),
        ];
        for (args, expected) in cases {
            let text = format!("/plan {args}");
            match parse_command(&text, None) {
                Err(error @ CommandError::Plan(_)) => {
                    let message = error.to_string();
                    assert!(message.contains(expected), "{text}: {message}");
                    assert!(message.starts_with("/plan: "), "{message}");
                    assert!(message.ends_with("(see /plan help)"), "{message}");
                }
                other => panic!("{text}: expected a /plan error, got {other:?}"),
            }
        }
    }

    #[test]
    fn plan_display_uses_canonical_keys() {
        let command = parse_command("/plan hot=6 --warm-nodes=9 ingest=500gb warm_days=30", None)
            .expect("parses");
        assert_eq!(
            command.to_string(),
            "/plan hot_nodes=6 warm_nodes=9 daily_ingest=500gb warm_days=30"
        );
        assert_eq!(command.required_role(), Role::Viewer);
        assert!(!command.needs_confirmation());
        assert_eq!(
            parse_command(&command.to_string(), None).expect("round trip"),
            command
        );
    }

    fn policy() -> AccessPolicy {
        AccessPolicy {
            chats: [100, -500].into_iter().collect(),
            users: [(1, Role::Viewer), (2, Role::Operator)]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn unlisted_users_and_chats_get_nothing() {
        let restart = parse_command("/restart all", None).expect("parses");
        let health = Command::Health;
        let policy = policy();
        assert_eq!(
            policy.authorize(100, 99, &health),
            Decision::Ignore,
            "unlisted user"
        );
        assert_eq!(
            policy.authorize(7, 2, &health),
            Decision::Ignore,
            "unlisted chat"
        );
        assert_eq!(policy.authorize(7, 2, &restart), Decision::Ignore);
    }

    #[test]
    fn viewer_cannot_restart_but_operator_can() {
        let policy = policy();
        let restart = parse_command("/restart all", None).expect("parses");
        let dry = parse_command("/restart all dry", None).expect("parses");
        assert_eq!(
            policy.authorize(100, 1, &restart),
            Decision::Forbidden(Role::Viewer)
        );
        assert_eq!(
            policy.authorize(100, 1, &Command::Abort),
            Decision::Forbidden(Role::Viewer)
        );
        assert_eq!(
            policy.authorize(100, 1, &Command::Resume),
            Decision::Forbidden(Role::Viewer)
        );
        assert_eq!(
            policy.authorize(100, 1, &dry),
            Decision::Allowed(Role::Viewer)
        );
        assert_eq!(
            policy.authorize(100, 1, &Command::Health),
            Decision::Allowed(Role::Viewer)
        );
        assert_eq!(
            policy.authorize(-500, 2, &restart),
            Decision::Allowed(Role::Operator)
        );
        assert!(restart.needs_confirmation());
        assert!(!dry.needs_confirmation());
        assert!(!Command::Abort.needs_confirmation());
    }

    #[test]
    fn confirmations_expire_and_belong_to_their_user() {
        let now = Utc::now();
        let ttl = Duration::from_secs(60);
        let mut confirmations = Confirmations::default();
        confirmations.request("t1".into(), Command::Resume, 100, 2, now, ttl);
        assert_eq!(
            confirmations.confirm("t1", 100, 1, now),
            Err(ConfirmError::WrongUser)
        );
        assert_eq!(
            confirmations.confirm("t1", 101, 2, now),
            Err(ConfirmError::WrongUser)
        );
        assert_eq!(
            confirmations.confirm("t1", 100, 2, now),
            Ok(Command::Resume)
        );
        assert_eq!(
            confirmations.confirm("t1", 100, 2, now),
            Err(ConfirmError::Unknown),
            "used once"
        );

        confirmations.request("t2".into(), Command::Resume, 100, 2, now, ttl);
        let late = now + ChronoDuration::seconds(61);
        assert_eq!(
            confirmations.confirm("t2", 100, 2, late),
            Err(ConfirmError::Expired)
        );

        confirmations.request("t3".into(), Command::Resume, 100, 2, now, ttl);
        assert_eq!(confirmations.cancel("t3", 100, 2), Ok(Command::Resume));
        assert!(confirmations.is_empty());

        confirmations.request("old".into(), Command::Resume, 100, 2, now, ttl);
        confirmations.request("new".into(), Command::Resume, 100, 2, late, ttl);
        assert_eq!(confirmations.len(), 1, "expired entries are dropped");
    }
}
