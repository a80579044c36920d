//! Database adapter: the connection pool of the source database and the
//! three things done with it, one module each:
//! - [`exec`]: the one way to run SQL on any of the three drivers, with
//!   [`Param`] binds and driver-neutral [`crate::document::Row`]s back;
//! - [`rows`]: the per-column conversion of driver rows into
//!   [`crate::document::SqlValue`]s;
//! - [`reread`]: re-reading rows by id ([`RowReader`]);
//! - [`catalog`]: what the schema says about a column.

pub mod catalog;
pub mod exec;
pub mod reread;
mod rows;

pub use crate::sql::{Dialect, quote_identifier};
pub use exec::{DescribedColumn, Session, Transaction};
pub use reread::RowReader;

use crate::secret::{Secret, redact_url};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use std::time::Duration;

/// Errors talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL scheme is none of postgres, mysql, mariadb, sqlite.
    #[error("unsupported database URL {0}: use postgres://, mysql:// or sqlite://")]
    UnsupportedUrl(String),
    /// Connecting failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL without its password.
        url: String,
        /// The driver error.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("query on {mapping} failed: {source}")]
    Query {
        /// The mapping.
        mapping: String,
        /// The driver error.
        source: sqlx::Error,
    },
}

impl DbError {
    /// Connection problems and server-side time-outs pass; a broken query does
    /// not, but the daemon retries both (rows must not be lost) and a broken
    /// query is reported at error level.
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::UnsupportedUrl(_) => false,
            DbError::Connect { .. } => true,
            DbError::Query { source, .. } => is_transient(source),
        }
    }
}

/// Whether a driver error is the connection's (I/O, pool, protocol, TLS),
/// which retrying can fix, rather than the statement's.
pub fn is_transient(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_)
    )
}

/// Whether a driver error says the table does not exist (PostgreSQL
/// `42P01`, MySQL/MariaDB `42S02`, SQLite "no such table"): a run that was
/// never started, rather than a broken database.
pub fn is_undefined_table(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(error) = error else {
        return false;
    };
    matches!(error.code().as_deref(), Some("42P01" | "42S02"))
        || error.message().starts_with("no such table")
}

/// Whether a driver error is a `CREATE TABLE IF NOT EXISTS` losing a race
/// with the same statement in another session: PostgreSQL checks "if not
/// exists" before it inserts the catalog rows, so the loser gets a unique
/// violation on `pg_type` (`23505`), "relation already exists" (`42P07`) or,
/// when the winner committed in between, "type already exists" (`42710`);
/// MySQL/MariaDB "table exists" is `42S01`. Running it again succeeds.
pub fn is_concurrent_create(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(error) = error else {
        return false;
    };
    matches!(
        error.code().as_deref(),
        Some("23505" | "42P07" | "42710" | "42S01")
    )
}

/// Runs a `CREATE ... IF NOT EXISTS` statement, again when it lost a race
/// with another process creating the same object (see
/// [`is_concurrent_create`]): workers started together must not fail.
pub async fn create_if_missing(database: &Database, statement: &str) -> Result<(), sqlx::Error> {
    let mut attempt = 0;
    loop {
        match database.execute(statement, &[]).await {
            Err(error) if is_concurrent_create(&error) && attempt < 3 => attempt += 1,
            other => return other.map(drop),
        }
    }
}

/// A connection pool to the source database.
#[derive(Debug, Clone)]
pub enum Database {
    /// PostgreSQL.
    Postgres(PgPool),
    /// MySQL or MariaDB.
    MySql(MySqlPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

impl Database {
    /// Connects a pool of `max_connections`.
    pub async fn connect(
        url: &Secret,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<Database, DbError> {
        let raw = url.expose();
        let scheme = raw.split(':').next().unwrap_or_default();
        let connect_error = |source| DbError::Connect {
            url: redact_url(raw),
            source,
        };
        match scheme {
            "postgres" | "postgresql" => PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(connect_timeout)
                .connect(raw)
                .await
                .map(Database::Postgres)
                .map_err(connect_error),
            "mysql" | "mariadb" => MySqlPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(connect_timeout)
                .connect(&raw.replacen("mariadb://", "mysql://", 1))
                .await
                .map(Database::MySql)
                .map_err(connect_error),
            "sqlite" => SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(connect_timeout)
                .connect(raw)
                .await
                .map(Database::Sqlite)
                .map_err(connect_error),
            _ => Err(DbError::UnsupportedUrl(redact_url(raw))),
        }
    }

    /// The pool's dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            Database::Postgres(_) => Dialect::Postgres,
            Database::MySql(_) => Dialect::MySql,
            Database::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// A trivial round trip, for health checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.execute("SELECT 1", &[]).await.map(drop)
    }
}
