//! `esync check`: proves a configuration can work before the daemon starts.
//!
//! The file was already validated (every problem at once); this module tests
//! each connection and each mapping's re-read query against the real systems
//! (and that one real row's id round-trips through it) and returns a list of
//! findings instead of stopping at the first.

use crate::config::LoadedConfig;
use crate::config::MappingConfig;
use crate::db::Database;
use crate::document::{DeleteStrategy, SqlValue, VersionKind, match_rows, row_id};
use crate::es::EsClient;
use crate::id::{Id, IdType, truncate_for_message};
use crate::pg_ids::PgIdMatch;
use crate::writer::Mapping;
use rdkafka::consumer::Consumer as _;
use serde_json::Value;
use std::time::Duration;

pub use crate::finding::{Finding, Level};

/// Runs every check and returns the findings.
pub async fn run_checks(loaded: &LoadedConfig) -> Vec<Finding> {
    let config = &loaded.config;
    let mut findings = vec![Finding::new(
        Level::Ok,
        format!("config: {} mapping(s), valid", config.mappings.len()),
    )];
    for (index, mapping) in config.mappings.iter().enumerate() {
        if mapping.routing_column.is_some() && mapping.delete == DeleteStrategy::Hard {
            findings.push(Finding::new(
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
        Err(error) => findings.push(Finding::new(Level::Failure, format!("database: {error}"))),
        Ok(database) => {
            findings.push(Finding::new(
                Level::Ok,
                format!("database: connected ({:?})", database.dialect()),
            ));
            findings.extend(crate::publish::check::findings(config, &database).await);
            let built = Mapping::all_from_config(config, database.dialect());
            for (mapping, built) in config.mappings.iter().zip(&built) {
                let reader = &built.reader;
                let name = mapping.display_name();
                match reader.prepare(&database).await {
                    Ok(PgIdMatch::ColumnAsText) => findings.push(Finding::new(
                        Level::Warning,
                        format!("mapping {name}: the id column's type cannot be compared with the ids directly; the re-read compares it as text and cannot use its index"),
                    )),
                    Ok(_) => {}
                    Err(error) => findings.push(Finding::new(
                        Level::Failure,
                        format!("mapping {name}: cannot look up the id column's type: {error}"),
                    )),
                }
                let sql = reader.sql_for(1);
                match describe_columns(&database, &sql).await {
                    Err(error) => findings.push(Finding::new(
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
                            findings.push(Finding::new(
                                Level::Ok,
                                format!(
                                    "mapping {name}: re-read query returns {} column(s)",
                                    columns.len()
                                ),
                            ));
                            findings.push(id_round_trip(&database, built).await);
                            findings.extend(check_version_column(&database, mapping, &sql).await);
                        } else {
                            findings.push(Finding::new(
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
        Err(error) => findings.push(Finding::new(
            Level::Failure,
            format!("elasticsearch: {error}"),
        )),
        Ok(es) => match es
            .request_ok(elasticsearch::http::Method::Get, "/", None)
            .await
        {
            Err(error) => findings.push(Finding::new(
                Level::Failure,
                format!("elasticsearch: {error}"),
            )),
            Ok(info) => {
                let version = info
                    .pointer("/version/number")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown");
                let distribution = info
                    .pointer("/version/distribution")
                    .and_then(|v| v.as_str())
                    .unwrap_or("elasticsearch");
                findings.push(Finding::new(
                    Level::Ok,
                    format!("elasticsearch: reachable ({distribution} {version})"),
                ));
                for mapping in &config.mappings {
                    findings.extend(check_index(&es, mapping).await);
                }
            }
        },
    }

    findings.extend(check_kafka(loaded).await);
    findings
}

/// The mapping's index: exists, and matches the configured mappings field
/// by field (each difference on its own line).
async fn check_index(es: &EsClient, mapping: &MappingConfig) -> Vec<Finding> {
    use crate::lifecycle::{admin, mapping_diff, names::next_alias};
    let index = &mapping.index;
    let definition = mapping.index_definition.as_ref();
    let head = es
        .request(
            elasticsearch::http::Method::Head,
            &format!("/{index}"),
            None,
        )
        .await;
    let mut findings = match head {
        Ok(response) if response.status == 200 => {
            vec![Finding::new(Level::Ok, format!("index {index}: exists"))]
        }
        Ok(response) if response.status == 404 => {
            let advice = match definition {
                Some(_) => "create it with `esync index create`".to_owned(),
                None => "it would be created with dynamic mappings on first write; add an index_definition to the mapping and run `esync index create`".to_owned(),
            };
            return vec![Finding::new(
                Level::Warning,
                format!("index {index}: does not exist; {advice}"),
            )];
        }
        Ok(response) => {
            return vec![Finding::new(
                Level::Failure,
                format!("index {index}: status {}", response.status),
            )];
        }
        Err(error) => {
            return vec![Finding::new(
                Level::Failure,
                format!("index {index}: {error}"),
            )];
        }
    };
    // every writer asks this before it writes (see `lifecycle::targets`)
    if let Err(error) = crate::lifecycle::targets::lookup(es, &next_alias(index)).await {
        findings.push(Finding::new(
            Level::Failure,
            format!(
                "index {index}: cannot read the alias {} that announces rebuilds ({error}); esync does not write without knowing: grant view_index_metadata on {index}*",
                next_alias(index)
            ),
        ));
    }
    let Some(definition) = definition else {
        return findings;
    };
    match admin::fetch_mappings(es, index).await {
        Ok(live) => {
            let configured = definition.create_body()["mappings"].clone();
            for difference in mapping_diff::compare(&configured, &live) {
                findings.push(Finding::new(
                    Level::Warning,
                    format!("index {index}: {difference}"),
                ));
            }
        }
        Err(error) => findings.push(Finding::new(
            Level::Failure,
            format!("index {index}: cannot read its mappings: {error}"),
        )),
    }
    if let Ok(family) = admin::fetch_family(es, index).await
        && let Some(building) = family.building()
    {
        findings.push(Finding::new(
            Level::Ok,
            format!(
                "index {index}: rebuild into {} in progress (announced by {}); `esync index status` shows it",
                building.name,
                next_alias(index)
            ),
        ));
    }
    findings
}

/// Warns when a `timestamp` version column cannot strictly increase with
/// every change (a `DATE`, or fewer than six fractional-second digits): two
/// states of a row then share a version, the older read can land last and
/// stay, and versions cannot show it (`esync-recover verify` compares
/// content for that). `None` when the column is fine or its type cannot be
/// learnt (a custom query hides the table: nothing to say).
async fn check_version_column(
    database: &Database,
    mapping: &MappingConfig,
    reread_sql: &str,
) -> Option<Finding> {
    if mapping.version.kind != VersionKind::Timestamp {
        return None;
    }
    let column = &mapping.version.column;
    let type_name = database
        .describe(reread_sql)
        .await
        .ok()?
        .into_iter()
        .find(|described| described.name == *column)?
        .type_name;
    let digits = match &mapping.table {
        Some(table) => fractional_digits(database, table, column).await,
        None => None,
    };
    let problem = version_tick(&type_name, digits)?;
    Some(Finding::new(
        Level::Warning,
        format!(
            "mapping {}: version column {column} is {problem}: two changes within {} share a version, and an older read can stay in the index; use a microsecond timestamp (TIMESTAMP(6)) or a counter bumped on every change, and run esync-recover verify (it compares content)",
            mapping.display_name(),
            match problem.as_str() {
                "DATE" => "1 day".to_owned(),
                _ => tick_text(digits.unwrap_or(0)),
            }
        ),
    ))
}

/// The column's type as the warning names it, when a column of `type_name`
/// with `digits` fractional-second digits cannot hold a new value for every
/// change; `None` for microsecond timestamps and types this check does not
/// know.
fn version_tick(type_name: &str, digits: Option<i64>) -> Option<String> {
    let type_name = type_name.to_ascii_uppercase();
    match type_name.as_str() {
        "DATE" => Some(type_name),
        "TIMESTAMP" | "TIMESTAMPTZ" | "DATETIME" => match digits {
            Some(digits @ 0..=5) => Some(format!("{type_name}({digits})")),
            _ => None,
        },
        _ => None,
    }
}

/// How long one step of a column with `digits` fractional digits spans.
fn tick_text(digits: i64) -> String {
    match digits {
        ..=0 => "1 s",
        1 => "100 ms",
        2 => "10 ms",
        3 => "1 ms",
        4 => "100 µs",
        _ => "10 µs",
    }
    .to_owned()
}

/// The declared fractional-second digits of `table.column` (`schema.table`
/// allowed), if the database says.
async fn fractional_digits(database: &Database, table: &str, column: &str) -> Option<i64> {
    crate::db::catalog::datetime_precision(database, table, column)
        .await
        .ok()
        .flatten()
}

/// Proves that a mapping's ids round-trip, on one real row: its id column is
/// read back as the re-read reads it, turned into an id, re-read by that id,
/// and the same row must be found and matched. Otherwise rows of this
/// mapping would be dead-lettered as `unmatched_id` (or never found); the
/// failure says why, with a hint.
pub async fn id_round_trip(database: &Database, mapping: &Mapping) -> Finding {
    let name = &mapping.name;
    let spec = &mapping.spec;
    let fail = |what: String, hint: &str| {
        Finding::new(
            Level::Failure,
            format!("mapping {name}: id round trip fails: {what}; hint: {hint}"),
        )
    };
    let value = match mapping.reader.sample_id(database).await {
        Err(error) => {
            return fail(
                format!("cannot read an id from the table: {error}"),
                "check the table and id column names",
            );
        }
        Ok(None) if !mapping.reader.reads_table() => {
            return Finding::new(
                Level::Warning,
                format!(
                    "mapping {name}: id round trip not checked: a custom query has no table to take a row from; ids in messages must equal the id column as the query returns it"
                ),
            );
        }
        Ok(None) => {
            return Finding::new(
                Level::Warning,
                format!("mapping {name}: id round trip not checked: the table is empty"),
            );
        }
        Ok(Some(value)) => value,
    };
    let Some(id) = row_id(&value, spec.id_type) else {
        let shown = match &value {
            SqlValue::Undecodable(reason) => reason.clone(),
            value => truncate_for_message(&value.to_json().to_string()),
        };
        let hint = match spec.id_type {
            IdType::Integer => {
                "an integer id is a whole number from -2^63 to 2^63-1; declare `id: {type: string}` for other ids (uuids, text, unsigned values above 2^63-1, decimals with a fraction)"
            }
            IdType::String => "cast the id column to text in a custom query",
        };
        return fail(
            format!(
                "the id column {} holds {shown}, which is not {}",
                spec.id_column,
                match spec.id_type {
                    IdType::Integer => "an integer id",
                    IdType::String => "a string id",
                }
            ),
            hint,
        );
    };
    let rows = match mapping
        .reader
        .fetch(database, std::slice::from_ref(&id))
        .await
    {
        Ok(rows) => rows,
        Err(error) => {
            return fail(
                format!("the re-read by id {} fails: {error}", shown(&id)),
                "the re-read must accept the ids as declared (in a custom query compare the id column as it needs, e.g. `o.id::text IN {ids}`)",
            );
        }
    };
    match match_rows(spec, std::slice::from_ref(&id), rows).pop() {
        Some((_, Ok(Some(_)))) => Finding::new(
            Level::Ok,
            format!(
                "mapping {name}: id round trip: id {} read back and found again by the re-read",
                shown(&id)
            ),
        ),
        Some((_, Ok(None))) | None => fail(
            format!("the re-read by id {} finds no row", shown(&id)),
            "the re-read query must find a row by the id it returns: check the id column and the query's id comparison",
        ),
        Some((_, Err(error))) => fail(
            format!("the re-read by id {}: {error}", shown(&id)),
            "the database returns the id in another form than it finds it by (a case-insensitive collation, a type conversion); declare the id type that matches the column, or return the id as it is announced",
        ),
    }
}

/// An id for a message: string ids quoted, so whitespace in them shows.
fn shown(id: &Id) -> String {
    match id {
        Id::Int(int) => int.to_string(),
        Id::Str(text) => Value::from(text.as_ref()).to_string(),
    }
}

async fn describe_columns(database: &Database, sql: &str) -> Result<Vec<String>, sqlx::Error> {
    let described = database.describe(sql).await?;
    Ok(described.into_iter().map(|column| column.name).collect())
}

async fn check_kafka(loaded: &LoadedConfig) -> Vec<Finding> {
    let config = loaded.config.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Vec<Finding>, String> {
        let consumer =
            crate::kafka::probe_consumer(&config.kafka).map_err(|error| error.to_string())?;
        // librdkafka's own network time-out, when set lower, bounds the wait
        let timeout = config
            .kafka
            .options
            .get("socket.timeout.ms")
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::from_secs(10), |ms| {
                Duration::from_millis(ms).min(Duration::from_secs(10))
            });
        let metadata = consumer
            .fetch_metadata(None, timeout)
            .map_err(|error| error.to_string())?;
        let mut findings = vec![Finding::new(
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
                Some(found) if found.error().is_none() => findings.push(Finding::new(
                    Level::Ok,
                    format!(
                        "kafka: {role} {topic}: {} partition(s)",
                        found.partitions().len()
                    ),
                )),
                _ => findings.push(Finding::new(
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
        Ok(Err(error)) => vec![Finding::new(Level::Failure, format!("kafka: {error}"))],
        Err(error) => vec![Finding::new(Level::Failure, format!("kafka: {error}"))],
    }
}

#[cfg(test)]
mod version_column_tests {
    use super::*;

    /// Issue 9 item 15: which version column types cannot take a new value
    /// for every change.
    #[test]
    fn coarse_version_columns_are_named() {
        let cases = [
            ("DATE", None, Some("DATE")),
            ("date", Some(0), Some("DATE")),
            ("TIMESTAMPTZ", Some(0), Some("TIMESTAMPTZ(0)")),
            ("TIMESTAMP", Some(3), Some("TIMESTAMP(3)")),
            ("DATETIME", Some(0), Some("DATETIME(0)")),
            ("DATETIME", Some(6), None),
            ("TIMESTAMPTZ", Some(6), None),
            // unknown precision (a custom query): nothing to say
            ("TIMESTAMP", None, None),
            ("BIGINT", Some(0), None),
        ];
        for (type_name, digits, expected) in cases {
            assert_eq!(
                version_tick(type_name, digits).as_deref(),
                expected,
                "{type_name} {digits:?}"
            );
        }
        assert_eq!(tick_text(0), "1 s");
        assert_eq!(tick_text(3), "1 ms");
        assert_eq!(tick_text(5), "10 µs");
    }
}
