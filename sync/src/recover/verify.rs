//! `esync-recover verify`: compares the table with the index range by range
//! and reports (or repairs) missing, extra and stale documents.
//!
//! Per chunk: keyset pages of ids; their rows are re-read and turned into the
//! actions the writer would send (`crate::document::plan_actions`), which
//! gives the (id, version) each live row must have in the index, with the
//! daemon's own rules for versions and soft deletes; `_mget` gives the indexed
//! `_version`s; a range search on the id field finds documents of ids the
//! table does not have. `--fix` re-indexes the differing ids through the
//! versioned writer (a row that is gone becomes a versioned delete) and checks
//! them again; `--publish` hands them to the daemon through Kafka.
//!
//! Versions alone miss two failures (see [`crate::recover::diff`]): a document with
//! its row's version but other content (drift: compared by a hash of the
//! document the writer builds against `_source`), and, for mappings with a
//! `routing_column`, copies left under a routing the row no longer has
//! (found by an `ids` search across shards; `--fix` deletes exactly those
//! copies, versioned, after re-reading the rows once more).

use crate::document::{BulkAction, plan_actions};
use crate::id::Id;
use crate::recover::connect::Connected;
use crate::recover::diff::{
    DiffSummary, RangeDiff, StrayCopy, content_hash, diff, drifted, stray_copies,
};
use crate::recover::index::IndexSide;
use crate::recover::plan::{RangeRequest, make_plan};
use crate::recover::range::{Chunk, Cursor, IdBound};
use crate::recover::source::Source;
use crate::writer::Mapping;
use anyhow::Context as _;
use futures::StreamExt as _;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use tokio_util::sync::CancellationToken;

/// What to do with differences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixMode {
    /// Report only.
    Report,
    /// Re-index through the writer.
    Reindex,
    /// Produce the ids to this topic.
    Publish(String),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of a verify.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// What to cover.
    pub range: RangeRequest,
    /// Ids per keyset page and `_mget`.
    pub batch_size: usize,
    /// Chunks compared at once.
    pub parallel: usize,
    /// Sample ids per kind and range.
    pub samples: usize,
    /// What to do with differences.
    pub fix: FixMode,
    /// Output format.
    pub format: OutputFormat,
    /// Print clean ranges too.
    pub all_ranges: bool,
    /// `_refresh` the index first, so the extra-document search sees recent writes.
    pub refresh: bool,
}

/// What `--fix` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixReport {
    /// Ids re-indexed or produced.
    pub ids: u64,
    /// Documents written.
    pub indexed: u64,
    /// Documents deleted.
    pub deleted: u64,
    /// Writes superseded by a newer version.
    pub conflicts: u64,
    /// Ids that could not be written.
    pub failed: u64,
    /// Stray copies (other routing than the row's) deleted.
    pub strays_deleted: u64,
    /// Differences left when checked again (`None` for `--publish`).
    pub remaining: Option<u64>,
}

/// The outcome of a verify.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Totals over every range.
    pub total: DiffSummary,
    /// Ranges compared.
    pub ranges: u64,
    /// Ranges with differences.
    pub ranges_with_differences: u64,
    /// What `--fix`/`--publish` did.
    pub fix: Option<FixReport>,
}

impl VerifyReport {
    /// No differences, or all of them repaired and checked again.
    /// Documents ahead of their rows are never repaired by `--fix`, so they
    /// keep the exit code non-zero.
    pub fn is_clean_after_fix(&self) -> bool {
        self.total.differences() == 0
            || (self.total.ahead == 0
                && self
                    .fix
                    .as_ref()
                    .is_some_and(|fix| fix.remaining == Some(0)))
    }
}

/// One mapping being verified.
struct Side<'a> {
    mapping_index: usize,
    mapping: &'a Mapping,
    source: Source,
    index: IndexSide,
}

