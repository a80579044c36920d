//! What Elasticsearch holds for one mapping's alias: the live index, the
//! versioned indexes and the one being built; and the alias actions that
//! move between these states. Pure: the adapter ([`super::admin`]) fetches
//! the JSON, this module reads it and plans.

use super::names::{next_alias, version_of, versioned_index};
use serde_json::{Value, json};

/// Where the alias name stands today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// The alias exists; `write_index` is where writes go (the index marked
    /// `is_write_index`, or the only index).
    Alias {
        /// Indexes behind the alias.
        indexes: Vec<String>,
        /// The write index, when one is defined.
        write_index: Option<String>,
    },
    /// A concrete index has the alias's name (set up before versioned indexes).
    ConcreteIndex,
    /// Nothing has the name.
    Missing,
}

/// One `<alias>-v<N>` index.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedIndex {
    /// Its name.
    pub name: String,
    /// N.
    pub version: u32,
    /// Its aliases.
    pub aliases: Vec<String>,
    /// Its `_meta.esync` entry (`null` when absent).
    pub meta: Value,
}

/// The alias and every index around it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexFamily {
    /// The alias (the mapping's `index`).
    pub alias: String,
    /// The alias's state.
    pub live: Live,
    /// Versioned indexes, oldest first.
    pub versions: Vec<VersionedIndex>,
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected Elasticsearch response: {0}")]
pub struct UnexpectedResponse(pub String);

impl IndexFamily {
    /// Reads `GET /<alias>-v*` (index infos) and the live state.
    pub fn from_responses(
        alias: &str,
        live: Live,
        versioned: &Value,
    ) -> Result<IndexFamily, UnexpectedResponse> {
        let object = versioned
            .as_object()
            .ok_or_else(|| UnexpectedResponse(format!("GET {alias}-v*: {versioned}")))?;
        let mut versions: Vec<VersionedIndex> = object
            .iter()
            .filter_map(|(name, info)| {
                let version = version_of(alias, name)?;
                Some(VersionedIndex {
                    name: name.clone(),
                    version,
                    aliases: info["aliases"]
                        .as_object()
                        .map(|aliases| aliases.keys().cloned().collect())
                        .unwrap_or_default(),
                    meta: info["mappings"]["_meta"]["esync"].clone(),
                })
            })
            .collect();
        versions.sort_by_key(|index| index.version);
        Ok(IndexFamily {
            alias: alias.to_owned(),
            live,
            versions,
        })
    }

    /// The index that serves searches and takes writes.
    pub fn live_index(&self) -> Option<&str> {
        match &self.live {
            Live::Alias {
                indexes,
                write_index,
            } => write_index
                .as_deref()
                .or_else(|| (indexes.len() == 1).then(|| indexes[0].as_str())),
            Live::ConcreteIndex => Some(&self.alias),
            Live::Missing => None,
        }
    }

    /// The index announced by `<alias>.next`, being filled.
    pub fn building(&self) -> Option<&VersionedIndex> {
        let next = next_alias(&self.alias);
        self.versions
            .iter()
            .find(|index| index.aliases.contains(&next))
    }

    /// The name of the next version to create.
    pub fn next_index_name(&self) -> String {
        let last = self.versions.last().map_or(0, |index| index.version);
        versioned_index(&self.alias, last + 1)
    }

    /// The versioned index that was live before the current one: the newest
    /// older one (rollback's target).
    pub fn previous(&self) -> Option<&VersionedIndex> {
        let live = self.live_index()?;
        let live_version = version_of(&self.alias, live)?;
        self.versions
            .iter()
            .rev()
            .find(|index| index.version < live_version)
    }

    /// Versioned indexes `prune --keep keep` deletes: neither live nor being
    /// built nor aliased at all, beyond the `keep` newest of them.
    pub fn prune_candidates(&self, keep: usize) -> Vec<String> {
        let live = self.live_index();
        let idle: Vec<&VersionedIndex> = self
            .versions
            .iter()
            .filter(|index| Some(index.name.as_str()) != live && index.aliases.is_empty())
            .collect();
        let remove = idle.len().saturating_sub(keep);
        idle[..remove]
            .iter()
            .map(|index| index.name.clone())
            .collect()
    }
}

/// What `index create` does for a family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatePlan {
    /// The alias already serves an index: nothing to do.
    AlreadyServed(String),
    /// Create this index with the alias as its write alias.
    Create(String),
    /// A concrete index holds the alias's name: refuse, with what to do.
    Refuse(String),
}

/// Decides what `index create` does.
pub fn plan_create(family: &IndexFamily) -> CreatePlan {
    match (&family.live, family.live_index()) {
        (Live::ConcreteIndex, _) => CreatePlan::Refuse(format!(
            "{} is a concrete index, not an alias; run `esync index rebuild` to move it behind the alias {} without downtime",
            family.alias, family.alias
        )),
        (Live::Alias { indexes, .. }, None) => CreatePlan::Refuse(format!(
            "the alias {} points at {} without a write index; mark one with is_write_index",
            family.alias,
            indexes.join(", ")
        )),
        (_, Some(live)) => CreatePlan::AlreadyServed(live.to_owned()),
        (Live::Missing, None) => CreatePlan::Create(family.next_index_name()),
    }
}

/// The body creating `index`: the configured definition, `_meta.esync`, and
/// `aliases` (so that the index never exists unannounced).
pub fn create_body(definition: &Value, meta: Value, aliases: Value) -> Value {
    let mut body = definition.clone();
    let mappings = &mut body["mappings"];
    if !mappings.is_object() {
        *mappings = json!({});
    }
    let user_meta = &mut mappings["_meta"];
    if !user_meta.is_object() {
        *user_meta = json!({});
    }
    user_meta["esync"] = meta;
    body["aliases"] = aliases;
    body
}

