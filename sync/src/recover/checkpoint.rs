//! The recovery plan and the record of which of its chunks are done.
//!
//! Pure: the state, its JSON form and the decisions about it (start, resume,
//! refuse). Where the JSON is kept (a file, a table) is [`crate::recover::store`]'s job.
//! Integer plans store only `from`, `to` and the step; string plans store the
//! chunk boundaries found in the database. Done chunks are stored as runs of
//! chunk numbers, so a plan of a million chunks stays small.

use crate::id::IdType;
use crate::recover::range::{
    Chunk, IdBound, boundary_chunk, chunks_from_boundaries, integer_chunk, integer_chunk_count,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format number written into every checkpoint.
pub const FORMAT: u32 = 1;

/// A set of chunk numbers, stored as sorted inclusive runs `[[0, 41], [43, 43]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DoneSet {
    runs: Vec<(u64, u64)>,
}

impl DoneSet {
    /// Adds `chunk`; returns false when it was already there.
    pub fn insert(&mut self, chunk: u64) -> bool {
        // the first run that ends at or after chunk - 1
        let position = self
            .runs
            .partition_point(|(_, end)| end.saturating_add(1) < chunk);
        if let Some((start, end)) = self.runs.get(position).copied() {
            if start <= chunk && chunk <= end {
                return false;
            }
            if end.saturating_add(1) == chunk {
                self.runs[position].1 = chunk;
                // join with the next run when the gap closed
                if let Some((next_start, next_end)) = self.runs.get(position + 1).copied()
                    && next_start == chunk + 1
                {
                    self.runs[position].1 = next_end;
                    self.runs.remove(position + 1);
                }
                return true;
            }
            if chunk + 1 == start {
                self.runs[position].0 = chunk;
                return true;
            }
        }
        self.runs.insert(position, (chunk, chunk));
        true
    }

    /// Whether `chunk` is in the set.
    pub fn contains(&self, chunk: u64) -> bool {
        let position = self.runs.partition_point(|(_, end)| *end < chunk);
        self.runs
            .get(position)
            .is_some_and(|(start, _)| *start <= chunk)
    }

    /// Number of chunks in the set.
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|(start, end)| end - start + 1).sum()
    }

    /// True when no chunk is done.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The chunks of `0..total` not in the set, ascending.
    pub fn missing(&self, total: u64) -> Vec<u64> {
        (0..total).filter(|chunk| !self.contains(*chunk)).collect()
    }
}

/// How one mapping's range is split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChunkLayout {
    /// Integer ids: chunks of `step` ids from `from` to `to`.
    Integer {
        /// First id.
        from: i64,
        /// Last id.
        to: i64,
        /// Ids per chunk.
        step: u64,
    },
    /// String ids, or sparse integer ids: chunk ends found by a keyset walk
    /// of the table.
    Boundaries {
        /// First id.
        from: IdBound,
        /// Last id.
        to: IdBound,
        /// Last ids of consecutive keyset pages of `rows_per_chunk` rows,
        /// ascending in the database's order, without repeats and below `to`
        /// (`crate::recover::range::normalize_boundaries`).
        boundaries: Vec<IdBound>,
        /// Rows per chunk when the plan was made.
        rows_per_chunk: u64,
    },
    /// The table had no rows in the range.
    Empty,
}

impl ChunkLayout {
    /// Number of chunks, in constant time (it is asked at every finished
    /// chunk).
    pub fn chunk_count(&self) -> u64 {
        match self {
            ChunkLayout::Integer { from, to, step } => integer_chunk_count(*from, *to, *step),
            ChunkLayout::Boundaries { boundaries, .. } => boundaries.len() as u64 + 1,
            ChunkLayout::Empty => 0,
        }
    }

    /// Every chunk, in order.
    pub fn chunks(&self) -> Vec<Chunk> {
        match self {
            ChunkLayout::Integer { from, to, step } => {
                crate::recover::range::plan_integer_chunks(*from, *to, *step)
            }
            ChunkLayout::Boundaries {
                from,
                to,
                boundaries,
                ..
            } => chunks_from_boundaries(from.clone(), to.clone(), boundaries),
            ChunkLayout::Empty => Vec::new(),
        }
    }

