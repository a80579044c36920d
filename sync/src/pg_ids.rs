//! How a PostgreSQL table re-read compares its id column with the bound ids.
//!
//! Pure: the database adapter looks the id column's type up once (a domain
//! by its base type) and asks here how to write the `WHERE` condition and
//! which ids to bind. Ids are bound as one `bigint[]` (integer ids) or
//! `text[]` (string ids); PostgreSQL has no `uuid = text` or
//! `numeric = text` operator, and `bpchar = text` compares without the pad
//! on one side only, so for such columns the bound array is cast to the
//! column's own type: the comparison keeps the column's index and equality.
//! A cast fails the whole query on one value that is not of that type, so an
//! id that cannot be one is not bound at all (it cannot have a row).

use crate::id::{Id, IdType};

/// How the id column is compared with the bound array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgIdMatch {
    /// The array compares as bound: integer columns with integer ids, text
    /// columns with string ids.
    Plain,
    /// The array is cast to `pg_catalog.<element>[]`; only ids of `syntax`
    /// are bound.
    CastArray {
        /// The column's base type name in `pg_catalog`.
        element: &'static str,
        /// Which ids a cast to `element` accepts.
        syntax: IdSyntax,
    },
    /// Any other type (enums, `citext`, dates, types outside `pg_catalog`):
    /// the column is compared as text. Exact, but it cannot use an index on
    /// the column; `esync check` says so.
    ColumnAsText,
}

/// Which string ids a cast accepts. Each is a strict subset of what
/// PostgreSQL's input function accepts, so a bound id never fails the cast;
/// an id outside it cannot be the text of a row's id (esync reads ids back
/// in these canonical forms) and is simply not bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSyntax {
    /// Any text (`bpchar`, `text`).
    Any,
    /// An optional minus and 1 to 19 digits that fit a `bigint`.
    Integer,
    /// An optional minus, digits, optionally a point and digits.
    Decimal,
    /// The canonical 8-4-4-4-12 hexadecimal form.
    Uuid,
}

/// Looks up the base type (a domain's underlying type) of column `$2` of
/// table `$1` (a quoted, possibly schema-qualified name); its `pg_catalog`
/// name, or an empty text for a type outside `pg_catalog`. No row when the
/// table or column is unknown.
pub const BASE_TYPE_SQL: &str = "SELECT CASE WHEN b.typnamespace = 'pg_catalog'::regnamespace THEN b.typname::text ELSE '' END \
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
     JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
     WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped";

impl PgIdMatch {
    /// The comparison for a column whose base type is `base_type` (a
    /// `pg_catalog` type name such as `int8`, `numeric`, `uuid`, `bpchar`).
    pub fn for_column(id_type: IdType, base_type: &str) -> PgIdMatch {
        let cast = |element, syntax| PgIdMatch::CastArray { element, syntax };
        match (id_type, base_type) {
            (IdType::Integer, "int2" | "int4" | "int8" | "numeric" | "float4" | "float8") => {
                PgIdMatch::Plain
            }
            (IdType::String, "text" | "varchar") => PgIdMatch::Plain,
            (_, "bpchar") => cast("bpchar", IdSyntax::Any),
            (IdType::Integer, "text" | "varchar") => cast("text", IdSyntax::Any),
            (IdType::String, "int2" | "int4" | "int8") => cast("int8", IdSyntax::Integer),
            (IdType::String, "numeric") => cast("numeric", IdSyntax::Decimal),
            (IdType::String, "uuid") => cast("uuid", IdSyntax::Uuid),
            _ => PgIdMatch::ColumnAsText,
        }
    }

    /// The `WHERE` condition on the quoted id column `id`, with the ids bound
    /// as `$1`.
    pub fn condition(self, id: &str, id_type: IdType) -> String {
        let array = match id_type {
            IdType::Integer => "$1::int8[]",
            IdType::String => "$1::text[]",
        };
        match self {
            PgIdMatch::Plain => format!("{id} = ANY({array})"),
            PgIdMatch::CastArray { element, .. } => {
                format!("{id} = ANY({array}::pg_catalog.{element}[])")
            }
            PgIdMatch::ColumnAsText if id_type == IdType::String => {
                format!("{id}::text = ANY({array})")
            }
            PgIdMatch::ColumnAsText => format!("{id}::text = ANY({array}::text[])"),
        }
    }

