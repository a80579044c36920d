//! The one way to run SQL on any of the three databases: bind [`Param`]s,
//! then [`Database::execute`], [`Database::fetch_all`] or
//! [`Database::fetch_optional`] (or the same on a [`Transaction`]); rows come
//! back as driver-neutral [`Row`]s, converted per column as the re-read
//! converts them ([`super::rows`]).
//!
//! Every statement goes through `sqlx::query`, so it is prepared and cached
//! per connection exactly as before; the SQL text is the caller's. This
//! module holds no SQL of its own and makes no decisions about it.

use super::Database;
use super::rows::ToRows;
use crate::document::{Row, SqlValue};
use crate::id::{Id, IdType};
pub use crate::sql::Param;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::mysql::MySql;
use sqlx::postgres::Postgres;
use sqlx::sqlite::Sqlite;
use sqlx::{
    AssertSqlSafe, Column as _, Encode, Executor, SqlSafeStr as _, Statement as _, Type,
    TypeInfo as _,
};

/// A column of a prepared statement, as [`Database::describe`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedColumn {
    /// The column's name.
    pub name: String,
    /// The driver's type name (`TIMESTAMPTZ`, `DATETIME`, ...).
    pub type_name: String,
}

/// An open transaction on one connection of the pool (or of a
/// [`Session`]); dropped without [`Transaction::commit`], it rolls back when
/// the connection is used next.
#[derive(Debug)]
pub struct Transaction<'c>(Open<'c>);

#[derive(Debug)]
enum Open<'c> {
    Postgres(sqlx::Transaction<'c, Postgres>),
    MySql(sqlx::Transaction<'c, MySql>),
    Sqlite(sqlx::Transaction<'c, Sqlite>),
}

/// One connection of its own, taken out of the pool, for a caller that runs
/// many short transactions in a row (the outbox relay): no pool hand-over
/// and health-check ping per transaction, and session settings made once
/// stay with it and never reach the pool. Dropped, it closes.
#[derive(Debug)]
pub struct Session(Connection);

#[derive(Debug)]
enum Connection {
    Postgres(sqlx::PgConnection),
    MySql(sqlx::MySqlConnection),
    Sqlite(sqlx::SqliteConnection),
}

/// Where a statement runs: the pool, or an open transaction.
enum Target<'a, 'c> {
    Pool(&'a Database),
    Transaction(&'a mut Open<'c>),
}

/// What a statement is run for.
enum Output {
    Rows(Vec<Row>),
    RowsAffected(u64),
}

impl Database {
    /// Runs a statement; the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, sqlx::Error> {
        rows_affected(run(Target::Pool(self), sql, params, false).await?)
    }

    /// Runs a query; all its rows.
    pub async fn fetch_all(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>, sqlx::Error> {
        rows(run(Target::Pool(self), sql, params, true).await?)
    }

    /// Runs a query that returns at most one row.
    pub async fn fetch_optional(
        &self,
        sql: &str,
        params: &[Param],
    ) -> Result<Option<Row>, sqlx::Error> {
        Ok(self.fetch_all(sql, params).await?.into_iter().next())
    }

    /// Prepares `sql` without running it: its result columns.
    pub async fn describe(&self, sql: &str) -> Result<Vec<DescribedColumn>, sqlx::Error> {
        match self {
            Database::Postgres(pool) => describe(pool, sql).await,
            Database::MySql(pool) => describe(pool, sql).await,
            Database::Sqlite(pool) => describe(pool, sql).await,
        }
    }

    /// Begins a transaction.
    pub async fn begin(&self) -> Result<Transaction<'static>, sqlx::Error> {
        let open = match self {
            Database::Postgres(pool) => Open::Postgres(pool.begin().await?),
            Database::MySql(pool) => Open::MySql(pool.begin().await?),
            Database::Sqlite(pool) => Open::Sqlite(pool.begin().await?),
        };
        Ok(Transaction(open))
    }

    /// Takes a connection out of the pool for a [`Session`] and runs
    /// `setup` on it once (session settings such as MySQL's
    /// `SET SESSION TRANSACTION ISOLATION LEVEL ...`). The pool may open a
    /// replacement.
    pub async fn session(&self, setup: &[&str]) -> Result<Session, sqlx::Error> {
        let mut connection = match self {
            Database::Postgres(pool) => Connection::Postgres(pool.acquire().await?.detach()),
            Database::MySql(pool) => Connection::MySql(pool.acquire().await?.detach()),
            Database::Sqlite(pool) => Connection::Sqlite(pool.acquire().await?.detach()),
        };
        for statement in setup {
            let _ = match &mut connection {
                Connection::Postgres(connection) => on(connection, statement, &[], false).await?,
                Connection::MySql(connection) => on(connection, statement, &[], false).await?,
                Connection::Sqlite(connection) => on(connection, statement, &[], false).await?,
            };
        }
        Ok(Session(connection))
    }
}

impl Session {
    /// Begins a transaction on the session's connection.
    pub async fn begin(&mut self) -> Result<Transaction<'_>, sqlx::Error> {
        let open = match &mut self.0 {
            Connection::Postgres(connection) => {
                Open::Postgres(sqlx::Transaction::begin(connection, None).await?)
            }
            Connection::MySql(connection) => {
                Open::MySql(sqlx::Transaction::begin(connection, None).await?)
            }
            Connection::Sqlite(connection) => {
                Open::Sqlite(sqlx::Transaction::begin(connection, None).await?)
            }
        };
        Ok(Transaction(open))
    }
}

impl Transaction<'_> {
    /// Runs a statement in the transaction; the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, sqlx::Error> {
        rows_affected(run(Target::Transaction(&mut self.0), sql, params, false).await?)
    }

    /// Runs a query in the transaction; all its rows.
    pub async fn fetch_all(
        &mut self,
        sql: &str,
        params: &[Param],
    ) -> Result<Vec<Row>, sqlx::Error> {
        rows(run(Target::Transaction(&mut self.0), sql, params, true).await?)
    }

    /// Runs a query that returns at most one row in the transaction.
    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        params: &[Param],
    ) -> Result<Option<Row>, sqlx::Error> {
        Ok(self.fetch_all(sql, params).await?.into_iter().next())
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.0 {
            Open::Postgres(transaction) => transaction.commit().await,
            Open::MySql(transaction) => transaction.commit().await,
            Open::Sqlite(transaction) => transaction.commit().await,
        }
    }

    /// Rolls back now (a dropped transaction only rolls back when its
    /// connection is reused, holding its locks until then).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.0 {
            Open::Postgres(transaction) => transaction.rollback().await,
            Open::MySql(transaction) => transaction.rollback().await,
            Open::Sqlite(transaction) => transaction.rollback().await,
        }
    }
}

