//! Comparing what the database says the index should hold with what it holds.
//!
//! Pure: the database side is the set of (id, version) of live rows, exactly
//! as the writer would index them (built by `crate::document::plan_actions`,
//! so soft deletes, counters and timestamps in microseconds mean the same
//! thing here as in the daemon); the index side is the set of (id, _version)
//! found. The result lists missing, extra and stale documents, and apart from
//! them documents *ahead* of their rows: an indexed version above the row's
//! means the row was rolled back or its version went backwards. A versioned
//! write cannot replace such a document (it is a conflict), so they are
//! differences that `--fix` cannot repair, reported on their own.
//!
//! Two more kinds a version comparison cannot see:
//! - *drift*: the indexed version equals the row's but the `_source` is not
//!   the document esync builds from the row (a change that did not bump the
//!   version, or two changes within one tick of a second-precision
//!   timestamp, where the older read landed last). Compared by
//!   [`content_hash`]; a re-index with the same version (`external_gte`)
//!   repairs it.
//! - *stray copies*: a document of the same `_id` under another routing than
//!   its row's (the routing column changed; the daemon indexed the new copy
//!   and cannot know the old routing). `--fix` deletes exactly that copy.

use crate::id::Id;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::hash::{Hash as _, Hasher as _};

/// A document whose indexed version differs from its row's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleDoc {
    /// The id.
    pub id: String,
    /// The row's version.
    pub db_version: u64,
    /// The indexed `_version`.
    pub index_version: u64,
}

/// The differences in one range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeDiff {
    /// Live rows in the range (documents the index should hold).
    pub db_rows: u64,
    /// Documents found in the range.
    pub index_docs: u64,
    /// Rows without a document.
    pub missing: Vec<Id>,
    /// Documents without a live row (deleted, soft-deleted or never there).
    pub extra: Vec<Id>,
    /// Documents with an older version than their row: (id, row's, index's).
    pub stale: Vec<(Id, u64, u64)>,
    /// Documents with a newer version than their row: (id, row's, index's).
    pub ahead: Vec<(Id, u64, u64)>,
    /// Documents with their row's version but other content.
    pub drift: Vec<Id>,
    /// Copies of a document under a routing other than its row's.
    pub strays: Vec<StrayCopy>,
}

/// A copy of a document found under a routing other than its row's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StrayCopy {
    /// The id.
    pub id: Id,
    /// The concrete index holding the copy.
    pub index: String,
    /// The copy's routing (`None`: indexed without routing).
    pub routing: Option<String>,
    /// The copy's `_version`: the delete is versioned with it, so a newer
    /// write to that routing in the meantime is never deleted.
    pub version: u64,
}

impl std::fmt::Display for StrayCopy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.routing {
            Some(routing) => write!(formatter, "{} routing {routing:?}", self.id),
            None => write!(formatter, "{} without routing", self.id),
        }
    }
}

impl RangeDiff {
    /// True when the range matches.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.stale.is_empty()
            && self.ahead.is_empty()
            && self.drift.is_empty()
            && self.strays.is_empty()
    }

    /// Differences `--fix` can repair (all but `ahead`).
    pub fn fixable(&self) -> u64 {
        (self.missing.len()
            + self.extra.len()
            + self.stale.len()
            + self.drift.len()
            + self.strays.len()) as u64
    }

    /// Every id a versioned write can repair (missing, extra, stale, drift),
    /// ascending, without repeats; documents ahead of their rows are left
    /// out, and stray copies are deleted on their own.
    pub fn differing_ids(&self) -> Vec<Id> {
        let mut ids: Vec<Id> = self
            .missing
            .iter()
            .chain(&self.extra)
            .chain(self.stale.iter().map(|(id, _, _)| id))
            .chain(&self.drift)
            .cloned()
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Adds another part of the same range.
    pub fn merge(&mut self, other: RangeDiff) {
        self.db_rows += other.db_rows;
        self.index_docs += other.index_docs;
        self.missing.extend(other.missing);
        self.extra.extend(other.extra);
        self.stale.extend(other.stale);
        self.ahead.extend(other.ahead);
        self.drift.extend(other.drift);
        self.strays.extend(other.strays);
        self.missing.sort();
        self.extra.sort();
        self.stale.sort();
        self.ahead.sort();
        self.drift.sort();
        self.strays.sort();
    }

    /// The report form, with at most `samples` ids of each kind.
    pub fn summary(&self, samples: usize) -> DiffSummary {
        DiffSummary {
            db_rows: self.db_rows,
            index_docs: self.index_docs,
            missing: self.missing.len() as u64,
            extra: self.extra.len() as u64,
            stale: self.stale.len() as u64,
            ahead: self.ahead.len() as u64,
            drift: self.drift.len() as u64,
            strays: self.strays.len() as u64,
            missing_samples: self
                .missing
                .iter()
                .take(samples)
                .map(ToString::to_string)
                .collect(),
            extra_samples: self
                .extra
                .iter()
                .take(samples)
                .map(ToString::to_string)
                .collect(),
            stale_samples: version_samples(&self.stale, samples),
            ahead_samples: version_samples(&self.ahead, samples),
            drift_samples: self
                .drift
                .iter()
                .take(samples)
                .map(ToString::to_string)
                .collect(),
            stray_samples: self
                .strays
                .iter()
                .take(samples)
                .map(ToString::to_string)
                .collect(),
        }
    }
}

