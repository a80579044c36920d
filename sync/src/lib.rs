//! esync: keeps Elasticsearch indexes equal to database tables.
//!
//! Kafka carries only the ids of changed rows; esync re-reads the latest rows
//! and writes them with external versions, so reordering, duplicates and
//! replays can never put an older state over a newer one.
//!
//! Layers:
//! - pure core, no I/O: [`id`], [`decode`], [`batch`], [`coalesce`], [`document`], [`bulk`], [`dlq`],
//!   [`offsets`], [`retry`], [`config`] (with [`yaml_config`]), [`write_health`],
//!   [`pg_ids`], [`finding`], [`repeat_filter`], [`error_chain`], [`sql`]
//!   (SQL dialects, quoting, bind values), `publish::{poll_sql, watermark}`;
//! - adapters, one per system: [`db`] (sqlx: the one SQL execution layer
//!   for the three databases, used by publish and `esync-recover` too), [`es`] (elasticsearch),
//!   [`kafka`] (rdkafka, its log through [`kafka_log`]);
//! - the engine wiring them: [`writer`] (re-read + versioned write of a set of
//!   ids, reused by `esync-recover`), [`dead_letter`] (the dead-letter sink,
//!   also reused), [`daemon`] (the Kafka consumer loop);
//! - getting ids into Kafka without CDC: [`publish`] (incremental-column
//!   poller and outbox relay; see `PUBLISH.md`);
//! - shared leaves: [`cancel`] (sleeping that a shutdown cuts short);
//! - operations: [`metrics`], [`http`], [`telemetry`], [`check`], and the
//!   dead-letter tooling: [`dlq`] (pure: letters, filters, summary, replay
//!   plan) with [`dlq_command`] (reads the topic, produces replays).

pub mod batch;
pub mod bulk;
pub mod cancel;
pub mod check;
pub mod coalesce;
pub mod config;
pub mod daemon;
pub mod db;
pub mod dead_letter;
pub mod decode;
pub mod dlq;
pub mod dlq_command;
pub mod document;
pub mod durable_file;
pub mod error_chain;
pub mod es;
pub mod finding;
pub mod http;
pub mod id;
pub mod kafka;
pub mod kafka_log;
pub mod lock;
pub mod metrics;
pub mod offsets;
pub mod pg_ids;
pub mod publish;
pub mod repeat_filter;
pub mod retry;
pub mod secret;
pub mod sql;
pub mod telemetry;
pub mod write_health;
pub mod writer;
pub mod yaml_config;
