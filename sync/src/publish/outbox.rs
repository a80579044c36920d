//! `esync publish --outbox`: relays rows of an outbox table to Kafka.
//!
//! One loop, one transaction per batch:
//! ```text
//! BEGIN
//! SELECT seq, table_name, row_id FROM outbox WHERE relayed_at IS NULL AND table_name IN (...)
//!   ORDER BY seq LIMIT n FOR UPDATE SKIP LOCKED
//! DELETE (or UPDATE ... SET relayed_at) WHERE seq IN (...)
//! produce every row_id to its mappings' first topics, wait for acks=all
//! COMMIT
//! ```
//! The removal only becomes durable with the COMMIT after Kafka acknowledged
//! the ids; a failed produce rolls it back, and a crash between the
//! acknowledgement and the COMMIT relays the batch again (a harmless
//! duplicate). Removing before producing means lock conflicts (InnoDB
//! deadlocks with concurrent trigger inserts) surface before anything was
//! produced, so a retried batch is not a duplicate. `SKIP LOCKED` (Postgres,
//! MySQL 8, MariaDB 10.6+) lets several relays share one outbox without
//! relaying a row twice; MySQL/MariaDB relays use READ COMMITTED so they take
//! no gap locks that would stall the writers' inserts. SQLite has no row
//! locks: run one relay there.
//!
//! `table_name` is matched against each mapping's name, its `table`, and the
//! table without its schema; rows naming no mapping are left in place and
//! reported, never dropped.

use super::PublishError;
use super::config::{AfterRelay, OutboxConfig};
use super::metrics::PublishMetrics;
use crate::config::Config;
use crate::db::exec::{self, Param, Transaction};
use crate::db::{Database, Dialect, quote_identifier};
use crate::id::{Id, IdType};
use crate::kafka::IdProducer;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::writer::sleep_or_abort;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Where an outbox row of a given `table_name` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Mapping name (metric label).
    pub mapping: String,
    /// The mapping's first topic.
    pub topic: String,
    /// How `row_id` is parsed.
    pub id_type: IdType,
}

/// `table_name` -> the mappings fed by that table (a table can feed several
/// indexes).
pub fn routes(config: &Config) -> BTreeMap<String, Vec<Route>> {
    let mut routes: BTreeMap<String, Vec<Route>> = BTreeMap::new();
    let polled_tables: BTreeMap<&str, &str> = config
        .publish
        .iter()
        .flat_map(|publish| publish.mappings.iter())
        .filter_map(|entry| Some((entry.name.as_str(), entry.table.as_deref()?)))
        .collect();
    for mapping in &config.mappings {
        let Some(topic) = mapping.topics.first() else {
            continue;
        };
        let route = Route {
            mapping: mapping.display_name().to_owned(),
            topic: topic.clone(),
            id_type: mapping.id.id_type,
        };
        let mut names = BTreeSet::from([mapping.display_name().to_owned()]);
        for table in mapping
            .table
            .iter()
            .map(String::as_str)
            .chain(polled_tables.get(mapping.display_name()).copied())
        {
            let _ = names.insert(table.to_owned());
            if let Some((_, bare)) = table.rsplit_once('.') {
                let _ = names.insert(bare.to_owned());
            }
        }
        for name in names {
            let entry = routes.entry(name).or_default();
            if !entry.contains(&route) {
                entry.push(route.clone());
            }
        }
    }
    routes
}

/// The relay's statements in one dialect.
#[derive(Debug, Clone)]
pub struct OutboxSql {
    dialect: Dialect,
    table: String,
}

impl OutboxSql {
    /// For the outbox `table`.
    pub fn new(dialect: Dialect, table: &str) -> OutboxSql {
        OutboxSql {
            dialect,
            table: quote_identifier(dialect, table),
        }
    }

