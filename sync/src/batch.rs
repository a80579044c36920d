//! Accumulating ids into batches, with duplicates removed.
//!
//! Pure. A batch collects `(mapping, id, receipt)` triples; each distinct id of a
//! mapping is re-read and written once, while every receipt (the Kafka message
//! the id came from) is kept so the message can be acknowledged when the batch
//! is done.

use crate::id::Id;
use std::collections::HashSet;

/// Ids grouped by mapping, plus the receipts of the messages they came from.
#[derive(Debug)]
pub struct Batch<Receipt> {
    ids_by_mapping: Vec<HashSet<Id>>,
    receipts: Vec<Receipt>,
    distinct: usize,
}

impl<Receipt> Batch<Receipt> {
    /// An empty batch for `mappings` mappings.
    pub fn new(mappings: usize) -> Batch<Receipt> {
        Batch {
            ids_by_mapping: (0..mappings).map(|_| HashSet::new()).collect(),
            receipts: Vec::new(),
            distinct: 0,
        }
    }

    /// Adds an id; duplicates of an id already in the batch only add the receipt.
    pub fn push(&mut self, mapping: usize, id: Id, receipt: Receipt) {
        if self.ids_by_mapping[mapping].insert(id) {
            self.distinct += 1;
        }
        self.receipts.push(receipt);
    }

    /// Number of distinct ids (over all mappings).
    pub fn distinct_ids(&self) -> usize {
        self.distinct
    }

    /// Number of ids pushed, duplicates included.
    pub fn received_ids(&self) -> usize {
        self.receipts.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.receipts.is_empty()
    }

    /// Takes the contents, leaving the batch empty: the distinct ids per mapping
    /// (sorted, so database reads touch pages in order) and all receipts.
    pub fn take(&mut self) -> (Vec<Vec<Id>>, Vec<Receipt>) {
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
        (ids, std::mem::take(&mut self.receipts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupes_per_mapping_and_keeps_every_receipt() {
        let mut batch = Batch::new(2);
        assert!(batch.is_empty());
        batch.push(0, Id::Int(3), "m1");
        batch.push(0, Id::Int(1), "m2");
        batch.push(0, Id::Int(3), "m3");
        batch.push(1, Id::Int(3), "m4");
        assert_eq!(batch.distinct_ids(), 3);
        assert_eq!(batch.received_ids(), 4);
        let (ids, receipts) = batch.take();
        assert_eq!(ids, vec![vec![Id::Int(1), Id::Int(3)], vec![Id::Int(3)]]);
        assert_eq!(receipts, vec!["m1", "m2", "m3", "m4"]);
        assert!(batch.is_empty());
        assert_eq!(batch.distinct_ids(), 0);
    }
}
