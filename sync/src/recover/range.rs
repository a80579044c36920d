//! Identifier ranges and their split into chunks.
//!
//! Pure: no I/O. Recovery walks primary-key ranges, never time ranges. Integer
//! ranges are split arithmetically by a step of ids; string ids cannot be
//! split by arithmetic, so their chunk ends are the last ids of keyset pages
//! found in the database (the adapter finds them; [`chunks_from_boundaries`]
//! turns them into chunks). A chunk is walked with keyset pagination, so only
//! its bounds need to be stable, not the rows inside it.

use crate::id::{Id, IdType};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One end of an id range: an integer or a string id, as the mapping declares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IdBound {
    /// An integer id.
    Int(i64),
    /// A string id.
    Str(String),
}

/// Why a `--from`/`--to` value is not an id of the mapping's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    /// The mapping has integer ids.
    #[error("{0:?} is not an integer id")]
    NotInteger(String),
    /// Empty text.
    #[error("an empty id cannot bound a range")]
    Empty,
}

impl IdBound {
    /// Parses a bound given on the command line for ids of `id_type`.
    pub fn parse(text: &str, id_type: IdType) -> Result<IdBound, BoundError> {
        if text.is_empty() {
            return Err(BoundError::Empty);
        }
        match id_type {
            IdType::Integer => text
                .trim()
                .parse()
                .map(IdBound::Int)
                .map_err(|_| BoundError::NotInteger(text.to_owned())),
            IdType::String => Ok(IdBound::Str(text.to_owned())),
        }
    }

    /// The bound equal to `id`.
    pub fn from_id(id: &Id) -> IdBound {
        match id {
            Id::Int(int) => IdBound::Int(*int),
            Id::Str(text) => IdBound::Str(text.to_string()),
        }
    }

    /// The bound as `--from`/`--to` text (no quotes).
    pub fn to_plain_string(&self) -> String {
        match self {
            IdBound::Int(int) => int.to_string(),
            IdBound::Str(text) => text.clone(),
        }
    }

    /// True when the bound's kind matches `id_type`.
    pub fn is_of_type(&self, id_type: IdType) -> bool {
        matches!(
            (self, id_type),
            (IdBound::Int(_), IdType::Integer) | (IdBound::Str(_), IdType::String)
        )
    }
}

impl fmt::Display for IdBound {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdBound::Int(int) => write!(formatter, "{int}"),
            IdBound::Str(text) => write!(formatter, "{text:?}"),
        }
    }
}

/// A contiguous part of an id range: `start < id <= end`, or
/// `start <= id <= end` when `start_inclusive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Lower bound.
    pub start: IdBound,
    /// Whether ids equal to `start` belong to this chunk.
    pub start_inclusive: bool,
    /// Upper bound, always inclusive.
    pub end: IdBound,
}

impl fmt::Display for Chunk {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open = if self.start_inclusive { '[' } else { '(' };
        write!(formatter, "{open}{}..{}]", self.start, self.end)
    }
}

/// Where a keyset walk of a chunk stands: the next page holds ids after (or
/// from, when `inclusive`) `after`, up to the chunk's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The lower bound of the next page.
    pub after: IdBound,
    /// Whether `after` itself is still to be read.
    pub inclusive: bool,
}

impl Chunk {
    /// The cursor of the first page.
    pub fn first_cursor(&self) -> Cursor {
        Cursor {
            after: self.start.clone(),
            inclusive: self.start_inclusive,
        }
    }
}

impl Cursor {
    /// The cursor after a page whose last id was `last`: keyset pagination,
    /// `WHERE id > last`, never an offset.
    pub fn advance(last: &Id) -> Cursor {
        Cursor {
            after: IdBound::from_id(last),
            inclusive: false,
        }
    }
}

/// Splits the integer range `from..=to` into chunks of `step` ids each (the
/// last one may be shorter). Empty when `from > to`.
pub fn plan_integer_chunks(from: i64, to: i64, step: u64) -> Vec<Chunk> {
    let step = i128::from(step.max(1));
    let (from, to) = (i128::from(from), i128::from(to));
    let mut chunks = Vec::new();
    let mut start = from;
    while start <= to {
        let end = (start + step - 1).min(to);
        // both values lie within from..=to, which came from i64s
        let as_i64 =
            |value: i128| i64::try_from(value).expect("chunk bounds stay within the i64 range");
        chunks.push(Chunk {
            start: IdBound::Int(as_i64(start)),
            start_inclusive: true,
            end: IdBound::Int(as_i64(end)),
        });
        start = end + 1;
    }
    chunks
}