/// The one dispatch over the three drivers.
async fn run(
    target: Target<'_, '_>,
    sql: &str,
    params: &[Param],
    want_rows: bool,
) -> Result<Output, sqlx::Error> {
    match target {
        Target::Pool(Database::Postgres(pool)) => on(pool, sql, params, want_rows).await,
        Target::Pool(Database::MySql(pool)) => on(pool, sql, params, want_rows).await,
        Target::Pool(Database::Sqlite(pool)) => on(pool, sql, params, want_rows).await,
        Target::Transaction(Open::Postgres(tx)) => on(&mut **tx, sql, params, want_rows).await,
        Target::Transaction(Open::MySql(tx)) => on(&mut **tx, sql, params, want_rows).await,
        Target::Transaction(Open::Sqlite(tx)) => on(&mut **tx, sql, params, want_rows).await,
    }
}

/// Binds `params` and runs `sql` on `executor` of any driver.
async fn on<'e, D, E>(
    executor: E,
    sql: &str,
    params: &[Param],
    want_rows: bool,
) -> Result<Output, sqlx::Error>
where
    D: Driver,
    E: Executor<'e, Database = D>,
{
    let mut query = sqlx::query::<D>(AssertSqlSafe(sql.to_owned()));
    for param in params {
        query = D::bind(query, param);
    }
    if want_rows {
        let rows = query.fetch_all(executor).await?;
        Ok(Output::Rows(D::Row::to_rows(&rows)))
    } else {
        let done = query.execute(executor).await?;
        Ok(Output::RowsAffected(D::rows_affected(&done)))
    }
}

async fn describe<'e, D, E>(executor: E, sql: &str) -> Result<Vec<DescribedColumn>, sqlx::Error>
where
    D: Driver,
    E: Executor<'e, Database = D>,
{
    let statement = executor
        .prepare(AssertSqlSafe(sql.to_owned()).into_sql_str())
        .await?;
    Ok(statement
        .columns()
        .iter()
        .map(|column| DescribedColumn {
            name: column.name().to_owned(),
            type_name: column.type_info().name().to_owned(),
        })
        .collect())
}

fn rows(output: Output) -> Result<Vec<Row>, sqlx::Error> {
    match output {
        Output::Rows(rows) => Ok(rows),
        Output::RowsAffected(_) => unreachable!("rows were asked for"),
    }
}

fn rows_affected(output: Output) -> Result<u64, sqlx::Error> {
    match output {
        Output::RowsAffected(count) => Ok(count),
        Output::Rows(_) => unreachable!("a count was asked for"),
    }
}