fn version_samples(docs: &[(Id, u64, u64)], samples: usize) -> Vec<StaleDoc> {
    docs.iter()
        .take(samples)
        .map(|(id, db_version, index_version)| StaleDoc {
            id: id.to_string(),
            db_version: *db_version,
            index_version: *index_version,
        })
        .collect()
}

/// Counts and sample ids of a [`RangeDiff`], for output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffSummary {
    /// Live rows.
    pub db_rows: u64,
    /// Documents found.
    pub index_docs: u64,
    /// Rows without a document.
    pub missing: u64,
    /// Documents without a live row.
    pub extra: u64,
    /// Documents older than their rows.
    pub stale: u64,
    /// Documents newer than their rows (not repairable by a versioned write).
    pub ahead: u64,
    /// Documents with their row's version but other content.
    pub drift: u64,
    /// Copies of documents under a routing other than their row's.
    pub strays: u64,
    /// Some missing ids.
    pub missing_samples: Vec<String>,
    /// Some extra ids.
    pub extra_samples: Vec<String>,
    /// Some stale documents.
    pub stale_samples: Vec<StaleDoc>,
    /// Some documents ahead of their rows.
    pub ahead_samples: Vec<StaleDoc>,
    /// Some drifted ids.
    pub drift_samples: Vec<String>,
    /// Some stray copies (id and routing).
    pub stray_samples: Vec<String>,
}

impl DiffSummary {
    /// Adds the counts of another range (samples are kept up to `samples`).
    pub fn add(&mut self, other: &DiffSummary, samples: usize) {
        self.db_rows += other.db_rows;
        self.index_docs += other.index_docs;
        self.missing += other.missing;
        self.extra += other.extra;
        self.stale += other.stale;
        self.ahead += other.ahead;
        self.drift += other.drift;
        self.strays += other.strays;
        let room = |have: usize| samples.saturating_sub(have);
        self.missing_samples.extend(
            other
                .missing_samples
                .iter()
                .take(room(self.missing_samples.len()))
                .cloned(),
        );
        self.extra_samples.extend(
            other
                .extra_samples
                .iter()
                .take(room(self.extra_samples.len()))
                .cloned(),
        );
        self.stale_samples.extend(
            other
                .stale_samples
                .iter()
                .take(room(self.stale_samples.len()))
                .cloned(),
        );
        self.ahead_samples.extend(
            other
                .ahead_samples
                .iter()
                .take(room(self.ahead_samples.len()))
                .cloned(),
        );
        self.drift_samples.extend(
            other
                .drift_samples
                .iter()
                .take(room(self.drift_samples.len()))
                .cloned(),
        );
        self.stray_samples.extend(
            other
                .stray_samples
                .iter()
                .take(room(self.stray_samples.len()))
                .cloned(),
        );
    }

    /// Total differences, documents ahead of their rows included.
    pub fn differences(&self) -> u64 {
        self.missing + self.extra + self.stale + self.ahead + self.drift + self.strays
    }

