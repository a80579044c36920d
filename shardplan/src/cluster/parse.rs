//! Parsing of the cluster's `_cat` and `_settings` responses (JSON values)
//! into the [`super`] types. Pure: the binary fetches them; only fields of
//! the official REST API that are the same in Elasticsearch 7.17, 8.x, 9.x
//! and OpenSearch 2.x are read.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{IndexInfo, NodeInfo, ShardInfo};
use crate::error::ClusterDataError;
use crate::units::ByteSize;

fn bad(endpoint: &'static str, reason: String) -> ClusterDataError {
    ClusterDataError::BadResponse { endpoint, reason }
}

fn rows<'a>(endpoint: &'static str, value: &'a Value) -> Result<&'a Vec<Value>, ClusterDataError> {
    value
        .as_array()
        .ok_or_else(|| bad(endpoint, format!("expected a JSON array, got {value}")))
}

fn text(row: &Value, field: &str) -> Option<String> {
    match row.get(field)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn required(endpoint: &'static str, row: &Value, field: &str) -> Result<String, ClusterDataError> {
    text(row, field).ok_or_else(|| bad(endpoint, format!("row without {field}: {row}")))
}

fn number<T: std::str::FromStr>(
    endpoint: &'static str,
    row: &Value,
    field: &str,
) -> Result<Option<T>, ClusterDataError> {
    match text(row, field) {
        None => Ok(None),
        Some(value) => value
            .parse()
            .map(Some)
            .map_err(|_| bad(endpoint, format!("{field} is not a number: {value:?}"))),
    }
}

/// Parses `_cat/nodes?format=json&bytes=b&h=name,node.role,heap.max,disk.total`.
pub fn parse_cat_nodes(value: &Value) -> Result<Vec<NodeInfo>, ClusterDataError> {
    const ENDPOINT: &str = "_cat/nodes";
    rows(ENDPOINT, value)?
        .iter()
        .map(|row| {
            Ok(NodeInfo {
                name: required(ENDPOINT, row, "name")?,
                roles: text(row, "node.role").unwrap_or_default(),
                attributes: BTreeMap::new(),
                heap_max: number(ENDPOINT, row, "heap.max")?.map(ByteSize),
                disk_total: number(ENDPOINT, row, "disk.total")?.map(ByteSize),
                disk_percent: None,
            })
        })
        .collect()
}

/// Adds `_cat/nodeattrs?format=json&h=node,attr,value` to `nodes`.
pub fn add_node_attributes(nodes: &mut [NodeInfo], value: &Value) -> Result<(), ClusterDataError> {
    const ENDPOINT: &str = "_cat/nodeattrs";
    for row in rows(ENDPOINT, value)? {
        let node_name = required(ENDPOINT, row, "node")?;
        let attribute = required(ENDPOINT, row, "attr")?;
        let attribute_value = text(row, "value").unwrap_or_default();
        if let Some(node) = nodes.iter_mut().find(|node| node.name == node_name) {
            node.attributes.insert(attribute, attribute_value);
        }
    }
    Ok(())
}

/// Adds `_cat/allocation?format=json&bytes=b&h=node,disk.percent,disk.total`.
pub fn add_allocation(nodes: &mut [NodeInfo], value: &Value) -> Result<(), ClusterDataError> {
    const ENDPOINT: &str = "_cat/allocation";
    for row in rows(ENDPOINT, value)? {
        let node_name = required(ENDPOINT, row, "node")?;
        if let Some(node) = nodes.iter_mut().find(|node| node.name == node_name) {
            node.disk_percent = number(ENDPOINT, row, "disk.percent")?;
            if let Some(total) = number(ENDPOINT, row, "disk.total")? {
                node.disk_total = Some(ByteSize(total));
            }
        }
    }
    Ok(())
}

/// Parses `_cat/shards?format=json&bytes=b&h=index,shard,prirep,state,docs,store,node`.
pub fn parse_cat_shards(value: &Value) -> Result<Vec<ShardInfo>, ClusterDataError> {
    const ENDPOINT: &str = "_cat/shards";
    rows(ENDPOINT, value)?
        .iter()
        .map(|row| {
            Ok(ShardInfo {
                index: required(ENDPOINT, row, "index")?,
                shard: number(ENDPOINT, row, "shard")?
                    .ok_or_else(|| bad(ENDPOINT, format!("row without shard: {row}")))?,
                primary: required(ENDPOINT, row, "prirep")? == "p",
                state: text(row, "state").unwrap_or_default(),
                docs: number(ENDPOINT, row, "docs")?,
                store: number(ENDPOINT, row, "store")?.map(ByteSize),
                // A relocating copy reads "node-a -> 10.0.0.2 id node-b".
                node: text(row, "node")
                    .and_then(|node| node.split(" ->").next().map(str::trim).map(str::to_string))
                    .filter(|node| !node.is_empty()),
            })
        })
        .collect()
}

/// Parses `GET _all/_settings?flat_settings=true` (optionally filtered to
/// the shard and routing settings).
pub fn parse_index_settings(value: &Value) -> Result<Vec<IndexInfo>, ClusterDataError> {
    const ENDPOINT: &str = "_settings";
    let indices = value
        .as_object()
        .ok_or_else(|| bad(ENDPOINT, format!("expected a JSON object, got {value}")))?;
    let mut result = Vec::new();
    for (name, body) in indices {
        let settings = body
            .get("settings")
            .ok_or_else(|| bad(ENDPOINT, format!("{name} has no settings")))?;
        let primaries = number(ENDPOINT, settings, "index.number_of_shards")?
            .ok_or_else(|| bad(ENDPOINT, format!("{name} has no index.number_of_shards")))?;
        let replicas = number(ENDPOINT, settings, "index.number_of_replicas")?.unwrap_or(0);
        let tier_preference = text(
            settings,
            "index.routing.allocation.include._tier_preference",
        )
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|tier| !tier.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
        let mut require = BTreeMap::new();
        if let Some(map) = settings.as_object() {
            for (key, setting) in map {
                if let Some(attribute) = key.strip_prefix("index.routing.allocation.require.")
                    && !attribute.starts_with('_')
                    && let Some(setting) = setting.as_str()
                {
                    require.insert(attribute.to_string(), setting.to_string());
                }
            }
        }
        result.push(IndexInfo {
            name: name.clone(),
            primaries,
            replicas,
            tier_preference,
            require,
            hidden: text(settings, "index.hidden").is_some_and(|hidden| hidden == "true"),
        });
    }
    result.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(result)
}

/// Reads `cluster.max_shards_per_node` from
/// `_cluster/settings?include_defaults=true&flat_settings=true`: transient,
/// then persistent, then defaults (the order Elasticsearch applies them).
pub fn parse_max_shards_per_node(value: &Value) -> Option<u64> {
    ["transient", "persistent", "defaults"]
        .iter()
        .find_map(|scope| text(value.get(scope)?, "cluster.max_shards_per_node"))
        .and_then(|limit| limit.parse().ok())
}
