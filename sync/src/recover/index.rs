//! The index side of `verify`, over the documented REST API (Elasticsearch
//! 7.17/8.x/9.x, OpenSearch 2.x).
//!
//! - Versions of known ids come from `_mget` (real-time, `_source` off, with
//!   each document's routing), never from a search that may lag a refresh.
//! - Documents the database does not know are found with a search on the id
//!   field that the daemon indexes from the id column (a range query for the
//!   chunk, sorted by that field and paged with `search_after`; sorting on
//!   `_id` is not allowed by default in 8.x), and are confirmed with `_mget`.
//!   The count of the range is asked first, so a clean range costs one
//!   `size: 0` search.
//! - For content comparison, `_mget` returns `_source` as well, hashed at
//!   once ([`crate::recover::diff::content_hash`]) so a page holds no documents.
//! - Copies of an id under other routings (a changed routing column) are
//!   found with an `ids` search across every shard, which reports each hit's
//!   `_routing` ([`parse_copies`]).

use crate::bulk::encode_action;
use crate::document::BulkAction;
use crate::es::EsClient;
use crate::id::{Id, IdType};
use crate::recover::diff::{StrayCopy, content_hash};
use crate::recover::range::{Chunk, IdBound};
use anyhow::Context as _;
use elasticsearch::http::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Documents per search page.
const SEARCH_PAGE: usize = 1000;

/// One index (or alias) as seen by verify.
#[derive(Debug, Clone)]
pub struct IndexSide {
    es: EsClient,
    index: String,
    id_type: IdType,
    /// The sortable field holding the id (`id`, or `id.keyword` for text);
    /// `None` when the documents do not carry the id, and extras cannot be
    /// searched for.
    id_field: Option<String>,
    exists: bool,
}

/// A document found by id.
pub type Versions = BTreeMap<Id, u64>;

/// Documents found by id: `_version` and the hash of `_source` (`None` when
/// the index keeps no `_source`).
pub type Contents = BTreeMap<Id, (u64, Option<u64>)>;

/// Every hit of an `ids` search response (`version: true`): the id, the
/// concrete index, the routing and the version of each copy.
pub fn parse_copies(response: &Value, id_type: IdType) -> Vec<StrayCopy> {
    let Some(hits) = response["hits"]["hits"].as_array() else {
        return Vec::new();
    };
    hits.iter()
        .filter_map(|hit| {
            let id = Id::parse(hit["_id"].as_str()?, id_type).ok()?;
            Some(StrayCopy {
                id,
                index: hit["_index"].as_str()?.to_owned(),
                routing: hit["_routing"].as_str().map(str::to_owned),
                version: hit["_version"].as_u64()?,
            })
        })
        .collect()
}

/// The range query of a chunk on `field`.
pub fn range_query(field: &str, chunk: &Chunk) -> Value {
    let bound = |bound: &IdBound| match bound {
        IdBound::Int(int) => json!(int),
        IdBound::Str(text) => json!(text),
    };
    let lower = if chunk.start_inclusive { "gte" } else { "gt" };
    json!({"range": {field: {lower: bound(&chunk.start), "lte": bound(&chunk.end)}}})
}

/// The sortable field for the id from a `_mapping/field` response, or `None`.
pub fn sortable_field(
    field: &str,
    mapping_response: &Value,
    keyword_response: &Value,
) -> Option<String> {
    let leaf = field.rsplit('.').next().unwrap_or(field);
    let field_type = |response: &Value, full_name: &str, leaf: &str| -> Option<String> {
        response.as_object()?.values().find_map(|index| {
            index["mappings"][full_name]["mapping"][leaf]["type"]
                .as_str()
                .map(str::to_owned)
        })
    };
    match field_type(mapping_response, field, leaf)?.as_str() {
        "text" => {
            let keyword = format!("{field}.keyword");
            (field_type(keyword_response, &keyword, "keyword").as_deref() == Some("keyword"))
                .then_some(keyword)
        }
        _ => Some(field.to_owned()),
    }
}

