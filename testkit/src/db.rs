//! The test databases: which one a scenario runs on, a pool over it, and a
//! uniquely named `orders` table.

use crate::env::{required_env, unique};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, FromRow};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which database a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Postgres,
    MariaDb,
}

impl Db {
    /// The database's URL (`ESYNC_TEST_PG` or `ESYNC_TEST_MYSQL`).
    pub fn url(self) -> String {
        match self {
            Db::Postgres => required_env("ESYNC_TEST_PG"),
            Db::MariaDb => required_env("ESYNC_TEST_MYSQL"),
        }
    }

    /// The current time in the database, as every writer stamps it.
    pub fn now_sql(self) -> &'static str {
        match self {
            Db::Postgres => "clock_timestamp()",
            Db::MariaDb => "NOW(6)",
        }
    }

    /// A pool of `max_connections` to the database.
    pub async fn connect(self, max_connections: u32) -> Pool {
        let url = self.url();
        let timeout = Duration::from_secs(10);
        let pool = match self {
            Db::Postgres => PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(timeout)
                .connect(&url)
                .await
                .map(Pool::Postgres),
            Db::MariaDb => MySqlPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(timeout)
                .connect(&url)
                .await
                .map(Pool::MySql),
        };
        pool.unwrap_or_else(|error| panic!("connect to the {self:?} test database: {error}"))
    }
}

/// A way into the test database whose connections a test can cut without
/// touching any other test's: on PostgreSQL the URL carries an
/// `application_name` of its own, on MariaDB it logs in as a user of its own.
pub struct SeparateLogin {
    pub db: Db,
    /// The database URL to connect with.
    pub url: String,
    name: String,
    admin: Pool,
}

impl SeparateLogin {
    pub async fn create(db: Db) -> SeparateLogin {
        let name = unique("login");
        let admin = db.connect(1).await;
        let mut url = url::Url::parse(&db.url()).expect("test database URL");
        match db {
            Db::Postgres => {
                let _ = url.query_pairs_mut().append_pair("application_name", &name);
            }
            Db::MariaDb => {
                let database = url.path().trim_start_matches('/').to_owned();
                admin.execute(&format!("CREATE USER '{name}'@'%'")).await;
                admin
                    .execute(&format!(
                        "GRANT ALL PRIVILEGES ON `{database}`.* TO '{name}'@'%'"
                    ))
                    .await;
                url.set_username(&name).expect("a URL with a user");
                url.set_password(None).expect("a URL with a user");
            }
        }
        SeparateLogin {
            db,
            url: url.into(),
            name,
            admin,
        }
    }

    /// Kills every open connection of this login (as a server restart or a
    /// proxy's time-out would); how many there were.
    pub async fn kill_connections(&self) -> usize {
        let name = &self.name;
        match self.db {
            // First the ids, then one kill per id: in a single statement the
            // server may evaluate the kill before the filter, on every session.
            Db::Postgres => {
                let pids: Vec<(i32,)> = self
                    .admin
                    .rows(&format!(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = '{name}'"
                    ))
                    .await;
                for (pid,) in &pids {
                    self.admin
                        .execute(&format!("SELECT pg_terminate_backend({pid})"))
                        .await;
                }
                pids.len()
            }
            Db::MariaDb => {
                let ids: Vec<(i64,)> = self
                    .admin
                    .rows(&format!(
                        "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST WHERE USER = '{name}'"
                    ))
                    .await;
                for (id,) in &ids {
                    self.admin.execute(&format!("KILL CONNECTION {id}")).await;
                }
                ids.len()
            }
        }
    }

    /// Removes the MariaDB user (PostgreSQL needs nothing).
    pub async fn drop_login(self) {
        if self.db == Db::MariaDb {
            self.admin
                .execute(&format!("DROP USER '{}'@'%'", self.name))
                .await;
        }
    }
}

/// A pool to a test database; every statement that fails panics with the SQL.
#[derive(Debug, Clone)]
pub enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
}

