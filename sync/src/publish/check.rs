//! `esync check` for the `publish:` section: each polled table's timestamp
//! column has a supported type, and its `(timestamp, id)` index exists —
//! shown with EXPLAIN of the real next-page query — and the outbox table is
//! readable.

use super::config::OutboxConfig;
use super::outbox_sql::OutboxSql;
use super::poll_sql::{plan_uses_index, targets};
use super::poller::Poller;
use crate::config::Config;
use crate::db::exec::Param;
use crate::db::{Database, quote_identifier};
use crate::finding::{Finding, Level};

/// Findings for `publish:` (none when the section is absent).
pub async fn findings(config: &Config, database: &Database) -> Vec<Finding> {
    let Some(publish) = &config.publish else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for target in targets(config) {
        let name = format!("publish {}", target.mapping);
        let column = format!("({}, {})", target.timestamp_column, target.id_column);
        let poller = match Poller::connect(database.clone(), target.clone()).await {
            Ok(poller) => poller,
            Err(error) => {
                findings.push(Finding::new(Level::Failure, format!("{name}: {error}")));
                continue;
            }
        };
        match poller.explain_page(publish.page_size).await {
            Ok(plan) if plan_uses_index(database.dialect(), &plan) => {
                findings.push(Finding::new(Level::Ok, format!("{name}: the poll query uses an index on {column} of {}", target.table)))
            }
            Ok(plan) => findings.push(Finding::new(
                Level::Warning,
                format!(
                    "{name}: no index serves the poll query; every poll scans and sorts {table}. Create one:\n       \
                     CREATE INDEX {index} ON {table} ({timestamp_column}, {id_column});\n       plan: {plan}",
                    table = target.table,
                    index = quote_identifier(database.dialect(), &format!("{}_esync_poll", target.table.replace('.', "_"))),
                    timestamp_column = target.timestamp_column,
                    id_column = target.id_column,
                    plan = summarize(&plan),
                ),
            )),
            Err(error) => findings.push(Finding::new(Level::Failure, format!("{name}: EXPLAIN of the poll query failed: {error}"))),
        }
    }
    if let Some(outbox) = &publish.outbox {
        findings.push(check_outbox(database, outbox).await);
    }
    findings
}

async fn check_outbox(database: &Database, outbox: &OutboxConfig) -> Finding {
    let table = &outbox.table;
    // a read without locks: a check must not block relays, nor relay anything
    let sql = OutboxSql::new(
        database.dialect(),
        table,
        outbox.after_relay,
        outbox.batch_size,
    )
    .probe(1);
    let result = database
        .fetch_all(&sql, &[Param::TextList(vec![String::new()])])
        .await
        .map(drop);
    match result {
        Ok(()) => Finding::new(
            Level::Ok,
            format!("publish outbox: table {table} is readable"),
        ),
        Err(error) => Finding::new(
            Level::Failure,
            format!(
                "publish outbox: cannot read {table} ({error}); install sync/sql/<database>/outbox.sql"
            ),
        ),
    }
}

/// The plan's operator lines, trimmed, without planner details (JIT, costs).
fn summarize(plan: &[String]) -> String {
    plan.iter()
        .map(|line| line.trim().trim_start_matches("->").trim())
        .map(|line| line.split("  (cost=").next().unwrap_or(line))
        .filter(|line| {
            !line.is_empty()
                && !["JIT:", "Functions:", "Options:"]
                    .iter()
                    .any(|skip| line.starts_with(skip))
        })
        .take(5)
        .collect::<Vec<_>>()
        .join(" / ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn plans_are_summarized() {
        let plan: Vec<String> = [
            "Limit  (cost=1.00..2.00 rows=5 width=16)",
            "  ->  Sort  (cost=1.00..2.00 rows=5 width=16)",
            "        Sort Key: updated_at, id",
            "        ->  Seq Scan on o  (cost=0.00..1.00 rows=5 width=16)",
            "JIT:",
            "  Functions: 5",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            super::summarize(&plan),
            "Limit / Sort / Sort Key: updated_at, id / Seq Scan on o"
        );
    }
}
