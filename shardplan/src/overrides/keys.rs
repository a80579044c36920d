//! The one table of override keys: each key's name (the `shardplan plan`
//! flag with `_` for `-`), its short chat alias, the kind of value it takes,
//! its help text, and the [`PlanOverrides`] field it sets. The `shardplan
//! plan` flags, their `--help`, the opsbot `/plan` parser and its help text
//! all come from [`OVERRIDE_KEYS`].
//!
//! Pure: text in, typed values out; no I/O.

use crate::input::TierRouting;
use crate::overrides::PlanOverrides;
use crate::units::ByteSize;
use std::fmt;

/// The kind of value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A whole number that fits `u32` (nodes, days, replicas, ...).
    Count,
    /// A whole number that fits `u64` (documents); `_` separators allowed.
    Docs,
    /// An Elasticsearch byte size (`500gb`).
    Size,
    /// A finite decimal number (`0.85`).
    Fraction,
    /// A name: lowercase letters, digits, `_`, `-`, `.`, at most 64.
    Text,
    /// `true` or `false` (also yes/no, on/off, 1/0).
    Flag,
    /// `data_tiers` or `node_attribute` (`-` works for `_`).
    Routing,
}

impl ValueKind {
    /// What a value of this kind looks like, for error messages.
    pub fn expected(self) -> &'static str {
        match self {
            ValueKind::Count => "a whole number such as 3",
            ValueKind::Docs => "a whole number such as 600000000",
            ValueKind::Size => "a size with a unit such as 500gb",
            ValueKind::Fraction => "a decimal number such as 0.85",
            ValueKind::Text => "lowercase letters, digits, '_', '-' or '.'",
            ValueKind::Flag => "true or false",
            ValueKind::Routing => "data_tiers or node_attribute",
        }
    }

    /// Parses a value of this kind; `None` when it does not fit.
    pub fn parse(self, text: &str) -> Option<OverrideValue> {
        let value = match self {
            ValueKind::Count => OverrideValue::Count(text.parse().ok()?),
            ValueKind::Docs => OverrideValue::Docs(text.replace('_', "").parse().ok()?),
            ValueKind::Size => OverrideValue::Size(text.parse().ok()?),
            ValueKind::Fraction => OverrideValue::Fraction(
                text.parse::<f64>()
                    .ok()
                    .filter(|number| number.is_finite())?,
            ),
            ValueKind::Text => {
                let ok = !text.is_empty()
                    && text.len() <= 64
                    && text.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
                    });
                OverrideValue::Text(ok.then(|| text.to_string())?)
            }
            ValueKind::Flag => OverrideValue::Flag(match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" => false,
                _ => return None,
            }),
            ValueKind::Routing => {
                OverrideValue::Routing(match text.to_ascii_lowercase().replace('-', "_").as_str() {
                    "data_tiers" => TierRouting::DataTiers,
                    "node_attribute" => TierRouting::NodeAttribute,
                    _ => return None,
                })
            }
        };
        Some(value)
    }
}

/// A typed value of one key.
#[derive(Debug, Clone, PartialEq)]
pub enum OverrideValue {
    /// For [`ValueKind::Count`].
    Count(u32),
    /// For [`ValueKind::Docs`].
    Docs(u64),
    /// For [`ValueKind::Size`].
    Size(ByteSize),
    /// For [`ValueKind::Fraction`].
    Fraction(f64),
    /// For [`ValueKind::Text`].
    Text(String),
    /// For [`ValueKind::Flag`].
    Flag(bool),
    /// For [`ValueKind::Routing`].
    Routing(TierRouting),
}

