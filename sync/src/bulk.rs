//! The `_bulk` wire format: encoding actions and classifying per-item results.
//!
//! Pure: bytes in, bytes out. Every action carries `version_type=external_gte`
//! so that a stale write is rejected by Elasticsearch itself (a 409, which is
//! success for us: something at least as new is already there).

use crate::document::BulkAction;
use serde::Deserialize;
use serde_json::Value;
use std::io::Write as _;

/// Appends the NDJSON for `actions` to `out` (action line, then source line for
/// index actions).
pub fn encode_bulk(actions: &[&BulkAction], out: &mut Vec<u8>) {
    for action in actions {
        encode_action(action, out);
    }
}

/// Appends the NDJSON for one action.
pub fn encode_action(action: &BulkAction, out: &mut Vec<u8>) {
    let (op, index, id, version, routing) = match action {
        BulkAction::Index {
            index,
            id,
            version,
            routing,
            ..
        } => ("index", index, id, version, routing),
        BulkAction::Delete {
            index,
            id,
            version,
            routing,
        } => ("delete", index, id, version, routing),
    };
    let mut meta = serde_json::Map::with_capacity(5);
    meta.insert("_index".into(), Value::String(index.to_string()));
    meta.insert("_id".into(), Value::String(id.clone()));
    meta.insert("version".into(), Value::from(*version));
    meta.insert("version_type".into(), Value::String("external_gte".into()));
    if let Some(routing) = routing {
        meta.insert("routing".into(), Value::String(routing.clone()));
    }
    let mut line = serde_json::Map::with_capacity(1);
    line.insert(op.into(), Value::Object(meta));
    serde_json::to_writer(&mut *out, &line).expect("serialising JSON into a Vec cannot fail");
    out.push(b'\n');
    if let BulkAction::Index { source, .. } = action {
        serde_json::to_writer(&mut *out, source).expect("serialising JSON into a Vec cannot fail");
        out.push(b'\n');
    }
    let _ = out.flush();
}

/// What happened to one action of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Written (created, updated, deleted, or delete of a document already gone).
    Written,
    /// Rejected because the index holds this or a newer version: success.
    VersionConflict,
    /// A transient failure (429, 5xx): send the item again later.
    Retryable {
        /// The HTTP status of the item.
        status: u16,
        /// Elasticsearch's error type and reason.
        reason: String,
    },
    /// A failure that sending again cannot fix (mapping or parse errors):
    /// dead-letter the id.
    Permanent {
        /// The HTTP status of the item.
        status: u16,
        /// Elasticsearch's error type and reason.
        reason: String,
    },
}

impl ItemOutcome {
    /// Done for good: written or superseded.
    pub fn is_success(&self) -> bool {
        matches!(self, ItemOutcome::Written | ItemOutcome::VersionConflict)
    }
}

/// A `_bulk` response that does not match its request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkResponseError {
    /// Not the documented `{took, errors, items}` shape.
    #[error("bulk response is not valid: {0}")]
    Malformed(String),
    /// A different number of items than actions sent.
    #[error("bulk response has {got} items for {sent} actions")]
    ItemCount {
        /// Actions sent.
        sent: usize,
        /// Items received.
        got: usize,
    },
}

#[derive(Deserialize)]
struct BulkResponse {
    errors: bool,
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// Classifies the items of a `_bulk` response (HTTP 200) in request order.
pub fn classify_bulk(
    body: &[u8],
    actions: &[&BulkAction],
) -> Result<Vec<ItemOutcome>, BulkResponseError> {
    let response: BulkResponse = serde_json::from_slice(body)
        .map_err(|error| BulkResponseError::Malformed(error.to_string()))?;
    if response.items.len() != actions.len() {
        return Err(BulkResponseError::ItemCount {
            sent: actions.len(),
            got: response.items.len(),
        });
    }
    if !response.errors {
        return Ok(vec![ItemOutcome::Written; actions.len()]);
    }
    response
        .items
        .into_iter()
        .zip(actions)
        .map(|(mut item, action)| {
            let (_op, item) = item
                .drain()
                .next()
                .ok_or_else(|| BulkResponseError::Malformed("empty bulk item".into()))?;
            Ok(classify_item(
                item.status,
                item.error.as_ref(),
                action.is_delete(),
            ))
        })
        .collect()
}

/// The policy for one item's status: 2xx written; 404 on delete written (the
/// document is already gone); 409 a version conflict (success); 429 and 5xx
/// retryable; any other 4xx permanent.
pub fn classify_item(status: u16, error: Option<&Value>, is_delete: bool) -> ItemOutcome {
    let reason = || {
        error
            .map(error_reason)
            .unwrap_or_else(|| format!("status {status}"))
    };
    match status {
        200..=299 => ItemOutcome::Written,
        404 if is_delete && error.is_none() => ItemOutcome::Written,
        409 => ItemOutcome::VersionConflict,
        429 | 500..=599 => ItemOutcome::Retryable {
            status,
            reason: reason(),
        },
        _ => ItemOutcome::Permanent {
            status,
            reason: reason(),
        },
    }
}

/// The policy for a whole request that failed before per-item results: 429,
/// 5xx and transport errors are retried, other statuses are permanent for
/// every item.
pub fn request_status_is_retryable(status: u16) -> bool {
    status == 429 || status == 408 || status >= 500
}

fn error_reason(error: &Value) -> String {
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
    let reason = error.get("reason").and_then(Value::as_str).unwrap_or("");
    let caused_by = error
        .get("caused_by")
        .and_then(|cause| cause.get("reason"))
        .and_then(Value::as_str)
        .map(|cause| format!(" (caused by: {cause})"))
        .unwrap_or_default();
    format!("{kind}: {reason}{caused_by}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn index_action(id: &str, version: u64) -> BulkAction {
        let mut source = serde_json::Map::new();
        source.insert("name".into(), json!("a\nb"));
        BulkAction::Index {
            index: Arc::from("orders"),
            id: id.into(),
            version,
            routing: Some("r1".into()),
            source,
        }
    }

    fn delete_action(id: &str, version: u64) -> BulkAction {
        BulkAction::Delete {
            index: Arc::from("orders"),
            id: id.into(),
            version,
            routing: None,
        }
    }

    #[test]
    fn encodes_ndjson_with_external_versions() {
        let (index, delete) = (index_action("1", 5), delete_action("2", 9));
        let mut out = Vec::new();
        encode_bulk(&[&index, &delete], &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                json!({"index": {"_index": "orders", "_id": "1", "version": 5, "version_type": "external_gte", "routing": "r1"}}),
                json!({"name": "a\nb"}),
                json!({"delete": {"_index": "orders", "_id": "2", "version": 9, "version_type": "external_gte"}}),
            ]
        );
        assert!(text.ends_with('\n'));
    }

