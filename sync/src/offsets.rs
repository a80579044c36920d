//! Which Kafka offsets may be committed.
//!
//! Pure. Every consumed message is registered with the number of ids it
//! carries; workers acknowledge ids as they finish. A partition's commit
//! position is the lowest offset still pending (or one past the highest offset
//! seen when nothing is pending), so a crash at any moment replays every message
//! whose ids were not all handled, and nothing else.
//!
//! A partition that is revoked in a rebalance is forgotten; acknowledgements
//! that arrive later carry the old generation and are ignored, so they can never
//! move a later owner's position.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Identifies one consumed message in the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The assignment generation the message was consumed in.
    pub generation: u64,
    /// The message offset.
    pub offset: i64,
}

#[derive(Debug)]
struct PartitionState {
    generation: u64,
    /// offset -> ids not yet acknowledged
    pending: BTreeMap<i64, u32>,
    /// one past the highest offset registered
    next_offset: i64,
    committed: Option<i64>,
}

impl PartitionState {
    fn commit_position(&self) -> i64 {
        self.pending
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_offset)
    }
}

/// A commit position that moved since the last commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPosition {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset of the next message to consume (what Kafka stores).
    pub offset: i64,
}

/// Tracks pending messages per partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<(Arc<str>, i32), PartitionState>,
    assigned: HashSet<(Arc<str>, i32)>,
    next_generation: u64,
    assignment_epoch: u64,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    /// Records that the group assigned `partition` of `topic` to this consumer.
    pub fn assign(&mut self, topic: &str, partition: i32) {
        self.assigned.insert((Arc::from(topic), partition));
        self.assignment_epoch += 1;
    }

    /// Changes whenever the assignment changes. A message buffered under an
    /// older epoch must be dropped, not registered: after a revoke and a
    /// re-assign the partition restarts from its committed offset, and
    /// registering a later buffered message first would let the position jump
    /// over the messages before it.
    pub fn assignment_epoch(&self) -> u64 {
        self.assignment_epoch
    }

    /// Registers a consumed message carrying `ids` ids (0 for a message already
    /// handled, e.g. dead-lettered) and returns its receipt; `None` when the
    /// partition is not assigned to this consumer any more (a message that was
    /// buffered across a rebalance): its new owner handles it, and committing
    /// it here could move that owner's position past unprocessed messages.
    pub fn register(
        &mut self,
        topic: &Arc<str>,
        partition: i32,
        offset: i64,
        ids: u32,
    ) -> Option<Receipt> {
        if !self.assigned.contains(&(topic.clone(), partition)) {
            return None;
        }
        let next_generation = &mut self.next_generation;
        let state = self
            .partitions
            .entry((topic.clone(), partition))
            .or_insert_with(|| {
                *next_generation += 1;
                PartitionState {
                    generation: *next_generation,
                    pending: BTreeMap::new(),
                    next_offset: offset,
                    committed: None,
                }
            });
        if ids > 0 {
            *state.pending.entry(offset).or_insert(0) += ids;
        }
        state.next_offset = state.next_offset.max(offset + 1);
        Some(Receipt {
            topic: topic.clone(),
            partition,
            generation: state.generation,
            offset,
        })
    }

    /// Acknowledges one id of the message behind `receipt`. Stale receipts
    /// (from a revoked assignment) are ignored.
    pub fn acknowledge(&mut self, receipt: &Receipt) {
        let Some(state) = self
            .partitions
            .get_mut(&(receipt.topic.clone(), receipt.partition))
        else {
            return;
        };
        if state.generation != receipt.generation {
            return;
        }
        if let Some(remaining) = state.pending.get_mut(&receipt.offset) {
            *remaining -= 1;
            if *remaining == 0 {
                state.pending.remove(&receipt.offset);
            }
        }
    }

    /// Positions that advanced past the last recorded commit.
    pub fn committable(&self) -> Vec<CommitPosition> {
        self.partitions
            .iter()
            .filter_map(|((topic, partition), state)| {
                let offset = state.commit_position();
                (state.committed.is_none_or(|committed| offset > committed)).then(|| {
                    CommitPosition {
                        topic: topic.clone(),
                        partition: *partition,
                        offset,
                    }
                })
            })
            .collect()
    }

    /// Records that `position` was committed.
    pub fn mark_committed(&mut self, position: &CommitPosition) {
        if let Some(state) = self
            .partitions
            .get_mut(&(position.topic.clone(), position.partition))
        {
            state.committed = Some(
                state
                    .committed
                    .map_or(position.offset, |done| done.max(position.offset)),
            );
        }
    }

    /// Forgets a revoked partition and returns its final commit position, if it
    /// moved since the last commit.
    pub fn revoke(&mut self, topic: &str, partition: i32) -> Option<CommitPosition> {
        let key = (Arc::<str>::from(topic), partition);
        self.assigned.remove(&key);
        self.assignment_epoch += 1;
        let state = self.partitions.remove(&key)?;
        let offset = state.commit_position();
        state
            .committed
            .is_none_or(|committed| offset > committed)
            .then_some(CommitPosition {
                topic: key.0,
                partition,
                offset,
            })
    }

    /// Messages with ids still outstanding, over all partitions.
    pub fn pending_messages(&self) -> usize {
        self.partitions
            .values()
            .map(|state| state.pending.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> Arc<str> {
        Arc::from("orders")
    }

    fn tracker() -> OffsetTracker {
        let mut tracker = OffsetTracker::new();
        for partition in 0..4 {
            tracker.assign("orders", partition);
        }
        tracker
    }

    fn positions(tracker: &OffsetTracker) -> Vec<(i32, i64)> {
        let mut found: Vec<(i32, i64)> = tracker
            .committable()
            .iter()
            .map(|p| (p.partition, p.offset))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn commits_only_up_to_the_first_pending_message() {
        let mut tracker = tracker();
        let first = tracker.register(&topic(), 0, 10, 1).unwrap();
        let second = tracker.register(&topic(), 0, 11, 2).unwrap();
        let third = tracker.register(&topic(), 0, 12, 1).unwrap();
        assert_eq!(positions(&tracker), vec![(0, 10)]);
        // out-of-order completion: the later messages finish first
        tracker.acknowledge(&third);
        tracker.acknowledge(&second);
        assert_eq!(positions(&tracker), vec![(0, 10)]);
        tracker.acknowledge(&first);
        assert_eq!(
            positions(&tracker),
            vec![(0, 11)],
            "message 11 still has one id pending"
        );
        tracker.acknowledge(&second);
        assert_eq!(positions(&tracker), vec![(0, 13)]);
        assert_eq!(tracker.pending_messages(), 0);
    }

    #[test]
    fn messages_without_ids_do_not_hold_the_position() {
        let mut tracker = tracker();
        tracker.register(&topic(), 3, 5, 0).unwrap();
        tracker.register(&topic(), 3, 6, 0).unwrap();
        assert_eq!(positions(&tracker), vec![(3, 7)]);
    }

    #[test]
    fn committed_positions_are_not_repeated_and_never_go_back() {
        let mut tracker = tracker();
        let receipt = tracker.register(&topic(), 0, 0, 1).unwrap();
        tracker.acknowledge(&receipt);
        let position = tracker.committable().pop().unwrap();
        tracker.mark_committed(&position);
        assert!(tracker.committable().is_empty());
        tracker.mark_committed(&CommitPosition {
            topic: topic(),
            partition: 0,
            offset: 0,
        });
        tracker.register(&topic(), 0, 1, 0).unwrap();
        assert_eq!(positions(&tracker), vec![(0, 2)]);
    }

    #[test]
    fn revoked_partitions_ignore_late_acknowledgements() {
        let mut tracker = tracker();
        let done = tracker.register(&topic(), 1, 100, 1).unwrap();
        let in_flight = tracker.register(&topic(), 1, 101, 1).unwrap();
        tracker.acknowledge(&done);
        let final_position = tracker.revoke("orders", 1).unwrap();
        assert_eq!(
            final_position.offset, 101,
            "only what is done is committed on revoke"
        );
        assert_eq!(
            tracker.register(&topic(), 1, 102, 1),
            None,
            "not ours any more"
        );
        // reassigned later: a fresh generation starting where the group committed
        tracker.assign("orders", 1);
        let again = tracker.register(&topic(), 1, 101, 1).unwrap();
        tracker.acknowledge(&in_flight); // from the old generation: ignored
        assert_eq!(positions(&tracker), vec![(1, 101)]);
        tracker.acknowledge(&again);
        assert_eq!(positions(&tracker), vec![(1, 102)]);
        assert_eq!(tracker.revoke("unknown", 0), None);
    }

    #[test]
    fn assignment_changes_move_the_epoch() {
        let mut tracker = tracker();
        let before = tracker.assignment_epoch();
        tracker.revoke("orders", 0);
        let revoked = tracker.assignment_epoch();
        tracker.assign("orders", 0);
        assert!(before < revoked && revoked < tracker.assignment_epoch());
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = tracker();
        let slow = tracker.register(&topic(), 0, 0, 1).unwrap();
        let fast = tracker.register(&topic(), 1, 0, 1).unwrap();
        tracker.acknowledge(&fast);
        assert_eq!(positions(&tracker), vec![(0, 0), (1, 1)]);
        tracker.acknowledge(&slow);
        assert_eq!(positions(&tracker), vec![(0, 1), (1, 1)]);
    }
}