/// Number of chunks [`plan_integer_chunks`] returns, without building them.
pub fn integer_chunk_count(from: i64, to: i64, step: u64) -> u64 {
    if from > to {
        return 0;
    }
    let span = (i128::from(to) - i128::from(from) + 1) as u128;
    let step = u128::from(step.max(1));
    // 2^64 one-id chunks of the whole i64 range do not fit: saturate rather
    // than wrap to 0 (an empty plan that would "finish" at once)
    u64::try_from(span.div_ceil(step)).unwrap_or(u64::MAX)
}

/// Chunk `index` of [`plan_integer_chunks`]`(from, to, step)`.
pub fn integer_chunk(from: i64, to: i64, step: u64, index: u64) -> Option<Chunk> {
    if index >= integer_chunk_count(from, to, step) {
        return None;
    }
    let step = i128::from(step.max(1));
    let start = i128::from(from) + step * i128::from(index);
    let end = (start + step - 1).min(i128::from(to));
    let as_i64 =
        |value: i128| i64::try_from(value).expect("chunk bounds stay within the i64 range");
    Some(Chunk {
        start: IdBound::Int(as_i64(start)),
        start_inclusive: true,
        end: IdBound::Int(as_i64(end)),
    })
}

/// Chunks of the range `from..=to` whose ends are `boundaries`, the last ids
/// of consecutive keyset pages in the database's order: `[from, b0]`,
/// `(b0, b1]`, ..., `(bn, to]`. Boundaries must be ascending in the
/// database's order and at most `to`; a boundary equal to `to` ends the plan,
/// and repeated boundaries are ignored.
pub fn chunks_from_boundaries(from: IdBound, to: IdBound, boundaries: &[IdBound]) -> Vec<Chunk> {
    let mut chunks = Vec::with_capacity(boundaries.len() + 1);
    let mut start = from;
    let mut start_inclusive = true;
    for boundary in boundaries {
        if *boundary == start && !start_inclusive {
            continue;
        }
        chunks.push(Chunk {
            start: start.clone(),
            start_inclusive,
            end: boundary.clone(),
        });
        if *boundary == to {
            return chunks;
        }
        start = boundary.clone();
        start_inclusive = false;
    }
    chunks.push(Chunk {
        start,
        start_inclusive,
        end: to,
    });
    chunks
}

/// How many more chunks than the row count needs an arithmetic split may
/// have before the ids count as sparse.
const SPARSE_FACTOR: u64 = 4;

/// Whether integer ids in `from..=to` are too sparse to split by id span:
/// `step`-wide chunks would be mostly empty (snowflake or hash-like ids, a
/// few huge gaps), giving far more chunks than `rows` rows need, each one a
/// query and a checkpoint entry (or a lease row). Such ranges are split like
/// string ids, by the last id of every `step` rows.
pub fn integer_ids_are_sparse(from: i64, to: i64, step: u64, rows: u64) -> bool {
    let arithmetic = integer_chunk_count(from, to, step);
    let needed = rows.div_ceil(step.max(1)).max(1);
    arithmetic > needed.saturating_mul(SPARSE_FACTOR).saturating_add(16)
}

/// `boundaries` as [`chunks_from_boundaries`] reads them: repeats dropped,
/// and nothing from a boundary equal to `to` on. Afterwards chunk `i` is
/// found without walking the list ([`boundary_chunk`]).
pub fn normalize_boundaries(to: &IdBound, boundaries: Vec<IdBound>) -> Vec<IdBound> {
    let mut normalized: Vec<IdBound> = Vec::with_capacity(boundaries.len());
    for boundary in boundaries {
        if boundary == *to {
            break;
        }
        if normalized.last() != Some(&boundary) {
            normalized.push(boundary);
        }
    }
    normalized
}

