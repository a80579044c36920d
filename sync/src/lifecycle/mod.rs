//! Index lifecycle: versioned indexes behind an alias, created from the
//! configured definition, rebuilt without downtime (dual writes, backfill,
//! verification, one atomic alias swap), rolled back and pruned.
//!
//! - pure: [`names`], [`family`] (what exists, what to do next),
//!   [`mapping_diff`] (configured vs live mappings);
//! - adapters: [`admin`] (index and alias calls), [`targets`] (what the
//!   writer dual-writes to);
//! - engine: [`commands`] (the `esync index` commands).

pub mod admin;
pub mod commands;
pub mod family;
pub mod mapping_diff;
pub mod names;
pub mod targets;