/// Verifies every requested mapping, writing the report to `out`.
pub async fn verify(
    connected: &Connected,
    settings: &VerifySettings,
    out: &mut dyn Write,
) -> anyhow::Result<VerifyReport> {
    let indices = connected.select_mappings(&settings.range.mappings)?;
    let mut report = VerifyReport::default();
    let mut differing: Vec<Vec<Id>> = vec![Vec::new(); connected.writer.mappings().len()];
    let mut strays: Vec<Vec<StrayCopy>> = vec![Vec::new(); connected.writer.mappings().len()];
    for mapping_index in indices {
        let config = &connected.loaded.config.mappings[mapping_index];
        let mapping = &connected.writer.mappings()[mapping_index];
        let id_field = (!config.exclude.contains(&config.id.column)).then(|| {
            config
                .rename
                .get(&config.id.column)
                .cloned()
                .unwrap_or_else(|| config.id.column.clone())
        });
        let index = IndexSide::open(
            connected.es.clone(),
            &config.index,
            config.id.id_type,
            id_field.as_deref(),
        )
        .await?;
        if settings.refresh {
            index.refresh().await?;
        }
        // Cover the index's ids too, or documents beyond the table's last row go unseen.
        let mut request = RangeRequest {
            mappings: vec![config.display_name().to_owned()],
            ..settings.range.clone()
        };
        let (from, to) = request.bounds(config.id.id_type)?;
        if from.is_none() || to.is_none() {
            let table = crate::recover::connect::walk_table(config, request.table.as_deref())?;
            let source = Source::new(
                connected.database.clone(),
                &table,
                &config.id.column,
                config.id.id_type,
            );
            let table_bounds = source
                .bounds()
                .await
                .with_context(|| format!("cannot read the id range of {table}"))?;
            let index_bounds = index.id_bounds().await?;
            let union = match (table_bounds, index_bounds) {
                // Integers order alike everywhere.
                (
                    Some((IdBound::Int(a), IdBound::Int(b))),
                    Some((IdBound::Int(c), IdBound::Int(d))),
                ) => Some((IdBound::Int(a.min(c)), IdBound::Int(b.max(d)))),
                // Strings: the index sorts by bytes, the database by its
                // collation; a bound chosen by byte order can sort inside the
                // table's range and hide rows from the walk. The table's own
                // range is walked.
                (Some(table), Some(_)) => Some(table),
                (one, other) => one.or(other),
            };
            if let Some((low, high)) = union {
                request.from = Some(from.unwrap_or(low).to_plain_string());
                request.to = Some(to.unwrap_or(high).to_plain_string());
            }
        }
        let plan = make_plan(connected, &request).await?;
        let mapping_plan = plan
            .mappings
            .into_iter()
            .next()
            .context("the plan has the mapping")?;
        let side = Side {
            mapping_index,
            mapping,
            source: Source::new(
                connected.database.clone(),
                &mapping_plan.table,
                &mapping_plan.id_column,
                mapping_plan.id_type,
            ),
            index,
        };
        let chunks = mapping_plan.layout.chunks();
        if settings.format == OutputFormat::Text {
            writeln!(
                out,
                "{}: table {} -> index {}, ids {}, {} range(s)",
                mapping.name,
                mapping_plan.table,
                config.index,
                mapping_plan.layout.range_text(),
                chunks.len()
            )?;
            if !side.index.exists() {
                writeln!(out, "  index {} does not exist", config.index)?;
            } else if !side.index.can_find_extras() {
                writeln!(
                    out,
                    "  note: documents carry no sortable id field; extra documents are not searched for"
                )?;
            }
        }
        let mut mapping_total = DiffSummary::default();
        let mut results = futures::stream::iter(chunks.into_iter().map(|chunk| {
            let side = &side;
            async move {
                let result = check_chunk(connected, side, &chunk, settings.batch_size).await;
                (chunk, result)
            }
        }))
        .buffered(settings.parallel.max(1));
        while let Some((chunk, result)) = results.next().await {
            let range_diff =
                result.with_context(|| format!("cannot compare {} ids {chunk}", mapping.name))?;
            let summary = range_diff.summary(settings.samples);
            report.ranges += 1;
            if !range_diff.is_clean() {
                report.ranges_with_differences += 1;
            }
            mapping_total.add(&summary, settings.samples);
            differing[mapping_index].extend(range_diff.differing_ids());
            strays[mapping_index].extend(range_diff.strays.iter().cloned());
            match settings.format {
                OutputFormat::Text if settings.all_ranges || !range_diff.is_clean() => {
                    writeln!(out, "  {chunk} {}", summary.to_line())?;
                }
                OutputFormat::Text => {}
                OutputFormat::Json => {
                    let mut line = serde_json::to_value(&summary).expect("summaries serialise");
                    line["mapping"] = json!(mapping.name);
                    line["range"] = json!(chunk.to_string());
                    if settings.all_ranges || !range_diff.is_clean() {
                        writeln!(out, "{line}")?;
                    }
                }
            }
        }
        if settings.format == OutputFormat::Text {
            writeln!(out, "  total {}", mapping_total.to_line())?;
        }
        report.total.add(&mapping_total, settings.samples);
    }
    let differences = report.total.differences();
    if report.total.fixable() > 0 && settings.fix != FixMode::Report {
        report.fix = Some(fix(connected, settings, &differing, &strays).await?);
    }
    match settings.format {
        OutputFormat::Text => {
            if differences == 0 {
                writeln!(
                    out,
                    "verify: the index matches the table in all {} range(s)",
                    report.ranges
                )?;
            } else {
                let mut kinds = format!(
                    "missing {}, extra {}, stale {}, ahead {}",
                    report.total.missing,
                    report.total.extra,
                    report.total.stale,
                    report.total.ahead
                );
                if report.total.drift > 0 {
                    kinds.push_str(&format!(", drift {}", report.total.drift));
                }
                if report.total.strays > 0 {
                    kinds.push_str(&format!(", stray copies {}", report.total.strays));
                }
                writeln!(
                    out,
                    "verify: {differences} difference(s) ({kinds}) in {} of {} range(s)",
                    report.ranges_with_differences, report.ranges
                )?;
            }
            if report.total.ahead > 0 {
                writeln!(
                    out,
                    "verify: {} document(s) are ahead of their rows (the row was rolled back or its version went backwards); --fix cannot replace them: correct the rows' versions",
                    report.total.ahead
                )?;
            }
            if let Some(fix) = &report.fix {
                match (&settings.fix, fix.remaining) {
                    (FixMode::Publish(topic), _) => writeln!(
                        out,
                        "fix: produced {} id(s) to {topic} for the daemon",
                        fix.ids
                    )?,
                    (_, remaining) => {
                        let strays = if fix.strays_deleted > 0 {
                            format!("; deleted {} stray copies", fix.strays_deleted)
                        } else {
                            String::new()
                        };
                        writeln!(
                            out,
                            "fix: re-indexed {} id(s): indexed {}, deleted {}, conflicts {}, failed {}{strays}; differences left: {}",
                            fix.ids,
                            fix.indexed,
                            fix.deleted,
                            fix.conflicts,
                            fix.failed,
                            remaining.unwrap_or_default()
                        )?
                    }
                }
            }
        }
        OutputFormat::Json => {
            let mut summary = serde_json::to_value(&report.total).expect("summaries serialise");
            summary["event"] = json!("summary");
            summary["ranges"] = json!(report.ranges);
            summary["ranges_with_differences"] = json!(report.ranges_with_differences);
            if let Some(fix) = &report.fix {
                summary["fix"] = json!({
                    "ids": fix.ids, "indexed": fix.indexed, "deleted": fix.deleted,
                    "conflicts": fix.conflicts, "failed": fix.failed,
                    "strays_deleted": fix.strays_deleted, "remaining": fix.remaining,
                });
            }
            writeln!(out, "{summary}")?;
        }
    }
    Ok(report)
}

