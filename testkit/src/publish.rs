//! The `esync publish` tests: a publisher child process, and SQL that stamps
//! `updated_at` the way every writer must.

use crate::daemon::{EsyncProcess, process_dir};
use crate::db::{Db, OrdersTable};
use crate::env::{free_port, unique};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Prepares an orders table for polling: the `(updated_at, id)` index, and
/// `updated_at` nullable so hand-edited rows can be simulated.
pub async fn prepare_for_polling(table: &OrdersTable) {
    let name = &table.name;
    table
        .execute(&format!(
            "CREATE INDEX {name}_poll ON {name} (updated_at, id)"
        ))
        .await;
    let nullable = match table.db {
        Db::Postgres => format!("ALTER TABLE {name} ALTER COLUMN updated_at DROP NOT NULL"),
        Db::MariaDb => format!(
            "ALTER TABLE {name} MODIFY updated_at TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6)"
        ),
    };
    table.execute(&nullable).await;
}

/// Changes a row the way a well-behaved writer does: bumps the version and
/// stamps `updated_at`.
pub fn touch_sql(table: &OrdersTable, id: i64, tag: &str) -> String {
    format!(
        "UPDATE {} SET name = 'order {id} {tag}', amount = amount + 1, version = version + 1, updated_at = {} WHERE id = {id}",
        table.name,
        table.db.now_sql()
    )
}

/// Soft-deletes a row, stamping `updated_at`.
pub fn soft_delete_sql(table: &OrdersTable, id: i64) -> String {
    format!(
        "UPDATE {} SET deleted = true, version = version + 1, updated_at = {} WHERE id = {id}",
        table.name,
        table.db.now_sql()
    )
}

/// Every row's id and `updated_at` in microseconds.
pub async fn row_times(table: &OrdersTable) -> BTreeMap<i64, i64> {
    let sql = match table.db {
        Db::Postgres => format!(
            "SELECT id, CAST(EXTRACT(EPOCH FROM updated_at) * 1000000 AS BIGINT) FROM {} WHERE updated_at IS NOT NULL",
            table.name
        ),
        Db::MariaDb => format!(
            "SELECT id, CAST(UNIX_TIMESTAMP(updated_at) * 1000000 AS SIGNED) FROM {} WHERE updated_at IS NOT NULL",
            table.name
        ),
    };
    let rows: Vec<(i64, i64)> = table.pool.rows(&sql).await;
    rows.into_iter().collect()
}

/// The `publish:` section and mapping of a test publisher.
pub struct PublisherSetup<'a> {
    pub table: &'a OrdersTable,
    pub topic: &'a str,
    pub brokers: &'a str,
    pub es_url: &'a str,
    /// Extra lines inside `publish:` (indented two spaces).
    pub publish: String,
    /// Checkpoint in this table of the source database instead of a file.
    pub checkpoint_table: Option<String>,
}

/// An `esync publish` child process (and its config, checkpoint and log).
pub struct Publisher {
    /// The process (`publisher.kill()`, `publisher.spawn()` etc. through Deref).
    pub process: EsyncProcess,
    pub checkpoint_path: PathBuf,
}

impl Publisher {
    /// Writes the config and starts `esync publish` (the binary at `esync`;
    /// with `--outbox` if asked).
    pub fn start(esync: &str, setup: &PublisherSetup<'_>, outbox: bool) -> Publisher {
        let dir = process_dir();
        let metrics_port = free_port();
        let checkpoint_path = dir.path().join("publish.checkpoint.json");
        let config = format!(
            r#"source:
  url: ${{ESYNC_TEST_DATABASE_URL}}
  max_connections: 4
kafka:
  brokers: "{brokers}"
elasticsearch:
  urls: ["{es}"]
mappings:
  - name: orders
    topics: [{topic}]
    table: {table}
    index: {index}
    version: {{column: version, kind: counter}}
retry: {{initial_backoff: 50ms, max_backoff: 1s}}
metrics: {{listen: null}}
publish:
  metrics_listen: "127.0.0.1:{metrics_port}"
  checkpoint: {checkpoint}
  mappings: [{{name: orders}}]
{publish}
"#,
            brokers = setup.brokers,
            es = setup.es_url,
            topic = setup.topic,
            table = setup.table.name,
            index = unique("unused"),
            checkpoint = match &setup.checkpoint_table {
                Some(table) => format!("{{table: {table}}}"),
                None => format!("{{file: \"{}\"}}", checkpoint_path.display()),
            },
            publish = setup.publish,
        );
        let config_path = dir.path().join("esync.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let args: &[&str] = if outbox {
            &["publish", "--outbox"]
        } else {
            &["publish"]
        };
        let process = EsyncProcess::on_config(
            Path::new(esync),
            "esync publish",
            args,
            config_path,
            setup.table.db.url(),
            metrics_port,
            Some(dir),
        );
        Publisher {
            process,
            checkpoint_path,
        }
    }
}

impl std::ops::Deref for Publisher {
    type Target = EsyncProcess;
    fn deref(&self) -> &EsyncProcess {
        &self.process
    }
}

impl std::ops::DerefMut for Publisher {
    fn deref_mut(&mut self) -> &mut EsyncProcess {
        &mut self.process
    }
}

/// Waits until `check` holds, polling every 200 ms; panics with `what` and
/// the publishers' logs otherwise, or when one of them exits.
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    publishers: &mut [&mut Publisher],
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        let outcome = check().await;
        let Err(problem) = outcome else { return };
        if started.elapsed() > timeout {
            let logs: Vec<String> = publishers
                .iter()
                .map(|publisher| publisher.log_tail(40))
                .collect();
            panic!(
                "{what} not reached within {timeout:?}: {problem}\n--- publisher log ---\n{}",
                logs.join("\n---\n")
            );
        }
        for publisher in publishers.iter_mut() {
            publisher.assert_running();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
