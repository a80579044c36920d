//! The outbox relay's statements per dialect and what it produces from the
//! claimed rows. Pure: SQL text and plain data, no I/O (the relay that runs
//! them is [`super::outbox`]).
//!
//! A batch is claimed and removed (or marked) before anything is produced,
//! inside the transaction that only commits after Kafka acknowledged it:
//! - PostgreSQL: one statement, a `FOR UPDATE SKIP LOCKED` claim in a CTE
//!   whose rows are deleted (or marked) and returned;
//! - MySQL/MariaDB and SQLite (no `DELETE ... RETURNING` with a locking
//!   claim): the claiming `SELECT`, then a `DELETE`/`UPDATE` by `seq` whose
//!   placeholder count is rounded up to a power of two, so a relay prepares
//!   a handful of statements instead of one per batch size.

use super::config::AfterRelay;
use crate::config::Config;
use crate::id::{Id, IdType};
use crate::sql::{Dialect, quote_identifier};
use std::collections::{BTreeMap, BTreeSet};

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

/// The relay's statements in one dialect, for one outbox table.
#[derive(Debug, Clone)]
pub struct OutboxSql {
    dialect: Dialect,
    table: String,
    after: AfterRelay,
    batch_size: usize,
}

/// How a batch is claimed and removed (or marked) in a dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimStatements {
    /// One statement claims, removes and returns `seq, table_name, row_id`;
    /// its only parameter is the table names.
    Returning(String),
    /// `claim` (parameter: the table names) returns the rows; then
    /// [`OutboxSql::finish`] removes them by `seq`.
    SelectThenFinish {
        /// The claiming `SELECT`.
        claim: String,
    },
}

impl OutboxSql {
    /// For the outbox `table`, claiming at most `batch_size` rows and
    /// handling relayed rows as `after` says.
    pub fn new(dialect: Dialect, table: &str, after: AfterRelay, batch_size: usize) -> OutboxSql {
        OutboxSql {
            dialect,
            table: quote_identifier(dialect, table),
            after,
            batch_size,
        }
    }

    /// The statements of one batch, for `names` table names.
    pub fn claim_statements(&self, names: usize) -> ClaimStatements {
        let claim = self.claim(names);
        match self.dialect {
            Dialect::Postgres => {
                // A CTE with a locking clause is always materialised: the
                // claim runs once, and only rows it locked are removed.
                let remove = match self.after {
                    AfterRelay::Delete => format!("DELETE FROM {}", self.table),
                    AfterRelay::Mark => {
                        format!("UPDATE {} SET relayed_at = {}", self.table, self.now())
                    }
                };
                ClaimStatements::Returning(format!(
                    "WITH claimed AS ({}) {remove} WHERE seq IN (SELECT seq FROM claimed) RETURNING seq, table_name, row_id",
                    claim.replacen("SELECT seq, table_name, row_id", "SELECT seq", 1)
                ))
            }
            Dialect::MySql | Dialect::Sqlite => ClaimStatements::SelectThenFinish { claim },
        }
    }