impl Pool {
    /// Runs one statement (or a multi-statement script).
    pub async fn execute(&self, sql: &str) {
        let script = AssertSqlSafe(sql.to_owned());
        let result = match self {
            Pool::Postgres(pool) => sqlx::raw_sql(script).execute(pool).await.map(drop),
            Pool::MySql(pool) => sqlx::raw_sql(script).execute(pool).await.map(drop),
        };
        result.unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// Runs one statement and returns the rows it affected.
    pub async fn execute_count(&self, sql: &str) -> u64 {
        let script = AssertSqlSafe(sql.to_owned());
        let result = match self {
            Pool::Postgres(pool) => sqlx::query(script)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            Pool::MySql(pool) => sqlx::query(script)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
        };
        result.unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// Every row of a query.
    pub async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, MySqlRow> + Send + Unpin,
    {
        let result = match self {
            Pool::Postgres(pool) => {
                sqlx::query_as(AssertSqlSafe(sql.to_owned()))
                    .fetch_all(pool)
                    .await
            }
            Pool::MySql(pool) => {
                sqlx::query_as(AssertSqlSafe(sql.to_owned()))
                    .fetch_all(pool)
                    .await
            }
        };
        result.unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// A single integer from a query that may find no row or fail (`None`).
    pub async fn try_scalar(&self, sql: &str) -> Option<i64> {
        let result: Result<Option<i64>, sqlx::Error> = match self {
            Pool::Postgres(pool) => {
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .fetch_optional(pool)
                    .await
            }
            Pool::MySql(pool) => {
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .fetch_optional(pool)
                    .await
            }
        };
        result.ok().flatten()
    }

    /// A single integer from a query (one row, one column).
    pub async fn scalar(&self, sql: &str) -> i64 {
        let rows: Vec<(i64,)> = self.rows(sql).await;
        match rows.as_slice() {
            [(value,)] => *value,
            _ => panic!("{sql}: {} rows, expected one", rows.len()),
        }
    }
}

/// How the `orders` table of a test suite looks and changes. The daemon
/// tests and the recover tests use different ones; each keeps its data.
#[derive(Debug, Clone, Copy)]
pub struct OrdersSpec {
    /// Prefix of the unique table name.
    pub prefix: &'static str,
    /// Whether the table has an `updated_at` column (default: now).
    pub updated_at: bool,
    /// Version of an inserted row from its id.
    pub initial_version: fn(i64) -> i64,
    /// Whether `update` also adds 1 to `amount`.
    pub update_bumps_amount: bool,
    /// Fields of an indexed document compared with the row (besides the
    /// document's external version).
    pub compared: &'static [Field],
}

/// A document field compared with its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    Name,
    Amount,
    Version,
}

impl OrdersSpec {
    /// The daemon and publisher tests: `updated_at`, version 1 on insert,
    /// updates change the amount.
    pub const SYNC: OrdersSpec = OrdersSpec {
        prefix: "orders",
        updated_at: true,
        initial_version: |_| 1,
        update_bumps_amount: true,
        compared: &[Field::Name, Field::Amount, Field::Version],
    };

    /// The recover tests: no `updated_at`, version `id % 5 + 1` on insert.
    pub const RECOVER: OrdersSpec = OrdersSpec {
        prefix: "rec_orders",
        updated_at: false,
        initial_version: |id| id % 5 + 1,
        update_bumps_amount: false,
        compared: &[Field::Name, Field::Id],
    };
}

/// One row of the test table.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub id: i64,
    pub name: String,
    pub amount_cents: i64,
    pub version: i64,
    pub deleted: bool,
}

/// A uniquely named `orders` table in the test database.
pub struct OrdersTable {
    pub db: Db,
    pub pool: Pool,
    pub name: String,
    pub spec: OrdersSpec,
}

impl OrdersTable {
    /// An orders table of the daemon tests ([`OrdersSpec::SYNC`]).
    pub async fn create(db: Db) -> OrdersTable {
        OrdersTable::create_with(db, OrdersSpec::SYNC).await
    }