    /// Chunk number `index`, in constant time.
    pub fn chunk(&self, index: u64) -> Option<Chunk> {
        match self {
            ChunkLayout::Integer { from, to, step } => integer_chunk(*from, *to, *step, index),
            ChunkLayout::Boundaries {
                from,
                to,
                boundaries,
                ..
            } => boundary_chunk(from, to, boundaries, index),
            ChunkLayout::Empty => None,
        }
    }

    /// `from..=to` for display, if there is a range.
    pub fn range_text(&self) -> String {
        match self {
            ChunkLayout::Integer { from, to, .. } => format!("{from}..={to}"),
            ChunkLayout::Boundaries { from, to, .. } => format!("{from}..={to}"),
            ChunkLayout::Empty => "empty".into(),
        }
    }
}

/// The plan of one mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingPlan {
    /// Mapping name in `esync.yaml`.
    pub mapping: String,
    /// Target index or alias.
    pub index: String,
    /// Source table walked by keyset pagination.
    pub table: String,
    /// Id column.
    pub id_column: String,
    /// Id type.
    pub id_type: IdType,
    /// Rows in the range when the plan was made (for progress and ETA).
    pub rows_estimate: u64,
    /// The chunks.
    pub layout: ChunkLayout,
}

/// What a recovery covers; its identity when resuming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// One entry per mapping, in order.
    pub mappings: Vec<MappingPlan>,
}

impl Plan {
    /// Total chunks over all mappings.
    pub fn chunk_count(&self) -> u64 {
        self.mappings
            .iter()
            .map(|mapping| mapping.layout.chunk_count())
            .sum()
    }

    /// Total estimated rows.
    pub fn rows_estimate(&self) -> u64 {
        self.mappings
            .iter()
            .map(|mapping| mapping.rows_estimate)
            .sum()
    }
}

/// Counters carried across resumed runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Rows walked.
    pub rows: u64,
    /// Documents indexed.
    pub indexed: u64,
    /// Documents deleted (soft-deleted rows, rows gone since the walk).
    pub deleted: u64,
    /// Writes skipped because the index already held the version or a newer one.
    pub conflicts: u64,
    /// Ids that could not be written (dead-lettered).
    pub failed: u64,
}

impl Totals {
    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &Totals) {
        self.rows += other.rows;
        self.indexed += other.indexed;
        self.deleted += other.deleted;
        self.conflicts += other.conflicts;
        self.failed += other.failed;
    }

    /// Documents written or deleted.
    pub fn docs(&self) -> u64 {
        self.indexed + self.deleted
    }
}