impl IndexSide {
    /// Looks up the index and the type of its id field `id_field_name`.
    pub async fn open(
        es: EsClient,
        index: &str,
        id_type: IdType,
        id_field_name: Option<&str>,
    ) -> anyhow::Result<IndexSide> {
        let head = es
            .request(Method::Head, &format!("/{index}"), None)
            .await
            .with_context(|| format!("cannot look up index {index}"))?;
        let exists = head.status == 200;
        let mut side = IndexSide {
            es,
            index: index.to_owned(),
            id_type,
            id_field: None,
            exists,
        };
        if let (true, Some(field)) = (exists, id_field_name) {
            let mapping = side
                .get(&format!("/{index}/_mapping/field/{field}"))
                .await?;
            let keyword = side
                .get(&format!("/{index}/_mapping/field/{field}.keyword"))
                .await?;
            side.id_field = sortable_field(field, &mapping, &keyword);
            if side.id_field.is_none() {
                tracing::warn!(
                    index,
                    field,
                    "the id field is not indexed as a sortable field; extra documents cannot be searched for"
                );
            }
        }
        Ok(side)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.es
            .request_ok(Method::Get, path, None)
            .await
            .with_context(|| format!("cannot read {path}"))
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.es
            .request_ok(Method::Post, path, Some(body))
            .await
            .with_context(|| format!("request {path} failed"))
    }

    /// Whether the index exists.
    pub fn exists(&self) -> bool {
        self.exists
    }

    /// Whether extra documents can be searched for.
    pub fn can_find_extras(&self) -> bool {
        self.id_field.is_some()
    }

    /// Makes recent writes visible to search.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        if self.exists {
            self.post(&format!("/{}/_refresh", self.index), &json!({}))
                .await?;
        }
        Ok(())
    }

    /// `_version` of each of `ids` that is indexed (`routing` per id).
    pub async fn versions(&self, ids: &[(Id, Option<String>)]) -> anyhow::Result<Versions> {
        Ok(self
            .mget(ids, false)
            .await?
            .into_iter()
            .map(|(id, (version, _))| (id, version))
            .collect())
    }

    /// `_version` and content hash of each of `ids` that is indexed.
    pub async fn contents(&self, ids: &[(Id, Option<String>)]) -> anyhow::Result<Contents> {
        self.mget(ids, true).await
    }

    async fn mget(
        &self,
        ids: &[(Id, Option<String>)],
        with_source: bool,
    ) -> anyhow::Result<Contents> {
        let mut found = Contents::new();
        if !self.exists {
            return Ok(found);
        }
        for page in ids.chunks(SEARCH_PAGE) {
            let docs: Vec<Value> = page
                .iter()
                .map(|(id, routing)| {
                    let mut doc = json!({"_id": id.to_doc_id(), "_source": with_source});
                    if let Some(routing) = routing {
                        doc["routing"] = json!(routing);
                    }
                    doc
                })
                .collect();
            let response = self
                .post(&format!("/{}/_mget", self.index), &json!({"docs": docs}))
                .await?;
            let docs = response["docs"]
                .as_array()
                .with_context(|| format!("_mget on {} answered without docs", self.index))?;
            for doc in docs {
                if doc["found"] != json!(true) {
                    continue;
                }
                let (Some(id), Some(version)) = (doc["_id"].as_str(), doc["_version"].as_u64())
                else {
                    continue;
                };
                if let Ok(id) = Id::parse(id, self.id_type) {
                    let hash = doc.get("_source").map(content_hash);
                    found.insert(id, (version, hash));
                }
            }
        }
        Ok(found)
    }

    /// Every copy of `ids` in the index, whatever its routing (an `ids`
    /// search runs on every shard).
    pub async fn copies(&self, ids: &[Id]) -> anyhow::Result<Vec<StrayCopy>> {
        let mut found = Vec::new();
        if !self.exists {
            return Ok(found);
        }
        for page in ids.chunks(SEARCH_PAGE) {
            let values: Vec<String> = page.iter().map(Id::to_doc_id).collect();
            // room for several copies per id; more than that is reported
            // by the next verify once these are gone
            let body = json!({
                "size": (values.len() * 3).min(10_000),
                "_source": false,
                "version": true,
                "track_total_hits": false,
                "query": {"ids": {"values": values}},
            });
            let response = self
                .post(&format!("/{}/_search", self.index), &body)
                .await?;
            found.extend(parse_copies(&response, self.id_type));
        }
        Ok(found)
    }

    /// Deletes `copies` exactly: each in its index, with its routing, and
    /// versioned with the version it was seen with (`external_gte`), so a
    /// newer write under that routing since is left alone (409). Returns how
    /// many were deleted.
    pub async fn delete_copies(&self, copies: &[StrayCopy]) -> anyhow::Result<u64> {
        if copies.is_empty() {
            return Ok(0);
        }
        let body = delete_copies_body(copies);
        let response = self
            .es
            .bulk(body)
            .await
            .with_context(|| format!("cannot delete stray copies in {}", self.index))?;
        if !(200..300).contains(&response.status) {
            anyhow::bail!(
                "cannot delete stray copies in {}: status {}",
                self.index,
                response.status
            );
        }
        count_deleted(&response.json(), copies)
    }

    /// Documents whose id field lies in `chunk` (0 without an id field).
    pub async fn count(&self, chunk: &Chunk) -> anyhow::Result<u64> {
        let Some(field) = self.id_field.as_deref().filter(|_| self.exists) else {
            return Ok(0);
        };
        let body = json!({"size": 0, "track_total_hits": true, "query": range_query(field, chunk)});
        let response = self
            .post(&format!("/{}/_search", self.index), &body)
            .await?;
        Ok(response["hits"]["total"]["value"]
            .as_u64()
            .or_else(|| response["hits"]["total"].as_u64())
            .unwrap_or(0))
    }

    /// Every document whose id field lies in `chunk`: id and routing.
    pub async fn ids_in(&self, chunk: &Chunk) -> anyhow::Result<Vec<(Id, Option<String>)>> {
        let Some(field) = self.id_field.as_deref().filter(|_| self.exists) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({
                "size": SEARCH_PAGE,
                "_source": false,
                "version": true,
                "track_total_hits": false,
                "query": range_query(field, chunk),
                "sort": [{field: "asc"}],
            });
            if let Some(after) = &after {
                body["search_after"] = after.clone();
            }
            let response = self
                .post(&format!("/{}/_search", self.index), &body)
                .await?;
            let hits = response["hits"]["hits"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for hit in &hits {
                if let Some(Ok(id)) = hit["_id"].as_str().map(|id| Id::parse(id, self.id_type)) {
                    found.push((id, hit["_routing"].as_str().map(str::to_owned)));
                }
            }
            if hits.len() < SEARCH_PAGE {
                return Ok(found);
            }
            after = hits.last().map(|hit| hit["sort"].clone());
        }
    }

    /// The smallest and largest indexed id, by the id field.
    pub async fn id_bounds(&self) -> anyhow::Result<Option<(IdBound, IdBound)>> {
        let Some(field) = self.id_field.as_deref().filter(|_| self.exists) else {
            return Ok(None);
        };
        let mut ends = Vec::new();
        for order in ["asc", "desc"] {
            let body = json!({"size": 1, "_source": false, "sort": [{field: order}], "query": {"exists": {"field": field}}});
            let response = self
                .post(&format!("/{}/_search", self.index), &body)
                .await?;
            let value = &response["hits"]["hits"][0]["sort"][0];
            let bound = match (self.id_type, value) {
                (_, Value::Null) => return Ok(None),
                (IdType::Integer, value) => value.as_i64().map(IdBound::Int),
                (IdType::String, Value::String(text)) => Some(IdBound::Str(text.clone())),
                (IdType::String, other) => Some(IdBound::Str(other.to_string())),
            };
            ends.push(
                bound
                    .with_context(|| format!("unexpected sort value {value} in {}", self.index))?,
            );
        }
        let last = ends.pop().expect("two ends");
        let first = ends.pop().expect("two ends");
        Ok(Some((first, last)))
    }
}

