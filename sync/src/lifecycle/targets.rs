//! Which indexes are being rebuilt, as the writer must know them: every
//! batch re-read after `<alias>.next` appeared is also written to the index
//! it names.
//!
//! Why this is enough: the rebuild starts its backfill
//! [`ANNOUNCEMENT_SETTLE`] after announcing, and a writer checks, after each
//! re-read, that what it knows is at most [`MAX_AGE`] old (asking again when
//! it is older, and waiting while it cannot ask). A row state read after the
//! backfill read the row was therefore read with the announcement known, and
//! reaches the new index too; states read earlier are older than what the
//! backfill wrote there.

use super::names::next_alias;
use crate::es::{EsClient, EsError};
use elasticsearch::http::Method;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The oldest answer a writer uses after a re-read.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// How long a rebuild waits after announcing before it backfills: every
/// writer has learnt of the announcement by then (`MAX_AGE` plus a margin for
/// the request itself and clock rates).
pub const ANNOUNCEMENT_SETTLE: Duration = Duration::from_secs(5);

/// Per mapping: the concrete index being built, if any.
pub type NextIndexes = Arc<Vec<Option<Arc<str>>>>;

/// The writer's view of the announcements, refreshed when older than [`MAX_AGE`].
#[derive(Debug)]
pub struct DualWriteTargets {
    /// Per mapping: the announcing alias to look up.
    aliases: Vec<String>,
    known: tokio::sync::Mutex<Option<(Instant, NextIndexes)>>,
}

impl DualWriteTargets {
    /// Targets for mappings writing to `indexes` (their aliases).
    pub fn new<'a>(indexes: impl IntoIterator<Item = &'a str>) -> DualWriteTargets {
        DualWriteTargets {
            aliases: indexes.into_iter().map(next_alias).collect(),
            known: tokio::sync::Mutex::new(None),
        }
    }

    /// What is being built, as of at most [`MAX_AGE`] ago.
    pub async fn current(&self, es: &EsClient) -> Result<NextIndexes, EsError> {
        let mut known = self.known.lock().await;
        if let Some((at, next)) = known.as_ref()
            && at.elapsed() <= MAX_AGE
        {
            return Ok(next.clone());
        }
        // the time of asking, not of the answer: the answer is at least this fresh
        let asked_at = Instant::now();
        let mut next = Vec::with_capacity(self.aliases.len());
        for alias in &self.aliases {
            next.push(lookup(es, alias).await?);
        }
        let next: NextIndexes = Arc::new(next);
        *known = Some((asked_at, next.clone()));
        Ok(next)
    }
}

/// The index `alias` points at, `None` when it does not exist.
pub async fn lookup(es: &EsClient, alias: &str) -> Result<Option<Arc<str>>, EsError> {
    let path = format!("/_alias/{alias}");
    let response = es.request(Method::Get, &path, None).await?;
    match response.status {
        404 => Ok(None),
        200 => Ok(response
            .json()
            .as_object()
            .and_then(|indexes| indexes.keys().next())
            .map(|index| Arc::from(index.as_str()))),
        status => Err(EsError::Status {
            path,
            status,
            body: crate::id::truncate_for_message(&String::from_utf8_lossy(&response.body)),
        }),
    }
}
