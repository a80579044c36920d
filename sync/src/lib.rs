//! esync: keeps Elasticsearch indexes equal to database tables.
//!
//! Kafka carries only the ids of changed rows; esync re-reads the latest rows
//! and writes them with external versions, so reordering, duplicates and
//! replays can never put an older state over a newer one.
//!
//! Layers:
//! - pure core, no I/O: [`id`], [`decode`], [`batch`], [`coalesce`],
//!   [`catch_up`], [`document`], [`bulk`], [`dlq`], [`offsets`], [`retry`], [`config`]
//!   (read with `esync_common::yaml_config`), [`write_health`], [`pg_ids`],
//!   [`finding`], [`repeat_filter`], [`sql`] (SQL dialects, quoting, bind
//!   values), `publish::{poll_sql, watermark}`, `lifecycle::{names, family,
//!   mapping_diff}`;
//! - adapters, one per system: [`db`] (sqlx: the one SQL execution layer
//!   for the three databases, used by publish and `esync-recover` too), [`es`] (elasticsearch),
//!   [`kafka`] (rdkafka, its log through [`kafka_log`]);
//! - the engine wiring them: [`writer`] (re-read + versioned write of a set of
//!   ids, reused by `esync-recover`), [`dead_letter`] (the dead-letter sink,
//!   also reused), [`daemon`] (the Kafka consumer loop);
//! - index lifecycle: [`lifecycle`] (versioned indexes behind aliases,
//!   zero-downtime rebuilds; the writer dual-writes through
//!   `lifecycle::targets`);
//! - recovery: [`recover`] (id-range backfill and verification, the engine
//!   of `esync-recover` and of index rebuilds);
//! - getting ids into Kafka without CDC: [`publish`] (incremental-column
//!   poller and outbox relay; see `PUBLISH.md`);
//! - shared leaves: [`cancel`] (sleeping that a shutdown cuts short);
//! - operations: [`metrics`], [`http`], [`check`], and the
//!   dead-letter tooling: [`dlq`] (pure: letters, filters, summary, replay
//!   plan) with [`dlq_command`] (reads the topic, produces replays).
//!
//! Plumbing shared with the other tools (secrets, the Elasticsearch client
//! builder, logging, shutdown signals) lives in `esync-common`; [`secret`]
//! is re-exported from there.

pub mod batch;
pub mod bulk;
pub mod cancel;
pub mod catch_up;
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
pub mod es;
pub mod finding;
pub mod http;
pub mod id;
pub mod kafka;
pub mod kafka_log;
pub mod lifecycle;
pub mod lock;
pub mod metrics;
pub mod offsets;
pub mod pg_ids;
pub mod publish;
pub mod recover;
pub mod repeat_filter;
pub mod retry;
pub use esync_common::secret;
pub mod sql;
pub mod write_health;
pub mod writer;

/// Shared with the other tools (see `esync-common`).
pub use esync_common::{error_chain, yaml_config};
