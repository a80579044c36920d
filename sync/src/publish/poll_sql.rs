//! The poller's SQL, per dialect, and what it reads back (pure, unit-tested):
//! - Postgres compares row values, `(ts, id) > ($1, $2)`, which its btree
//!   index on `(ts, id)` serves directly;
//! - MySQL/MariaDB and SQLite get `ts >= ? AND (ts > ? OR id > ?)`, which is
//!   the same condition in a form their range optimiser uses the index for.
//!
//! Only the id and timestamp are read, so an index on `(ts, id)` covers the
//! scan and the look-back re-scan costs index reads only. What is done with
//! the rows (the look-back window) is [`super::watermark`]; running the SQL is
//! [`super::poller`].

use super::config::PublishMappingConfig;
use super::watermark::Cursor;
use crate::config::Config;
use crate::document::SqlValue;
use crate::id::IdType;
use crate::sql::{Dialect, Param, quote_identifier};
use chrono::{DateTime, NaiveDateTime, Utc};

/// What one polled mapping reads and where its ids go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollTarget {
    /// The mapping's name (checkpoint key, metric label).
    pub mapping: String,
    /// The polled table.
    pub table: String,
    /// The id column and its type.
    pub id_column: String,
    /// Integer or string ids.
    pub id_type: IdType,
    /// The change-time column.
    pub timestamp_column: String,
    /// The mapping's first topic.
    pub topic: String,
}

impl PollTarget {
    /// Resolves a `publish.mappings[]` entry against the (validated) config.
    pub fn resolve(config: &Config, entry: &PublishMappingConfig) -> Option<PollTarget> {
        let mapping = config
            .mappings
            .iter()
            .find(|mapping| mapping.display_name() == entry.name)?;
        Some(PollTarget {
            mapping: entry.name.clone(),
            table: entry.table.clone().or_else(|| mapping.table.clone())?,
            id_column: mapping.id.column.clone(),
            id_type: mapping.id.id_type,
            timestamp_column: entry.timestamp_column.clone(),
            topic: mapping.topics.first()?.clone(),
        })
    }
}

/// The SQL of one target in one dialect.
#[derive(Debug, Clone)]
pub struct PollSql {
    dialect: Dialect,
    table: String,
    ts: String,
    id: String,
    id_select: String,
}

/// Timestamps before this are treated as "from the beginning": MySQL cannot
/// even bind them, and no real change time is that old.
const EARLIEST_BINDABLE_US: i64 = -30_610_224_000_000_000; // 1000-01-01T00:00:00Z

impl PollSql {
    /// Builds the statements for `target` in `dialect`.
    pub fn new(dialect: Dialect, target: &PollTarget) -> PollSql {
        let id = quote_identifier(dialect, &target.id_column);
        let id_select = match (dialect, target.id_type) {
            (Dialect::Postgres, IdType::Integer) => format!("CAST({id} AS BIGINT)"),
            (Dialect::MySql, IdType::Integer) => format!("CAST({id} AS SIGNED)"),
            (Dialect::Sqlite, IdType::Integer) => id.clone(),
            (Dialect::MySql, IdType::String) => format!("CAST({id} AS CHAR)"),
            (_, IdType::String) => format!("CAST({id} AS TEXT)"),
        };
        PollSql {
            dialect,
            table: quote_identifier(dialect, &target.table),
            ts: quote_identifier(dialect, &target.timestamp_column),
            id,
            id_select,
        }
    }

    /// One page from `cursor`, and the values to bind in order (timestamps
    /// as a column of `kind` expects them).
    pub fn page(&self, cursor: &Cursor, limit: usize, kind: TimestampKind) -> (String, Vec<Param>) {
        let PollSql {
            ts,
            id,
            table,
            id_select,
            ..
        } = self;
        let cursor = match cursor {
            Cursor::From(start) if *start < EARLIEST_BINDABLE_US => &Cursor::Beginning,
            other => other,
        };
        let (condition, binds) = match cursor {
            Cursor::Beginning => (format!("{ts} IS NOT NULL"), vec![]),
            Cursor::From(start) => (
                format!("{ts} >= {}", self.dialect.placeholder(1)),
                vec![kind.param(*start)],
            ),
            Cursor::After(position) if self.dialect == Dialect::Postgres => (
                format!("({ts}, {id}) > ($1, $2)"),
                vec![kind.param(position.timestamp_us), Param::from(&position.id)],
            ),
            Cursor::After(position) => (
                format!("{ts} >= ? AND ({ts} > ? OR {id} > ?)"),
                vec![
                    kind.param(position.timestamp_us),
                    kind.param(position.timestamp_us),
                    Param::from(&position.id),
                ],
            ),
        };
        (
            format!(
                "SELECT {ts}, {id_select} FROM {table} WHERE {condition} ORDER BY {ts}, {id} LIMIT {limit}"
            ),
            binds,
        )
    }

