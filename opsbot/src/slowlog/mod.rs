//! Slow-log reports: parse, fingerprint, aggregate, render.
//!
//! - [`parse`]: one line → one entry (pure);
//! - [`fingerprint`]: query shapes with literals taken out (pure);
//! - [`request`]: shard lines grouped into requests (pure);
//! - [`digest`]: aggregation per fingerprint, by request or by shard,
//!   filters (pure);
//! - [`report`]: text, Markdown and JSON renderings (pure);
//! - [`chart`]: the PNG chart (pure: report in, bytes out);
//! - [`source`]: reading files, plain or gzip (I/O).

pub mod chart;
pub mod digest;
pub mod fingerprint;
pub mod parse;
pub mod report;
pub mod request;
pub mod source;

pub use digest::{Digest, DigestFilter, DigestReport, FingerprintStats, GroupBy, Grouping};
pub use parse::{SlowEntry, SlowLogKind};
