//! Accumulating ids into batches, with duplicates removed.
//!
//! Pure. A worker collects `(mapping, id)` pairs from its queue; each distinct
//! id of a mapping is re-read and written once. The receipts of the messages
//! the ids came from wait in [`crate::coalesce::Waiting`] until the re-read.

use crate::id::Id;
use std::collections::HashSet;

/// Distinct ids grouped by mapping.
#[derive(Debug)]
pub struct Batch {
    ids_by_mapping: Vec<HashSet<Id>>,
    distinct: usize,
}

impl Batch {
    /// An empty batch for `mappings` mappings.
    pub fn new(mappings: usize) -> Batch {
        Batch {
            ids_by_mapping: (0..mappings).map(|_| HashSet::new()).collect(),
            distinct: 0,
        }
    }

    /// Adds an id; an id already in the batch is not added again.
    pub fn push(&mut self, mapping: usize, id: Id) {
        if self.ids_by_mapping[mapping].insert(id) {
            self.distinct += 1;
        }
    }

    /// Number of distinct ids (over all mappings).
    pub fn distinct_ids(&self) -> usize {
        self.distinct
    }

    /// Takes the contents, leaving the batch empty: the distinct ids per mapping
    /// (sorted, so database reads touch pages in order).
    pub fn take(&mut self) -> Vec<Vec<Id>> {
        let ids = self
            .ids_by_mapping
            .iter_mut()
            .map(|set| {
                let mut ids: Vec<Id> = set.drain().collect();
                ids.sort_unstable();
                ids
            })
            .collect();
        self.distinct = 0;
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupes_per_mapping_and_sorts() {
        let mut batch = Batch::new(2);
        assert_eq!(batch.distinct_ids(), 0);
        batch.push(0, Id::Int(3));
        batch.push(0, Id::Int(1));
        batch.push(0, Id::Int(3));
        batch.push(1, Id::Int(3));
        assert_eq!(batch.distinct_ids(), 3);
        let ids = batch.take();
        assert_eq!(ids, vec![vec![Id::Int(1), Id::Int(3)], vec![Id::Int(3)]]);
        assert_eq!(batch.distinct_ids(), 0);
        assert_eq!(batch.take(), vec![Vec::<Id>::new(), Vec::new()]);
    }
}
