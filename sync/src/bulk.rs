//! The `_bulk` wire format: encoding actions and classifying per-item results,
//! and the policies on them: which Elasticsearch errors are the document's
//! fault (dead letter) and which are retried ([`retry_reason`]), what a
//! version conflict means ([`decide_conflict`]), how a request refused as too
//! large is split ([`Bisection`]).
//!
//! Pure: bytes in, bytes out, no I/O. Every action carries
//! `version_type=external_gte` so that a stale write is rejected by
//! Elasticsearch itself (a 409, which is success for us once it is clear that
//! something at least as new is there).

use crate::document::BulkAction;
use serde::Deserialize;
use serde_json::Value;
use std::io::Write as _;

/// Appends the NDJSON for one action (action line, then source line for an
/// index action).
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

/// Why an item is sent again. The label `reason` of
/// `esync_retries_total{stage="elasticsearch"}`; see the README's table of
/// Elasticsearch errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetryReason {
    /// The index refuses writes (`cluster_block_exception`: `index.blocks.write`,
    /// the flood-stage `read_only_allow_delete` block; `index_closed_exception`).
    IndexBlocked,
    /// The target does not exist or cannot take writes (`index_not_found_exception`,
    /// an alias without a write index, an invalid index name).
    IndexMissing,
    /// The credentials are refused (401/403, `security_exception`).
    Unauthorized,
    /// The cluster pushes back (429 `es_rejected_execution_exception`,
    /// `circuit_breaking_exception`).
    Rejected,
    /// The cluster or a shard is unavailable (5xx, no connection).
    Unavailable,
    /// A `413` answered a request of several documents: it is split and sent again.
    RequestTooLarge,
    /// An index action was refused by a delete tombstone (the document does
    /// not exist): sent again after `index.gc_deletes`.
    Tombstone,
    /// A hard delete was refused because the document's version is ahead of
    /// the delete's: sent again with a version above the document's.
    DeleteBehind,
    /// A version conflict could not be checked (the `_mget` failed).
    ConflictUnchecked,
    /// A response esync cannot read (not the `_bulk` shape).
    BadResponse,
    /// Any other status (Logstash's rule: only 400 and 404 are dead letters).
    Unexpected,
}

impl RetryReason {
    /// Every reason, for code that sums the counters.
    pub const ALL: [RetryReason; 11] = [
        RetryReason::IndexBlocked,
        RetryReason::IndexMissing,
        RetryReason::Unauthorized,
        RetryReason::Rejected,
        RetryReason::Unavailable,
        RetryReason::RequestTooLarge,
        RetryReason::Tombstone,
        RetryReason::DeleteBehind,
        RetryReason::ConflictUnchecked,
        RetryReason::BadResponse,
        RetryReason::Unexpected,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::IndexBlocked => "index_blocked",
            RetryReason::IndexMissing => "index_missing",
            RetryReason::Unauthorized => "unauthorized",
            RetryReason::Rejected => "rejected",
            RetryReason::Unavailable => "unavailable",
            RetryReason::RequestTooLarge => "request_too_large",
            RetryReason::Tombstone => "tombstone",
            RetryReason::DeleteBehind => "delete_behind",
            RetryReason::ConflictUnchecked => "conflict_unchecked",
            RetryReason::BadResponse => "bad_response",
            RetryReason::Unexpected => "unexpected",
        }
    }

    /// True when only a human can end it (a block, a missing index, refused
    /// credentials): `/healthz` fails at once and the log is at error level.
    /// The others pass by themselves and fail `/healthz` only when they last.
    pub fn needs_operator(self) -> bool {
        matches!(
            self,
            RetryReason::IndexBlocked
                | RetryReason::IndexMissing
                | RetryReason::Unauthorized
                | RetryReason::BadResponse
                | RetryReason::Unexpected
        )
    }

    /// What the operator should do, for the log.
    pub fn operator_hint(self) -> &'static str {
        match self {
            RetryReason::IndexBlocked => {
                "index is write-blocked (flood-stage disk watermark, index.blocks.write or a closed index): free disk space or lift the block; retrying"
            }
            RetryReason::IndexMissing => {
                "index is missing or takes no writes (deleted index, alias without a write index, auto-create disabled): create the index or fix the alias; retrying"
            }
            RetryReason::Unauthorized => {
                "elasticsearch refuses the credentials: fix the user's password, API key or privileges (write and read on the index); retrying"
            }
            RetryReason::Rejected => {
                "elasticsearch rejects writes (queue full or circuit breaker): the cluster is overloaded; retrying with backoff"
            }
            RetryReason::Unavailable => "elasticsearch or a shard is unavailable; retrying",
            RetryReason::RequestTooLarge => {
                "bulk request too large for the cluster (http.max_content_length): splitting it; lower elasticsearch.max_bulk_bytes"
            }
            RetryReason::Tombstone => {
                "re-inserted document refused by its delete tombstone: retrying after index.gc_deletes"
            }
            RetryReason::DeleteBehind => {
                "delete refused: the document's version is ahead of esync's clock; re-sending with a higher version"
            }
            RetryReason::ConflictUnchecked => "could not check version conflicts; retrying",
            RetryReason::BadResponse => {
                "unusable answer to _bulk (a proxy in the way?): check what answers at the elasticsearch URL; retrying"
            }
            RetryReason::Unexpected => {
                "unexpected elasticsearch answer: check the cluster and the log; retrying"
            }
        }
    }
}