/// The whole record of one recovery run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`FORMAT`].
    pub format: u32,
    /// The run's name.
    pub run_name: String,
    /// What is recovered.
    pub plan: Plan,
    /// Done chunks per mapping (keyed by mapping name).
    pub done: BTreeMap<String, DoneSet>,
    /// Totals over every attempt.
    pub totals: Totals,
    /// When the plan was made.
    pub started_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When the last chunk was done.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Checkpoint {
    /// A new checkpoint with nothing done.
    pub fn new(run_name: &str, plan: Plan, now: DateTime<Utc>) -> Checkpoint {
        let done = plan
            .mappings
            .iter()
            .map(|mapping| (mapping.mapping.clone(), DoneSet::default()))
            .collect();
        let mut checkpoint = Checkpoint {
            format: FORMAT,
            run_name: run_name.to_owned(),
            plan,
            done,
            totals: Totals::default(),
            started_at: now,
            updated_at: now,
            finished_at: None,
        };
        checkpoint.mark_finished_if_complete(now);
        checkpoint
    }

    /// Chunks done, over all mappings.
    pub fn chunks_done(&self) -> u64 {
        self.done.values().map(DoneSet::len).sum()
    }

    /// Whether chunk `chunk` of mapping number `mapping` is done.
    pub fn is_done(&self, mapping: usize, chunk: u64) -> bool {
        self.plan
            .mappings
            .get(mapping)
            .and_then(|plan| self.done.get(&plan.mapping))
            .is_some_and(|done| done.contains(chunk))
    }

    /// The chunks still to do as (mapping number, chunk number), in plan order.
    pub fn pending(&self) -> Vec<(usize, u64)> {
        let mut pending = Vec::new();
        for (mapping_index, mapping) in self.plan.mappings.iter().enumerate() {
            let done = self.done.get(&mapping.mapping).cloned().unwrap_or_default();
            pending.extend(
                done.missing(mapping.layout.chunk_count())
                    .into_iter()
                    .map(|chunk| (mapping_index, chunk)),
            );
        }
        pending
    }

    /// Records a finished chunk; returns false (and changes nothing) when it
    /// was already done.
    pub fn complete(
        &mut self,
        mapping: usize,
        chunk: u64,
        totals: &Totals,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(name) = self
            .plan
            .mappings
            .get(mapping)
            .map(|plan| plan.mapping.clone())
        else {
            return false;
        };
        if !self.done.entry(name).or_default().insert(chunk) {
            return false;
        }
        self.totals.add(totals);
        self.updated_at = now;
        self.mark_finished_if_complete(now);
        true
    }

    fn mark_finished_if_complete(&mut self, now: DateTime<Utc>) {
        if self.finished_at.is_none() && self.chunks_done() >= self.plan.chunk_count() {
            self.finished_at = Some(now);
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("checkpoints serialise")
    }

    /// Parses the JSON form, refusing other formats.
    pub fn from_json(text: &str) -> Result<Checkpoint, String> {
        let checkpoint: Checkpoint =
            serde_json::from_str(text).map_err(|error| format!("not a checkpoint: {error}"))?;
        if checkpoint.format != FORMAT {
            return Err(format!(
                "checkpoint format {} is not supported (expected {FORMAT})",
                checkpoint.format
            ));
        }
        Ok(checkpoint)
    }
}

/// What the user asked for, to compare with a stored plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Mapping names, in order.
    pub mappings: Vec<String>,
    /// `--from`, when given.
    pub from: Option<IdBound>,
    /// `--to`, when given.
    pub to: Option<IdBound>,
    /// `--chunk-size`.
    pub chunk_size: u64,
}

/// What to do with an existing checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartDecision {
    /// Plan afresh (no checkpoint, or `--force`).
    Fresh,
    /// Continue the stored plan.
    Resume,
    /// Stop with this message.
    Refuse(String),
}

/// Decides between starting, resuming and refusing.
pub fn decide_start(existing: Option<&Checkpoint>, resume: bool, force: bool) -> StartDecision {
    let Some(checkpoint) = existing else {
        return StartDecision::Fresh;
    };
    if force {
        return StartDecision::Fresh;
    }
    let (done, total) = (checkpoint.chunks_done(), checkpoint.plan.chunk_count());
    if let Some(finished_at) = checkpoint.finished_at {
        return StartDecision::Refuse(format!(
            "recovery {:?} already finished at {} ({total} chunks, {} rows); pass --force to run it again",
            checkpoint.run_name,
            finished_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            checkpoint.totals.rows
        ));
    }
    if resume {
        return StartDecision::Resume;
    }
    StartDecision::Refuse(format!(
        "recovery {:?} has a checkpoint with {done} of {total} chunks done; pass --resume to continue it or --force to start over",
        checkpoint.run_name
    ))
}