    /// Claims up to `limit` pending rows of `names` table names.
    pub fn claim(&self, names: usize, limit: usize) -> String {
        let filter = match self.dialect {
            Dialect::Postgres => "table_name = ANY($1)".to_owned(),
            _ => format!("table_name IN ({})", vec!["?"; names.max(1)].join(", ")),
        };
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            _ => " FOR UPDATE SKIP LOCKED",
        };
        format!(
            "SELECT seq, table_name, row_id FROM {} WHERE relayed_at IS NULL AND {filter} ORDER BY seq LIMIT {limit}{lock}",
            self.table
        )
    }

    /// Deletes or marks `count` relayed rows by `seq`.
    pub fn finish(&self, after: AfterRelay, count: usize) -> String {
        let filter = match self.dialect {
            Dialect::Postgres => "seq = ANY($1)".to_owned(),
            _ => format!("seq IN ({})", vec!["?"; count.max(1)].join(", ")),
        };
        let now = match self.dialect {
            Dialect::Postgres => "now()",
            Dialect::MySql => "CURRENT_TIMESTAMP(6)",
            Dialect::Sqlite => "CURRENT_TIMESTAMP",
        };
        match after {
            AfterRelay::Delete => format!("DELETE FROM {} WHERE {filter}", self.table),
            AfterRelay::Mark => format!(
                "UPDATE {} SET relayed_at = {now} WHERE {filter}",
                self.table
            ),
        }
    }

    /// Counts pending rows whose table name no mapping knows.
    pub fn unrouted(&self, names: usize) -> String {
        let filter = match self.dialect {
            Dialect::Postgres => "NOT (table_name = ANY($1))".to_owned(),
            _ => format!("table_name NOT IN ({})", vec!["?"; names.max(1)].join(", ")),
        };
        format!(
            "SELECT COUNT(*) FROM {} WHERE relayed_at IS NULL AND {filter}",
            self.table
        )
    }
}

/// One claimed outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The outbox row's key.
    pub seq: i64,
    /// The changed table (or mapping) name.
    pub table_name: String,
    /// The changed row's id, as text.
    pub row_id: String,
}

/// Groups claimed rows into ids per topic, in outbox order; one message per
/// outbox row (and per mapping fed by its table).
pub fn plan_messages(
    rows: &[OutboxRow],
    routes: &BTreeMap<String, Vec<Route>>,
) -> BTreeMap<String, (Vec<Id>, BTreeMap<String, u64>)> {
    let mut plan: BTreeMap<String, (Vec<Id>, BTreeMap<String, u64>)> = BTreeMap::new();
    for row in rows {
        for route in routes.get(&row.table_name).into_iter().flatten() {
            // an id that does not parse is still relayed: the daemon
            // dead-letters it with the reason, which is visible
            let id = Id::parse(&row.row_id, route.id_type)
                .unwrap_or_else(|_| Id::Str(row.row_id.as_str().into()));
            let (ids, per_mapping) = plan.entry(route.topic.clone()).or_default();
            ids.push(id);
            *per_mapping.entry(route.mapping.clone()).or_default() += 1;
        }
    }
    plan
}

/// The relay loop.
pub struct Relay {
    settings: OutboxConfig,
    sql: OutboxSql,
    routes: BTreeMap<String, Vec<Route>>,
    names: Vec<String>,
    database: Database,
    producer: Arc<IdProducer>,
    metrics: Arc<PublishMetrics>,
    retry: RetryPolicy,
}

impl Relay {
    /// Builds the relay from `publish.outbox`.
    pub fn new(
        config: &Config,
        database: Database,
        producer: Arc<IdProducer>,
        metrics: Arc<PublishMetrics>,
    ) -> Result<Relay, PublishError> {
        let settings = config
            .publish
            .as_ref()
            .and_then(|publish| publish.outbox.clone())
            .ok_or(PublishError::NotConfigured(
                "--outbox needs a publish.outbox section",
            ))?;
        let routes = routes(config);
        let names = routes.keys().cloned().collect();
        let sql = OutboxSql::new(database.dialect(), &settings.table);
        Ok(Relay {
            settings,
            sql,
            routes,
            names,
            database,
            producer,
            metrics,
            retry: config.retry,
        })
    }