    /// The newest row (for `start: latest`).
    pub fn latest(&self) -> String {
        let PollSql {
            ts,
            id,
            table,
            id_select,
            ..
        } = self;
        format!(
            "SELECT {ts}, {id_select} FROM {table} WHERE {ts} IS NOT NULL ORDER BY {ts} DESC, {id} DESC LIMIT 1"
        )
    }

    /// Counts rows the poller cannot see.
    pub fn null_count(&self) -> String {
        format!(
            "SELECT COUNT(*) FROM {} WHERE {} IS NULL",
            self.table, self.ts
        )
    }

    /// A few ids of such rows, for the log.
    pub fn null_sample(&self, limit: usize) -> String {
        format!(
            "SELECT {} FROM {} WHERE {} IS NULL ORDER BY {} LIMIT {limit}",
            self.id_select, self.table, self.ts, self.id
        )
    }

    /// A statement that returns no row, to learn the timestamp column's type.
    pub fn describe(&self) -> String {
        format!(
            "SELECT {}, {} FROM {} WHERE 1 = 0",
            self.ts, self.id_select, self.table
        )
    }

    /// The database's current time in microseconds since the epoch (UTC),
    /// so the look-back window and the lag use the clock that stamps rows,
    /// not this host's.
    pub fn now_us(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
            }
            Dialect::MySql => "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)",
            Dialect::Sqlite => {
                "SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
            }
        }
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// Microseconds one step of a column with `precision` fractional digits
/// spans (1 s for `TIMESTAMP(0)`); unknown precision counts as seconds, the
/// safe side (it only costs re-published ids).
pub fn resolution_us(precision: Option<i64>) -> i64 {
    match precision {
        Some(digits @ 0..=5) => 10_i64.pow(6 - digits as u32),
        Some(_) => 1,
        None => 1_000_000,
    }
}

/// How timestamps are bound and decoded, from the column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    /// Postgres `timestamptz`; MySQL/MariaDB `TIMESTAMP` and `DATETIME`
    /// (sqlx sets the session time zone to UTC).
    Zoned,
    /// Postgres `timestamp`, SQLite text: read and bound as UTC.
    Naive,
}

/// Maps a column type name to how it is handled; `None` when unsupported.
pub fn timestamp_kind(dialect: Dialect, type_name: &str) -> Option<TimestampKind> {
    match (dialect, type_name.to_ascii_uppercase().as_str()) {
        (Dialect::Postgres, "TIMESTAMPTZ") => Some(TimestampKind::Zoned),
        (Dialect::Postgres, "TIMESTAMP") => Some(TimestampKind::Naive),
        (Dialect::MySql, "TIMESTAMP" | "DATETIME") => Some(TimestampKind::Zoned),
        (Dialect::Sqlite, _) => Some(TimestampKind::Naive),
        _ => None,
    }
}

impl TimestampKind {
    /// `micros` bound as a column of this kind expects it.
    pub fn param(self, micros: i64) -> Param {
        let time =
            DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC);
        match self {
            TimestampKind::Zoned => Param::Timestamp(time),
            TimestampKind::Naive => Param::LocalTimestamp(time.naive_utc()),
        }
    }
}

/// A timestamp as the poll queries read it, in microseconds since the epoch
/// (UTC); `None` when the value is no timestamp. Timestamps without a zone
/// count as UTC. SQLite has no timestamp type: its text, integer (Unix
/// seconds) and real (Julian day) values are read as sqlx reads them into a
/// `NaiveDateTime`.
pub fn timestamp_us(value: &SqlValue) -> Option<i64> {
    let naive = match value {
        SqlValue::Timestamp(time) => return Some(time.timestamp_micros()),
        SqlValue::LocalTimestamp(time) => *time,
        SqlValue::Text(text) => sqlite_text_timestamp(text)?,
        SqlValue::Int(seconds) => DateTime::from_timestamp(*seconds, 0)?.naive_utc(),
        SqlValue::Float(julian_day) => {
            let seconds = (julian_day - 2_440_587.5) * 86_400.0;
            if !seconds.is_finite() {
                return None;
            }
            let nanos = (seconds.fract() * 1e9).abs() as u32;
            DateTime::from_timestamp(seconds.trunc() as i64, nanos)?.naive_utc()
        }
        _ => return None,
    };
    Some(naive.and_utc().timestamp_micros())
}

