//! Comparing what the database says the index should hold with what it holds.
//!
//! Pure: the database side is the set of (id, version) of live rows, exactly
//! as the writer would index them (built by `esync::document::plan_actions`,
//! so soft deletes, counters and timestamps in microseconds mean the same
//! thing here as in the daemon); the index side is the set of (id, _version)
//! found. The result lists missing, extra and stale documents, and apart from
//! them documents *ahead* of their rows: an indexed version above the row's
//! means the row was rolled back or its version went backwards. A versioned
//! write cannot replace such a document (it is a conflict), so they are
//! differences that `--fix` cannot repair, reported on their own.

use esync::id::Id;
use serde::Serialize;
use std::collections::BTreeMap;

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
}

impl RangeDiff {
    /// True when the range matches.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.stale.is_empty()
            && self.ahead.is_empty()
    }

    /// Differences a versioned write can repair (all but `ahead`).
    pub fn fixable(&self) -> u64 {
        (self.missing.len() + self.extra.len() + self.stale.len()) as u64
    }

    /// Every id a versioned write can repair (missing, extra, stale),
    /// ascending, without repeats; documents ahead of their rows are left out.
    pub fn differing_ids(&self) -> Vec<Id> {
        let mut ids: Vec<Id> = self
            .missing
            .iter()
            .chain(&self.extra)
            .chain(self.stale.iter().map(|(id, _, _)| id))
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
        self.missing.sort();
        self.extra.sort();
        self.stale.sort();
        self.ahead.sort();
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
    /// Some missing ids.
    pub missing_samples: Vec<String>,
    /// Some extra ids.
    pub extra_samples: Vec<String>,
    /// Some stale documents.
    pub stale_samples: Vec<StaleDoc>,
    /// Some documents ahead of their rows.
    pub ahead_samples: Vec<StaleDoc>,
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
    }

    /// Total differences, documents ahead of their rows included.
    pub fn differences(&self) -> u64 {
        self.missing + self.extra + self.stale + self.ahead
    }

    /// Differences a versioned write can repair.
    pub fn fixable(&self) -> u64 {
        self.missing + self.extra + self.stale
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
        line
    }
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
}
