//! Plumbing every esync tool (`esync`, `esync-recover`, `shardplan`,
//! `opsbot`) needs the same way, written once.
//!
//! Pure (no I/O):
//! - [`secret`]: the redacting [`secret::Secret`] newtype and URL redaction;
//! - [`es::credentials`]: which Elasticsearch credentials are used, in one
//!   documented order.
//!
//! Adapters:
//! - [`es::client`]: builds the Elasticsearch transport (URLs, credentials,
//!   time-out, TLS);
//! - [`telemetry`]: the `tracing` subscriber (`RUST_LOG`, `--log-format`);
//! - [`shutdown`]: waiting for SIGTERM or SIGINT.
//!
//! Must stay light: nothing here may depend on rdkafka or sqlx.

pub mod es;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