/// The text forms sqlx accepts for an SQLite timestamp, read as its local
/// time (an offset is dropped, not applied, as sqlx does for a `NaiveDateTime`).
fn sqlite_text_timestamp(text: &str) -> Option<NaiveDateTime> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.naive_local());
    }
    const FORMATS: [&str; 12] = [
        "%F %T%.f",
        "%F %R",
        "%F %RZ",
        "%F %R%:z",
        "%F %T%.fZ",
        "%F %T%.f%:z",
        "%FT%R",
        "%FT%RZ",
        "%FT%R%:z",
        "%FT%T%.f",
        "%FT%T%.fZ",
        "%FT%T%.f%:z",
    ];
    FORMATS.iter().find_map(|format| {
        DateTime::parse_from_str(text, format)
            .map(|time| time.naive_local())
            .or_else(|_| NaiveDateTime::parse_from_str(text, format))
            .ok()
    })
}

/// Whether a plan (one line per plan row, from the poller's EXPLAIN of a
/// next-page query) walks an index in order.
pub fn plan_uses_index(dialect: Dialect, plan: &[String]) -> bool {
    let text = plan.join("\n");
    match dialect {
        Dialect::Postgres => {
            text.contains("Index") && !text.contains("Seq Scan") && !text.contains("Sort")
        }
        Dialect::MySql => !text.contains("key=NULL") && !text.contains("filesort"),
        Dialect::Sqlite => text.contains("INDEX") && !text.contains("TEMP B-TREE"),
    }
}

