//! esync-recover: identifier-range backfill and DB-vs-index verification.
//!
//! The engine lives in the esync library ([`esync::recover`]) since
//! `esync index rebuild` backfills and verifies with it too; this crate is
//! the `esync-recover` command line over it, and re-exports the engine's
//! modules under their old paths.

pub use esync::recover::*;
