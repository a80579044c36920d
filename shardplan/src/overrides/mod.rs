//! Settings that override a planning input: the one place that says how the
//! `shardplan plan` flags (and the opsbot `/plan` chat keys, which are the
//! same settings) change a [`PlanInput`].
//!
//! [`PlanOverrides`] is plain data: every field is optional and `None` keeps
//! the base value. [`PlanOverrides::apply`] lays the given values over a base
//! input (the YAML file, or the defaults) and validates the result. The rules
//! it carries:
//!
//! - `expected_size` selects one growing index (keeping the base's
//!   `expected_docs` unless `expected_docs` is given too);
//! - `expected_docs` alone needs a growing base workload;
//! - any daily-index setting (`daily_ingest`, `daily_docs`, `*_days`) selects
//!   daily indexes, starting from the defaults when the base was growing;
//! - growing-index and daily-index settings do not go together;
//! - `heap` sets the heap of every tier.
//!
//! [`keys`] is the table of the keys that set these fields.

pub mod keys;

use crate::error::PlanError;
use crate::input::{PlanInput, TierRouting, Workload};
use crate::units::ByteSize;
use keys::{OVERRIDE_KEYS, WorkloadGroup};

/// Optional values that override a [`PlanInput`]; `None` keeps the base value.
///
/// Field names are the `shardplan plan` flags with `_` for `-`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanOverrides {
    /// Base name of the template and policy.
    pub name: Option<String>,
    /// Hot data nodes.
    pub hot_nodes: Option<u32>,
    /// Warm data nodes.
    pub warm_nodes: Option<u32>,
    /// Cold data nodes.
    pub cold_nodes: Option<u32>,
    /// Disk per hot node.
    pub hot_disk: Option<ByteSize>,
    /// Disk per warm node.
    pub warm_disk: Option<ByteSize>,
    /// Disk per cold node.
    pub cold_disk: Option<ByteSize>,
    /// Heap per node, all tiers.
    pub heap: Option<ByteSize>,
    /// Primary data indexed per day (daily indexes).
    pub daily_ingest: Option<ByteSize>,
    /// Documents indexed per day (daily indexes).
    pub daily_docs: Option<u64>,
    /// Days on the hot tier (daily indexes).
    pub hot_days: Option<u32>,
    /// Days on the warm tier (daily indexes).
    pub warm_days: Option<u32>,
    /// Days on the cold tier (daily indexes).
    pub cold_days: Option<u32>,
    /// Expected primary size of one growing index.
    pub expected_size: Option<ByteSize>,
    /// Expected documents of the growing index.
    pub expected_docs: Option<u64>,
    /// Replicas per primary.
    pub replicas: Option<u32>,
    /// Largest primary shard wanted.
    pub max_shard_size: Option<ByteSize>,
    /// Smallest primary shard before a warning.
    pub min_shard_size: Option<ByteSize>,
    /// Most documents per shard.
    pub max_docs_per_shard: Option<u64>,
    /// Growth multiplier of the hot-node rule.
    pub growth_factor: Option<u32>,
    /// Primaries after the warm-phase shrink.
    pub shrink_to: Option<u32>,
    /// How indexes move between tiers.
    pub tier_routing: Option<TierRouting>,
    /// Node attribute that names the tier.
    pub tier_attribute: Option<String>,
    /// Whether the template creates a data stream.
    pub data_stream: Option<bool>,
    /// `cluster.max_shards_per_node`.
    pub max_shards_per_node: Option<u32>,
    /// Heap guidance in shards per GB of heap.
    pub shards_per_heap_gb: Option<u32>,
    /// Disk reserved for merges, fraction of data.
    pub merge_headroom: Option<f64>,
    /// Low disk watermark, fraction.
    pub watermark_low: Option<f64>,
    /// High disk watermark, fraction.
    pub watermark_high: Option<f64>,
}