/// The [`PlanOverrides`] field a key sets; its variant is the value kind,
/// so a key can only ever set a field of its own type.
#[derive(Clone, Copy)]
enum Field {
    Count(fn(&mut PlanOverrides) -> &mut Option<u32>),
    Docs(fn(&mut PlanOverrides) -> &mut Option<u64>),
    Size(fn(&mut PlanOverrides) -> &mut Option<ByteSize>),
    Fraction(fn(&mut PlanOverrides) -> &mut Option<f64>),
    Text(fn(&mut PlanOverrides) -> &mut Option<String>),
    Flag(fn(&mut PlanOverrides) -> &mut Option<bool>),
    Routing(fn(&mut PlanOverrides) -> &mut Option<TierRouting>),
}

/// Which workload a key belongs to: keys of the two workloads do not mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadGroup {
    /// One growing index (`expected_*`).
    Growing,
    /// Daily indexes (`daily_*`, `*_days`).
    Daily,
}

/// One override key.
#[derive(Clone, Copy)]
pub struct OverrideKey {
    /// Canonical name: the `shardplan plan` flag with `_` for `-`.
    pub name: &'static str,
    /// Short alias for a chat, if any.
    pub alias: Option<&'static str>,
    /// Help text of the flag (and the chat key).
    pub help: &'static str,
    /// The workload the key selects, if any.
    pub workload: Option<WorkloadGroup>,
    field: Field,
}

impl fmt::Debug for OverrideKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OverrideKey({})", self.name)
    }
}

impl PartialEq for OverrideKey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for OverrideKey {}

impl OverrideKey {
    /// The kind of value the key takes.
    pub fn kind(&self) -> ValueKind {
        match self.field {
            Field::Count(_) => ValueKind::Count,
            Field::Docs(_) => ValueKind::Docs,
            Field::Size(_) => ValueKind::Size,
            Field::Fraction(_) => ValueKind::Fraction,
            Field::Text(_) => ValueKind::Text,
            Field::Flag(_) => ValueKind::Flag,
            Field::Routing(_) => ValueKind::Routing,
        }
    }

    /// The command-line flag without dashes: `hot-nodes`.
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    /// The key for a typed name: canonical or alias, any case, `-` or `_`,
    /// with or without a leading `--` (a pasted `shardplan plan` flag).
    pub fn find(text: &str) -> Option<&'static OverrideKey> {
        let normalized = text
            .trim_start_matches("--")
            .to_ascii_lowercase()
            .replace('-', "_");
        OVERRIDE_KEYS
            .iter()
            .find(|key| key.name == normalized || key.alias == Some(normalized.as_str()))
    }

    /// Sets this key's field of `overrides`; `false` (and nothing set) when
    /// the value is of another kind.
    pub fn set(&self, overrides: &mut PlanOverrides, value: OverrideValue) -> bool {
        match (self.field, value) {
            (Field::Count(field), OverrideValue::Count(n)) => *field(overrides) = Some(n),
            (Field::Docs(field), OverrideValue::Docs(n)) => *field(overrides) = Some(n),
            (Field::Size(field), OverrideValue::Size(size)) => *field(overrides) = Some(size),
            (Field::Fraction(field), OverrideValue::Fraction(x)) => *field(overrides) = Some(x),
            (Field::Text(field), OverrideValue::Text(text)) => *field(overrides) = Some(text),
            (Field::Flag(field), OverrideValue::Flag(flag)) => *field(overrides) = Some(flag),
            (Field::Routing(field), OverrideValue::Routing(routing)) => {
                *field(overrides) = Some(routing)
            }
            _ => return false,
        }
        true
    }

    /// Whether this key is given in `overrides` (the field accessors take
    /// `&mut`, hence the argument; nothing is changed).
    pub(crate) fn is_given(&self, overrides: &mut PlanOverrides) -> bool {
        match self.field {
            Field::Count(field) => field(overrides).is_some(),
            Field::Docs(field) => field(overrides).is_some(),
            Field::Size(field) => field(overrides).is_some(),
            Field::Fraction(field) => field(overrides).is_some(),
            Field::Text(field) => field(overrides).is_some(),
            Field::Flag(field) => field(overrides).is_some(),
            Field::Routing(field) => field(overrides).is_some(),
        }
    }
}

