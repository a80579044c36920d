//! The vocabulary of SQL text, shared by every statement builder: the
//! dialect (placeholders), identifier quoting and bind values ([`Param`]).
//!
//! Pure: no driver, no I/O. Statements are run by [`crate::db::exec`].

use crate::id::Id;
use chrono::{DateTime, NaiveDateTime, Utc};

/// The SQL dialect of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    /// The bind placeholder for parameter `number` (1-based): `$1` on
    /// Postgres, `?` (positional) on MySQL/MariaDB and SQLite.
    pub fn placeholder(self, number: usize) -> String {
        match self {
            Dialect::Postgres => format!("${number}"),
            Dialect::MySql | Dialect::Sqlite => "?".to_owned(),
        }
    }
}

/// Quotes an identifier (`schema.table` is quoted part by part).
pub fn quote_identifier(dialect: Dialect, name: &str) -> String {
    let quote = if dialect == Dialect::MySql { '`' } else { '"' };
    name.split('.')
        .map(|part| {
            let escaped = part.replace(quote, &format!("{quote}{quote}"));
            format!("{quote}{escaped}{quote}")
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A value bound to one statement parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// NULL, typed as text (e.g. `COALESCE($1, current_schema())`).
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// A timestamp with time zone.
    Timestamp(DateTime<Utc>),
    /// A timestamp without time zone (UTC by convention).
    LocalTimestamp(NaiveDateTime),
    /// A list of integers: one `int8[]` parameter on PostgreSQL
    /// (`= ANY($1)`), one parameter per value on MySQL and SQLite, which have
    /// no arrays (`IN (?, ...)`).
    IntList(Vec<i64>),
    /// A list of texts, bound like [`Param::IntList`] (`text[]`).
    TextList(Vec<String>),
}

impl From<&Id> for Param {
    fn from(id: &Id) -> Param {
        match id {
            Id::Int(int) => Param::Int(*int),
            Id::Str(text) => Param::Text(text.to_string()),
        }
    }
}

impl From<&str> for Param {
    fn from(text: &str) -> Param {
        Param::Text(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_safely() {
        assert_eq!(
            quote_identifier(Dialect::Postgres, r#"we"ird"#),
            r#""we""ird""#
        );
        assert_eq!(quote_identifier(Dialect::MySql, "a`b"), "`a``b`");
    }
}