/// One `_aliases` request that makes `to` the alias's write index and stops
/// announcing it: the alias leaves the old indexes (or the concrete index
/// of the same name is removed) in the same atomic call.
pub fn swap_actions(family: &IndexFamily, to: &str) -> Value {
    let alias = &family.alias;
    let mut actions = Vec::new();
    match &family.live {
        Live::Alias { indexes, .. } => {
            for index in indexes.iter().filter(|index| *index != to) {
                actions.push(json!({"remove": {"index": index, "alias": alias}}));
            }
        }
        Live::ConcreteIndex => actions.push(json!({"remove_index": {"index": alias}})),
        Live::Missing => {}
    }
    actions.push(json!({"add": {"index": to, "alias": alias, "is_write_index": true}}));
    if let Some(building) = family.building() {
        actions.push(json!({"remove": {"index": building.name, "alias": next_alias(alias)}}));
    }
    json!({ "actions": actions })
}

/// Announces `index` as the one being built (daemons start writing to it).
pub fn announce_actions(family: &IndexFamily, index: &str) -> Value {
    json!({"actions": [{"add": {"index": index, "alias": next_alias(&family.alias)}}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(live: Live, versioned: Value) -> IndexFamily {
        IndexFamily::from_responses("orders", live, &versioned).unwrap()
    }

    fn alias_to(index: &str) -> Live {
        Live::Alias {
            indexes: vec![index.into()],
            write_index: Some(index.into()),
        }
    }

    #[test]
    fn create_is_idempotent_and_refuses_what_it_cannot_fix() {
        let empty = family(Live::Missing, json!({}));
        assert_eq!(plan_create(&empty), CreatePlan::Create("orders-v1".into()));
        let served = family(
            alias_to("orders-v1"),
            json!({"orders-v1": {"aliases": {"orders": {"is_write_index": true}}}}),
        );
        assert_eq!(
            plan_create(&served),
            CreatePlan::AlreadyServed("orders-v1".into())
        );
        assert!(matches!(
            plan_create(&family(Live::ConcreteIndex, json!({}))),
            CreatePlan::Refuse(message) if message.contains("concrete index")
        ));
        let no_write_index = Live::Alias {
            indexes: vec!["a".into(), "b".into()],
            write_index: None,
        };
        assert!(matches!(
            plan_create(&family(no_write_index, json!({}))),
            CreatePlan::Refuse(message) if message.contains("is_write_index")
        ));
    }

    #[test]
    fn versions_building_previous_and_next() {
        let family = family(
            alias_to("orders-v2"),
            json!({
                "orders-v10": {"aliases": {"orders.next": {}}},
                "orders-v2": {"aliases": {"orders": {"is_write_index": true}}, "mappings": {"_meta": {"esync": {"live_since": "t"}}}},
                "orders-v1": {"aliases": {}},
                "orders-vip-v1": {"aliases": {}},
            }),
        );
        let names: Vec<_> = family.versions.iter().map(|v| v.version).collect();
        assert_eq!(names, vec![1, 2, 10], "numeric order, look-alikes ignored");
        assert_eq!(family.building().unwrap().name, "orders-v10");
        assert_eq!(family.next_index_name(), "orders-v11");
        assert_eq!(family.previous().unwrap().name, "orders-v1");
        assert_eq!(family.versions[1].meta["live_since"], "t");
    }

    #[test]
    fn prune_keeps_live_building_and_the_newest_idle() {
        let family = family(
            alias_to("orders-v4"),
            json!({
                "orders-v1": {"aliases": {}},
                "orders-v2": {"aliases": {}},
                "orders-v3": {"aliases": {}},
                "orders-v4": {"aliases": {"orders": {}}},
                "orders-v5": {"aliases": {"orders.next": {}}},
            }),
        );
        assert_eq!(family.prune_candidates(1), vec!["orders-v1", "orders-v2"]);
        assert_eq!(family.prune_candidates(0).len(), 3);
        assert!(family.prune_candidates(5).is_empty());
    }

    #[test]
    fn swap_moves_the_alias_and_retracts_the_announcement_in_one_call() {
        let family = family(
            alias_to("orders-v1"),
            json!({
                "orders-v1": {"aliases": {"orders": {"is_write_index": true}}},
                "orders-v2": {"aliases": {"orders.next": {}}},
            }),
        );
        assert_eq!(
            swap_actions(&family, "orders-v2"),
            json!({"actions": [
                {"remove": {"index": "orders-v1", "alias": "orders"}},
                {"add": {"index": "orders-v2", "alias": "orders", "is_write_index": true}},
                {"remove": {"index": "orders-v2", "alias": "orders.next"}},
            ]})
        );
        let legacy = IndexFamily::from_responses(
            "orders",
            Live::ConcreteIndex,
            &json!({"orders-v1": {"aliases": {"orders.next": {}}}}),
        )
        .unwrap();
        assert_eq!(
            swap_actions(&legacy, "orders-v1")["actions"][0],
            json!({"remove_index": {"index": "orders"}})
        );
    }

    #[test]
    fn create_body_keeps_the_users_meta_and_adds_esyncs() {
        let definition = json!({"settings": {"number_of_shards": 2}, "mappings": {"_meta": {"team": "search"}, "properties": {}}});
        let body = create_body(
            &definition,
            json!({"version": 1}),
            json!({"orders": {"is_write_index": true}}),
        );
        assert_eq!(body["mappings"]["_meta"]["team"], "search");
        assert_eq!(body["mappings"]["_meta"]["esync"]["version"], 1);
        assert_eq!(body["aliases"]["orders"]["is_write_index"], true);
        assert_eq!(body["settings"]["number_of_shards"], 2);
    }
}
