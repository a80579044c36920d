//! Index template and ILM policy bodies for a plan, ready to PUT.
//!
//! `PUT _index_template/<name>` takes [`index_template`] and
//! `PUT _ilm/policy/<name>-policy` takes [`ilm_policy`]. Pure JSON building:
//! nothing here talks to a cluster.
//!
//! ILM's `min_age` counts from rollover. A daily index rolls over at the end
//! of its first day, so a phase that starts after N days in total (writing day
//! included) has `min_age` N-1 days.

use serde_json::{Map, Value, json};

use crate::input::{PlanInput, Tier, TierRouting, Workload};
use crate::plan::Plan;

/// Template priority: above the built-in `logs-*-*` / `metrics-*-*`
/// templates (100) so that overlapping patterns do not clash.
pub const TEMPLATE_PRIORITY: u32 = 200;

/// The ILM policy name for `input`: `<name>-policy`.
pub fn policy_name(input: &PlanInput) -> String {
    format!("{}-policy", input.name)
}

/// The index pattern the template matches: `<name>-*`.
pub fn index_pattern(input: &PlanInput) -> String {
    format!("{}-*", input.name)
}

fn tier_routing_settings(input: &PlanInput, tier: Tier, settings: &mut Map<String, Value>) {
    match input.tier_routing {
        TierRouting::DataTiers => {
            settings.insert(
                "index.routing.allocation.include._tier_preference".to_string(),
                json!(format!("data_{tier}")),
            );
        }
        TierRouting::NodeAttribute => {
            settings.insert(
                format!("index.routing.allocation.require.{}", input.tier_attribute),
                json!(tier.name()),
            );
        }
    }
}

/// The composable index template body (`PUT _index_template/<name>`).
pub fn index_template(input: &PlanInput, plan: &Plan) -> Value {
    let mut settings = Map::new();
    settings.insert("index.number_of_shards".to_string(), json!(plan.primaries));
    settings.insert("index.number_of_replicas".to_string(), json!(plan.replicas));
    settings.insert(
        "index.lifecycle.name".to_string(),
        json!(policy_name(input)),
    );
    if !input.data_stream {
        settings.insert(
            "index.lifecycle.rollover_alias".to_string(),
            json!(input.name),
        );
    }
    tier_routing_settings(input, Tier::Hot, &mut settings);
    let mut template = Map::new();
    template.insert("index_patterns".to_string(), json!([index_pattern(input)]));
    if input.data_stream {
        template.insert("data_stream".to_string(), json!({}));
    }
    template.insert("priority".to_string(), json!(TEMPLATE_PRIORITY));
    template.insert("template".to_string(), json!({ "settings": settings }));
    template.insert(
        "_meta".to_string(),
        json!({
            "created_by": "shardplan",
            "primaries_reason": plan
                .rules
                .iter()
                .map(|step| step.reason.clone())
                .collect::<Vec<_>>(),
        }),
    );
    Value::Object(template)
}

fn days(count: u32) -> String {
    format!("{count}d")
}

fn move_actions(input: &PlanInput, tier: Tier, priority: u32) -> Map<String, Value> {
    let mut actions = Map::new();
    actions.insert("set_priority".to_string(), json!({ "priority": priority }));
    if input.tier_routing == TierRouting::NodeAttribute {
        actions.insert(
            "allocate".to_string(),
            json!({ "require": { input.tier_attribute.clone(): tier.name() } }),
        );
        // Without this, ILM's implicit migrate action would also add a data
        // tier preference that nodes with only the attribute cannot satisfy.
        actions.insert("migrate".to_string(), json!({ "enabled": false }));
    }
    actions
}

/// The ILM policy body (`PUT _ilm/policy/<name>-policy`).
pub fn ilm_policy(input: &PlanInput, plan: &Plan) -> Value {
    let mut phases = Map::new();
    let mut rollover = Map::new();
    if matches!(input.workload, Workload::TimeBased { .. }) {
        rollover.insert("max_age".to_string(), json!("1d"));
    }
    rollover.insert(
        "max_primary_shard_size".to_string(),
        json!(input.max_shard_size.to_exact_string()),
    );
    phases.insert(
        "hot".to_string(),
        json!({
            "min_age": "0ms",
            "actions": { "rollover": rollover, "set_priority": { "priority": 100 } },
        }),
    );
    if let Workload::TimeBased {
        hot_days,
        warm_days,
        cold_days,
        ..
    } = input.workload
    {
        let mut days_before = hot_days;
        if warm_days > 0 {
            let mut actions = move_actions(input, Tier::Warm, 50);
            if let Some(target) = plan.shrink_to {
                actions.insert("shrink".to_string(), json!({ "number_of_shards": target }));
            }
            phases.insert(
                "warm".to_string(),
                json!({ "min_age": days(days_before - 1), "actions": actions }),
            );
            days_before += warm_days;
        }
        if cold_days > 0 {
            phases.insert(
                "cold".to_string(),
                json!({
                    "min_age": days(days_before - 1),
                    "actions": move_actions(input, Tier::Cold, 0),
                }),
            );
            days_before += cold_days;
        }
        phases.insert(
            "delete".to_string(),
            json!({ "min_age": days(days_before - 1), "actions": { "delete": {} } }),
        );
    }
    json!({ "policy": { "phases": phases } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::TierSpec;
    use crate::plan::plan_shards;
    use crate::units::ByteSize;

    fn input() -> PlanInput {
        PlanInput {
            hot: TierSpec {
                nodes: 3,
                ..TierSpec::default()
            },
            warm: TierSpec {
                nodes: 4,
                disk: ByteSize::tb(8),
                ..TierSpec::default()
            },
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
    fn template_and_policy_for_data_tiers() {
        let input = input();
        let plan = plan_shards(&input).expect("valid");
        let template = index_template(&input, &plan);
        assert_eq!(template["index_patterns"], json!(["logs-*"]));
        let settings = &template["template"]["settings"];
        assert_eq!(settings["index.number_of_shards"], json!(12));
        assert_eq!(settings["index.lifecycle.rollover_alias"], json!("logs"));
        assert_eq!(
            settings["index.routing.allocation.include._tier_preference"],
            json!("data_hot")
        );
        let policy = ilm_policy(&input, &plan);
        let phases = &policy["policy"]["phases"];
        assert_eq!(
            phases["hot"]["actions"]["rollover"],
            json!({"max_age": "1d", "max_primary_shard_size": "50gb"})
        );
        assert_eq!(phases["warm"]["min_age"], json!("6d"));
        assert_eq!(phases["warm"]["actions"].get("allocate"), None);
        assert_eq!(phases["delete"]["min_age"], json!("36d"));
    }

    #[test]
    fn node_attribute_routing_and_shrink() {
        let mut input = input();
        input.tier_routing = TierRouting::NodeAttribute;
        input.shrink_to = Some(4);
        input.data_stream = true;
        let plan = plan_shards(&input).expect("valid");
        let template = index_template(&input, &plan);
        assert_eq!(template["data_stream"], json!({}));
        let settings = &template["template"]["settings"];
        assert_eq!(
            settings["index.routing.allocation.require.box_type"],
            json!("hot")
        );
        assert_eq!(settings.get("index.lifecycle.rollover_alias"), None);
        let warm = &ilm_policy(&input, &plan)["policy"]["phases"]["warm"]["actions"];
        assert_eq!(warm["allocate"], json!({"require": {"box_type": "warm"}}));
        assert_eq!(warm["migrate"], json!({"enabled": false}));
        assert_eq!(warm["shrink"], json!({"number_of_shards": 4}));
    }
}
