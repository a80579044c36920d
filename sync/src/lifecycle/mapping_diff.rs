//! Compares the mappings an index has with the configured ones, field by
//! field (`esync check`).

use serde_json::Value;
use std::collections::BTreeMap;

/// One difference, on its own line in `esync check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingDifference {
    /// Configured, absent from the index.
    Missing {
        /// Dotted path.
        field: String,
        /// Configured type.
        configured: String,
    },
    /// Present on both sides with different types.
    TypeConflict {
        /// Dotted path.
        field: String,
        /// Configured type.
        configured: String,
        /// The index's type.
        live: String,
    },
    /// In the index only: added by dynamic mapping.
    Dynamic {
        /// Dotted path.
        field: String,
        /// The index's type.
        live: String,
    },
}

impl std::fmt::Display for MappingDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MappingDifference::Missing { field, configured } => {
                write!(
                    f,
                    "field {field}: configured as {configured}, missing from the index"
                )
            }
            MappingDifference::TypeConflict {
                field,
                configured,
                live,
            } => write!(
                f,
                "field {field}: configured as {configured}, the index has {live} (a type change needs `esync index rebuild`)"
            ),
            MappingDifference::Dynamic { field, live } => write!(
                f,
                "field {field}: added dynamically as {live}, not in the configured mappings"
            ),
        }
    }
}

/// Differences between `configured` and `live` mappings (`{properties: ...}`
/// objects), in field order.
pub fn compare(configured: &Value, live: &Value) -> Vec<MappingDifference> {
    let configured = fields(configured);
    let live = fields(live);
    let mut differences = Vec::new();
    for (field, configured_type) in &configured {
        match live.get(field) {
            None => differences.push(MappingDifference::Missing {
                field: field.clone(),
                configured: configured_type.clone(),
            }),
            Some(live_type) if live_type != configured_type => {
                differences.push(MappingDifference::TypeConflict {
                    field: field.clone(),
                    configured: configured_type.clone(),
                    live: live_type.clone(),
                })
            }
            Some(_) => {}
        }
    }
    for (field, live_type) in &live {
        if !configured.contains_key(field) {
            differences.push(MappingDifference::Dynamic {
                field: field.clone(),
                live: live_type.clone(),
            });
        }
    }
    differences.sort_by(|a, b| field_of(a).cmp(field_of(b)));
    differences
}

fn field_of(difference: &MappingDifference) -> &str {
    match difference {
        MappingDifference::Missing { field, .. }
        | MappingDifference::TypeConflict { field, .. }
        | MappingDifference::Dynamic { field, .. } => field,
    }
}

/// Every field as dotted path -> type, sub-objects and multi-fields included.
fn fields(mappings: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    collect(mappings, "", &mut out);
    out
}

fn collect(node: &Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    for key in ["properties", "fields"] {
        let Some(children) = node[key].as_object() else {
            continue;
        };
        for (name, child) in children {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let kind = child["type"]
                .as_str()
                .unwrap_or(if child["properties"].is_object() {
                    "object"
                } else {
                    "unknown"
                });
            out.insert(path.clone(), kind.to_owned());
            collect(child, &path, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_missing_conflicting_and_dynamic_fields_one_each() {
        let configured = json!({"properties": {
            "status": {"type": "keyword"},
            "total": {"type": "scaled_float", "scaling_factor": 100},
            "customer": {"properties": {"name": {"type": "text", "fields": {"raw": {"type": "keyword"}}}}},
            "note": {"type": "text"},
        }});
        let live = json!({"properties": {
            "status": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
            "total": {"type": "scaled_float", "scaling_factor": 100},
            "customer": {"properties": {"name": {"type": "text"}}},
            "version": {"type": "long"},
        }});
        let lines: Vec<String> = compare(&configured, &live)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            vec![
                "field customer.name.raw: configured as keyword, missing from the index",
                "field note: configured as text, missing from the index",
                "field status: configured as keyword, the index has text (a type change needs `esync index rebuild`)",
                "field status.keyword: added dynamically as keyword, not in the configured mappings",
                "field version: added dynamically as long, not in the configured mappings",
            ]
        );
    }

    #[test]
    fn equal_mappings_have_no_differences() {
        let mappings = json!({"dynamic": "strict", "properties": {"a": {"type": "long"}, "o": {"properties": {"b": {"type": "keyword"}}}}});
        assert!(compare(&mappings, &mappings).is_empty());
        assert!(compare(&json!({}), &json!({})).is_empty());
    }
}