impl PlanOverrides {
    /// The first key of `group` given, in table order.
    fn first_given(&mut self, group: WorkloadGroup) -> Option<&'static str> {
        OVERRIDE_KEYS
            .iter()
            .find(|key| key.workload == Some(group) && key.is_given(self))
            .map(|key| key.name)
    }

    /// Lays these values over `base` (the YAML input or
    /// [`PlanInput::default`]) and validates the result.
    ///
    /// # Errors
    ///
    /// [`PlanError::MixedWorkload`] when growing-index and daily-index
    /// settings are both given, [`PlanError::NeedsGrowingWorkload`] for
    /// `expected_docs` without `expected_size` on a daily-index base, and
    /// whatever [`PlanInput::validate`] finds.
    pub fn apply(mut self, base: PlanInput) -> Result<PlanInput, PlanError> {
        let time_setting = self.first_given(WorkloadGroup::Daily);
        if let (Some(growing), Some(time_based)) =
            (self.first_given(WorkloadGroup::Growing), time_setting)
        {
            return Err(PlanError::MixedWorkload {
                growing,
                time_based,
            });
        }
        let mut input = base;
        if let Some(name) = self.name {
            input.name = name;
        }
        set(&mut input.hot.nodes, self.hot_nodes);
        set(&mut input.warm.nodes, self.warm_nodes);
        set(&mut input.cold.nodes, self.cold_nodes);
        set(&mut input.hot.disk, self.hot_disk);
        set(&mut input.warm.disk, self.warm_disk);
        set(&mut input.cold.disk, self.cold_disk);
        if let Some(heap) = self.heap {
            input.hot.heap = heap;
            input.warm.heap = heap;
            input.cold.heap = heap;
        }
        if let Some(expected_size) = self.expected_size {
            let base_docs = match input.workload {
                Workload::Growing { expected_docs, .. } => expected_docs,
                Workload::TimeBased { .. } => None,
            };
            input.workload = Workload::Growing {
                expected_size,
                expected_docs: self.expected_docs.or(base_docs),
            };
        } else if let Some(docs) = self.expected_docs {
            match &mut input.workload {
                Workload::Growing { expected_docs, .. } => *expected_docs = Some(docs),
                Workload::TimeBased { .. } => {
                    return Err(PlanError::NeedsGrowingWorkload {
                        field: "expected_docs",
                    });
                }
            }
        }
        if time_setting.is_some() {
            if matches!(input.workload, Workload::Growing { .. }) {
                input.workload = Workload::default();
            }
            if let Workload::TimeBased {
                daily_ingest,
                daily_docs,
                hot_days,
                warm_days,
                cold_days,
            } = &mut input.workload
            {
                set(daily_ingest, self.daily_ingest);
                if let Some(docs) = self.daily_docs {
                    *daily_docs = Some(docs);
                }
                set(hot_days, self.hot_days);
                set(warm_days, self.warm_days);
                set(cold_days, self.cold_days);
            }
        }
        set(&mut input.replicas, self.replicas);
        set(&mut input.max_shard_size, self.max_shard_size);
        set(&mut input.min_shard_size, self.min_shard_size);
        set(&mut input.max_docs_per_shard, self.max_docs_per_shard);
        set(&mut input.growth_factor, self.growth_factor);
        if let Some(target) = self.shrink_to {
            input.shrink_to = Some(target);
        }
        set(&mut input.tier_routing, self.tier_routing);
        if let Some(attribute) = self.tier_attribute {
            input.tier_attribute = attribute;
        }
        set(&mut input.data_stream, self.data_stream);
        set(&mut input.max_shards_per_node, self.max_shards_per_node);
        set(&mut input.shards_per_heap_gb, self.shards_per_heap_gb);
        set(&mut input.merge_headroom, self.merge_headroom);
        set(&mut input.watermark_low, self.watermark_low);
        set(&mut input.watermark_high, self.watermark_high);
        input.validate()?;
        Ok(input)
    }
}

/// Replaces `target` when a value is given.
fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time_based() -> PlanOverrides {
        PlanOverrides {
            hot_nodes: Some(3),
            daily_ingest: Some(ByteSize::gb(300)),
            ..PlanOverrides::default()
        }
    }

    #[test]
    fn no_overrides_keep_a_valid_base() {
        let base = time_based().apply(PlanInput::default()).expect("valid");
        assert_eq!(PlanOverrides::default().apply(base.clone()), Ok(base));
    }

    #[test]
    fn expected_size_selects_one_growing_index_keeping_the_base_docs() {
        let base = PlanOverrides {
            hot_nodes: Some(3),
            expected_size: Some(ByteSize::gb(100)),
            expected_docs: Some(7),
            ..PlanOverrides::default()
        }
        .apply(PlanInput::default())
        .expect("valid");
        let input = PlanOverrides {
            expected_size: Some(ByteSize::gb(200)),
            ..PlanOverrides::default()
        }
        .apply(base.clone())
        .expect("valid");
        assert_eq!(
            input.workload,
            Workload::Growing {
                expected_size: ByteSize::gb(200),
                expected_docs: Some(7)
            }
        );
        // expected_docs alone updates a growing base ...
        let input = PlanOverrides {
            expected_docs: Some(9),
            ..PlanOverrides::default()
        }
        .apply(base.clone())
        .expect("valid");
        assert_eq!(input.index_docs(), Some(9));
        // ... and daily-index settings replace it with daily indexes.
        let input = PlanOverrides {
            daily_ingest: Some(ByteSize::gb(10)),
            ..PlanOverrides::default()
        }
        .apply(base)
        .expect("valid");
        assert!(matches!(input.workload, Workload::TimeBased { .. }));
    }

    #[test]
    fn workload_kinds_do_not_mix() {
        let mixed = PlanOverrides {
            expected_docs: Some(10),
            hot_days: Some(3),
            ..time_based()
        };
        assert_eq!(
            mixed.apply(PlanInput::default()),
            Err(PlanError::MixedWorkload {
                growing: "expected_docs",
                time_based: "daily_ingest"
            })
        );
        let docs_only = PlanOverrides {
            hot_nodes: Some(3),
            expected_docs: Some(10),
            ..PlanOverrides::default()
        };
        assert_eq!(
            docs_only.apply(PlanInput::default()),
            Err(PlanError::NeedsGrowingWorkload {
                field: "expected_docs"
            })
        );
    }

    #[test]
    fn heap_sets_every_tier_and_validation_runs() {
        let input = PlanOverrides {
            heap: Some(ByteSize::gb(16)),
            data_stream: Some(true),
            ..time_based()
        }
        .apply(PlanInput::default())
        .expect("valid");
        assert!(input.data_stream);
        assert_eq!(input.hot.heap, ByteSize::gb(16));
        assert_eq!(input.warm.heap, ByteSize::gb(16));
        assert_eq!(input.cold.heap, ByteSize::gb(16));
        let error = PlanOverrides {
            hot_nodes: Some(0),
            ..time_based()
        }
        .apply(PlanInput::default())
        .expect_err("no hot nodes");
        assert!(matches!(
            error,
            PlanError::InvalidInput {
                field: "hot.nodes",
                ..
            }
        ));
    }
}
