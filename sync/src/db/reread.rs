//! Re-reading rows by id, the database half of the id path: one query per
//! batch and mapping. Postgres binds one array (`= ANY($1)`), MySQL/MariaDB
//! and SQLite bind `IN (?, ...)` in chunks of `source.read_chunk_size`.

use super::exec::{self, Param};
use super::{Database, DbError, Dialect, quote_identifier};
use crate::config::MappingConfig;
use crate::document::{Row, SqlValue};
use crate::id::{Id, IdType};
use crate::pg_ids::{BASE_TYPE_SQL, PgIdMatch};
use std::sync::Arc;

/// The re-read query of one mapping.
#[derive(Debug, Clone)]
pub struct RowReader {
    mapping: String,
    dialect: Dialect,
    id_type: IdType,
    /// A custom query with `{ids}` where the id placeholders go, or for a
    /// table `SELECT <columns> FROM <table>` (the `WHERE` is added per dialect).
    template: String,
    /// For a table: the quoted table and id column.
    table: Option<(String, String)>,
    /// The id column's name, unquoted.
    id_column: String,
    chunk_size: usize,
    /// How a PostgreSQL table's id column is compared with the bound ids,
    /// learned from the catalog on first use and shared by clones.
    pg_id_match: Arc<tokio::sync::OnceCell<PgIdMatch>>,
}

