//! Identifier ranges and their split into chunks.
//!
//! Pure: no I/O. Recovery walks primary-key ranges, never time ranges. Integer
//! ranges are split arithmetically by a step of ids; string ids cannot be
//! split by arithmetic, so their chunk ends are the last ids of keyset pages
//! found in the database (the adapter finds them; [`chunks_from_boundaries`]
//! turns them into chunks). A chunk is walked with keyset pagination, so only
//! its bounds need to be stable, not the rows inside it.

use esync::id::{Id, IdType};
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

    /// The esync id with this value.
    pub fn to_id(&self) -> Id {
        match self {
            IdBound::Int(int) => Id::Int(*int),
            IdBound::Str(text) => Id::Str(text.as_str().into()),
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
    span.div_ceil(step) as u64
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
}
