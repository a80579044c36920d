//! `/plan key=value ...`: shard planning with the `shardplan` library.
//!
//! The keys are shardplan's own table ([`shardplan::OVERRIDE_KEYS`]): each is
//! a flag of `shardplan plan` (`hot_nodes` for `--hot-nodes`) with a short
//! chat alias, and sets the same [`shardplan::PlanOverrides`] field laid over
//! the defaults, so shardplan owns the rules, the defaults and the
//! validation. Pure: text in, checked settings or a message out.

use super::CommandError;
use shardplan::{OVERRIDE_KEYS, OverrideKey, OverrideValue, PlanOverrides, ValueKind};
use std::fmt;

/// What `/plan` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanRequest {
    /// `/plan` or `/plan help`: the usage text.
    Usage,
    /// `key=value` settings that were checked by [`plan_input`] when parsed.
    Settings(Vec<PlanSetting>),
}

/// One `/plan` setting: a key and its value as typed (checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSetting {
    /// Which planning input it sets.
    pub key: &'static OverrideKey,
    /// The value as typed, e.g. `500gb`.
    pub value: String,
}

impl fmt::Display for PlanSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key.name, self.value)
    }
}

/// Usage of `/plan` (`/plan` and `/plan help` answer it): how to call it,
/// then every key of shardplan's table with its help.
pub fn plan_help() -> String {
    let mut text = String::from(
        "\
/plan key=value ... - primary shards per index, with the reason of each rule and the findings (shardplan)
e.g. /plan hot=6 warm=9 ingest=500gb hot_days=7 warm_days=30 replicas=1 max_shard=50gb
required: hot=N and ingest=SIZE a day (daily indexes), or expected=SIZE (one growing index)
sizes need a unit (500gb, 2tb; 1gb = 1024^3 bytes); the long names of the shardplan plan flags work too (hot_nodes, --hot-nodes)
keys:",
    );
    for key in &OVERRIDE_KEYS {
        text.push('\n');
        if let Some(alias) = key.alias {
            text.push_str(alias);
            text.push_str(" / ");
        }
        text.push_str(key.name);
        text.push_str(" - ");
        text.push_str(key.help);
    }
    text
}

/// Parses the arguments of `/plan`; the settings are checked by shardplan
/// at once, so a bad one is answered when the message arrives.
pub(super) fn parse_plan(args: &[&str]) -> Result<PlanRequest, CommandError> {
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
        let key = OverrideKey::find(key_text).ok_or_else(|| {
            CommandError::Plan(format!(
                "unknown key {:?}",
                key_text.chars().take(40).collect::<String>()
            ))
        })?;
        if settings.iter().any(|setting| setting.key == key) {
            return Err(CommandError::Plan(format!("{} is given twice", key.name)));
        }
        let value = value.trim();
        check_value(key, value)?;
        settings.push(PlanSetting {
            key,
            value: value.to_string(),
        });
    }
    plan_input(&settings)?;
    Ok(PlanRequest::Settings(settings))
}

/// The typed value of one setting, or a message naming the key and value.
fn check_value(key: &OverrideKey, value: &str) -> Result<OverrideValue, CommandError> {
    let kind = key.kind();
    // A bare number would be bytes, which in a chat is nearly always a slip
    // for gigabytes: ask for the unit.
    let unit_missing = kind == ValueKind::Size && !value.ends_with(['b', 'B']);
    match kind.parse(value) {
        Some(typed) if !unit_missing => Ok(typed),
        _ => {
            let shown: String = value.chars().take(40).collect();
            Err(CommandError::Plan(format!(
                "bad value {}={shown:?}: expected {}",
                key.name,
                kind.expected()
            )))
        }
    }
}

/// Builds the planning input from `/plan` settings: the same
/// [`PlanOverrides`] that `shardplan plan` builds from its flags, laid over
/// the defaults (shardplan owns the rules and the validation). The error
/// names the bad key and value.
pub fn plan_input(settings: &[PlanSetting]) -> Result<shardplan::PlanInput, CommandError> {
    let mut overrides = PlanOverrides::default();
    for setting in settings {
        let value = check_value(setting.key, &setting.value)?;
        // check_value gives each key a value of its own kind.
        if !setting.key.set(&mut overrides, value) {
            return Err(CommandError::Plan(format!(
                "bad value for {}",
                setting.key.name
            )));
        }
    }
    overrides
        .apply(shardplan::PlanInput::default())
        .map_err(plan_error)
}

/// A shardplan error as a chat message, with `/plan` key names.
pub fn plan_error(error: shardplan::PlanError) -> CommandError {
    match error {
        shardplan::PlanError::InvalidInput {
            field: "hot.nodes", ..
        } => CommandError::Plan("hot_nodes is required and at least 1, e.g. hot=3".to_string()),
        shardplan::PlanError::InvalidInput { field, reason } => {
            CommandError::Plan(format!("invalid {}: {reason}", key_of_input_field(field)))
        }
        other => CommandError::Plan(other.to_string()),
    }
}

/// The `/plan` key for a field named by [`shardplan::PlanError`]
/// (`hot.nodes`, `workload.daily_ingest`, ...), so errors use the names the
/// operator typed.
fn key_of_input_field(field: &str) -> String {
    let field = field.strip_prefix("workload.").unwrap_or(field);
    field.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Role, parse_command};

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
        let help = plan_help();
        for key in &OVERRIDE_KEYS {
            assert_eq!(OverrideKey::find(key.name), Some(key));
            assert!(help.contains(key.alias.unwrap_or(key.name)), "{key:?}");
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
                arg.split_once('=')
                    .and_then(|(key, _)| OverrideKey::find(key))
                    .is_some_and(|key| key.name == "hot_nodes")
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
}
