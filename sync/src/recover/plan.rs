//! Making the plan of a recovery: per mapping, the id range (given, or the
//! table's min..max) and its chunks.
//!
//! Integer ranges are split arithmetically; string ranges, and integer ranges
//! whose ids are too sparse for that (a span split would give mostly empty
//! chunks), by a keyset walk that finds the last id of every `chunk_size`
//! rows.

use crate::id::IdType;
use crate::recover::checkpoint::{ChunkLayout, MappingPlan, Plan};
use crate::recover::connect::{Connected, walk_table};
use crate::recover::range::{IdBound, integer_ids_are_sparse, normalize_boundaries};
use crate::recover::source::Source;
use anyhow::Context as _;

/// What the user asked to cover.
#[derive(Debug, Clone, Default)]
pub struct RangeRequest {
    /// Mapping names (all when empty).
    pub mappings: Vec<String>,
    /// First id, inclusive (default: the table's smallest).
    pub from: Option<String>,
    /// Last id, inclusive (default: the table's largest).
    pub to: Option<String>,
    /// Ids per chunk (integer ids) or rows per chunk (string ids).
    pub chunk_size: u64,
    /// The table to walk for a mapping with a custom query.
    pub table: Option<String>,
}

impl RangeRequest {
    /// `--from`/`--to` parsed for ids of `id_type`.
    pub fn bounds(&self, id_type: IdType) -> anyhow::Result<(Option<IdBound>, Option<IdBound>)> {
        let parse = |text: &Option<String>, flag: &str| {
            text.as_deref()
                .map(|text| {
                    IdBound::parse(text, id_type).with_context(|| format!("invalid {flag}"))
                })
                .transpose()
        };
        Ok((parse(&self.from, "--from")?, parse(&self.to, "--to")?))
    }
}

/// A source for every selected mapping, in plan order, with the writer's
/// mapping index.
pub fn sources(connected: &Connected, plan: &Plan) -> anyhow::Result<Vec<(usize, Source)>> {
    let config = &connected.loaded.config;
    plan.mappings
        .iter()
        .map(|mapping_plan| {
            let index = config
                .mappings
                .iter()
                .position(|mapping| mapping.display_name() == mapping_plan.mapping)
                .with_context(|| {
                    format!(
                        "the plan names mapping {:?}, which the config no longer has",
                        mapping_plan.mapping
                    )
                })?;
            let mapping = &config.mappings[index];
            if mapping.id.id_type != mapping_plan.id_type
                || mapping.id.column != mapping_plan.id_column
            {
                anyhow::bail!(
                    "mapping {:?} changed its id column or type since the plan was made",
                    mapping_plan.mapping
                );
            }
            let source = Source::new(
                connected.database.clone(),
                &mapping_plan.table,
                &mapping_plan.id_column,
                mapping_plan.id_type,
            );
            Ok((index, source))
        })
        .collect()
}

/// Plans the chunks of every requested mapping.
pub async fn make_plan(connected: &Connected, request: &RangeRequest) -> anyhow::Result<Plan> {
    let config = &connected.loaded.config;
    let indices = connected.select_mappings(&request.mappings)?;
    if request.table.is_some() && indices.len() != 1 {
        anyhow::bail!("--table applies to one mapping; select it with --mapping");
    }
    let mut mappings = Vec::with_capacity(indices.len());
    for index in indices {
        let mapping = &config.mappings[index];
        let table = walk_table(mapping, request.table.as_deref())?;
        let id_type = mapping.id.id_type;
        let source = Source::new(
            connected.database.clone(),
            &table,
            &mapping.id.column,
            id_type,
        );
        let (from, to) = request.bounds(id_type)?;
        let range = match (from, to) {
            (Some(from), Some(to)) => Some((from, to)),
            (from, to) => {
                let bounds = source
                    .bounds()
                    .await
                    .with_context(|| format!("cannot read the id range of {table}"))?;
                bounds.map(|(min, max)| (from.unwrap_or(min), to.unwrap_or(max)))
            }
        };
        let (layout, rows_estimate) = match range {
            None => (ChunkLayout::Empty, 0),
            Some((from, to)) => {
                let rows = source
                    .count(&from, &to)
                    .await
                    .with_context(|| format!("cannot count the rows of {table}"))?;
                let layout = match (&from, &to) {
                    (IdBound::Int(first), IdBound::Int(last))
                        if !integer_ids_are_sparse(*first, *last, request.chunk_size, rows) =>
                    {
                        ChunkLayout::Integer {
                            from: *first,
                            to: *last,
                            step: request.chunk_size,
                        }
                    }
                    // string ids, and integer ids too sparse to split by span
                    _ => {
                        let rows_per_chunk =
                            usize::try_from(request.chunk_size.max(1)).unwrap_or(usize::MAX);
                        let boundaries = source
                            .boundaries(&from, &to, rows_per_chunk)
                            .await
                            .with_context(|| {
                                format!("cannot find the chunk boundaries of {table}")
                            })?;
                        ChunkLayout::Boundaries {
                            boundaries: normalize_boundaries(&to, boundaries),
                            from,
                            to,
                            rows_per_chunk: request.chunk_size,
                        }
                    }
                };
                (layout, rows)
            }
        };
        mappings.push(MappingPlan {
            mapping: mapping.display_name().to_owned(),
            index: mapping.index.clone(),
            table,
            id_column: mapping.id.column.clone(),
            id_type,
            rows_estimate,
            layout,
        });
    }
    Ok(Plan { mappings })
}