impl RowReader {
    /// Builds the reader for `mapping` (validated config: `table` or `query`).
    pub fn new(mapping: &MappingConfig, dialect: Dialect, chunk_size: usize) -> RowReader {
        let (template, table) = match (&mapping.table, &mapping.query) {
            (_, Some(query)) => (query.clone(), None),
            (Some(table), None) => {
                let columns = if mapping.columns.is_empty() {
                    "*".to_owned()
                } else {
                    mapping
                        .columns
                        .iter()
                        .map(|column| quote_identifier(dialect, column))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let id = quote_identifier(dialect, &mapping.id.column);
                let table = quote_identifier(dialect, table);
                (format!("SELECT {columns} FROM {table}"), Some((table, id)))
            }
            (None, None) => unreachable!("validated config has table or query"),
        };
        RowReader {
            mapping: mapping.display_name().to_owned(),
            dialect,
            id_type: mapping.id.id_type,
            template,
            table,
            id_column: mapping.id.column.clone(),
            chunk_size: chunk_size.max(1),
            pg_id_match: Arc::default(),
        }
    }

    /// The SQL sent for `count` ids. On PostgreSQL tables it compares the id
    /// column as learned by [`RowReader::prepare`] (plainly before that).
    pub fn sql_for(&self, count: usize) -> String {
        let pg_id_match = self.pg_id_match.get().copied().unwrap_or(PgIdMatch::Plain);
        let placeholders = || format!("({})", vec!["?"; count.max(1)].join(", "));
        match (&self.table, self.dialect) {
            (Some((_, id)), Dialect::Postgres) => format!(
                "{} WHERE {}",
                self.template,
                pg_id_match.condition(id, self.id_type)
            ),
            (Some((_, id)), _) => format!("{} WHERE {id} IN {}", self.template, placeholders()),
            (None, Dialect::Postgres) => {
                let array = match self.id_type {
                    IdType::Integer => "int8",
                    IdType::String => "text",
                };
                let unnest = format!("(SELECT unnest($1::{array}[]))");
                self.template.replace("{ids}", &unnest)
            }
            (None, _) => self.template.replace("{ids}", &placeholders()),
        }
    }

    /// Learns how a PostgreSQL table's id column compares with the bound ids
    /// (its type, a domain by its base type; see [`crate::pg_ids`]), once.
    /// [`RowReader::fetch`] calls it; call it before [`RowReader::sql_for`]
    /// to see the SQL that is sent. Nothing to learn for other databases and
    /// custom queries.
    pub async fn prepare(&self, database: &Database) -> Result<PgIdMatch, DbError> {
        let (Dialect::Postgres, Some((table, _))) = (database.dialect(), &self.table) else {
            return Ok(PgIdMatch::Plain);
        };
        let learned = self
            .pg_id_match
            .get_or_try_init(|| async {
                let column = &self.id_column;
                let params = [Param::Text(table.clone()), Param::Text(column.clone())];
                let base_type = database
                    .fetch_optional(BASE_TYPE_SQL, &params)
                    .await
                    .and_then(|row| row.map(|row| exec::text(&row, 0)).transpose())
                    .map_err(|source| self.query_error(source))?;
                let learned = base_type.as_deref().map_or(PgIdMatch::Plain, |base_type| {
                    PgIdMatch::for_column(self.id_type, base_type)
                });
                if learned == PgIdMatch::ColumnAsText {
                    tracing::warn!(mapping = %self.mapping, column = %column, base_type = ?base_type,
                        "the id column's type cannot be compared with the ids directly; comparing it as text, which cannot use its index");
                }
                Ok::<_, DbError>(learned)
            })
            .await?;
        Ok(*learned)
    }

    /// Whether the reader reads a table (not a custom query).
    pub fn reads_table(&self) -> bool {
        self.table.is_some()
    }

    /// The id column's value of one real row (the one with the largest id),
    /// read as the re-read reads it, for `esync check` to prove that ids
    /// round-trip. `Ok(None)` for an empty table or a custom query (there is
    /// no table to take a row from).
    pub async fn sample_id(&self, database: &Database) -> Result<Option<SqlValue>, DbError> {
        let Some((table, id)) = &self.table else {
            return Ok(None);
        };
        let sql = format!("SELECT {id} FROM {table} ORDER BY {id} DESC LIMIT 1");
        let rows = database
            .fetch_all(&sql, &[])
            .await
            .map_err(|source| self.query_error(source))?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.values.into_iter().next()))
    }

    /// Reads the rows of `ids` (rows of deleted ids are simply absent).
    pub async fn fetch(&self, database: &Database, ids: &[Id]) -> Result<Vec<Row>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if database.dialect() == Dialect::Postgres {
            let id_match = self.prepare(database).await?;
            // an id the column's type cannot hold has no row; binding it
            // would fail the cast, and with it the whole batch
            let ids: Vec<&Id> = ids.iter().filter(|id| id_match.binds(id)).collect();
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let list = match self.id_type {
                IdType::Integer => Param::IntList(
                    ids.iter()
                        .filter_map(|id| match id {
                            Id::Int(int) => Some(*int),
                            Id::Str(_) => None,
                        })
                        .collect(),
                ),
                IdType::String => Param::TextList(ids.iter().map(ToString::to_string).collect()),
            };
            return database
                .fetch_all(&self.sql_for(ids.len()), &[list])
                .await
                .map_err(|source| self.query_error(source));
        }
        // One parameter per id, in chunks: MySQL and SQLite have no array binds.
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(self.chunk_size) {
            let params: Vec<Param> = chunk.iter().map(Param::from).collect();
            let rows = database
                .fetch_all(&self.sql_for(chunk.len()), &params)
                .await
                .map_err(|source| self.query_error(source))?;
            out.extend(rows);
        }
        Ok(out)
    }

    fn query_error(&self, source: sqlx::Error) -> DbError {
        DbError::Query {
            mapping: self.mapping.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::time::Duration;

    fn mapping(yaml: &str) -> MappingConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn table_queries_per_dialect() {
        let table = mapping(
            "topics: [t]\ntable: shop.orders\ncolumns: [id, version]\nindex: orders\nversion: {column: version, kind: counter}",
        );
        assert_eq!(
            RowReader::new(&table, Dialect::Postgres, 1000).sql_for(3),
            r#"SELECT "id", "version" FROM "shop"."orders" WHERE "id" = ANY($1::int8[])"#
        );
        assert_eq!(
            RowReader::new(&table, Dialect::MySql, 1000).sql_for(3),
            "SELECT `id`, `version` FROM `shop`.`orders` WHERE `id` IN (?, ?, ?)"
        );
        let all = mapping(
            "topics: [t]\ntable: items\nid: {column: sku, type: string}\nindex: items\nversion: {column: v, kind: counter}",
        );
        assert_eq!(
            RowReader::new(&all, Dialect::Postgres, 1000).sql_for(1),
            r#"SELECT * FROM "items" WHERE "sku" = ANY($1::text[])"#
        );
        assert_eq!(
            RowReader::new(&all, Dialect::Sqlite, 1000).sql_for(2),
            r#"SELECT * FROM "items" WHERE "sku" IN (?, ?)"#
        );
    }

    #[test]
    fn custom_queries_get_placeholders() {
        let custom = mapping(
            "topics: [t]\nquery: SELECT o.id, c.name FROM o JOIN c ON c.id = o.cid WHERE o.id IN {ids}\nindex: o\nversion: {column: v, kind: counter}",
        );
        assert_eq!(
            RowReader::new(&custom, Dialect::Postgres, 10).sql_for(5),
            "SELECT o.id, c.name FROM o JOIN c ON c.id = o.cid WHERE o.id IN (SELECT unnest($1::int8[]))"
        );
        assert!(
            RowReader::new(&custom, Dialect::MySql, 10)
                .sql_for(2)
                .ends_with("WHERE o.id IN (?, ?)")
        );
    }

    /// SQLite needs no server: the chunked re-read path, end to end.
    #[tokio::test]
    async fn sqlite_rows_are_read_in_chunks_by_value_type() {
        let database =
            Database::connect(&Secret::new("sqlite::memory:"), 1, Duration::from_secs(5))
                .await
                .unwrap();
        let Database::Sqlite(pool) = &database else {
            panic!("sqlite")
        };
        sqlx::raw_sql(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB, active BOOLEAN, version INTEGER);
             INSERT INTO items VALUES (1, 'a', 1.5, x'00ff', 1, 3), (2, NULL, 2.0, NULL, 0, 4), (5, 'e', 0.5, NULL, 1, 1);",
        )
        .execute(pool)
        .await
        .unwrap();
        let items = mapping(
            "topics: [t]\ntable: items\nindex: items\nversion: {column: version, kind: counter}",
        );
        let reader = RowReader::new(&items, Dialect::Sqlite, 2);
        let ids: Vec<Id> = [1, 2, 3, 5].into_iter().map(Id::Int).collect();
        let rows = reader.fetch(&database, &ids).await.unwrap();
        assert_eq!(rows.len(), 3, "id 3 has no row; two chunks of two ids");
        let first = rows
            .iter()
            .find(|row| row.get("id") == Some(&SqlValue::Int(1)))
            .unwrap();
        assert_eq!(first.get("name"), Some(&SqlValue::Text("a".into())));
        assert_eq!(first.get("price"), Some(&SqlValue::Float(1.5)));
        assert_eq!(first.get("data"), Some(&SqlValue::Bytes(vec![0, 255])));
        assert_eq!(first.get("active"), Some(&SqlValue::Bool(true)));
        let second = rows
            .iter()
            .find(|row| row.get("id") == Some(&SqlValue::Int(2)))
            .unwrap();
        assert_eq!(second.get("name"), Some(&SqlValue::Null));
    }
}