impl std::fmt::Display for RetryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one action of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Written (created, updated, deleted, or delete of a document already gone).
    Written,
    /// Rejected because the index holds this or a newer version (or a delete
    /// tombstone): usually success, see [`decide_conflict`].
    VersionConflict {
        /// The version the index holds, when the reason reports it.
        current_version: Option<u64>,
        /// The concrete index that answered (behind an alias), when reported.
        concrete_index: Option<String>,
    },
    /// Not about this document (index, cluster, credentials, load): send the
    /// item again later.
    Retryable {
        /// The HTTP status of the item (0 without a response).
        status: u16,
        /// Elasticsearch's error type and reason.
        reason: String,
        /// The class of the failure (metric label, log hint, health).
        cause: RetryReason,
    },
    /// A failure of this document that sending again cannot fix (mapping or
    /// parse errors): dead-letter the id.
    Permanent {
        /// The HTTP status of the item.
        status: u16,
        /// Elasticsearch's error type and reason.
        reason: String,
    },
}

/// A `_bulk` or `_mget` response that does not match its request.
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
    #[serde(default, rename = "_index")]
    index: Option<String>,
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
            let mut outcome = classify_item(item.status, item.error.as_ref(), action.is_delete());
            if let ItemOutcome::VersionConflict { concrete_index, .. } = &mut outcome {
                *concrete_index = item.index;
            }
            Ok(outcome)
        })
        .collect()
}

