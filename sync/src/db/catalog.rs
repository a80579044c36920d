//! Questions about the source's schema that the catalog answers.

use super::Database;
use super::exec::{self, Param};
use crate::sql::Dialect;

/// The declared fractional-second digits of timestamp column `column` of
/// `table` (`schema.table` allowed; else the current schema), if the
/// database declares them and the column is found; `None` for SQLite, whose
/// text timestamps have no declared precision.
pub async fn datetime_precision(
    database: &Database,
    table: &str,
    column: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let statement = match database.dialect() {
        Dialect::Postgres => {
            "SELECT CAST(datetime_precision AS INTEGER) FROM information_schema.columns \
             WHERE table_schema = COALESCE($1, current_schema()) AND table_name = $2 AND column_name = $3"
        }
        Dialect::MySql => {
            "SELECT CAST(DATETIME_PRECISION AS SIGNED) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND COLUMN_NAME = ?"
        }
        Dialect::Sqlite => return Ok(None),
    };
    let (schema, table) = match table.rsplit_once('.') {
        Some((schema, table)) => (Param::from(schema), table),
        None => (Param::Null, table),
    };
    let params = [schema, Param::from(table), Param::from(column)];
    match database.fetch_optional(statement, &params).await? {
        Some(row) => exec::optional_int(&row, 0),
        None => Ok(None),
    }
}