/// Checks that a resumed plan is the one the user asks for now; returns every
/// mismatch.
pub fn check_resume(stored: &Plan, request: &Request) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let stored_names: Vec<&str> = stored
        .mappings
        .iter()
        .map(|mapping| mapping.mapping.as_str())
        .collect();
    if stored_names
        != request
            .mappings
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    {
        problems.push(format!(
            "the checkpoint covers mappings {stored_names:?}, not {:?}",
            request.mappings
        ));
    }
    for mapping in &stored.mappings {
        let (from, to, chunk_size) = match &mapping.layout {
            ChunkLayout::Integer { from, to, step } => {
                (Some(IdBound::Int(*from)), Some(IdBound::Int(*to)), *step)
            }
            ChunkLayout::Boundaries {
                from,
                to,
                rows_per_chunk,
                ..
            } => (Some(from.clone()), Some(to.clone()), *rows_per_chunk),
            ChunkLayout::Empty => (None, None, request.chunk_size),
        };
        if let Some(wanted) = &request.from
            && from.as_ref().is_some_and(|from| from != wanted)
        {
            problems.push(format!(
                "{}: the checkpoint starts at {}, not --from {wanted}",
                mapping.mapping,
                mapping.layout.range_text()
            ));
        }
        if let Some(wanted) = &request.to
            && to.as_ref().is_some_and(|to| to != wanted)
        {
            problems.push(format!(
                "{}: the checkpoint ends at {}, not --to {wanted}",
                mapping.mapping,
                mapping.layout.range_text()
            ));
        }
        if chunk_size != request.chunk_size {
            problems.push(format!(
                "{}: the checkpoint uses --chunk-size {chunk_size}, not {}",
                mapping.mapping, request.chunk_size
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn plan() -> Plan {
        Plan {
            mappings: vec![
                MappingPlan {
                    mapping: "orders".into(),
                    index: "orders".into(),
                    table: "orders".into(),
                    id_column: "id".into(),
                    id_type: IdType::Integer,
                    rows_estimate: 95,
                    layout: ChunkLayout::Integer {
                        from: 1,
                        to: 100,
                        step: 25,
                    },
                },
                MappingPlan {
                    mapping: "items".into(),
                    index: "items".into(),
                    table: "items".into(),
                    id_column: "sku".into(),
                    id_type: IdType::String,
                    rows_estimate: 3,
                    layout: ChunkLayout::Boundaries {
                        from: IdBound::Str("a".into()),
                        to: IdBound::Str("c".into()),
                        boundaries: vec![IdBound::Str("b".into())],
                        rows_per_chunk: 25,
                    },
                },
            ],
        }
    }

    #[test]
    fn done_sets_keep_sorted_runs() {
        // (inserts, expected runs, newly inserted flags)
        type Case = (Vec<u64>, Vec<(u64, u64)>);
        let cases: Vec<Case> = vec![
            (vec![0, 1, 2], vec![(0, 2)]),
            (vec![2, 1, 0], vec![(0, 2)]),
            (vec![0, 2, 1], vec![(0, 2)]),
            (vec![5, 0, 9, 8, 7], vec![(0, 0), (5, 5), (7, 9)]),
            (vec![3, 3, 3], vec![(3, 3)]),
            (vec![10, 12, 14, 11, 13], vec![(10, 14)]),
        ];
        for (inserts, expected) in cases {
            let mut set = DoneSet::default();
            for chunk in &inserts {
                set.insert(*chunk);
            }
            assert_eq!(set.runs, expected, "{inserts:?}");
            let count: u64 = expected.iter().map(|(start, end)| end - start + 1).sum();
            assert_eq!(set.len(), count);
        }
        let mut set = DoneSet::default();
        assert!(set.insert(4) && !set.insert(4));
        assert!(set.contains(4) && !set.contains(3) && !set.contains(5));
        assert_eq!(set.missing(7), vec![0, 1, 2, 3, 5, 6]);
        assert_eq!(serde_json::to_string(&set).unwrap(), "[[4,4]]");
    }

    #[test]
    fn done_set_matches_a_naive_set() {
        let mut set = DoneSet::default();
        let mut naive = std::collections::BTreeSet::new();
        let mut state = 12345u64;
        for _ in 0..2000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let chunk = (state >> 33) % 300;
            assert_eq!(set.insert(chunk), naive.insert(chunk));
        }
        for chunk in 0..300 {
            assert_eq!(set.contains(chunk), naive.contains(&chunk), "{chunk}");
        }
        assert!(
            set.runs.windows(2).all(|pair| pair[0].1 + 1 < pair[1].0),
            "runs are disjoint and not adjacent: {:?}",
            set.runs
        );
    }

    #[test]
    fn checkpoint_records_chunks_once_and_finishes() {
        let mut checkpoint = Checkpoint::new("r", plan(), at(0));
        assert_eq!(checkpoint.plan.chunk_count(), 4 + 2);
        assert_eq!(checkpoint.pending().len(), 6);
        let totals = Totals {
            rows: 25,
            indexed: 24,
            deleted: 1,
            conflicts: 0,
            failed: 0,
        };
        assert!(checkpoint.complete(0, 1, &totals, at(1)));
        assert!(
            !checkpoint.complete(0, 1, &totals, at(2)),
            "a chunk is counted once"
        );
        assert_eq!(checkpoint.totals, totals);
        assert!(checkpoint.is_done(0, 1) && !checkpoint.is_done(0, 0) && !checkpoint.is_done(9, 0));
        assert_eq!(
            checkpoint.pending(),
            vec![(0, 0), (0, 2), (0, 3), (1, 0), (1, 1)]
        );
        for (mapping, chunk) in checkpoint.pending() {
            assert_eq!(checkpoint.finished_at, None);
            checkpoint.complete(mapping, chunk, &Totals::default(), at(3));
        }
        assert_eq!(checkpoint.finished_at, Some(at(3)));
        let round_trip = Checkpoint::from_json(&checkpoint.to_json()).unwrap();
        assert_eq!(round_trip, checkpoint);
        assert!(
            Checkpoint::from_json(
                &checkpoint
                    .to_json()
                    .replace("\"format\": 1", "\"format\": 9")
            )
            .unwrap_err()
            .contains("format 9")
        );
        assert!(Checkpoint::from_json("{}").is_err());
        let empty = Checkpoint::new("r", Plan { mappings: vec![] }, at(0));
        assert_eq!(empty.finished_at, Some(at(0)), "nothing to do is finished");
    }

    #[test]
    fn layouts_enumerate_their_chunks() {
        let plan = plan();
        assert_eq!(
            plan.mappings[0].layout.chunk(3).unwrap().to_string(),
            "[76..100]"
        );
        assert_eq!(
            plan.mappings[1].layout.chunk(1).unwrap().to_string(),
            "(\"b\"..\"c\"]"
        );
        assert_eq!(plan.mappings[1].layout.chunk(2), None);
        assert_eq!(ChunkLayout::Empty.chunk_count(), 0);
        let json = serde_json::to_value(&plan.mappings[0].layout).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "integer", "from": 1, "to": 100, "step": 25})
        );
    }

    #[test]
    fn start_decisions() {
        let mut unfinished = Checkpoint::new("r", plan(), at(0));
        unfinished.complete(0, 0, &Totals::default(), at(1));
        let mut finished = unfinished.clone();
        for (mapping, chunk) in finished.pending() {
            finished.complete(mapping, chunk, &Totals::default(), at(2));
        }
        let refuse = |decision: StartDecision, wanted: &str| match decision {
            StartDecision::Refuse(message) => assert!(message.contains(wanted), "{message}"),
            other => panic!("expected refusal with {wanted:?}, got {other:?}"),
        };
        assert_eq!(decide_start(None, false, false), StartDecision::Fresh);
        assert_eq!(decide_start(None, true, false), StartDecision::Fresh);
        assert_eq!(
            decide_start(Some(&unfinished), true, false),
            StartDecision::Resume
        );
        assert_eq!(
            decide_start(Some(&unfinished), false, true),
            StartDecision::Fresh
        );
        assert_eq!(
            decide_start(Some(&finished), false, true),
            StartDecision::Fresh
        );
        refuse(
            decide_start(Some(&unfinished), false, false),
            "1 of 6 chunks done; pass --resume",
        );
        refuse(
            decide_start(Some(&finished), true, false),
            "already finished at 2023-11-14T22:13:22Z",
        );
        refuse(decide_start(Some(&finished), false, false), "pass --force");
    }

    #[test]
    fn resume_must_match_the_request() {
        let plan = plan();
        let request = Request {
            mappings: vec!["orders".into(), "items".into()],
            from: None,
            to: None,
            chunk_size: 25,
        };
        assert_eq!(check_resume(&plan, &request), Ok(()));
        let explicit = Request {
            from: Some(IdBound::Int(1)),
            ..request.clone()
        };
        let problems = check_resume(&plan, &explicit).unwrap_err();
        assert_eq!(
            problems.len(),
            1,
            "only the string mapping starts elsewhere: {problems:?}"
        );
        let wrong = Request {
            mappings: vec!["orders".into()],
            to: Some(IdBound::Int(7)),
            chunk_size: 10,
            ..request
        };
        let problems = check_resume(&plan, &wrong).unwrap_err();
        assert!(problems[0].contains("covers mappings"), "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("not --to 7")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("--chunk-size 25, not 10")),
            "{problems:?}"
        );
    }
}