    /// Relays until `shutdown`; a batch in flight is finished first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PublishError> {
        tracing::info!(table = %self.settings.table, names = ?self.names, after_relay = ?self.settings.after_relay, "relaying the outbox");
        self.report_unrouted().await;
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match self.relay_once().await {
                Ok(relayed) => {
                    failures = 0;
                    if relayed < self.settings.batch_size
                        && sleep_or_abort(self.settings.poll_interval, &shutdown)
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
                Err(error) => {
                    self.metrics
                        .errors
                        .get_or_create(&Metrics::mapping("outbox"))
                        .inc();
                    let delay = self.retry.random_delay(failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(table = %self.settings.table, error = %error, retry_in = ?delay, "outbox relay failed; nothing was removed");
                    if sleep_or_abort(delay, &shutdown).await.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::info!(table = %self.settings.table, "outbox relay stopped");
        Ok(())
    }

    /// One transaction: claim, produce, wait for acks, delete/mark, commit.
    /// Returns the number of outbox rows handled.
    pub async fn relay_once(&self) -> Result<usize, String> {
        let mut transaction = match self.database.dialect() {
            // no gap locks that would stall the writers' trigger inserts
            Dialect::MySql => {
                self.database
                    .begin_after("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await
            }
            Dialect::Postgres | Dialect::Sqlite => self.database.begin().await,
        }
        .map_err(|error| format!("begin: {error}"))?;
        match self.claim_and_produce(&mut transaction).await {
            Ok(relayed) => {
                transaction
                    .commit()
                    .await
                    .map_err(|error| format!("commit: {error}"))?;
                Ok(relayed)
            }
            Err(error) => {
                // Roll back now: a dropped transaction only queues its
                // ROLLBACK until the pool reuses the connection, and until
                // then its row locks hide the claimed rows from every relay
                // (SKIP LOCKED).
                if let Err(rollback) = transaction.rollback().await {
                    tracing::warn!(error = %rollback, "cannot roll back the outbox batch; the connection is discarded");
                }
                Err(error)
            }
        }
    }

    /// The body of [`Relay::relay_once`]'s transaction, up to the COMMIT.
    async fn claim_and_produce(&self, transaction: &mut Transaction) -> Result<usize, String> {
        let claim = self.sql.claim(self.names.len(), self.settings.batch_size);
        let rows = transaction
            .fetch_all(&claim, &[Param::TextList(self.names.clone())])
            .await
            .map_err(|error| format!("claim rows: {error}"))?;
        let rows = rows
            .iter()
            .map(|row| {
                Ok(OutboxRow {
                    seq: exec::int(row, 0)?,
                    table_name: exec::text(row, 1)?,
                    row_id: exec::text(row, 2)?,
                })
            })
            .collect::<Result<Vec<OutboxRow>, sqlx::Error>>()
            .map_err(|error| format!("read claimed rows: {error}"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Remove (or mark) first, inside the transaction: a deadlock or lock
        // time-out surfaces here, before anything was produced. Only COMMIT,
        // which cannot conflict on rows we hold, follows Kafka's
        // acknowledgement; a failed produce rolls the removal back.
        let seqs: Vec<i64> = rows.iter().map(|row| row.seq).collect();
        let finish = self.sql.finish(self.settings.after_relay, seqs.len());
        let _ = transaction
            .execute(&finish, &[Param::IntList(seqs)])
            .await
            .map_err(|error| format!("remove claimed rows: {error}"))?;
        self.produce(&rows).await?;
        Ok(rows.len())
    }

    async fn produce(&self, rows: &[OutboxRow]) -> Result<(), String> {
        for (topic, (ids, per_mapping)) in plan_messages(rows, &self.routes) {
            let _ = self
                .producer
                .send_all(&topic, &ids)
                .await
                .map_err(|error| format!("produce to {topic}: {error}"))?;
            for (mapping, count) in per_mapping {
                self.metrics
                    .outbox_relayed
                    .get_or_create(&Metrics::mapping(&mapping))
                    .inc_by(count);
            }
        }
        Ok(())
    }

    async fn report_unrouted(&self) {
        let sql = self.sql.unrouted(self.names.len());
        let count = self
            .database
            .fetch_optional(&sql, &[Param::TextList(self.names.clone())])
            .await
            .and_then(|row| {
                row.ok_or(sqlx::Error::RowNotFound)
                    .and_then(|row| exec::int(&row, 0))
            });
        match count {
            Ok(0) => {}
            Ok(count) => tracing::warn!(
                table = %self.settings.table,
                rows = count,
                known = ?self.names,
                "outbox rows name a table no mapping reads; they are left in place"
            ),
            Err(error) => {
                tracing::warn!(table = %self.settings.table, error = %error, "cannot read the outbox; is sync/sql/*/outbox.sql installed?")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadedConfig;

    #[test]
    fn sql_per_dialect() {
        let cases = [
            (
                Dialect::Postgres,
                r#"SELECT seq, table_name, row_id FROM "esync_outbox" WHERE relayed_at IS NULL AND table_name = ANY($1) ORDER BY seq LIMIT 500 FOR UPDATE SKIP LOCKED"#,
                r#"DELETE FROM "esync_outbox" WHERE seq = ANY($1)"#,
                r#"UPDATE "esync_outbox" SET relayed_at = now() WHERE seq = ANY($1)"#,
            ),
            (
                Dialect::MySql,
                "SELECT seq, table_name, row_id FROM `esync_outbox` WHERE relayed_at IS NULL AND table_name IN (?, ?) ORDER BY seq LIMIT 500 FOR UPDATE SKIP LOCKED",
                "DELETE FROM `esync_outbox` WHERE seq IN (?, ?, ?)",
                "UPDATE `esync_outbox` SET relayed_at = CURRENT_TIMESTAMP(6) WHERE seq IN (?, ?, ?)",
            ),
            (
                Dialect::Sqlite,
                r#"SELECT seq, table_name, row_id FROM "esync_outbox" WHERE relayed_at IS NULL AND table_name IN (?, ?) ORDER BY seq LIMIT 500"#,
                r#"DELETE FROM "esync_outbox" WHERE seq IN (?, ?, ?)"#,
                r#"UPDATE "esync_outbox" SET relayed_at = CURRENT_TIMESTAMP WHERE seq IN (?, ?, ?)"#,
            ),
        ];
        for (dialect, claim, delete, mark) in cases {
            let sql = OutboxSql::new(dialect, "esync_outbox");
            assert_eq!(sql.claim(2, 500), claim);
            assert_eq!(sql.finish(AfterRelay::Delete, 3), delete);
            assert_eq!(sql.finish(AfterRelay::Mark, 3), mark);
            assert!(sql.unrouted(2).contains("relayed_at IS NULL"));
        }
    }

    fn config() -> Config {
        let text = r#"
source: {url: "postgres://db/shop"}
kafka: {brokers: "127.0.0.1:9092"}
elasticsearch: {urls: ["http://127.0.0.1:9200"]}
mappings:
  - {name: orders, topics: [t.orders, t.other], table: shop.orders, index: orders, version: {column: v, kind: counter}}
  - {name: orders_by_customer, topics: [t.by_customer], table: shop.orders, index: obc, version: {column: v, kind: counter}}
  - {name: items, topics: [t.items], id: {column: sku, type: string}, query: "SELECT * FROM items WHERE sku IN {ids}", index: items, version: {column: v, kind: counter}}
publish: {outbox: {}, mappings: [{name: items, table: inventory.items}]}
"#;
        LoadedConfig::from_yaml(text, &|_| None).unwrap().config
    }

    #[test]
    fn table_names_route_to_every_mapping_of_the_table() {
        let routes = routes(&config());
        let topics = |name: &str| {
            routes.get(name).map(|routes| {
                routes
                    .iter()
                    .map(|route| route.topic.as_str())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            topics("orders"),
            Some(vec!["t.orders", "t.by_customer"]),
            "bare table name"
        );
        assert_eq!(
            topics("shop.orders"),
            Some(vec!["t.orders", "t.by_customer"])
        );
        assert_eq!(
            topics("orders_by_customer"),
            Some(vec!["t.by_customer"]),
            "mapping name"
        );
        assert_eq!(
            topics("items"),
            Some(vec!["t.items"]),
            "mapping name and the polled table's bare name"
        );
        assert_eq!(topics("inventory.items"), Some(vec!["t.items"]));
        assert_eq!(topics("customers"), None);
    }

    #[test]
    fn one_message_per_outbox_row_and_mapping() {
        let routes = routes(&config());
        let row = |seq, table: &str, id: &str| OutboxRow {
            seq,
            table_name: table.into(),
            row_id: id.into(),
        };
        let rows = [
            row(1, "orders", "7"),
            row(2, "orders", "7"),
            row(3, "items", "A-1"),
            row(4, "orders", "x"),
            row(5, "nope", "1"),
        ];
        let plan = plan_messages(&rows, &routes);
        assert_eq!(
            plan["t.orders"].0,
            vec![Id::Int(7), Id::Int(7), Id::Str("x".into())],
            "no dedupe: once per change"
        );
        assert_eq!(plan["t.by_customer"].0.len(), 3);
        assert_eq!(plan["t.items"].0, vec![Id::Str("A-1".into())]);
        assert_eq!(plan["t.orders"].1["orders"], 3);
        assert_eq!(plan.len(), 3, "unrouted rows produce nothing");
    }
}
