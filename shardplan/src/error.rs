//! Typed errors of the planning library.
//!
//! One enum per boundary: [`PlanError`] for planning input and arithmetic,
//! [`ClusterDataError`] for cluster state that `check` hands to the pure
//! analysis. No I/O errors live here: the binary wraps those with anyhow.

use thiserror::Error;

/// An invalid planning input, or a plan that cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// A byte size that does not parse (`50gb`, `1.5tb` and `1024` do).
    #[error("invalid byte size {0:?}: expected a number with a unit such as 50gb")]
    InvalidByteSize(String),
    /// A field that is missing or out of range; `reason` names the value.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The YAML field (or flag) at fault, e.g. `hot.nodes`.
        field: &'static str,
        /// What is wrong with it, including the value.
        reason: String,
    },
    /// Settings of one growing index (`growing`, e.g. `expected_size`) and
    /// of daily indexes (`time_based`, e.g. `daily_ingest`) given together.
    #[error("{growing} (one growing index) and {time_based} (daily indexes) do not go together")]
    MixedWorkload {
        /// The growing-index setting, e.g. `expected_docs`.
        growing: &'static str,
        /// The daily-index setting, e.g. `hot_days`.
        time_based: &'static str,
    },
    /// A growing-index setting (`field`, e.g. `expected_docs`) given without
    /// `expected_size` while the base workload is daily indexes.
    #[error("{field} needs expected_size (one growing index)")]
    NeedsGrowingWorkload {
        /// The setting, e.g. `expected_docs`.
        field: &'static str,
    },
    /// Several of the above, all found in one run.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<PlanError>),
    /// A count or size does not fit in 64 bits (absurd node counts, days or
    /// sizes); `what` names it.
    #[error("{what} overflows: the node counts, days or sizes are too large")]
    Overflow {
        /// What overflowed, e.g. `the primary count`.
        what: &'static str,
    },
}

impl PlanError {
    /// Shorthand for [`PlanError::InvalidInput`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            field,
            reason: reason.into(),
        }
    }
}

/// Cluster state that cannot be understood (a `_cat` row without a field,
/// a number that does not parse).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClusterDataError {
    /// A response did not have the expected shape.
    #[error("unexpected {endpoint} response: {reason}")]
    BadResponse {
        /// The endpoint, e.g. `_cat/shards`.
        endpoint: &'static str,
        /// What was wrong, with the offending value.
        reason: String,
    },
}

/// A chart that could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("failed to draw the chart: {0}")]
pub struct ChartError(pub String);
