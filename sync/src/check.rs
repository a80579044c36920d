//! `esync check`: proves a configuration can work before the daemon starts.
//!
//! The file was already validated (every problem at once); this module tests
//! each connection and each mapping's re-read query against the real systems
//! and returns a list of findings instead of stopping at the first.

use crate::config::LoadedConfig;
use crate::db::{Database, Dialect, RowReader};
use crate::document::DeleteStrategy;
use crate::es::EsClient;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sqlx::{AssertSqlSafe, Column as _, Executor as _, SqlSafeStr as _, Statement as _};
use std::time::Duration;

/// One result line of `esync check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Ok, warning or failure.
    pub level: Level,
    /// What was checked and what was found.
    pub message: String,
}

/// Severity of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Works.
    Ok,
    /// Works, but probably not as intended.
    Warning,
    /// Will not work.
    Failure,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = match self.level {
            Level::Ok => "ok  ",
            Level::Warning => "warn",
            Level::Failure => "FAIL",
        };
        write!(formatter, "[{mark}] {}", self.message)
    }
}

fn finding(level: Level, message: impl Into<String>) -> Finding {
    Finding {
        level,
        message: message.into(),
    }
}

/// Runs every check and returns the findings.
pub async fn run_checks(loaded: &LoadedConfig) -> Vec<Finding> {
    let config = &loaded.config;
    let mut findings = vec![finding(
        Level::Ok,
        format!("config: {} mapping(s), valid", config.mappings.len()),
    )];
    for (index, mapping) in config.mappings.iter().enumerate() {
        if mapping.routing_column.is_some() && mapping.delete == DeleteStrategy::Hard {
            findings.push(finding(
                Level::Warning,
                format!(
                    "mappings[{index}]: hard deletes carry no routing (the row is gone); use delete: {{strategy: soft}} with routing_column"
                ),
            ));
        }
    }

    match Database::connect(
        &loaded.secrets.database_url,
        1,
        config.source.connect_timeout,
    )
    .await
    {
        Err(error) => findings.push(finding(Level::Failure, format!("database: {error}"))),
        Ok(database) => {
            findings.push(finding(
                Level::Ok,
                format!("database: connected ({:?})", database.dialect()),
            ));
            findings.extend(crate::publish::check::findings(config, &database).await);
            for mapping in &config.mappings {
                let reader =
                    RowReader::new(mapping, database.dialect(), config.source.read_chunk_size);
                let sql = reader.sql_for(1);
                let name = mapping.display_name();
                match describe_columns(&database, &sql).await {
                    Err(error) => findings.push(finding(
                        Level::Failure,
                        format!("mapping {name}: re-read query fails: {error}\n       {sql}"),
                    )),
                    Ok(columns) => {
                        let mut required = vec![&mapping.id.column, &mapping.version.column];
                        required.extend(mapping.routing_column.as_ref());
                        required.extend(mapping.lag_column.as_ref());
                        if let DeleteStrategy::Soft { column } = &mapping.delete {
                            required.push(column);
                        }
                        let missing: Vec<&String> = required
                            .into_iter()
                            .filter(|column| !columns.contains(column))
                            .collect();
                        if missing.is_empty() {
                            findings.push(finding(
                                Level::Ok,
                                format!(
                                    "mapping {name}: re-read query returns {} column(s)",
                                    columns.len()
                                ),
                            ));
                        } else {
                            findings.push(finding(
                                Level::Failure,
                                format!("mapping {name}: re-read query does not return {missing:?} (it returns {columns:?})"),
                            ));
                        }
                    }
                }
            }
        }
    }

    match EsClient::new(&config.elasticsearch, &loaded.secrets) {
        Err(error) => findings.push(finding(Level::Failure, format!("elasticsearch: {error}"))),
        Ok(es) => match es
            .request_ok(elasticsearch::http::Method::Get, "/", None)
            .await
        {
            Err(error) => findings.push(finding(Level::Failure, format!("elasticsearch: {error}"))),
            Ok(info) => {
                let version = info
                    .pointer("/version/number")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown");
                let distribution = info
                    .pointer("/version/distribution")
                    .and_then(|v| v.as_str())
                    .unwrap_or("elasticsearch");
                findings.push(finding(
                    Level::Ok,
                    format!("elasticsearch: reachable ({distribution} {version})"),
                ));
                for mapping in &config.mappings {
                    let path = format!("/{}", mapping.index);
                    match es.request(elasticsearch::http::Method::Head, &path, None).await {
                        Ok(response) if response.status == 200 => {
                            findings.push(finding(Level::Ok, format!("index {}: exists", mapping.index)))
                        }
                        Ok(response) if response.status == 404 => findings.push(finding(
                            Level::Warning,
                            format!("index {}: does not exist; it will be created with dynamic mappings on first write", mapping.index),
                        )),
                        Ok(response) => findings.push(finding(Level::Failure, format!("index {}: status {}", mapping.index, response.status))),
                        Err(error) => findings.push(finding(Level::Failure, format!("index {}: {error}", mapping.index))),
                    }
                }
            }
        },
    }

    findings.extend(check_kafka(loaded).await);
    findings
}

async fn describe_columns(database: &Database, sql: &str) -> Result<Vec<String>, sqlx::Error> {
    crate::on_pool!(database, pool => {
        let described = pool
            .prepare(AssertSqlSafe(sql.to_owned()).into_sql_str())
            .await?;
        Ok(described
            .columns()
            .iter()
            .map(|column| column.name().to_owned())
            .collect())
    })
}

async fn check_kafka(loaded: &LoadedConfig) -> Vec<Finding> {
    let config = loaded.config.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Vec<Finding>, String> {
        let mut client = rdkafka::ClientConfig::new();
        client
            .set("bootstrap.servers", &config.kafka.brokers)
            .set("group.id", &config.kafka.group_id);
        for (key, value) in &config.kafka.options {
            client.set(key, value);
        }
        let consumer: BaseConsumer = client.create().map_err(|error| error.to_string())?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|error| error.to_string())?;
        let mut findings = vec![finding(
            Level::Ok,
            format!("kafka: reachable ({} broker(s))", metadata.brokers().len()),
        )];
        let mut wanted: Vec<(String, &str)> = config
            .mappings
            .iter()
            .flat_map(|mapping| {
                mapping
                    .topics
                    .iter()
                    .map(|topic| (topic.clone(), "source topic"))
            })
            .collect();
        if let Some(dead_letter) = &config.dead_letter {
            wanted.push((dead_letter.topic.clone(), "dead-letter topic"));
        }
        for (topic, role) in wanted {
            match metadata.topics().iter().find(|found| found.name() == topic) {
                Some(found) if found.error().is_none() => findings.push(finding(
                    Level::Ok,
                    format!(
                        "kafka: {role} {topic}: {} partition(s)",
                        found.partitions().len()
                    ),
                )),
                _ => findings.push(finding(
                    Level::Failure,
                    format!("kafka: {role} {topic} does not exist"),
                )),
            }
        }
        Ok(findings)
    })
    .await;
    match result {
        Ok(Ok(findings)) => findings,
        Ok(Err(error)) => vec![finding(Level::Failure, format!("kafka: {error}"))],
        Err(error) => vec![finding(Level::Failure, format!("kafka: {error}"))],
    }
}

/// Dialect-specific advice is kept here so the daemon stays quiet.
pub fn dialect_notes(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "ids are bound as one array per batch",
        Dialect::MySql | Dialect::Sqlite => "ids are bound in chunks of source.read_chunk_size",
    }
}