/// Chunk `index` of [`chunks_from_boundaries`]`(from, to, boundaries)` for
/// normalized `boundaries` ([`normalize_boundaries`]), in constant time.
pub fn boundary_chunk(
    from: &IdBound,
    to: &IdBound,
    boundaries: &[IdBound],
    index: u64,
) -> Option<Chunk> {
    let index = usize::try_from(index).ok()?;
    if index > boundaries.len() {
        return None;
    }
    let (start, start_inclusive) = match index {
        0 => (from.clone(), true),
        _ => (boundaries[index - 1].clone(), false),
    };
    let end = boundaries.get(index).unwrap_or(to).clone();
    Some(Chunk {
        start,
        start_inclusive,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int_chunk(start: i64, end: i64) -> Chunk {
        Chunk {
            start: IdBound::Int(start),
            start_inclusive: true,
            end: IdBound::Int(end),
        }
    }

    #[test]
    fn integer_ranges_split_by_step() {
        let cases: Vec<(i64, i64, u64, Vec<Chunk>)> = vec![
            (1, 10, 5, vec![int_chunk(1, 5), int_chunk(6, 10)]),
            (
                1,
                11,
                5,
                vec![int_chunk(1, 5), int_chunk(6, 10), int_chunk(11, 11)],
            ),
            (7, 7, 100, vec![int_chunk(7, 7)]),
            (
                -5,
                4,
                4,
                vec![int_chunk(-5, -2), int_chunk(-1, 2), int_chunk(3, 4)],
            ),
            (10, 1, 5, vec![]),
            (
                1,
                3,
                0,
                vec![int_chunk(1, 1), int_chunk(2, 2), int_chunk(3, 3)],
            ),
            (
                i64::MAX - 2,
                i64::MAX,
                2,
                vec![
                    int_chunk(i64::MAX - 2, i64::MAX - 1),
                    int_chunk(i64::MAX, i64::MAX),
                ],
            ),
            (
                i64::MIN,
                i64::MIN + 1,
                10,
                vec![int_chunk(i64::MIN, i64::MIN + 1)],
            ),
        ];
        for (from, to, step, expected) in cases {
            let planned = plan_integer_chunks(from, to, step);
            assert_eq!(planned, expected, "{from}..={to} by {step}");
            assert_eq!(
                integer_chunk_count(from, to, step),
                expected.len() as u64,
                "{from}..={to} by {step}"
            );
            for (index, chunk) in expected.iter().enumerate() {
                assert_eq!(
                    integer_chunk(from, to, step, index as u64).as_ref(),
                    Some(chunk)
                );
            }
            assert_eq!(integer_chunk(from, to, step, expected.len() as u64), None);
        }
    }

    #[test]
    fn integer_chunks_cover_every_id_once() {
        let chunks = plan_integer_chunks(3, 1000, 7);
        let mut covered = Vec::new();
        for chunk in &chunks {
            let (IdBound::Int(start), IdBound::Int(end)) = (&chunk.start, &chunk.end) else {
                panic!()
            };
            covered.extend(*start..=*end);
        }
        assert_eq!(covered, (3..=1000).collect::<Vec<_>>());
        assert_eq!(integer_chunk_count(i64::MIN, i64::MAX, u64::MAX), 2);
        assert_eq!(integer_chunk_count(i64::MIN, i64::MAX, 1), u64::MAX);
    }

    #[test]
    fn string_chunks_from_keyset_boundaries() {
        let s = |text: &str| IdBound::Str(text.into());
        let open = |start: &str, end: &str| Chunk {
            start: s(start),
            start_inclusive: false,
            end: s(end),
        };
        let closed = |start: &str, end: &str| Chunk {
            start: s(start),
            start_inclusive: true,
            end: s(end),
        };
        let cases: Vec<(&str, &str, Vec<IdBound>, Vec<Chunk>)> = vec![
            ("a", "z", vec![], vec![closed("a", "z")]),
            (
                "a",
                "z",
                vec![s("f"), s("m")],
                vec![closed("a", "f"), open("f", "m"), open("m", "z")],
            ),
            (
                "a",
                "z",
                vec![s("f"), s("z")],
                vec![closed("a", "f"), open("f", "z")],
            ),
            (
                "a",
                "z",
                vec![s("a"), s("k")],
                vec![closed("a", "a"), open("a", "k"), open("k", "z")],
            ),
            (
                "a",
                "z",
                vec![s("f"), s("f"), s("m")],
                vec![closed("a", "f"), open("f", "m"), open("m", "z")],
            ),
            ("k", "k", vec![s("k")], vec![closed("k", "k")]),
        ];
        for (from, to, boundaries, expected) in cases {
            assert_eq!(
                chunks_from_boundaries(s(from), s(to), &boundaries),
                expected,
                "{from}..{to} at {boundaries:?}"
            );
        }
    }

    #[test]
    fn bounds_parse_by_type_and_display() {
        assert_eq!(IdBound::parse("42", IdType::Integer), Ok(IdBound::Int(42)));
        assert_eq!(
            IdBound::parse("x", IdType::Integer),
            Err(BoundError::NotInteger("x".into()))
        );
        assert_eq!(
            IdBound::parse("42", IdType::String),
            Ok(IdBound::Str("42".into()))
        );
        assert_eq!(IdBound::parse("", IdType::String), Err(BoundError::Empty));
        assert_eq!(int_chunk(1, 5).to_string(), "[1..5]");
        let open = Chunk {
            start: IdBound::Str("a".into()),
            start_inclusive: false,
            end: IdBound::Str("b".into()),
        };
        assert_eq!(open.to_string(), "(\"a\"..\"b\"]");
        assert_eq!(serde_json::to_string(&IdBound::Int(3)).unwrap(), "3");
        assert_eq!(
            serde_json::from_str::<IdBound>("\"3\"").unwrap(),
            IdBound::Str("3".into())
        );
        assert_eq!(
            Cursor::advance(&Id::Int(9)),
            Cursor {
                after: IdBound::Int(9),
                inclusive: false
            }
        );
        assert!(
            IdBound::Int(1).is_of_type(IdType::Integer)
                && !IdBound::Int(1).is_of_type(IdType::String)
        );
    }

    #[test]
    fn sparse_integer_ids_are_detected() {
        // (from, to, step, rows, sparse)
        let cases = [
            (1, 1_000_000, 10_000, 1_000_000, false),
            // ids with gaps, still dense enough: half the ids deleted
            (1, 1_000_000, 10_000, 500_000, false),
            (1, 900, 200, 600, false),
            // snowflake-like ids: 1M rows over 2^62 ids
            (1, 1 << 62, 10_000, 1_000_000, true),
            // two far-apart clusters
            (1, 10_000_000_000, 10_000, 20_000, true),
            (i64::MIN, i64::MAX, 1, 2, true),
            (5, 5, 10, 1, false),
        ];
        for (from, to, step, rows, sparse) in cases {
            assert_eq!(
                integer_ids_are_sparse(from, to, step, rows),
                sparse,
                "{from}..={to} by {step} with {rows} rows"
            );
        }
    }

    #[test]
    fn boundary_chunks_are_found_by_number() {
        let s = |text: &str| IdBound::Str(text.into());
        let cases: Vec<(&str, &str, Vec<IdBound>)> = vec![
            ("a", "z", vec![]),
            ("a", "z", vec![s("f"), s("m")]),
            ("a", "z", vec![s("f"), s("z")]),
            ("a", "z", vec![s("a"), s("k")]),
            ("a", "z", vec![s("f"), s("f"), s("m")]),
            ("k", "k", vec![s("k")]),
        ];
        for (from, to, boundaries) in cases {
            let expected = chunks_from_boundaries(s(from), s(to), &boundaries);
            let normalized = normalize_boundaries(&s(to), boundaries.clone());
            let found: Vec<Chunk> = (0..)
                .map_while(|index| boundary_chunk(&s(from), &s(to), &normalized, index))
                .collect();
            assert_eq!(found, expected, "{from}..{to} at {boundaries:?}");
            assert_eq!(normalized.len() + 1, expected.len());
        }
        let ints = [IdBound::Int(10), IdBound::Int(20)];
        assert_eq!(
            boundary_chunk(&IdBound::Int(-5), &IdBound::Int(30), &ints, 1)
                .unwrap()
                .to_string(),
            "(10..20]"
        );
    }
}
