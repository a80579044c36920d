//! Plumbing every esync tool (`esync`, `esync-recover`, `shardplan`,
//! `opsbot`) needs the same way, written once.
//!
//! Pure (no I/O):
//! - [`yaml_config`]: reading a YAML config with every problem reported in
//!   one run;
//! - [`error_chain`]: printing an error with each cause once;
//! - [`secret`]: the redacting [`secret::Secret`] newtype and URL redaction;
//! - [`es::credentials`]: which Elasticsearch credentials are used, in one
//!   documented order.
//!
//! Adapters:
//! - [`es::client`]: builds the Elasticsearch transport (URLs, credentials,
//!   time-out, TLS);
//! - [`telemetry`]: the `tracing` subscriber (`RUST_LOG`, `--log-format`);
//! - [`shutdown`]: waiting for SIGTERM or SIGINT;
//! - [`main_loop`]: the end of every binary's `main` (runtime, error
//!   printed once, exit code).
//!
//! Must stay light: nothing here may depend on rdkafka or sqlx.

pub mod error_chain;
pub mod es;
pub mod main_loop;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod yaml_config;