/// The policy for one item: 2xx written; 404 on delete without an error
/// written (the document is already gone); 409 a version conflict; then by
/// error type ([`retry_reason`]): only document-level errors are
/// [`ItemOutcome::Permanent`], everything else is retried.
pub fn classify_item(status: u16, error: Option<&Value>, is_delete: bool) -> ItemOutcome {
    let reason = || {
        error
            .map(error_reason)
            .unwrap_or_else(|| format!("status {status}"))
    };
    match status {
        200..=299 => ItemOutcome::Written,
        404 if is_delete && error.is_none() => ItemOutcome::Written,
        409 => ItemOutcome::VersionConflict {
            current_version: error
                .and_then(|error| error.get("reason"))
                .and_then(Value::as_str)
                .and_then(current_version_of_conflict),
            concrete_index: None,
        },
        _ => {
            let kind = error
                .and_then(|error| error.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let text = error
                .and_then(|error| error.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("");
            match retry_reason(status, kind, text) {
                Some(cause) => ItemOutcome::Retryable {
                    status,
                    reason: reason(),
                    cause,
                },
                None => ItemOutcome::Permanent {
                    status,
                    reason: reason(),
                },
            }
        }
    }
}

/// The class of an Elasticsearch error from its status, `type` and `reason`;
/// `None` for a document-level error (dead letter). Index-, cluster- and
/// auth-level errors are retried whatever their status (a
/// `cluster_block_exception` comes as 403 or 429, an `index_not_found_exception`
/// as 404); unknown types follow Logstash: 400 and 404 are the document's
/// fault, every other status is retried.
pub fn retry_reason(status: u16, error_type: &str, reason: &str) -> Option<RetryReason> {
    let by_type = match error_type {
        "cluster_block_exception" | "index_closed_exception" => Some(RetryReason::IndexBlocked),
        "index_not_found_exception" | "invalid_index_name_exception" => {
            Some(RetryReason::IndexMissing)
        }
        // an alias whose write index is missing or ambiguous (ES 7 and 8 wording)
        "illegal_argument_exception"
            if reason.contains("no write index is defined for alias")
                || reason.contains("has more than one ind") =>
        {
            Some(RetryReason::IndexMissing)
        }
        "security_exception" | "authentication_exception" | "authorization_exception" => {
            Some(RetryReason::Unauthorized)
        }
        "es_rejected_execution_exception" | "circuit_breaking_exception" => {
            Some(RetryReason::Rejected)
        }
        "unavailable_shards_exception"
        | "no_shard_available_action_exception"
        | "primary_missing_action_exception"
        | "node_not_connected_exception"
        | "node_closed_exception"
        | "connect_transport_exception"
        | "master_not_discovered_exception"
        | "process_cluster_event_timeout_exception"
        | "timeout_exception" => Some(RetryReason::Unavailable),
        _ => None,
    };
    by_type.or(match status {
        400 | 404 => None,
        401 | 403 => Some(RetryReason::Unauthorized),
        413 => Some(RetryReason::RequestTooLarge),
        429 => Some(RetryReason::Rejected),
        500..=599 => Some(RetryReason::Unavailable),
        _ => Some(RetryReason::Unexpected),
    })
}

/// What to do with a `_bulk` request that failed as a whole (no per-item
/// results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// `413`: too large for the cluster; split it ([`Bisection`]).
    TooLarge,
    /// Send every item again later, for this reason. Nothing is dropped at
    /// request level: a 400 here is not about one document.
    Retry(RetryReason),
}

/// Classifies a non-200 answer to a whole `_bulk` request from its status and
/// body (`{"error": {"type": ...}}` when Elasticsearch wrote it).
pub fn classify_request_failure(status: u16, body: &[u8]) -> RequestFailure {
    if status == 413 {
        return RequestFailure::TooLarge;
    }
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &json["error"];
    let text = |field: &str| {
        error
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    RequestFailure::Retry(
        retry_reason(status, &text("type"), &text("reason")).unwrap_or(RetryReason::Unexpected),
    )
}

/// The version a 409 reports the index holds: `... current version [N] is
/// higher than the one provided [M]` (also `higher or equal to`).
pub fn current_version_of_conflict(reason: &str) -> Option<u64> {
    let (_, rest) = reason.split_once("current version [")?;
    let (digits, _) = rest.split_once(']')?;
    digits.parse().ok()
}

/// Which kind of write got a version conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// An index action with the row's version.
    Index,
    /// A delete with the row's own version (soft delete).
    RowDelete,
    /// A delete of a row that is gone, with version = esync's clock.
    HardDelete,
}

impl ConflictKind {
    /// The kind of `action`; `row_gone` when it deletes a row that is gone.
    pub fn of(action: &BulkAction, row_gone: bool) -> ConflictKind {
        match (action.is_delete(), row_gone) {
            (false, _) => ConflictKind::Index,
            (true, true) => ConflictKind::HardDelete,
            (true, false) => ConflictKind::RowDelete,
        }
    }
}

/// The document as the index holds it, from `_mget` (`None`: not found,
/// deleted or never written).
pub type StoredVersion = Option<u64>;

/// What to do with a version conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictDecision {
    /// Something at least as new is there: success.
    Superseded,
    /// Look the document up (`_mget`) and decide again with what it holds.
    LookUp,
    /// Re-read the row and send again now; a hard delete then gets at least
    /// `delete_version` (above the document's version).
    RetryNow {
        /// The lowest version for the next hard delete of this id.
        delete_version: Option<u64>,
    },
    /// The index holds a delete tombstone newer than the row's version (a
    /// counter-versioned id re-inserted after its delete): re-read and send
    /// again once `index.gc_deletes` has forgotten the tombstone.
    RetryAfterGcDeletes,
}