    pub async fn create_with(db: Db, spec: OrdersSpec) -> OrdersTable {
        let pool = db.connect(4).await;
        let name = unique(spec.prefix);
        let (text, amount, updated_at) = match db {
            Db::Postgres => (
                "TEXT",
                "NUMERIC(12,2)",
                "TIMESTAMPTZ NOT NULL DEFAULT now()",
            ),
            Db::MariaDb => (
                "VARCHAR(200)",
                "DECIMAL(12,2)",
                "TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)",
            ),
        };
        let updated_at = if spec.updated_at {
            format!(", updated_at {updated_at}")
        } else {
            String::new()
        };
        let table = OrdersTable {
            db,
            pool,
            name,
            spec,
        };
        table
            .execute(&format!(
                "CREATE TABLE {} (id BIGINT PRIMARY KEY, name {text} NOT NULL, amount {amount} NOT NULL, \
                 version BIGINT NOT NULL, deleted BOOLEAN NOT NULL DEFAULT false{updated_at})",
                table.name
            ))
            .await;
        table
    }

    pub async fn execute(&self, sql: &str) {
        self.pool.execute(sql).await;
    }

    /// `SELECT` of one integer column with one row.
    pub async fn scalar(&self, sql: &str) -> i64 {
        self.pool.scalar(sql).await
    }

    /// Inserts ids with the spec's initial version.
    pub async fn insert(&self, ids: impl IntoIterator<Item = i64>) {
        let values: Vec<String> = ids
            .into_iter()
            .map(|id| {
                format!(
                    "({id}, 'order {id}', {}.{:02}, {}, false)",
                    id % 1000,
                    id % 100,
                    (self.spec.initial_version)(id)
                )
            })
            .collect();
        for chunk in values.chunks(1000) {
            self.execute(&format!(
                "INSERT INTO {} (id, name, amount, version, deleted) VALUES {}",
                self.name,
                chunk.join(", ")
            ))
            .await;
        }
    }

    /// Changes a row and bumps its version.
    pub async fn update(&self, id: i64, tag: &str) {
        let amount = if self.spec.update_bumps_amount {
            "amount = amount + 1, "
        } else {
            ""
        };
        self.execute(&format!(
            "UPDATE {} SET name = 'order {id} {tag}', {amount}version = version + 1 WHERE id = {id}",
            self.name
        ))
        .await;
    }

    pub async fn soft_delete(&self, id: i64) {
        self.execute(&format!(
            "UPDATE {} SET deleted = true, version = version + 1 WHERE id = {id}",
            self.name
        ))
        .await;
    }

    pub async fn hard_delete(&self, id: i64) {
        self.execute(&format!("DELETE FROM {} WHERE id = {id}", self.name))
            .await;
    }

    /// Every row, by id.
    pub async fn rows(&self) -> BTreeMap<i64, OrderRow> {
        // the cast lets tests change the id column's type (NUMERIC, unsigned, domains)
        let integer = match self.db {
            Db::Postgres => "BIGINT",
            Db::MariaDb => "SIGNED",
        };
        let sql = format!(
            "SELECT CAST(id AS {integer}) AS id, name, CAST(amount * 100 AS {integer}) AS cents, version, deleted FROM {}",
            self.name
        );
        let rows: Vec<(i64, String, i64, i64, bool)> = self.pool.rows(&sql).await;
        rows.into_iter()
            .map(|(id, name, amount_cents, version, deleted)| {
                let row = OrderRow {
                    id,
                    name,
                    amount_cents,
                    version,
                    deleted,
                };
                (id, row)
            })
            .collect()
    }

    pub async fn drop_table(&self) {
        self.execute(&format!("DROP TABLE IF EXISTS {}", self.name))
            .await;
    }
}
