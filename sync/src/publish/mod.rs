//! `esync publish`: gets the ids of changed rows into Kafka for teams without
//! a CDC stack.
//!
//! Two sources, both producing each id in the plain format the daemon reads
//! (the id as key and value, so an id always lands in one partition) to the
//! mapping's first topic, with the idempotent `acks=all` [`IdProducer`]:
//! - the poller: per mapping, page through `(updated_at, id)` beyond a
//!   watermark, with a look-back window for late commits ([`watermark`], pure);
//!   the watermark is checkpointed ([`checkpoint`]) only after Kafka
//!   acknowledged the ids, so a restart resumes without gaps. Its SQL is
//!   [`poll_sql`] (pure), the database adapter [`poller`], the loop
//!   [`poll_loop`];
//! - [`outbox`]: relay rows that triggers or the application wrote to an
//!   outbox table, deleting (or marking) them once acknowledged;
//!   `FOR UPDATE SKIP LOCKED` lets several relays run. Its SQL and message
//!   plan are [`outbox_sql`] (pure).
//!
//! Shutdown (SIGTERM/SIGINT): the current page is finished, acknowledged and
//! checkpointed, then the process exits 0. Guarantees and limits are in
//! `sync/PUBLISH.md`.

pub mod check;
pub mod checkpoint;
pub mod config;
pub mod metrics;
pub mod outbox;
pub mod outbox_sql;
pub mod poll_loop;
pub mod poll_sql;
pub mod poller;
pub mod watermark;

use crate::config::LoadedConfig;
use crate::kafka::IdProducer;
use checkpoint::{CheckpointError, CheckpointStore};
use metrics::PublishMetrics;
use poll_loop::{PollLoop, PollSettings};
use poller::Poller;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What `esync publish` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Poll the mappings' timestamp columns (`publish.mappings`).
    Poll,
    /// Relay the outbox table (`publish.outbox`).
    Outbox,
}

/// Why the publisher could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The configuration has no usable `publish:` section for the mode.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// The source database is unreachable or its URL is wrong.
    #[error(transparent)]
    Connect(#[from] crate::db::DbError),
    /// The producer could not be created.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A query needed to start failed (missing table or column ...).
    #[error("mapping {mapping}: {source}")]
    Database {
        /// The mapping.
        mapping: String,
        /// The driver error.
        source: sqlx::Error,
    },
    /// The timestamp column has a type the poller cannot compare.
    #[error(
        "mapping {mapping}: column {column} has type {type_name}; the poller needs a timestamp column (timestamptz/timestamp, TIMESTAMP/DATETIME)"
    )]
    UnsupportedTimestamp {
        /// The mapping.
        mapping: String,
        /// The column.
        column: String,
        /// Its database type.
        type_name: String,
    },
    /// The outbox relay failed in a way retrying cannot fix.
    #[error("outbox {table}: {message}")]
    Outbox {
        /// The outbox table.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// The metrics endpoint could not listen.
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        /// The configured address.
        address: std::net::SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// A task panicked.
    #[error("publisher task failed: {0}")]
    Task(String),
}

/// Runs the publisher until `shutdown` fires, then checkpoints and returns.
pub async fn run(
    loaded: &LoadedConfig,
    mode: Mode,
    shutdown: CancellationToken,
) -> Result<(), PublishError> {
    let config = &loaded.config;
    let publish = config.publish.as_ref().ok_or(PublishError::NotConfigured(
        "the config file has no publish: section",
    ))?;
    match mode {
        Mode::Poll if publish.mappings.is_empty() => {
            return Err(PublishError::NotConfigured(
                "publish.mappings is empty: list the mappings to poll (or use --outbox)",
            ));
        }
        Mode::Outbox if publish.outbox.is_none() => {
            return Err(PublishError::NotConfigured(
                "--outbox needs a publish.outbox section",
            ));
        }
        _ => {}
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = PublishMetrics::register(&mut registry);
    let database = crate::db::Database::connect(
        &loaded.secrets.database_url,
        config.source.max_connections,
        config.source.connect_timeout,
    )
    .await?;
    let producer = Arc::new(IdProducer::new(&config.kafka)?);
    // fail fast: a publisher that cannot reach Kafka would only retry
    producer.check_reachable(Duration::from_secs(10)).await?;
    let server = match publish.metrics_listen {
        Some(address) => {
            // ready when the two systems the publisher uses answer
            let (health_database, health_producer) = (database.clone(), producer.clone());
            let health: crate::http::HealthCheck = Arc::new(move || {
                let (database, producer) = (health_database.clone(), health_producer.clone());
                Box::pin(async move {
                    let timeout = Duration::from_secs(3);
                    let mut problems = Vec::new();
                    match tokio::time::timeout(timeout, database.ping()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => problems.push(format!("database: {error}")),
                        Err(_) => problems.push("database: time-out".to_owned()),
                    }
                    if let Err(error) = producer.check_reachable(timeout).await {
                        problems.push(format!("kafka: {error}"));
                    }
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        Err(problems.join("; "))
                    }
                })
            });
            Some(
                crate::http::serve_with_health(
                    address,
                    Arc::new(registry),
                    health,
                    shutdown.clone(),
                )
                .await
                .map_err(|source| PublishError::Metrics { address, source })?,
            )
        }
        None => None,
    };
    let result = match mode {
        Mode::Poll => run_pollers(loaded, database, producer, metrics, shutdown.clone()).await,
        Mode::Outbox => {
            let relay = outbox::Relay::new(config, database, producer, metrics)?;
            relay.run(shutdown.clone()).await
        }
    };
    // stop the endpoint whatever happened
    shutdown.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    result
}

async fn run_pollers(
    loaded: &LoadedConfig,
    database: crate::db::Database,
    producer: Arc<IdProducer>,
    metrics: Arc<PublishMetrics>,
    shutdown: CancellationToken,
) -> Result<(), PublishError> {
    let config = &loaded.config;
    let publish = config.publish.as_ref().ok_or(PublishError::NotConfigured(
        "the config file has no publish: section",
    ))?;
    let checkpoint = Arc::new(
        match (&publish.checkpoint.file, &publish.checkpoint.table) {
            (_, Some(table)) => CheckpointStore::table(database.clone(), table).await?,
            (Some(path), None) => CheckpointStore::file(path).await?,
            (None, None) => {
                return Err(PublishError::NotConfigured(
                    "publish.checkpoint needs file or table",
                ));
            }
        },
    );
    let settings = PollSettings::from_config(publish, config.retry);
    let mut tasks = JoinSet::new();
    for target in poll_sql::targets(config) {
        let poller = Poller::connect(database.clone(), target).await?;
        let poll_loop = PollLoop {
            poller,
            producer: producer.clone(),
            checkpoint: checkpoint.clone(),
            metrics: metrics.clone(),
            settings: settings.clone(),
        };
        let _ = tasks.spawn(poll_loop.run(shutdown.clone()));
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined
            .map_err(|error| PublishError::Task(error.to_string()))
            .and_then(|result| result);
        if let Err(error) = outcome {
            tracing::error!(error = %error, "poller failed; stopping the others");
            shutdown.cancel();
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}