/// Every polled target of the configuration.
pub fn targets(config: &Config) -> Vec<PollTarget> {
    let Some(publish) = &config.publish else {
        return Vec::new();
    };
    publish
        .mappings
        .iter()
        .filter_map(|entry| PollTarget::resolve(config, entry))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use crate::publish::watermark::Position;

    fn target(id_type: IdType) -> PollTarget {
        PollTarget {
            mapping: "orders".into(),
            table: "shop.orders".into(),
            id_column: "id".into(),
            id_type,
            timestamp_column: "updated_at".into(),
            topic: "t".into(),
        }
    }

    fn zoned(micros: i64) -> Param {
        TimestampKind::Zoned.param(micros)
    }

    #[test]
    fn page_sql_per_dialect_and_cursor() {
        let after = Cursor::After(Position {
            timestamp_us: 7,
            id: Id::Int(3),
        });
        let cases = [
            (
                Dialect::Postgres,
                Cursor::Beginning,
                r#"SELECT "updated_at", CAST("id" AS BIGINT) FROM "shop"."orders" WHERE "updated_at" IS NOT NULL ORDER BY "updated_at", "id" LIMIT 100"#,
                vec![],
            ),
            (
                Dialect::Postgres,
                Cursor::From(5),
                r#"SELECT "updated_at", CAST("id" AS BIGINT) FROM "shop"."orders" WHERE "updated_at" >= $1 ORDER BY "updated_at", "id" LIMIT 100"#,
                vec![zoned(5)],
            ),
            (
                Dialect::Postgres,
                after.clone(),
                r#"SELECT "updated_at", CAST("id" AS BIGINT) FROM "shop"."orders" WHERE ("updated_at", "id") > ($1, $2) ORDER BY "updated_at", "id" LIMIT 100"#,
                vec![zoned(7), Param::Int(3)],
            ),
            (
                Dialect::MySql,
                Cursor::From(5),
                "SELECT `updated_at`, CAST(`id` AS SIGNED) FROM `shop`.`orders` WHERE `updated_at` >= ? ORDER BY `updated_at`, `id` LIMIT 100",
                vec![zoned(5)],
            ),
            (
                Dialect::MySql,
                after.clone(),
                "SELECT `updated_at`, CAST(`id` AS SIGNED) FROM `shop`.`orders` WHERE `updated_at` >= ? AND (`updated_at` > ? OR `id` > ?) ORDER BY `updated_at`, `id` LIMIT 100",
                vec![zoned(7), zoned(7), Param::Int(3)],
            ),
            (
                Dialect::Sqlite,
                after,
                r#"SELECT "updated_at", "id" FROM "shop"."orders" WHERE "updated_at" >= ? AND ("updated_at" > ? OR "id" > ?) ORDER BY "updated_at", "id" LIMIT 100"#,
                vec![zoned(7), zoned(7), Param::Int(3)],
            ),
            (
                Dialect::MySql,
                Cursor::From(i64::MIN),
                "SELECT `updated_at`, CAST(`id` AS SIGNED) FROM `shop`.`orders` WHERE `updated_at` IS NOT NULL ORDER BY `updated_at`, `id` LIMIT 100",
                vec![],
            ),
        ];
        for (dialect, cursor, sql, binds) in cases {
            assert_eq!(
                PollSql::new(dialect, &target(IdType::Integer)).page(
                    &cursor,
                    100,
                    TimestampKind::Zoned
                ),
                (sql.to_owned(), binds),
                "{dialect:?} {cursor:?}"
            );
        }
    }

    #[test]
    fn string_ids_are_read_as_text() {
        let cases = [
            (Dialect::Postgres, r#"CAST("id" AS TEXT)"#),
            (Dialect::MySql, "CAST(`id` AS CHAR)"),
            (Dialect::Sqlite, r#"CAST("id" AS TEXT)"#),
        ];
        for (dialect, select) in cases {
            let sql = PollSql::new(dialect, &target(IdType::String));
            assert!(
                sql.latest().contains(select),
                "{dialect:?}: {}",
                sql.latest()
            );
            assert!(sql.latest().ends_with("DESC LIMIT 1"));
            assert!(
                sql.null_sample(10).contains("IS NULL ORDER BY"),
                "{}",
                sql.null_sample(10)
            );
        }
        assert_eq!(
            PollSql::new(Dialect::MySql, &target(IdType::Integer)).null_count(),
            "SELECT COUNT(*) FROM `shop`.`orders` WHERE `updated_at` IS NULL"
        );
    }

    #[test]
    fn timestamp_types() {
        let cases = [
            (Dialect::Postgres, "TIMESTAMPTZ", Some(TimestampKind::Zoned)),
            (Dialect::Postgres, "TIMESTAMP", Some(TimestampKind::Naive)),
            (Dialect::Postgres, "INT8", None),
            (Dialect::Postgres, "DATE", None),
            (Dialect::MySql, "TIMESTAMP", Some(TimestampKind::Zoned)),
            (Dialect::MySql, "DATETIME", Some(TimestampKind::Zoned)),
            (Dialect::MySql, "BIGINT", None),
            (Dialect::Sqlite, "DATETIME", Some(TimestampKind::Naive)),
        ];
        for (dialect, name, expected) in cases {
            assert_eq!(
                timestamp_kind(dialect, name),
                expected,
                "{dialect:?} {name}"
            );
        }
    }

    #[test]
    fn plans() {
        let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
        let cases = [
            (
                Dialect::Postgres,
                "Limit\n  ->  Index Only Scan using o_ts_id on o",
                true,
            ),
            (
                Dialect::Postgres,
                "Limit\n  ->  Sort\n        ->  Seq Scan on o",
                false,
            ),
            (
                Dialect::Postgres,
                "Limit\n  ->  Incremental Sort\n        ->  Index Scan using o_ts on o",
                false,
            ),
            (
                Dialect::MySql,
                "key=o_ts_id extra=Using where; Using index",
                true,
            ),
            (
                Dialect::MySql,
                "key=NULL extra=Using where; Using filesort",
                false,
            ),
            (
                Dialect::MySql,
                "key=o_ts extra=Using index condition; Using filesort",
                false,
            ),
            (
                Dialect::Sqlite,
                "SEARCH o USING COVERING INDEX o_ts_id (updated_at>?)",
                true,
            ),
            (
                Dialect::Sqlite,
                "SCAN o\nUSE TEMP B-TREE FOR ORDER BY",
                false,
            ),
        ];
        for (dialect, plan, expected) in cases {
            assert_eq!(
                plan_uses_index(dialect, &lines(plan)),
                expected,
                "{dialect:?}: {plan}"
            );
        }
    }

    #[test]
    fn timestamps_bind_and_read_back_per_kind() {
        assert_eq!(
            TimestampKind::Naive.param(1_500_000),
            Param::LocalTimestamp(
                DateTime::from_timestamp_micros(1_500_000)
                    .unwrap()
                    .naive_utc()
            )
        );
        let cases = [
            (
                SqlValue::Text("2024-01-01 00:00:00.500".into()),
                Some(1_704_067_200_500_000),
            ),
            (
                SqlValue::Text("2024-01-01T00:00:01Z".into()),
                Some(1_704_067_201_000_000),
            ),
            (
                SqlValue::Text("2024-01-01 02:00:01+02:00".into()),
                Some(1_704_074_401_000_000),
            ),
            (
                SqlValue::Text("2024-01-01 00:01".into()),
                Some(1_704_067_260_000_000),
            ),
            (SqlValue::Int(1_704_067_200), Some(1_704_067_200_000_000)),
            (SqlValue::Float(2_440_588.5), Some(86_400_000_000)),
            (zoned_value(7), Some(7)),
            (SqlValue::Text("yesterday".into()), None),
            (SqlValue::Null, None),
        ];
        for (value, expected) in cases {
            assert_eq!(timestamp_us(&value), expected, "{value:?}");
        }
    }

    fn zoned_value(micros: i64) -> SqlValue {
        SqlValue::Timestamp(DateTime::from_timestamp_micros(micros).unwrap())
    }
}
