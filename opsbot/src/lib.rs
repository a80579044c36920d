//! opsbot: operations for Elasticsearch clusters, from a Telegram chat or the
//! shell: rolling restarts, slow-log reports, cluster status.
//!
//! Pure core (no I/O, no clock, no environment):
//! - [`cluster`]: the cluster model (health, nodes, shards, allocation) and
//!   which nodes a restart touches, in which order;
//! - [`roll`]: the rolling-restart state machine;
//! - [`slowlog`] (except `slowlog::source`): slow-log parsing, fingerprints,
//!   shard lines grouped into requests, digest, text/Markdown/JSON reports
//!   and the PNG chart;
//! - [`command`]: commands, chat parsing (`/plan` keys from shardplan),
//!   authorization, confirmations;
//! - [`format`]: text renderings of cluster data and restart plans.
//!
//! Adapters and glue:
//! - [`config`]: the YAML config and secrets from the environment;
//! - [`es`]: the Elasticsearch HTTP adapter;
//! - [`action`]: restart actions (shell, systemd over ssh, Ansible);
//! - [`store`]: persisted roll progress and the abort marker;
//! - [`driver`]: runs the state machine against the adapters;
//! - [`ops`]: the operations engine shared by both front ends;
//! - [`execute`]: the one command path of both front ends (command in,
//!   outcome out), counting commands in [`metrics`];
//! - [`metrics`]: the Prometheus metrics and their recording hooks (no I/O);
//! - [`metrics_http`]: the `/metrics` endpoint (`metrics.listen`);
//! - [`audit`]: the JSON-lines audit log;
//! - [`bot`]: the chat command handler (no network);
//! - [`telegram`]: the teloxide front end.
//!
//! Logging setup, the Elasticsearch client builder, secrets and signal
//! handling come from `esync-common`, shared with the other tools.

pub mod action;
pub mod audit;
pub mod bot;
pub mod cluster;
pub mod command;
pub mod config;
pub mod driver;
pub mod es;
pub mod execute;
pub mod format;
pub mod metrics;
pub mod metrics_http;
pub mod ops;
pub mod roll;
pub mod slowlog;
pub mod store;
pub mod telegram;

/// Shared with the other tools (see `esync-common`).
pub use esync_common::{error_chain, yaml_config};