    /// Statements run once on the relay's connection before its first
    /// batch: MySQL/MariaDB relays use READ COMMITTED, so they take no gap
    /// locks that would stall the writers' trigger inserts.
    pub fn session_setup(&self) -> &'static [&'static str] {
        match self.dialect {
            Dialect::MySql => &["SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"],
            Dialect::Postgres | Dialect::Sqlite => &[],
        }
    }

    /// Claims up to `batch_size` pending rows of `names` table names, in
    /// `seq` order, skipping rows another relay holds.
    fn claim(&self, names: usize) -> String {
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            _ => " FOR UPDATE SKIP LOCKED",
        };
        format!(
            "SELECT seq, table_name, row_id FROM {} WHERE relayed_at IS NULL AND {} ORDER BY seq LIMIT {}{lock}",
            self.table,
            self.names_filter(names),
            self.batch_size
        )
    }

    /// Reads (without locking or changing anything) one pending row, for
    /// `esync check`.
    pub fn probe(&self, names: usize) -> String {
        format!(
            "SELECT seq, table_name, row_id FROM {} WHERE relayed_at IS NULL AND {} ORDER BY seq LIMIT 1",
            self.table,
            self.names_filter(names)
        )
    }

    /// Deletes or marks claimed rows by `seq` (dialects with
    /// [`ClaimStatements::SelectThenFinish`]); bind [`OutboxSql::pad`]'s
    /// list.
    pub fn finish(&self, count: usize) -> String {
        let filter = match self.dialect {
            Dialect::Postgres => "seq = ANY($1)".to_owned(),
            _ => format!("seq IN ({})", vec!["?"; self.padded(count)].join(", ")),
        };
        match self.after {
            AfterRelay::Delete => format!("DELETE FROM {} WHERE {filter}", self.table),
            AfterRelay::Mark => format!(
                "UPDATE {} SET relayed_at = {} WHERE {filter}",
                self.table,
                self.now()
            ),
        }
    }

    /// `seqs` repeated up to the placeholder count of
    /// [`OutboxSql::finish`] (a repeated value matches the same row).
    pub fn pad(&self, mut seqs: Vec<i64>) -> Vec<i64> {
        if let (Dialect::MySql | Dialect::Sqlite, Some(&first)) = (self.dialect, seqs.first()) {
            seqs.resize(self.padded(seqs.len()), first);
        }
        seqs
    }

    /// Placeholders for `count` values: the next power of two, at most the
    /// batch size (so at most 17 distinct statements per relay).
    fn padded(&self, count: usize) -> usize {
        count
            .max(1)
            .next_power_of_two()
            .min(self.batch_size.max(count))
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

    fn names_filter(&self, names: usize) -> String {
        match self.dialect {
            Dialect::Postgres => "table_name = ANY($1)".to_owned(),
            _ => format!("table_name IN ({})", vec!["?"; names.max(1)].join(", ")),
        }
    }

    fn now(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "now()",
            Dialect::MySql => "CURRENT_TIMESTAMP(6)",
            Dialect::Sqlite => "CURRENT_TIMESTAMP",
        }
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

/// Ids for one topic, and how many of them each mapping contributed.
pub type TopicMessages = (Vec<Id>, BTreeMap<String, u64>);

/// Groups claimed rows into ids per topic, in `seq` order (whatever order
/// the database returned them in); one message per outbox row (and per
/// mapping fed by its table).
pub fn plan_messages(
    rows: &[OutboxRow],
    routes: &BTreeMap<String, Vec<Route>>,
) -> BTreeMap<String, TopicMessages> {
    let mut ordered: Vec<&OutboxRow> = rows.iter().collect();
    ordered.sort_by_key(|row| row.seq);
    let mut plan: BTreeMap<String, TopicMessages> = BTreeMap::new();
    for row in ordered {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadedConfig;

    #[test]
    fn statements_per_dialect() {
        let postgres = |after| OutboxSql::new(Dialect::Postgres, "esync_outbox", after, 500);
        assert_eq!(
            postgres(AfterRelay::Delete).claim_statements(2),
            ClaimStatements::Returning(
                r#"WITH claimed AS (SELECT seq FROM "esync_outbox" WHERE relayed_at IS NULL AND table_name = ANY($1) ORDER BY seq LIMIT 500 FOR UPDATE SKIP LOCKED) DELETE FROM "esync_outbox" WHERE seq IN (SELECT seq FROM claimed) RETURNING seq, table_name, row_id"#
                    .into()
            )
        );
        assert_eq!(
            postgres(AfterRelay::Mark).claim_statements(2),
            ClaimStatements::Returning(
                r#"WITH claimed AS (SELECT seq FROM "esync_outbox" WHERE relayed_at IS NULL AND table_name = ANY($1) ORDER BY seq LIMIT 500 FOR UPDATE SKIP LOCKED) UPDATE "esync_outbox" SET relayed_at = now() WHERE seq IN (SELECT seq FROM claimed) RETURNING seq, table_name, row_id"#
                    .into()
            )
        );
        let cases = [
            (
                Dialect::MySql,
                "SELECT seq, table_name, row_id FROM `esync_outbox` WHERE relayed_at IS NULL AND table_name IN (?, ?) ORDER BY seq LIMIT 500 FOR UPDATE SKIP LOCKED",
                "DELETE FROM `esync_outbox` WHERE seq IN (?, ?, ?, ?)",
                "UPDATE `esync_outbox` SET relayed_at = CURRENT_TIMESTAMP(6) WHERE seq IN (?, ?, ?, ?)",
            ),
            (
                Dialect::Sqlite,
                r#"SELECT seq, table_name, row_id FROM "esync_outbox" WHERE relayed_at IS NULL AND table_name IN (?, ?) ORDER BY seq LIMIT 500"#,
                r#"DELETE FROM "esync_outbox" WHERE seq IN (?, ?, ?, ?)"#,
                r#"UPDATE "esync_outbox" SET relayed_at = CURRENT_TIMESTAMP WHERE seq IN (?, ?, ?, ?)"#,
            ),
        ];
        for (dialect, claim, delete, mark) in cases {
            let sql = |after| OutboxSql::new(dialect, "esync_outbox", after, 500);
            assert_eq!(
                sql(AfterRelay::Delete).claim_statements(2),
                ClaimStatements::SelectThenFinish {
                    claim: claim.into()
                }
            );
            assert_eq!(sql(AfterRelay::Delete).finish(3), delete);
            assert_eq!(sql(AfterRelay::Mark).finish(3), mark);
        }
        for dialect in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
            let sql = OutboxSql::new(dialect, "esync_outbox", AfterRelay::Delete, 500);
            assert!(sql.unrouted(2).contains("relayed_at IS NULL"));
            let probe = sql.probe(2);
            assert!(
                probe.starts_with("SELECT ") && !probe.contains("FOR UPDATE"),
                "the probe changes and locks nothing: {probe}"
            );
        }
    }

    #[test]
    fn finish_placeholders_are_padded_to_a_few_sizes() {
        let sql = OutboxSql::new(Dialect::MySql, "o", AfterRelay::Delete, 1000);
        let placeholders = |count| sql.finish(count).matches('?').count();
        let cases = [(1, 1), (2, 2), (3, 4), (5, 8), (600, 1000), (1000, 1000)];
        for (count, wanted) in cases {
            assert_eq!(placeholders(count), wanted, "{count} rows");
        }
        let distinct: BTreeSet<usize> = (1..=1000).map(placeholders).collect();
        assert_eq!(distinct.len(), 11, "statements per relay: {distinct:?}");
        // the padded list fills every placeholder with claimed seqs only
        let padded = sql.pad(vec![7, 9, 11]);
        assert_eq!(padded, vec![7, 9, 11, 7]);
        assert_eq!(padded.len(), placeholders(3));
        assert_eq!(sql.pad(Vec::new()), Vec::<i64>::new());
        // Postgres binds one array: nothing to pad
        let postgres = OutboxSql::new(Dialect::Postgres, "o", AfterRelay::Delete, 1000);
        assert_eq!(postgres.pad(vec![7, 9, 11]), vec![7, 9, 11]);
        // the largest batch never exceeds MySQL's 65,535 placeholders
        let largest = OutboxSql::new(Dialect::MySql, "o", AfterRelay::Delete, 50_000);
        assert_eq!(largest.finish(40_000).matches('?').count(), 50_000);
    }

    #[test]
    fn session_setup_per_dialect() {
        let setup = |dialect| OutboxSql::new(dialect, "o", AfterRelay::Delete, 10).session_setup();
        assert_eq!(
            setup(Dialect::MySql),
            ["SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"]
        );
        assert!(setup(Dialect::Postgres).is_empty());
        assert!(setup(Dialect::Sqlite).is_empty());
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
    fn one_message_per_outbox_row_and_mapping_in_seq_order() {
        let routes = routes(&config());
        let row = |seq, table: &str, id: &str| OutboxRow {
            seq,
            table_name: table.into(),
            row_id: id.into(),
        };
        // RETURNING gives no order: the plan restores the outbox's
        let rows = [
            row(4, "orders", "x"),
            row(1, "orders", "7"),
            row(5, "nope", "1"),
            row(3, "items", "A-1"),
            row(2, "orders", "8"),
            row(6, "orders", "7"),
        ];
        let plan = plan_messages(&rows, &routes);
        assert_eq!(
            plan["t.orders"].0,
            vec![Id::Int(7), Id::Int(8), Id::Str("x".into()), Id::Int(7)],
            "seq order, no dedupe: once per change"
        );
        assert_eq!(plan["t.by_customer"].0.len(), 4);
        assert_eq!(plan["t.items"].0, vec![Id::Str("A-1".into())]);
        assert_eq!(plan["t.orders"].1["orders"], 4);
        assert_eq!(plan.len(), 3, "unrouted rows produce nothing");
    }
}