    /// A response captured from Elasticsearch 8.15 for a mixed batch.
    const MIXED_RESPONSE: &str = r#"{"took":30,"errors":true,"items":[
      {"index":{"_index":"orders","_id":"1","_version":5,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}},
      {"index":{"_index":"orders","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[2]: version conflict, current version [7] is higher than the one provided [3]","index_uuid":"aAsFqTI0Tc2W0LCWgPNrOA","shard":"0","index":"orders"}}},
      {"index":{"_index":"orders","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}},
      {"index":{"_index":"orders","_id":"4","status":400,"error":{"type":"document_parsing_exception","reason":"[1:15] failed to parse field [total] of type [long] in document with id '4'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"abc\""}}}},
      {"delete":{"_index":"orders","_id":"5","_version":9,"result":"not_found","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":3,"_primary_term":1,"status":404}},
      {"index":{"_index":"orders","_id":"6","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
      {"delete":{"_index":"orders","_id":"7","status":404,"error":{"type":"index_not_found_exception","reason":"no such index [orders]"}}}
    ]}"#;

    #[test]
    fn classifies_a_real_mixed_response() {
        let actions = [
            index_action("1", 5),
            index_action("2", 3),
            index_action("3", 1),
            index_action("4", 1),
            delete_action("5", 9),
            index_action("6", 1),
            delete_action("7", 1),
        ];
        let refs: Vec<&BulkAction> = actions.iter().collect();
        let outcomes = classify_bulk(MIXED_RESPONSE.as_bytes(), &refs).unwrap();
        assert_eq!(outcomes[0], ItemOutcome::Written);
        assert_eq!(outcomes[1], ItemOutcome::VersionConflict);
        assert!(matches!(
            outcomes[2],
            ItemOutcome::Retryable { status: 429, .. }
        ));
        let ItemOutcome::Permanent {
            status: 400,
            reason,
        } = &outcomes[3]
        else {
            panic!("{:?}", outcomes[3])
        };
        assert!(
            reason.starts_with("document_parsing_exception") && reason.contains("For input string"),
            "{reason}"
        );
        assert_eq!(outcomes[4], ItemOutcome::Written);
        assert!(matches!(
            outcomes[5],
            ItemOutcome::Retryable { status: 503, .. }
        ));
        assert!(matches!(
            outcomes[6],
            ItemOutcome::Permanent { status: 404, .. }
        ));
    }

    #[test]
    fn all_ok_response_is_all_written() {
        let body = r#"{"took":3,"errors":false,"items":[{"index":{"_id":"1","status":200}},{"delete":{"_id":"2","status":200}}]}"#;
        let actions = [index_action("1", 1), delete_action("2", 1)];
        let refs: Vec<&BulkAction> = actions.iter().collect();
        assert_eq!(
            classify_bulk(body.as_bytes(), &refs).unwrap(),
            vec![ItemOutcome::Written; 2]
        );
    }

    #[test]
    fn mismatched_or_malformed_responses_are_errors() {
        let actions = [index_action("1", 1)];
        let refs: Vec<&BulkAction> = actions.iter().collect();
        assert_eq!(
            classify_bulk(br#"{"took":1,"errors":false,"items":[]}"#, &refs),
            Err(BulkResponseError::ItemCount { sent: 1, got: 0 })
        );
        assert!(matches!(
            classify_bulk(b"<html>", &refs),
            Err(BulkResponseError::Malformed(_))
        ));
    }

    #[test]
    fn request_level_statuses() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(request_status_is_retryable(status), "{status}");
        }
        for status in [400, 401, 403, 404, 413] {
            assert!(!request_status_is_retryable(status), "{status}");
        }
    }
}
