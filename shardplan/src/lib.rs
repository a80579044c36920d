//! shardplan: shard planning for hot/warm Elasticsearch clusters.
//!
//! The library is the pure core: plain data in, plain data out, no I/O, no
//! clock, no environment. The `shardplan` binary reads files and talks to
//! clusters, then hands plain data to these modules:
//!
//! - [`units`]: byte sizes as Elasticsearch writes them;
//! - [`rules`]: divisibility, LCM and shrink-factor arithmetic;
//! - [`input`]: the planning input (YAML) with its defaults and validation;
//! - [`overrides`]: flag-style overrides of the planning input and the one
//!   table of their keys (`shardplan plan` flags, opsbot `/plan` keys);
//! - [`plan`]: primary count with reasons, tier loads, checks and suggestions;
//! - [`template`]: index template and ILM policy JSON;
//! - [`simulate`]: day-by-day shard placement over the retention;
//! - [`cluster`]: analysis of a live cluster's `_cat` data for `check`;
//! - [`latency`]: latency percentiles and the stop rule for `measure`;
//! - [`chart`]: SVG charts rendered into a string;
//! - [`report`]: text tables.

pub mod chart;
pub mod cluster;
pub mod error;
pub mod input;
pub mod latency;
pub mod overrides;
pub mod plan;
pub mod report;
pub mod rules;
pub mod simulate;
pub mod template;
pub mod units;

/// Shared with the other tools (see `esync-common`).
pub use esync_common::{error_chain, yaml_config};

pub use error::{ClusterDataError, PlanError};
pub use input::{PlanInput, Tier, TierRouting, TierSpec, Workload};
pub use overrides::PlanOverrides;
pub use overrides::keys::{OVERRIDE_KEYS, OverrideKey, OverrideValue, ValueKind};
pub use plan::{Finding, Plan, Severity, plan_shards};
pub use units::ByteSize;