/// The `_bulk` body deleting `copies` (see [`IndexSide::delete_copies`]).
pub fn delete_copies_body(copies: &[StrayCopy]) -> Vec<u8> {
    let mut body = Vec::new();
    for copy in copies {
        let delete = BulkAction::Delete {
            index: copy.index.as_str().into(),
            id: copy.id.to_doc_id(),
            version: copy.version,
            routing: copy.routing.clone(),
        };
        encode_action(&delete, &mut body);
    }
    body
}

/// Deleted copies in a `_bulk` response to [`delete_copies_body`]; a copy
/// gone already (404) or rewritten since (409) is no failure, anything else
/// is.
pub fn count_deleted(response: &Value, copies: &[StrayCopy]) -> anyhow::Result<u64> {
    let items = response["items"]
        .as_array()
        .context("_bulk answered without items")?;
    let mut deleted = 0;
    for (item, copy) in items.iter().zip(copies) {
        let result = &item["delete"];
        match result["status"].as_u64() {
            Some(200..=299) => deleted += 1,
            Some(404 | 409) => {}
            status => anyhow::bail!(
                "cannot delete the stray copy {copy} from {}: status {status:?}: {}",
                copy.index,
                result["error"]
            ),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_queries_follow_the_chunk() {
        let chunk = Chunk {
            start: IdBound::Int(1),
            start_inclusive: true,
            end: IdBound::Int(9),
        };
        assert_eq!(
            range_query("id", &chunk),
            json!({"range": {"id": {"gte": 1, "lte": 9}}})
        );
        let chunk = Chunk {
            start: IdBound::Str("a".into()),
            start_inclusive: false,
            end: IdBound::Str("b".into()),
        };
        assert_eq!(
            range_query("sku.keyword", &chunk),
            json!({"range": {"sku.keyword": {"gt": "a", "lte": "b"}}})
        );
    }

    #[test]
    fn sortable_id_fields() {
        // _mapping/field responses as Elasticsearch 8 returns them
        let long = json!({"orders_v1": {"mappings": {"id": {"full_name": "id", "mapping": {"id": {"type": "long"}}}}}});
        let text = json!({"items": {"mappings": {"sku": {"full_name": "sku", "mapping": {"sku": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}}}}}});
        let keyword = json!({"items": {"mappings": {"sku.keyword": {"full_name": "sku.keyword", "mapping": {"keyword": {"type": "keyword", "ignore_above": 256}}}}}});
        let none = json!({"items": {"mappings": {}}});
        assert_eq!(sortable_field("id", &long, &none), Some("id".into()));
        assert_eq!(
            sortable_field("sku", &text, &keyword),
            Some("sku.keyword".into())
        );
        assert_eq!(
            sortable_field("sku", &text, &none),
            None,
            "text without a keyword subfield cannot be sorted"
        );
        assert_eq!(sortable_field("id", &none, &none), None);
    }

    /// Issue 9 item 12: an `ids` search as Elasticsearch 8 answers it when
    /// one id has copies under two routings (the local test server keeps one
    /// copy per id, so this is a captured response shape).
    #[test]
    fn copies_from_an_ids_search() {
        let response = json!({
            "took": 1, "timed_out": false,
            "_shards": {"total": 3, "successful": 3, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": 3, "relation": "eq"}, "max_score": 1.0, "hits": [
                {"_index": "orders_v1", "_id": "7", "_version": 3, "_score": 1.0, "_routing": "eu"},
                {"_index": "orders_v2", "_id": "7", "_version": 5, "_score": 1.0, "_routing": "us"},
                {"_index": "orders_v1", "_id": "8", "_version": 1, "_score": 1.0},
                {"_index": "orders_v1", "_id": "not-a-number", "_version": 1, "_score": 1.0}
            ]}
        });
        let copy = |id: i64, index: &str, routing: Option<&str>, version: u64| StrayCopy {
            id: Id::Int(id),
            index: index.into(),
            routing: routing.map(str::to_owned),
            version,
        };
        assert_eq!(
            parse_copies(&response, IdType::Integer),
            vec![
                copy(7, "orders_v1", Some("eu"), 3),
                copy(7, "orders_v2", Some("us"), 5),
                copy(8, "orders_v1", None, 1),
            ]
        );
        assert!(parse_copies(&json!({"error": "x"}), IdType::Integer).is_empty());

        let strays = [
            copy(7, "orders_v1", Some("eu"), 3),
            copy(8, "orders_v1", None, 1),
        ];
        let body = String::from_utf8(delete_copies_body(&strays)).unwrap();
        let lines: Vec<Value> = body
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                json!({"delete": {"_index": "orders_v1", "_id": "7", "version": 3, "version_type": "external_gte", "routing": "eu"}}),
                json!({"delete": {"_index": "orders_v1", "_id": "8", "version": 1, "version_type": "external_gte"}}),
            ]
        );
        // deleted, rewritten since (409), gone already (404)
        let answer = json!({"took": 3, "errors": true, "items": [
            {"delete": {"_index": "orders_v1", "_id": "7", "_version": 3, "result": "deleted", "status": 200}},
            {"delete": {"_index": "orders_v1", "_id": "8", "status": 409, "error": {"type": "version_conflict_engine_exception"}}},
            {"delete": {"_index": "orders_v1", "_id": "9", "_version": 1, "result": "not_found", "status": 404}}
        ]});
        let three = [
            strays[0].clone(),
            strays[1].clone(),
            copy(9, "orders_v1", None, 1),
        ];
        assert_eq!(count_deleted(&answer, &three).unwrap(), 1);
        let blocked = json!({"items": [{"delete": {"status": 403, "error": {"type": "cluster_block_exception"}}}]});
        assert!(
            count_deleted(&blocked, &strays).is_err(),
            "a blocked index is an error, not done"
        );
    }
}
