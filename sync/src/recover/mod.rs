//! Recovery, the engine of `esync-recover` and of `esync index rebuild`:
//! identifier-range backfill and DB-vs-index verification.
//!
//! Recovery walks primary-key ranges, never time ranges: time ranges are
//! skewed and miss rows whose timestamps were written late. Every write goes
//! through the esync [`crate::writer::Writer`] with the row's external
//! version, so recovering while the daemon streams can never regress a
//! document.
//!
//! Layers:
//! - pure core, no I/O: [`range`] (ids and chunk planning), [`rate`] (token
//!   bucket and adaptive slow-down), [`control`] (operator commands, control
//!   records, the throttle state: limit, pause and why), [`checkpoint`]
//!   (plan, done chunks, start/resume decisions), [`diff`] (verify's
//!   missing/extra/stale), [`progress`] (snapshots, progress lines, summary);
//! - adapters: [`source`] (keyset pages of ids), [`store`] (checkpoint and
//!   control record, file or table), [`lease`] (chunk leases for
//!   `--coordinate db`), [`index`] (the index side of verify);
//! - engines: [`plan`], [`run`], [`verify`], [`ctl`], wired by [`connect`];
//!   [`metrics`] holds the run's Prometheus metrics (`esync_recover_*`).

pub mod checkpoint;
pub mod connect;
pub mod control;
pub mod ctl;
pub mod diff;
pub mod index;
pub mod lease;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod range;
pub mod rate;
pub mod run;
pub mod source;
pub mod store;
pub mod verify;