/// Decides on one version conflict. `current_version` is what the 409 said,
/// `stored` what `_mget` found (`None` before the look-up).
///
/// - a soft delete is superseded (the row's own version is ordered);
/// - a hard delete conflicts only when the document's version is ahead of
///   esync's clock: it must be re-sent above that version, or the document
///   stays for ever; a document already gone is done;
/// - an index action is superseded when the index holds a document at least
///   as new; when it holds none, a tombstone refused it and the row would be
///   missing until it changes again: retry after `index.gc_deletes`.
pub fn decide_conflict(
    kind: ConflictKind,
    sent_version: u64,
    current_version: Option<u64>,
    stored: Option<StoredVersion>,
) -> ConflictDecision {
    match (kind, current_version, stored) {
        (ConflictKind::RowDelete, _, _) => ConflictDecision::Superseded,
        (ConflictKind::HardDelete, _, Some(None)) => ConflictDecision::Superseded,
        (ConflictKind::HardDelete, _, Some(Some(version)))
        | (ConflictKind::HardDelete, Some(version), None) => ConflictDecision::RetryNow {
            delete_version: Some(version.saturating_add(1).max(sent_version)),
        },
        (ConflictKind::HardDelete, None, None) | (ConflictKind::Index, _, None) => {
            ConflictDecision::LookUp
        }
        (ConflictKind::Index, _, Some(Some(version))) if version >= sent_version => {
            ConflictDecision::Superseded
        }
        // the document went back below our version in between: read again
        (ConflictKind::Index, _, Some(Some(_))) => ConflictDecision::RetryNow {
            delete_version: None,
        },
        (ConflictKind::Index, _, Some(None)) => ConflictDecision::RetryAfterGcDeletes,
    }
}

/// The `_mget` body for documents given as (index, id, routing).
pub fn encode_mget(docs: &[(&str, &str, Option<&str>)]) -> Value {
    let docs: Vec<Value> = docs
        .iter()
        .map(|(index, id, routing)| {
            let mut doc = serde_json::Map::with_capacity(3);
            doc.insert("_index".into(), Value::String((*index).to_owned()));
            doc.insert("_id".into(), Value::String((*id).to_owned()));
            if let Some(routing) = routing {
                doc.insert("routing".into(), Value::String((*routing).to_owned()));
            }
            Value::Object(doc)
        })
        .collect();
    serde_json::json!({ "docs": docs })
}

/// The stored versions of an `_mget` answer, in request order. A doc with an
/// error (e.g. its index is missing) is an error: nothing can be decided.
pub fn parse_mget(body: &Value, sent: usize) -> Result<Vec<StoredVersion>, BulkResponseError> {
    let docs = body["docs"]
        .as_array()
        .ok_or_else(|| BulkResponseError::Malformed("no docs in _mget answer".into()))?;
    if docs.len() != sent {
        return Err(BulkResponseError::ItemCount {
            sent,
            got: docs.len(),
        });
    }
    docs.iter()
        .map(|doc| {
            if let Some(error) = doc.get("error") {
                return Err(BulkResponseError::Malformed(error_reason(error)));
            }
            match doc["found"].as_bool() {
                Some(true) => doc["_version"].as_u64().map(Some).ok_or_else(|| {
                    BulkResponseError::Malformed("found document without _version".into())
                }),
                Some(false) => Ok(None),
                None => Err(BulkResponseError::Malformed(
                    "_mget doc without found".into(),
                )),
            }
        })
        .collect()
}