    /// Differences `--fix` can repair.
    pub fn fixable(&self) -> u64 {
        self.missing + self.extra + self.stale + self.drift + self.strays
    }

    /// One line: `db 10, index 9, missing 1 (7), extra 0, stale 0`.
    pub fn to_line(&self) -> String {
        let mut line = format!("db {}, index {}", self.db_rows, self.index_docs);
        let list = |ids: &[String], total: u64| {
            if ids.is_empty() {
                String::new()
            } else {
                let more = if total as usize > ids.len() {
                    ", ..."
                } else {
                    ""
                };
                format!(" ({}{more})", ids.join(", "))
            }
        };
        line.push_str(&format!(
            ", missing {}{}",
            self.missing,
            list(&self.missing_samples, self.missing)
        ));
        line.push_str(&format!(
            ", extra {}{}",
            self.extra,
            list(&self.extra_samples, self.extra)
        ));
        let versions = |docs: &[StaleDoc]| -> Vec<String> {
            docs.iter()
                .map(|doc| {
                    format!(
                        "{} db v{} index v{}",
                        doc.id, doc.db_version, doc.index_version
                    )
                })
                .collect()
        };
        line.push_str(&format!(
            ", stale {}{}",
            self.stale,
            list(&versions(&self.stale_samples), self.stale)
        ));
        // only shown when there are any: rare, and not repairable by --fix
        if self.ahead > 0 {
            line.push_str(&format!(
                ", ahead {}{}",
                self.ahead,
                list(&versions(&self.ahead_samples), self.ahead)
            ));
        }
        // likewise rare: only shown when there are any
        if self.drift > 0 {
            line.push_str(&format!(
                ", drift {}{}",
                self.drift,
                list(&self.drift_samples, self.drift)
            ));
        }
        if self.strays > 0 {
            line.push_str(&format!(
                ", stray copies {}{}",
                self.strays,
                list(&self.stray_samples, self.strays)
            ));
        }
        line
    }
}