/// What differs between the drivers: how a [`Param`] is bound and how the
/// result reports its row count.
trait Driver: sqlx::Database<Row: ToRows, Arguments: sqlx::IntoArguments<Self>> {
    fn bind<'q>(query: Query<'q, Self>, param: &Param) -> Query<'q, Self>;
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

type Query<'q, D> = sqlx::query::Query<'q, D, <D as sqlx::Database>::Arguments>;

impl Driver for Postgres {
    fn bind<'q>(query: Query<'q, Self>, param: &Param) -> Query<'q, Self> {
        match param {
            Param::IntList(values) => query.bind(values.as_slice()),
            Param::TextList(values) => query.bind(values.as_slice()),
            scalar => bind_one_by_one(query, scalar),
        }
    }
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

impl Driver for MySql {
    fn bind<'q>(query: Query<'q, Self>, param: &Param) -> Query<'q, Self> {
        bind_one_by_one(query, param)
    }
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

impl Driver for Sqlite {
    fn bind<'q>(query: Query<'q, Self>, param: &Param) -> Query<'q, Self> {
        bind_one_by_one(query, param)
    }
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// Binds a scalar, and a list as one parameter per value.
fn bind_one_by_one<'q, D>(query: Query<'q, D>, param: &Param) -> Query<'q, D>
where
    D: sqlx::Database,
    i64: for<'t> Encode<'t, D> + Type<D>,
    for<'t> &'t str: Encode<'t, D> + Type<D>,
    Option<String>: for<'t> Encode<'t, D> + Type<D>,
    DateTime<Utc>: for<'t> Encode<'t, D> + Type<D>,
    NaiveDateTime: for<'t> Encode<'t, D> + Type<D>,
{
    match param {
        Param::Null => query.bind(None::<String>),
        Param::Int(int) => query.bind(*int),
        Param::Text(text) => query.bind(text.as_str()),
        Param::Timestamp(time) => query.bind(*time),
        Param::LocalTimestamp(time) => query.bind(*time),
        Param::IntList(values) => values.iter().fold(query, |query, value| query.bind(*value)),
        Param::TextList(values) => values
            .iter()
            .fold(query, |query, value| query.bind(value.as_str())),
    }
}

/// Column `index` of `row`, or a decode error naming it.
pub fn value(row: &Row, index: usize) -> Result<&SqlValue, sqlx::Error> {
    row.values
        .get(index)
        .ok_or_else(|| decode_error(format!("the result has no column {index}")))
}

/// Column `index` as an integer (`None` for NULL).
pub fn optional_int(row: &Row, index: usize) -> Result<Option<i64>, sqlx::Error> {
    match value(row, index)? {
        SqlValue::Null => Ok(None),
        SqlValue::Int(int) => Ok(Some(*int)),
        other => Err(unexpected(index, "an integer", other)),
    }
}

/// Column `index` as a non-NULL integer.
pub fn int(row: &Row, index: usize) -> Result<i64, sqlx::Error> {
    optional_int(row, index)?.ok_or_else(|| unexpected(index, "an integer", &SqlValue::Null))
}

/// Column `index` as text (`None` for NULL).
pub fn optional_text(row: &Row, index: usize) -> Result<Option<String>, sqlx::Error> {
    match value(row, index)? {
        SqlValue::Null => Ok(None),
        SqlValue::Text(text) => Ok(Some(text.clone())),
        other => Err(unexpected(index, "text", other)),
    }
}

/// Column `index` as non-NULL text.
pub fn text(row: &Row, index: usize) -> Result<String, sqlx::Error> {
    optional_text(row, index)?.ok_or_else(|| unexpected(index, "text", &SqlValue::Null))
}

/// Column `index` as an id of `id_type` (`None` for NULL).
pub fn optional_id(row: &Row, index: usize, id_type: IdType) -> Result<Option<Id>, sqlx::Error> {
    Ok(match id_type {
        IdType::Integer => optional_int(row, index)?.map(Id::Int),
        IdType::String => optional_text(row, index)?.map(|text| Id::Str(text.into())),
    })
}

/// Column `index` as a non-NULL id of `id_type`.
pub fn id(row: &Row, index: usize, id_type: IdType) -> Result<Id, sqlx::Error> {
    optional_id(row, index, id_type)?.ok_or_else(|| unexpected(index, "an id", &SqlValue::Null))
}

/// A value that does not have the type the caller needs, as the driver
/// reports a failed typed read.
pub fn decode_error(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}

fn unexpected(index: usize, wanted: &str, found: &SqlValue) -> sqlx::Error {
    decode_error(format!(
        "column {index}: expected {wanted}, found {found:?}"
    ))
}