/// Splitting a request that the cluster answered with `413` until every piece
/// is accepted, or a single action is too large on its own (pure: the caller
/// sends the ranges and reports which were refused).
#[derive(Debug, Clone)]
pub struct Bisection {
    stack: Vec<std::ops::Range<usize>>,
}

impl Bisection {
    /// Starts with the whole `range` of actions.
    pub fn new(range: std::ops::Range<usize>) -> Bisection {
        Bisection { stack: vec![range] }
    }

    /// The next range to send, in request order.
    pub fn next_range(&mut self) -> Option<std::ops::Range<usize>> {
        self.stack.pop()
    }

    /// `range` was refused as too large: its halves go next. Returns the
    /// action's position when it was alone (too large on its own: dead-letter it).
    pub fn refused(&mut self, range: std::ops::Range<usize>) -> Option<usize> {
        if range.len() <= 1 {
            return Some(range.start);
        }
        let middle = range.start + range.len() / 2;
        self.stack.push(middle..range.end);
        self.stack.push(range.start..middle);
        None
    }
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
        encode_action(&index, &mut out);
        encode_action(&delete, &mut out);
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
        assert_eq!(
            outcomes[1],
            ItemOutcome::VersionConflict {
                current_version: Some(7),
                concrete_index: Some("orders".into()),
            }
        );
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
            ItemOutcome::Retryable {
                status: 404,
                cause: RetryReason::IndexMissing,
                ..
            }
        ));
    }

    /// Per-item errors as Elasticsearch writes them, and what esync does:
    /// only document-level errors are dead letters (issue 9, item 3).
    #[test]
    fn item_errors_by_level() {
        use RetryReason::*;
        let retried: &[(u16, &str, RetryReason)] = &[
            (
                403,
                r#"{"type":"cluster_block_exception","reason":"index [orders] blocked by: [FORBIDDEN/8/index write (api)];"}"#,
                IndexBlocked,
            ),
            (
                429,
                r#"{"type":"cluster_block_exception","reason":"index [orders] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"}"#,
                IndexBlocked,
            ),
            (
                403,
                r#"{"type":"cluster_block_exception","reason":"index [orders] blocked by: [FORBIDDEN/12/index read-only / allow delete (api)];"}"#,
                IndexBlocked,
            ),
            (
                400,
                r#"{"type":"index_closed_exception","reason":"closed","index":"orders"}"#,
                IndexBlocked,
            ),
            (
                404,
                r#"{"type":"index_not_found_exception","reason":"no such index [orders]","resource.type":"index_expression","resource.id":"orders","index":"orders"}"#,
                IndexMissing,
            ),
            (
                400,
                r#"{"type":"illegal_argument_exception","reason":"no write index is defined for alias [orders]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index"}"#,
                IndexMissing,
            ),
            (
                400,
                r#"{"type":"illegal_argument_exception","reason":"Alias [orders] has more than one indices associated with it [[orders-1, orders-2]], can't execute a single index op"}"#,
                IndexMissing,
            ),
            (
                403,
                r#"{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized for user [esync] with effective roles [viewer] on indices [orders], this action is granted by the index privileges [create_doc,create,delete,index,write,all]"}"#,
                Unauthorized,
            ),
            (
                401,
                r#"{"type":"security_exception","reason":"unable to authenticate user [esync] for REST request [/_bulk]"}"#,
                Unauthorized,
            ),
            (
                429,
                r#"{"type":"es_rejected_execution_exception","reason":"rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes=1043, max_coordinating_and_primary_bytes=0]"}"#,
                Rejected,
            ),
            (
                429,
                r#"{"type":"circuit_breaking_exception","reason":"[parent] Data too large","bytes_wanted":1,"bytes_limit":1,"durability":"TRANSIENT"}"#,
                Rejected,
            ),
            (
                503,
                r#"{"type":"unavailable_shards_exception","reason":"[orders][0] primary shard is not active Timeout: [1m]"}"#,
                Unavailable,
            ),
            (
                500,
                r#"{"type":"null_pointer_exception","reason":null}"#,
                Unavailable,
            ),
            (418, r#"{"type":"teapot","reason":"?"}"#, Unexpected),
        ];
        for (status, error, expected) in retried {
            let error: Value = serde_json::from_str(error).unwrap();
            for is_delete in [false, true] {
                match classify_item(*status, Some(&error), is_delete) {
                    ItemOutcome::Retryable { cause, .. } => assert_eq!(cause, *expected, "{error}"),
                    other => panic!("{error} must be retried, got {other:?}"),
                }
            }
        }
        let dead_letters = [
            (
                400,
                r#"{"type":"mapper_parsing_exception","reason":"failed to parse field [total] of type [long] in document with id '4'. Preview of field's value: 'abc'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"abc\""}}"#,
            ),
            (
                400,
                r#"{"type":"document_parsing_exception","reason":"[1:15] failed to parse field [created] of type [date] in document with id '9'"}"#,
            ),
            (
                400,
                r#"{"type":"strict_dynamic_mapping_exception","reason":"[1:9] mapping set to strict, dynamic introduction of [extra] within [_doc] is not allowed"}"#,
            ),
            (
                400,
                r#"{"type":"illegal_argument_exception","reason":"Document contains at least one immense term in field=\"name\" (whose UTF8 encoding is longer than the max length 32766)"}"#,
            ),
            (
                400,
                r#"{"type":"routing_missing_exception","reason":"routing is required for [orders]/[4]"}"#,
            ),
            (404, r#"{"type":"some_document_exception","reason":"?"}"#),
        ];
        for (status, error) in dead_letters {
            let error: Value = serde_json::from_str(error).unwrap();
            assert!(
                matches!(
                    classify_item(status, Some(&error), false),
                    ItemOutcome::Permanent { .. }
                ),
                "{error} is the document's fault"
            );
        }
    }

    #[test]
    fn request_failures_are_retried_or_split() {
        let cases: &[(u16, &str, RequestFailure)] = &[
            (413, "", RequestFailure::TooLarge),
            (
                401,
                r#"{"error":{"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]"},"status":401}"#,
                RequestFailure::Retry(RetryReason::Unauthorized),
            ),
            (
                403,
                r#"{"error":{"type":"cluster_block_exception","reason":"blocked by: [FORBIDDEN/6/cluster read-only (api)];"},"status":403}"#,
                RequestFailure::Retry(RetryReason::IndexBlocked),
            ),
            (
                404,
                r#"{"error":{"type":"index_not_found_exception","reason":"no such index [orders]"},"status":404}"#,
                RequestFailure::Retry(RetryReason::IndexMissing),
            ),
            (
                429,
                r#"{"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"},"status":429}"#,
                RequestFailure::Retry(RetryReason::Rejected),
            ),
            (
                502,
                "<html>bad gateway</html>",
                RequestFailure::Retry(RetryReason::Unavailable),
            ),
            (
                400,
                r#"{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\n]"},"status":400}"#,
                RequestFailure::Retry(RetryReason::Unexpected),
            ),
        ];
        for (status, body, expected) in cases {
            assert_eq!(
                classify_request_failure(*status, body.as_bytes()),
                *expected,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn conflict_reports_the_current_version() {
        let cases = [
            (
                "[2]: version conflict, current version [7] is higher than the one provided [3]",
                Some(7),
            ),
            (
                "[1]: version conflict, current version [2145830400000000] is higher or equal to the one provided [1764600000000000]",
                Some(2_145_830_400_000_000),
            ),
            (
                "[1]: version conflict, document already exists (current version [1])",
                Some(1),
            ),
            ("version conflict", None),
            ("current version [x] is higher", None),
        ];
        for (reason, expected) in cases {
            assert_eq!(current_version_of_conflict(reason), expected, "{reason}");
        }
    }

    /// Issue 9 items 6 and 7: which conflicts are success and which must be sent again.
    #[test]
    fn conflict_decisions() {
        use ConflictDecision::*;
        use ConflictKind::*;
        let now = 1_700_000_000_000_000;
        let ahead = 2_145_830_400_000_000;
        let cases = [
            // soft deletes carry the row's version: a conflict is a newer state
            (RowDelete, 5, Some(9), None, Superseded),
            // a hard delete behind a document whose version is ahead of the clock
            (
                HardDelete,
                now,
                Some(ahead),
                None,
                RetryNow {
                    delete_version: Some(ahead + 1),
                },
            ),
            (HardDelete, now, None, None, LookUp),
            (
                HardDelete,
                now,
                None,
                Some(Some(ahead)),
                RetryNow {
                    delete_version: Some(ahead + 1),
                },
            ),
            (HardDelete, now, None, Some(None), Superseded),
            // an index action: a document at least as new is there
            (Index, 3, Some(7), None, LookUp),
            (Index, 3, Some(7), Some(Some(7)), Superseded),
            (Index, 3, None, Some(Some(3)), Superseded),
            // nothing is there: a delete tombstone refused the re-insert
            (Index, 1, Some(now), Some(None), RetryAfterGcDeletes),
            (
                Index,
                9,
                None,
                Some(Some(2)),
                RetryNow {
                    delete_version: None,
                },
            ),
        ];
        for (kind, sent, current, stored, expected) in cases {
            assert_eq!(
                decide_conflict(kind, sent, current, stored),
                expected,
                "{kind:?} sent {sent} current {current:?} stored {stored:?}"
            );
        }
    }

    #[test]
    fn mget_round_trip() {
        let body = encode_mget(&[("orders", "1", None), ("orders", "2", Some("r"))]);
        assert_eq!(
            body,
            json!({"docs": [{"_index": "orders", "_id": "1"}, {"_index": "orders", "_id": "2", "routing": "r"}]})
        );
        let answer = json!({"docs": [
            {"_index": "orders", "_id": "1", "_version": 5, "_seq_no": 1, "_primary_term": 1, "found": true, "_source": {}},
            {"_index": "orders", "_id": "2", "found": false}
        ]});
        assert_eq!(parse_mget(&answer, 2), Ok(vec![Some(5), None]));
        assert!(parse_mget(&answer, 3).is_err());
        let missing = json!({"docs": [{"_index": "orders", "_id": "1", "error": {"type": "index_not_found_exception", "reason": "no such index [orders]"}}]});
        assert!(parse_mget(&missing, 1).is_err());
    }

    /// Issue 9 item 8: a request refused as too large is halved until every
    /// piece passes; only an action too large on its own is singled out.
    #[test]
    fn bisection_isolates_only_documents_too_large_alone() {
        let cases: &[(&[usize], usize)] = &[
            (&[10, 10, 500, 10, 10, 10, 10], 100),
            (&[500], 100),
            (&[10; 9], 25),
            (&[200, 10, 10, 300, 10, 10, 10, 10, 10, 150], 100),
            (&[1, 2, 3], 1000),
        ];
        for (sizes, limit) in cases {
            let mut bisection = Bisection::new(0..sizes.len());
            let mut sent = Vec::new();
            let mut too_large = Vec::new();
            let mut requests = 0;
            while let Some(range) = bisection.next_range() {
                requests += 1;
                assert!(requests < 100, "terminates");
                if sizes[range.clone()].iter().sum::<usize>() > *limit {
                    too_large.extend(bisection.refused(range));
                } else {
                    sent.extend(range);
                }
            }
            let expected_too_large: Vec<usize> =
                (0..sizes.len()).filter(|i| sizes[*i] > *limit).collect();
            assert_eq!(too_large, expected_too_large, "{sizes:?}");
            let expected_sent: Vec<usize> =
                (0..sizes.len()).filter(|i| sizes[*i] <= *limit).collect();
            assert_eq!(
                sent, expected_sent,
                "every other action once, in order: {sizes:?}"
            );
        }
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
}
