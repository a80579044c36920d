//! Support for the integration tests of `esync` and `esync-recover` and for
//! the benchmarks: real PostgreSQL/MariaDB, a real Kafka-protocol broker and
//! Elasticsearch API server, all from the `ESYNC_TEST_*` variables printed by
//! `scripts/services.sh up`.
//!
//! A missing variable fails the test with a message naming it: integration
//! tests never skip silently.
//!
//! This crate does not depend on `esync`: it reads and writes the services
//! with sqlx, rdkafka and the elasticsearch crate, so tests check esync
//! through independent means. Binaries under test are started by path
//! (`env!("CARGO_BIN_EXE_esync")` is only known inside the owning package).

pub mod daemon;
pub mod db;
pub mod env;
pub mod es;
pub mod golden;
pub mod kafka;
pub mod process;
pub mod promql;
pub mod publish;
pub mod recover;

/// The one way to run scenarios per database: each scenario is an async fn
/// taking a [`db::Db`] (or an async closure calling one), listed under the
/// databases it runs on. Generates `mod postgres` and `mod mariadb` with one
/// `#[ignore = "needs scripts/services.sh"]` test per line, so a test is
/// named `postgres::<name>` or `mariadb::<name>`.
///
/// ```ignore
/// esync_testkit::per_database! {
///     // optional: the test attribute (default `#[tokio::test]`)
///     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
///     both {
///         inserts_reach_the_index;                       // calls super::inserts_reach_the_index(db)
///         on_tansu => async |db| super::converge(db, &tansu(), 1).await;
///     }
///     postgres { domain_ids; }
///     mariadb { unsigned_ids => async |db| super::numeric_ids(db, "BIGINT UNSIGNED").await; }
/// }
/// ```
#[macro_export]
macro_rules! per_database {
    (
        $(both { $($both:tt)* })?
        $(postgres { $($postgres:tt)* })?
        $(mariadb { $($mariadb:tt)* })?
    ) => {
        $crate::per_database! {
            #[tokio::test]
            both { $($($both)*)? }
            postgres { $($($postgres)*)? }
            mariadb { $($($mariadb)*)? }
        }
    };
    (
        #[$test:meta]
        $(both { $($both:tt)* })?
        $(postgres { $($postgres:tt)* })?
        $(mariadb { $($mariadb:tt)* })?
    ) => {
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $crate::per_database!(@tests #[$test] $crate::db::Db::Postgres; $($($both)*)? $($($postgres)*)?);
        }
        mod mariadb {
            #[allow(unused_imports)]
            use super::*;
            $crate::per_database!(@tests #[$test] $crate::db::Db::MariaDb; $($($both)*)? $($($mariadb)*)?);
        }
    };
    (@tests #[$test:meta] $db:path; $($name:ident $(=> $scenario:expr)?;)*) => {
        $(
            #[$test]
            #[ignore = "needs scripts/services.sh"]
            async fn $name() {
                let scenario = $crate::per_database!(@scenario $name $($scenario)?);
                scenario($db).await;
            }
        )*
    };
    (@scenario $name:ident) => { super::$name };
    (@scenario $name:ident $scenario:expr) => { $scenario };
}

/// What most integration tests use.
pub mod prelude {
    pub use crate::daemon::{Daemon, DaemonSetup, EsyncProcess, run_esync};
    pub use crate::db::{Db, OrdersSpec, OrdersTable, Pool, SeparateLogin};
    pub use crate::env::{es, free_port, kafka, required_env, tansu, unique};
    pub use crate::es::{Index, Method};
    pub use crate::kafka::{GroupCommits, Topic, read_messages};
    pub use crate::process::{LoggedChild, PrivateEs, PrivateNoida, http_get, metric_sum, tail};
}
