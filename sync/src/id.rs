//! Row identifiers as they travel from Kafka to the database and the index.
//!
//! Pure: no I/O. The worker a given id goes to is a stable hash of its text, so
//! the same id always lands on the same worker, across restarts and versions.

use std::fmt;

/// The declared type of a mapping's id column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdType {
    /// A signed 64-bit integer (`int`, `bigint`, `serial`, unsigned columns
    /// and integral `NUMERIC`/`DECIMAL` values within its range ...).
    Integer,
    /// Exact text, byte for byte (`varchar`, `text`, `CHAR(n)`, `uuid` as its
    /// canonical text, numbers as their decimal text ...).
    String,
}

/// One row identifier, normalised to the mapping's declared id type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id.
    Int(i64),
    /// A text id.
    Str(Box<str>),
}

/// Why a piece of text is not a valid id of the declared type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty ids cannot address a row.
    #[error("empty id")]
    Empty,
    /// The mapping declares integer ids and the text is not one.
    #[error("id {0:?} is not an integer")]
    NotInteger(String),
}

impl Id {
    /// Parses `text` as an id of type `id_type`.
    ///
    /// A string id is the exact text, byte for byte: leading and trailing
    /// spaces or tabs are part of it (a text key `" a"` is another row than
    /// `"a"`, and trimming it would turn the row into a delete). An integer id
    /// tolerates whitespace around its digits.
    pub fn parse(text: &str, id_type: IdType) -> Result<Id, IdError> {
        match id_type {
            IdType::Integer => {
                let digits = text.trim();
                if digits.is_empty() {
                    return Err(IdError::Empty);
                }
                digits
                    .parse::<i64>()
                    .map(Id::Int)
                    .map_err(|_| IdError::NotInteger(truncate_for_message(digits)))
            }
            IdType::String if text.is_empty() => Err(IdError::Empty),
            IdType::String => Ok(Id::Str(text.into())),
        }
    }

    /// Builds an id from a JSON scalar (number or string), as found in JSON and
    /// Debezium messages.
    pub fn from_json(value: &serde_json::Value, id_type: IdType) -> Result<Id, IdError> {
        match value {
            serde_json::Value::Number(number) => match (id_type, number.as_i64()) {
                (IdType::Integer, Some(int)) => Ok(Id::Int(int)),
                (IdType::Integer, None) => Err(IdError::NotInteger(number.to_string())),
                (IdType::String, _) => Ok(Id::Str(number.to_string().into())),
            },
            serde_json::Value::String(text) => Id::parse(text, id_type),
            other => Err(IdError::NotInteger(truncate_for_message(
                &other.to_string(),
            ))),
        }
    }

    /// The document `_id` in Elasticsearch.
    pub fn to_doc_id(&self) -> String {
        self.to_string()
    }

    /// Index of the worker that owns this id, stable for a given `workers` count:
    /// xxh3-64 of the id's text, modulo `workers`.
    pub fn worker_index(&self, workers: usize) -> usize {
        debug_assert!(workers > 0, "at least one worker");
        let hash = match self {
            Id::Int(int) => xxhash_rust::xxh3::xxh3_64(int.to_string().as_bytes()),
            Id::Str(text) => xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
        };
        (hash % workers as u64) as usize
    }
}

/// Keeps error messages readable when a message carries a huge bogus payload.
pub(crate) fn truncate_for_message(text: &str) -> String {
    truncate_chars(text, 64)
}

/// `text` cut to `max_chars` characters, with `…` when something was cut.
pub(crate) fn truncate_chars(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

impl fmt::Display for Id {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Int(int) => write!(formatter, "{int}"),
            Id::Str(text) => formatter.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_declared_type() {
        assert_eq!(Id::parse(" 42\n", IdType::Integer), Ok(Id::Int(42)));
        assert_eq!(Id::parse("-7", IdType::Integer), Ok(Id::Int(-7)));
        assert_eq!(Id::parse("42", IdType::String), Ok(Id::Str("42".into())));
        assert_eq!(Id::parse("", IdType::String), Err(IdError::Empty));
        assert_eq!(
            Id::parse("abc", IdType::Integer),
            Err(IdError::NotInteger("abc".into()))
        );
        assert!(Id::parse("99999999999999999999", IdType::Integer).is_err());
    }

    /// Issue 9, item 2: a string id is the exact text, whitespace included;
    /// integer ids still tolerate whitespace around the digits.
    #[test]
    fn string_ids_are_exact() {
        for text in [" a", "a ", "\ta\t", " ", "a\n"] {
            assert_eq!(Id::parse(text, IdType::String), Ok(Id::Str(text.into())));
            assert_eq!(
                Id::from_json(&serde_json::json!(text), IdType::String),
                Ok(Id::Str(text.into()))
            );
            assert_eq!(Id::Str(text.into()).to_doc_id(), text);
        }
        assert_eq!(Id::parse("\t42 ", IdType::Integer), Ok(Id::Int(42)));
        assert_eq!(Id::parse(" ", IdType::Integer), Err(IdError::Empty));
    }

    #[test]
    fn from_json_scalars() {
        use serde_json::json;
        assert_eq!(Id::from_json(&json!(5), IdType::Integer), Ok(Id::Int(5)));
        assert_eq!(Id::from_json(&json!("5"), IdType::Integer), Ok(Id::Int(5)));
        assert_eq!(
            Id::from_json(&json!(5), IdType::String),
            Ok(Id::Str("5".into()))
        );
        assert!(Id::from_json(&json!(5.5), IdType::Integer).is_err());
        assert!(Id::from_json(&json!(null), IdType::Integer).is_err());
        assert!(Id::from_json(&json!({"a": 1}), IdType::String).is_err());
    }

    /// The worker of an id must never change between releases: a change would
    /// let two workers hold the same id during a rolling upgrade of the hash.
    #[test]
    fn worker_hash_is_stable() {
        let observed: Vec<usize> = [Id::Int(1), Id::Int(42), Id::Str("order-7".into())]
            .iter()
            .map(|id| id.worker_index(8))
            .collect();
        // pinned: xxh3-64 of the id text, modulo 8
        assert_eq!(observed, vec![0, 1, 3]);
        assert_eq!(
            Id::Int(42).worker_index(8),
            Id::Str("42".into()).worker_index(8)
        );
    }

    #[test]
    fn worker_hash_spreads_ids() {
        let mut counts = [0usize; 4];
        for int in 0..40_000 {
            counts[Id::Int(int).worker_index(4)] += 1;
        }
        for count in counts {
            assert!(
                (9_000..11_000).contains(&count),
                "uneven spread: {counts:?}"
            );
        }
    }

    #[test]
    fn long_ids_are_truncated_in_messages() {
        let text = "x".repeat(500);
        assert!(truncate_for_message(&text).chars().count() <= 65);
    }
}