const fn key(
    name: &'static str,
    alias: Option<&'static str>,
    help: &'static str,
    field: Field,
) -> OverrideKey {
    OverrideKey {
        name,
        alias,
        help,
        workload: None,
        field,
    }
}

const fn workload_key(
    name: &'static str,
    alias: Option<&'static str>,
    help: &'static str,
    workload: WorkloadGroup,
    field: Field,
) -> OverrideKey {
    OverrideKey {
        name,
        alias,
        help,
        workload: Some(workload),
        field,
    }
}

use WorkloadGroup::{Daily, Growing};

/// Every key, in the order of `shardplan plan --help`.
pub static OVERRIDE_KEYS: [OverrideKey; 29] = [
    key(
        "name",
        None,
        "Base name: template `<name>-*`, policy `<name>-policy` [default: logs]",
        Field::Text(|o| &mut o.name),
    ),
    key(
        "hot_nodes",
        Some("hot"),
        "Hot data nodes",
        Field::Count(|o| &mut o.hot_nodes),
    ),
    key(
        "warm_nodes",
        Some("warm"),
        "Warm data nodes [default: 0]",
        Field::Count(|o| &mut o.warm_nodes),
    ),
    key(
        "cold_nodes",
        Some("cold"),
        "Cold data nodes [default: 0]",
        Field::Count(|o| &mut o.cold_nodes),
    ),
    key(
        "hot_disk",
        None,
        "Disk per hot node [default: 2tb]",
        Field::Size(|o| &mut o.hot_disk),
    ),
    key(
        "warm_disk",
        None,
        "Disk per warm node [default: 2tb]",
        Field::Size(|o| &mut o.warm_disk),
    ),
    key(
        "cold_disk",
        None,
        "Disk per cold node [default: 2tb]",
        Field::Size(|o| &mut o.cold_disk),
    ),
    key(
        "heap",
        None,
        "Heap per node, all tiers [default: 31gb]",
        Field::Size(|o| &mut o.heap),
    ),
    workload_key(
        "daily_ingest",
        Some("ingest"),
        "Primary data indexed per day (time-based workload)",
        Daily,
        Field::Size(|o| &mut o.daily_ingest),
    ),
    workload_key(
        "daily_docs",
        Some("docs"),
        "Documents indexed per day (time-based workload)",
        Daily,
        Field::Docs(|o| &mut o.daily_docs),
    ),
    workload_key(
        "hot_days",
        None,
        "Days on the hot tier [default: 7]",
        Daily,
        Field::Count(|o| &mut o.hot_days),
    ),
    workload_key(
        "warm_days",
        None,
        "Days on the warm tier [default: 0]",
        Daily,
        Field::Count(|o| &mut o.warm_days),
    ),
    workload_key(
        "cold_days",
        None,
        "Days on the cold tier [default: 0]",
        Daily,
        Field::Count(|o| &mut o.cold_days),
    ),
    workload_key(
        "expected_size",
        Some("expected"),
        "Expected primary size of one growing index (instead of daily indexes)",
        Growing,
        Field::Size(|o| &mut o.expected_size),
    ),
    workload_key(
        "expected_docs",
        None,
        "Expected documents of the growing index",
        Growing,
        Field::Docs(|o| &mut o.expected_docs),
    ),
    key(
        "replicas",
        None,
        "Replicas per primary [default: 1]",
        Field::Count(|o| &mut o.replicas),
    ),
    key(
        "max_shard_size",
        Some("max_shard"),
        "Largest primary shard wanted [default: 50gb]",
        Field::Size(|o| &mut o.max_shard_size),
    ),
    key(
        "min_shard_size",
        Some("min_shard"),
        "Smallest primary shard before a warning [default: 10gb]",
        Field::Size(|o| &mut o.min_shard_size),
    ),
    key(
        "max_docs_per_shard",
        Some("max_docs"),
        "Most documents per shard [default: 200000000]",
        Field::Docs(|o| &mut o.max_docs_per_shard),
    ),
    key(
        "growth_factor",
        Some("growth"),
        "Growth multiplier of the hot-node rule; 1 turns it off [default: 2]",
        Field::Count(|o| &mut o.growth_factor),
    ),
    key(
        "shrink_to",
        Some("shrink"),
        "Shrink to this many primaries in the warm phase [default: no shrink]",
        Field::Count(|o| &mut o.shrink_to),
    ),
    key(
        "tier_routing",
        None,
        "How indexes move between tiers [default: data-tiers]",
        Field::Routing(|o| &mut o.tier_routing),
    ),
    key(
        "tier_attribute",
        None,
        "Node attribute for --tier-routing node-attribute [default: box_type]",
        Field::Text(|o| &mut o.tier_attribute),
    ),
    key(
        "data_stream",
        None,
        "Make the template create a data stream [default: alias-based rollover]",
        Field::Flag(|o| &mut o.data_stream),
    ),
    key(
        "max_shards_per_node",
        None,
        "cluster.max_shards_per_node [default: 1000]",
        Field::Count(|o| &mut o.max_shards_per_node),
    ),
    key(
        "shards_per_heap_gb",
        None,
        "Heap guidance in shards per GB of heap [default: 20]",
        Field::Count(|o| &mut o.shards_per_heap_gb),
    ),
    key(
        "merge_headroom",
        None,
        "Disk reserved for merges, fraction of data [default: 0.1]",
        Field::Fraction(|o| &mut o.merge_headroom),
    ),
    key(
        "watermark_low",
        None,
        "Low disk watermark, fraction [default: 0.85]",
        Field::Fraction(|o| &mut o.watermark_low),
    ),
    key(
        "watermark_high",
        None,
        "High disk watermark, fraction [default: 0.90]",
        Field::Fraction(|o| &mut o.watermark_high),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_sets_its_own_field_only() {
        for key in &OVERRIDE_KEYS {
            assert_eq!(OverrideKey::find(key.name), Some(key));
            assert_eq!(OverrideKey::find(&format!("--{}", key.flag())), Some(key));
            let mut overrides = PlanOverrides::default();
            assert!(!key.is_given(&mut overrides), "{key:?}");
            let sample = match key.kind() {
                ValueKind::Count => "3",
                ValueKind::Docs => "1_000",
                ValueKind::Size => "5gb",
                ValueKind::Fraction => "0.5",
                ValueKind::Text => "abc",
                ValueKind::Flag => "yes",
                ValueKind::Routing => "node-attribute",
            };
            let value = key.kind().parse(sample).expect("sample parses");
            assert!(key.set(&mut overrides, value), "{key:?}");
            assert!(key.is_given(&mut overrides), "{key:?}");
            let given = OVERRIDE_KEYS
                .iter()
                .filter(|other| other.is_given(&mut overrides))
                .count();
            assert_eq!(given, 1, "{key:?} sets one field");
            assert!(
                !key.set(&mut overrides, OverrideValue::Flag(true))
                    || key.kind() == ValueKind::Flag
            );
        }
    }

    #[test]
    fn values_of_each_kind() {
        assert_eq!(ValueKind::Count.parse("-1"), None);
        assert_eq!(
            ValueKind::Docs.parse("600_000_000"),
            Some(OverrideValue::Docs(600_000_000))
        );
        assert_eq!(ValueKind::Fraction.parse("NaN"), None);
        assert_eq!(ValueKind::Text.parse("Logs"), None);
        assert_eq!(ValueKind::Flag.parse("maybe"), None);
        assert_eq!(
            ValueKind::Routing.parse("DATA-TIERS"),
            Some(OverrideValue::Routing(TierRouting::DataTiers))
        );
    }
}