/// A hash of a document's content that does not depend on the order of
/// object keys or on how a number was spelled (`1.50` and `1.5` are one
/// value), so the document esync builds and the `_source` the index returns
/// hash alike exactly when they hold the same values.
pub fn content_hash(document: &Value) -> u64 {
    fn feed(value: &Value, hasher: &mut std::collections::hash_map::DefaultHasher) {
        match value {
            Value::Null => 0u8.hash(hasher),
            Value::Bool(flag) => (1u8, flag).hash(hasher),
            Value::Number(number) => {
                if let Some(int) = number.as_i64() {
                    (2u8, i128::from(int)).hash(hasher);
                } else if let Some(int) = number.as_u64() {
                    (2u8, i128::from(int)).hash(hasher);
                } else {
                    let float = number.as_f64().unwrap_or(f64::NAN);
                    // an integral float is the integer it spells
                    if float.fract() == 0.0 && float.abs() < 1e18 {
                        (2u8, float as i128).hash(hasher);
                    } else {
                        (3u8, float.to_bits()).hash(hasher);
                    }
                }
            }
            Value::String(text) => (4u8, text).hash(hasher),
            Value::Array(items) => {
                (5u8, items.len()).hash(hasher);
                for item in items {
                    feed(item, hasher);
                }
            }
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                (6u8, keys.len()).hash(hasher);
                for key in keys {
                    key.hash(hasher);
                    feed(&map[key], hasher);
                }
            }
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    feed(document, &mut hasher);
    hasher.finish()
}

/// Ids whose indexed version equals the row's (`expected`: id -> (version,
/// content hash)) while the content differs (`indexed`: id -> (`_version`,
/// content hash, `None` when the index returned no `_source`)). Other
/// version relations are stale or ahead; without `_source` nothing can be
/// compared.
pub fn drifted(
    expected: &BTreeMap<Id, (u64, u64)>,
    indexed: &BTreeMap<Id, (u64, Option<u64>)>,
) -> Vec<Id> {
    expected
        .iter()
        .filter(|(id, (version, hash))| {
            indexed.get(*id).is_some_and(|(index_version, index_hash)| {
                index_version == version && index_hash.is_some_and(|index_hash| index_hash != *hash)
            })
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// The copies among `found` (every document found for some ids, with its
/// routing) whose routing is not their row's (`routing`: id -> the routing
/// the row gives). Ids without an entry in `routing` (no row: deletes) are
/// not judged here.
///
/// A hit that reports no `_routing` while it is the only hit of its id and
/// has the `_version` found by `_mget` under the row's routing (`found_by_id`)
/// is that very document: some servers leave `_routing` out of hits. Judging
/// it a stray would delete the live document, so it is not.
pub fn stray_copies(
    found: Vec<StrayCopy>,
    routing: &BTreeMap<Id, Option<String>>,
    found_by_id: &BTreeMap<Id, u64>,
) -> Vec<StrayCopy> {
    let mut hits_per_id: BTreeMap<Id, usize> = BTreeMap::new();
    for copy in &found {
        *hits_per_id.entry(copy.id.clone()).or_default() += 1;
    }
    let mut strays: Vec<StrayCopy> = found
        .into_iter()
        .filter(|copy| {
            let is_the_document = copy.routing.is_none()
                && hits_per_id.get(&copy.id) == Some(&1)
                && found_by_id.get(&copy.id) == Some(&copy.version);
            !is_the_document
                && routing
                    .get(&copy.id)
                    .is_some_and(|expected| *expected != copy.routing)
        })
        .collect();
    strays.sort();
    strays
}

/// Compares `expected` (live rows: id -> version) with `indexed` (documents
/// found: id -> `_version`). Both may hold ids the other lacks.
pub fn diff(expected: &BTreeMap<Id, u64>, indexed: &BTreeMap<Id, u64>) -> RangeDiff {
    let mut result = RangeDiff {
        db_rows: expected.len() as u64,
        index_docs: indexed.len() as u64,
        ..RangeDiff::default()
    };
    for (id, db_version) in expected {
        match indexed.get(id) {
            None => result.missing.push(id.clone()),
            Some(index_version) if index_version < db_version => {
                result.stale.push((id.clone(), *db_version, *index_version))
            }
            Some(index_version) if index_version > db_version => {
                result.ahead.push((id.clone(), *db_version, *index_version))
            }
            Some(_) => {}
        }
    }
    result.extra = indexed
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .cloned()
        .collect();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(i64, u64)]) -> BTreeMap<Id, u64> {
        pairs
            .iter()
            .map(|(id, version)| (Id::Int(*id), *version))
            .collect()
    }

    fn ids(values: &[i64]) -> Vec<Id> {
        values.iter().map(|id| Id::Int(*id)).collect()
    }

    #[test]
    fn finds_missing_extra_and_stale() {
        // (db, index, missing, extra, stale)
        type Case = (
            Vec<(i64, u64)>,
            Vec<(i64, u64)>,
            Vec<i64>,
            Vec<i64>,
            Vec<(i64, u64, u64)>,
        );
        let cases: Vec<Case> = vec![
            (vec![], vec![], vec![], vec![], vec![]),
            (
                vec![(1, 1), (2, 5)],
                vec![(1, 1), (2, 5)],
                vec![],
                vec![],
                vec![],
            ),
            (vec![(1, 1), (2, 5)], vec![(1, 1)], vec![2], vec![], vec![]),
            (vec![(1, 1)], vec![(1, 1), (3, 2)], vec![], vec![3], vec![]),
            (vec![(1, 4)], vec![(1, 3)], vec![], vec![], vec![(1, 4, 3)]),
            // an index ahead of its row is not stale: see ahead_is_its_own_kind
            (
                vec![(1, 1), (2, 2), (3, 3)],
                vec![(2, 1), (4, 1)],
                vec![1, 3],
                vec![4],
                vec![(2, 2, 1)],
            ),
        ];
        for (db, index, missing, extra, stale) in cases {
            let result = diff(&map(&db), &map(&index));
            assert_eq!(result.missing, ids(&missing), "{db:?} vs {index:?}");
            assert_eq!(result.extra, ids(&extra), "{db:?} vs {index:?}");
            let stale: Vec<(Id, u64, u64)> = stale
                .iter()
                .map(|(id, db, index)| (Id::Int(*id), *db, *index))
                .collect();
            assert_eq!(result.stale, stale, "{db:?} vs {index:?}");
            assert_eq!(
                (result.db_rows, result.index_docs),
                (db.len() as u64, index.len() as u64)
            );
            assert_eq!(
                result.is_clean(),
                missing.is_empty() && extra.is_empty() && stale.is_empty()
            );
        }
    }

    #[test]
    fn summaries_merge_and_print() {
        let mut first = diff(
            &map(&[(1, 1), (2, 2), (3, 3), (4, 1)]),
            &map(&[(2, 1), (5, 1), (4, 1)]),
        );
        let second = diff(&map(&[(10, 1)]), &map(&[]));
        assert_eq!(first.differing_ids(), ids(&[1, 2, 3, 5]));
        first.merge(second);
        assert_eq!(first.missing, ids(&[1, 3, 10]));
        let summary = first.summary(2);
        assert_eq!(
            summary.to_line(),
            "db 5, index 3, missing 3 (1, 3, ...), extra 1 (5), stale 1 (2 db v2 index v1)"
        );
        let mut total = DiffSummary::default();
        total.add(&summary, 2);
        total.add(&summary, 2);
        assert_eq!(
            (total.missing, total.extra, total.stale, total.differences()),
            (6, 2, 2, 10)
        );
        assert_eq!(total.missing_samples.len(), 2, "samples stay bounded");
        assert_eq!(
            DiffSummary::default().to_line(),
            "db 0, index 0, missing 0, extra 0, stale 0"
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            json["stale_samples"][0],
            serde_json::json!({"id": "2", "db_version": 2, "index_version": 1})
        );
    }

    #[test]
    fn ahead_is_its_own_kind() {
        // the row says v4, the index holds v9: the row went backwards (rolled
        // back, or a version reset); a versioned write cannot replace it
        let result = diff(
            &map(&[(1, 4), (2, 2), (3, 7)]),
            &map(&[(1, 9), (2, 1), (3, 7)]),
        );
        assert_eq!(result.stale, vec![(Id::Int(2), 2, 1)]);
        assert_eq!(result.ahead, vec![(Id::Int(1), 4, 9)]);
        assert!(!result.is_clean(), "ahead is a difference");
        assert_eq!(result.fixable(), 1);
        assert_eq!(
            result.differing_ids(),
            ids(&[2]),
            "--fix is not given ids it cannot repair"
        );
        let summary = result.summary(5);
        assert_eq!((summary.differences(), summary.fixable()), (2, 1));
        assert_eq!(
            summary.to_line(),
            "db 3, index 3, missing 0, extra 0, stale 1 (2 db v2 index v1), ahead 1 (1 db v4 index v9)"
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["ahead"], 1);
        assert_eq!(
            json["ahead_samples"][0],
            serde_json::json!({"id": "1", "db_version": 4, "index_version": 9})
        );
    }

    /// Issue 9 item 15: same version, other content is drift; key order and
    /// number spelling are not content.
    #[test]
    fn content_drift_is_found_by_hash() {
        use serde_json::json;
        let built = json!({"id": 7, "name": "a", "amount": 1.5, "tags": ["x"], "n": 2});
        let stored = serde_json::from_str::<Value>(
            r#"{"tags":["x"],"n":2.0,"amount":1.50,"name":"a","id":7}"#,
        )
        .unwrap();
        assert_eq!(content_hash(&built), content_hash(&stored));
        for other in [
            json!({"id": 7, "name": "b", "amount": 1.5, "tags": ["x"], "n": 2}),
            json!({"id": 7, "name": "a", "amount": 1.5, "tags": [], "n": 2}),
            json!({"id": 7, "name": "a", "amount": "1.5", "tags": ["x"], "n": 2}),
            json!({"id": 7, "name": "a", "amount": 1.5, "tags": ["x"], "n": 2, "extra": null}),
        ] {
            assert_ne!(content_hash(&built), content_hash(&other), "{other}");
        }
        let hash = content_hash(&built);
        let expected: BTreeMap<Id, (u64, u64)> = [
            (1, (3, hash)),
            (2, (3, hash)),
            (3, (4, hash)),
            (4, (3, hash)),
            (5, (3, hash)),
        ]
        .into_iter()
        .map(|(id, value)| (Id::Int(id), value))
        .collect();
        let indexed: BTreeMap<Id, (u64, Option<u64>)> = [
            (1, (3, Some(hash))),     // equal
            (2, (3, Some(hash ^ 1))), // drift
            (3, (3, Some(hash ^ 1))), // stale, not drift
            (4, (3, None)),           // no _source: cannot compare
        ]
        .into_iter()
        .map(|(id, value)| (Id::Int(id), value))
        .collect();
        assert_eq!(drifted(&expected, &indexed), ids(&[2]));
        let mut result = diff(&map(&[(2, 3)]), &map(&[(2, 3)]));
        result.drift = ids(&[2]);
        assert!(!result.is_clean());
        assert_eq!((result.fixable(), result.differing_ids()), (1, ids(&[2])));
        assert_eq!(
            result.summary(3).to_line(),
            "db 1, index 1, missing 0, extra 0, stale 0, drift 1 (2)"
        );
    }

    /// Issue 9 item 12: a copy under a routing other than the row's is a
    /// stray; the copy under the row's routing and ids without a row are not.
    #[test]
    fn stray_copies_are_the_other_routings() {
        let copy = |id: i64, routing: Option<&str>, version: u64| StrayCopy {
            id: Id::Int(id),
            index: "orders_v1".into(),
            routing: routing.map(str::to_owned),
            version,
        };
        let routing: BTreeMap<Id, Option<String>> = [
            (Id::Int(7), Some("us".to_owned())),
            (Id::Int(8), Some("eu".to_owned())),
            (Id::Int(9), None),
        ]
        .into_iter()
        .collect();
        let found = vec![
            copy(7, Some("us"), 5),
            copy(7, Some("eu"), 3), // the row moved eu -> us
            copy(8, Some("eu"), 2),
            copy(8, None, 1), // indexed before the mapping had a routing column
            copy(9, None, 4),
            copy(10, Some("eu"), 1), // no row: an extra, judged elsewhere
        ];
        let found_by_id: BTreeMap<Id, u64> =
            [(Id::Int(7), 5), (Id::Int(8), 2)].into_iter().collect();
        assert_eq!(
            stray_copies(found, &routing, &found_by_id),
            vec![copy(7, Some("eu"), 3), copy(8, None, 1)]
        );
        // a server that leaves `_routing` out of hits: the only hit of id 11,
        // found by `_mget` under the row's routing with that version, is the
        // document itself; a second hit makes both judgeable again
        let routing: BTreeMap<Id, Option<String>> =
            [(Id::Int(11), Some("eu".to_owned()))].into_iter().collect();
        let found_by_id: BTreeMap<Id, u64> = [(Id::Int(11), 4)].into_iter().collect();
        assert!(stray_copies(vec![copy(11, None, 4)], &routing, &found_by_id).is_empty());
        assert_eq!(
            stray_copies(vec![copy(11, None, 3)], &routing, &found_by_id),
            vec![copy(11, None, 3)],
            "another version is another copy"
        );
        assert_eq!(
            stray_copies(
                vec![copy(11, None, 4), copy(11, Some("eu"), 4)],
                &routing,
                &found_by_id
            ),
            vec![copy(11, None, 4)]
        );
        let mut result = RangeDiff {
            strays: vec![copy(7, Some("eu"), 3)],
            ..RangeDiff::default()
        };
        assert!(!result.is_clean());
        assert_eq!(result.fixable(), 1);
        assert!(
            result.differing_ids().is_empty(),
            "strays are deleted, not re-indexed"
        );
        result.merge(RangeDiff {
            strays: vec![copy(2, None, 1)],
            ..RangeDiff::default()
        });
        let summary = result.summary(5);
        assert_eq!(summary.differences(), 2);
        assert_eq!(
            summary.to_line(),
            "db 0, index 0, missing 0, extra 0, stale 0, stray copies 2 (2 without routing, 7 routing \"eu\")"
        );
    }
}