/// Compares one chunk.
async fn check_chunk(
    connected: &Connected,
    side: &Side<'_>,
    chunk: &Chunk,
    batch_size: usize,
) -> anyhow::Result<RangeDiff> {
    let mut expected = BTreeMap::new();
    let mut indexed = BTreeMap::new();
    let mut drift = Vec::new();
    let mut strays = Vec::new();
    let mut cursor = chunk.first_cursor();
    loop {
        let ids = side.source.page(&cursor, &chunk.end, batch_size).await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        let page = check_ids(connected, side, &ids).await?;
        expected.extend(page.expected);
        indexed.extend(page.indexed);
        drift.extend(page.drift);
        strays.extend(page.strays);
        if ids.len() < batch_size {
            break;
        }
        cursor = Cursor::advance(&last);
    }
    // Documents of ids the table does not have: only searched for when the
    // range holds more documents than were found by id.
    if side.index.can_find_extras() && side.index.count(chunk).await? > indexed.len() as u64 {
        let candidates: Vec<(Id, Option<String>)> = side
            .index
            .ids_in(chunk)
            .await?
            .into_iter()
            .filter(|(id, _)| !indexed.contains_key(id))
            .collect();
        for page in candidates.chunks(batch_size) {
            let found = side.index.versions(page).await?;
            // A candidate whose row is live is no extra: with string ids the
            // index's range (byte order) is not the database's (collation
            // order), so the row belongs to another chunk; or it was inserted
            // after this chunk was read. Either way it is compared by id
            // where the walk meets it.
            let ids: Vec<Id> = page.iter().map(|(id, _)| id.clone()).collect();
            let live = expected_documents(connected, side, &ids).await?.versions;
            indexed.extend(found.into_iter().filter(|(id, _)| !live.contains_key(id)));
        }
    }
    let mut result = diff(&expected, &indexed);
    result.drift = drift;
    result.strays = strays;
    if !result.ahead.is_empty() {
        // The daemon may have written a newer row between the re-read and the
        // `_mget`: read both sides again before calling a document ahead.
        let ids: Vec<Id> = result.ahead.iter().map(|(id, _, _)| id.clone()).collect();
        let again = check_ids(connected, side, &ids).await?;
        result.ahead = diff(&again.expected, &again.indexed).ahead;
    }
    Ok(result)
}