    /// Whether `id` is bound: false only for a string id a cast would refuse.
    pub fn binds(self, id: &Id) -> bool {
        let (PgIdMatch::CastArray { syntax, .. }, Id::Str(text)) = (self, id) else {
            return true;
        };
        match syntax {
            IdSyntax::Any => true,
            IdSyntax::Integer => {
                let digits = text.strip_prefix('-').unwrap_or(text);
                digits.len() <= 19 && all_digits(digits) && text.parse::<i64>().is_ok()
            }
            IdSyntax::Decimal => {
                let unsigned = text.strip_prefix('-').unwrap_or(text);
                match unsigned.split_once('.') {
                    Some((whole, fraction)) => all_digits(whole) && all_digits(fraction),
                    None => all_digits(unsigned),
                }
            }
            IdSyntax::Uuid => {
                text.len() == 36
                    && text.char_indices().all(|(position, char)| match position {
                        8 | 13 | 18 | 23 => char == '-',
                        _ => char.is_ascii_hexdigit(),
                    })
            }
        }
    }
}

/// One or more ASCII digits.
fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_per_column_type() {
        let cases = [
            (IdType::Integer, "int8", r#""id" = ANY($1::int8[])"#),
            (IdType::Integer, "numeric", r#""id" = ANY($1::int8[])"#),
            (
                IdType::Integer,
                "varchar",
                r#""id" = ANY($1::int8[]::pg_catalog.text[])"#,
            ),
            (IdType::String, "text", r#""id" = ANY($1::text[])"#),
            (
                IdType::String,
                "uuid",
                r#""id" = ANY($1::text[]::pg_catalog.uuid[])"#,
            ),
            (
                IdType::String,
                "bpchar",
                r#""id" = ANY($1::text[]::pg_catalog.bpchar[])"#,
            ),
            (
                IdType::String,
                "numeric",
                r#""id" = ANY($1::text[]::pg_catalog.numeric[])"#,
            ),
            (
                IdType::String,
                "int4",
                r#""id" = ANY($1::text[]::pg_catalog.int8[])"#,
            ),
            (IdType::String, "citext", r#""id"::text = ANY($1::text[])"#),
            (
                IdType::Integer,
                "",
                r#""id"::text = ANY($1::int8[]::text[])"#,
            ),
        ];
        for (id_type, base_type, expected) in cases {
            assert_eq!(
                PgIdMatch::for_column(id_type, base_type).condition(r#""id""#, id_type),
                expected,
                "{id_type:?} {base_type}"
            );
        }
    }

    /// One id a cast would refuse must not fail the batch: it is not bound.
    #[test]
    fn only_ids_a_cast_accepts_are_bound() {
        let binds = |base_type: &str, text: &str| {
            PgIdMatch::for_column(IdType::String, base_type).binds(&Id::Str(text.into()))
        };
        let cases = [
            ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", true),
            ("uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", true),
            (
                "uuid",
                "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                false,
            ),
            ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1x", false),
            ("uuid", "not-a-uuid", false),
            ("numeric", "12345678901234567890", true),
            ("numeric", "-5.25", true),
            ("numeric", " 5", false),
            ("numeric", "1e5", false),
            ("numeric", "1_000", false),
            ("numeric", "5.", false),
            ("int8", "-9223372036854775808", true),
            ("int8", "9223372036854775808", false),
            ("int4", "x", false),
            ("bpchar", " any\ttext ", true),
            ("text", "anything", true),
        ];
        for (base_type, text, expected) in cases {
            assert_eq!(binds(base_type, text), expected, "{base_type} {text:?}");
        }
        assert!(PgIdMatch::for_column(IdType::Integer, "int8").binds(&Id::Int(5)));
    }
}