/// One page of ids compared.
struct PageCheck {
    /// Live rows: id -> version.
    expected: BTreeMap<Id, u64>,
    /// Documents found at the rows' routing: id -> `_version`.
    indexed: BTreeMap<Id, u64>,
    /// Same version, other content.
    drift: Vec<Id>,
    /// Copies under a routing other than the row's.
    strays: Vec<StrayCopy>,
}

impl PageCheck {
    /// Differences `--fix` can repair on this page.
    fn fixable(&self) -> u64 {
        let mut result = diff(&self.expected, &self.indexed);
        result.drift.clone_from(&self.drift);
        result.strays.clone_from(&self.strays);
        result.fixable()
    }
}

/// Compares `ids`: the rows as the writer would index them against what the
/// index holds for them.
async fn check_ids(
    connected: &Connected,
    side: &Side<'_>,
    ids: &[Id],
) -> anyhow::Result<PageCheck> {
    let expected = expected_documents(connected, side, ids).await?;
    let contents = side.index.contents(&expected.lookups).await?;
    let drift = drifted(&expected.contents, &contents);
    let indexed: BTreeMap<Id, u64> = contents
        .into_iter()
        .map(|(id, (version, _))| (id, version))
        .collect();
    let strays = if side.mapping.spec.routing_column.is_some() {
        let routed: Vec<Id> = expected.routing.keys().cloned().collect();
        stray_copies(
            side.index.copies(&routed).await?,
            &expected.routing,
            &indexed,
        )
    } else {
        Vec::new()
    };
    Ok(PageCheck {
        expected: expected.versions,
        indexed,
        drift,
        strays,
    })
}

/// What the writer would do with some ids.
struct ExpectedDocuments {
    /// Live rows: id -> version.
    versions: BTreeMap<Id, u64>,
    /// Live rows: id -> (version, hash of the document built from the row).
    contents: BTreeMap<Id, (u64, u64)>,
    /// Ids with a row (live or soft-deleted): id -> the routing it gives.
    routing: BTreeMap<Id, Option<String>>,
    /// Every id to look up in the index, with its routing.
    lookups: Vec<(Id, Option<String>)>,
}

/// Re-reads `ids` and plans them with the writer's rules
/// (`crate::document::plan_actions`): versions, soft deletes, routing and
/// the document itself mean the same here as in the daemon.
async fn expected_documents(
    connected: &Connected,
    side: &Side<'_>,
    ids: &[Id],
) -> anyhow::Result<ExpectedDocuments> {
    let rows = side
        .mapping
        .reader
        .fetch(&connected.database, ids)
        .await
        .with_context(|| format!("cannot re-read rows of {}", side.mapping.name))?;
    let mut expected = ExpectedDocuments {
        versions: BTreeMap::new(),
        contents: BTreeMap::new(),
        routing: BTreeMap::new(),
        lookups: Vec::with_capacity(ids.len()),
    };
    // plan_actions plans a missing row as a delete with version `now`; with 0
    // such deletes are told apart from soft deletes, which carry the row's
    let missing_row_version = 0;
    for planned in plan_actions(&side.mapping.spec, ids, rows, missing_row_version) {
        match planned.action {
            Ok(BulkAction::Index {
                version,
                routing,
                source,
                ..
            }) => {
                let hash = content_hash(&serde_json::Value::Object(source));
                expected.versions.insert(planned.id.clone(), version);
                expected
                    .contents
                    .insert(planned.id.clone(), (version, hash));
                expected.routing.insert(planned.id.clone(), routing.clone());
                expected.lookups.push((planned.id, routing));
            }
            Ok(BulkAction::Delete {
                version, routing, ..
            }) => {
                if version != missing_row_version {
                    expected.routing.insert(planned.id.clone(), routing.clone());
                }
                expected.lookups.push((planned.id, routing));
            }
            Err(error) => {
                tracing::warn!(mapping = %side.mapping.name, id = %planned.id, error = %error, "row cannot be indexed; not compared");
            }
        }
    }
    Ok(expected)
}

/// Repairs (or hands over) the differing ids, then checks them again.
async fn fix(
    connected: &Connected,
    settings: &VerifySettings,
    differing: &[Vec<Id>],
    strays: &[Vec<StrayCopy>],
) -> anyhow::Result<FixReport> {
    let mut report = FixReport::default();
    if let FixMode::Publish(topic) = &settings.fix {
        let producer = crate::kafka::IdProducer::new(&connected.loaded.config.kafka)
            .context("cannot create the Kafka producer")?;
        for ids in differing {
            report.ids += producer
                .send_all(topic, ids)
                .await
                .with_context(|| format!("cannot produce ids to {topic}"))?
                as u64;
        }
        return Ok(report);
    }
    let never = CancellationToken::new();
    let batch_size = settings.batch_size.max(1);
    for (mapping_index, ids) in differing.iter().enumerate() {
        for page in ids.chunks(batch_size) {
            let written = connected
                .writer
                .write_ids(mapping_index, page, &never)
                .await
                .expect("never abandoned without an abort");
            report.ids += page.len() as u64;
            report.indexed += written.indexed as u64;
            report.deleted += written.deleted as u64;
            report.conflicts += written.conflicts as u64;
            report.failed += written.failed.len() as u64;
            for failed in &written.failed {
                tracing::error!(id = %failed.id, reason = %failed.reason, "cannot fix");
            }
        }
    }
    // Check the repaired ids again, by id (a search for stray copies after
    // a refresh, so the deleted ones are gone from it).
    let mut remaining = 0;
    for (mapping_index, ids) in differing.iter().enumerate() {
        let mapping_strays = &strays[mapping_index];
        if ids.is_empty() && mapping_strays.is_empty() {
            continue;
        }
        let config = &connected.loaded.config.mappings[mapping_index];
        let table = crate::recover::connect::walk_table(config, settings.range.table.as_deref())?;
        let side = Side {
            mapping_index,
            mapping: &connected.writer.mappings()[mapping_index],
            source: Source::new(
                connected.database.clone(),
                &table,
                &config.id.column,
                config.id.id_type,
            ),
            index: IndexSide::open(connected.es.clone(), &config.index, config.id.id_type, None)
                .await?,
        };
        debug_assert_eq!(side.mapping_index, mapping_index);
        if !mapping_strays.is_empty() {
            report.strays_deleted += delete_strays(connected, &side, mapping_strays).await?;
            side.index.refresh().await?;
        }
        let mut recheck: Vec<Id> = ids.clone();
        recheck.extend(mapping_strays.iter().map(|copy| copy.id.clone()));
        recheck.sort();
        recheck.dedup();
        for page in recheck.chunks(batch_size) {
            remaining += check_ids(connected, &side, page).await?.fixable();
        }
    }
    report.remaining = Some(remaining);
    Ok(report)
}

/// Deletes the stray copies that are still strays: the rows are re-read
/// first, so a copy whose row has meanwhile moved back to its routing is
/// kept, and each delete is versioned with the copy's version as seen.
async fn delete_strays(
    connected: &Connected,
    side: &Side<'_>,
    strays: &[StrayCopy],
) -> anyhow::Result<u64> {
    let mut deleted = 0;
    for page in strays.chunks(1000) {
        let ids: Vec<Id> = page.iter().map(|copy| copy.id.clone()).collect();
        let routing = expected_documents(connected, side, &ids).await?.routing;
        // these passed the hit check already; only the rows are judged again
        let still = stray_copies(page.to_vec(), &routing, &BTreeMap::new());
        deleted += side.index.delete_copies(&still).await?;
    }
    Ok(deleted)
}
