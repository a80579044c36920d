//! Which Kafka offsets may be committed.
//!
//! Pure. Every consumed message is registered with the number of ids it
//! carries; workers acknowledge ids as they finish. A partition's commit
//! position is the lowest offset still pending (or one past the highest offset
//! seen when nothing is pending), so a crash at any moment replays every message
//! whose ids were not all handled, and nothing else.
//!
//! Every assignment of a partition gets a new generation. A message is
//! registered only under the generation it was received in: one received
//! before its partition was revoked (or revoked and assigned again, which
//! restarts fetching at the committed offset) is refused, while messages of
//! partitions that stayed assigned keep their place, since Kafka will not
//! deliver them again. A revoked partition is forgotten; acknowledgements that
//! arrive later carry the old generation and are ignored, so they can never
//! move a later owner's position.

use std::collections::{BTreeMap, HashMap};
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
    /// Assigned partitions and the generation of their assignment.
    assigned: HashMap<(Arc<str>, i32), u64>,
    next_generation: u64,
    assignment_changes: u64,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    /// Records that the group assigned `partition` of `topic` to this
    /// consumer; fetching starts again at the committed offset.
    pub fn assign(&mut self, topic: &str, partition: i32) {
        let key = (Arc::from(topic), partition);
        self.next_generation += 1;
        self.assignment_changes += 1;
        // anything registered under an earlier assignment is replayed from the commit
        self.partitions.remove(&key);
        self.assigned.insert(key, self.next_generation);
    }

    /// The generation of the current assignment of `partition`, `None` when
    /// it is not assigned to this consumer. Messages are tagged with it when
    /// they are received, before they may wait in a buffer.
    pub fn generation(&self, topic: &str, partition: i32) -> Option<u64> {
        self.assigned
            .get(&(Arc::<str>::from(topic), partition))
            .copied()
    }

    /// Changes whenever any partition is assigned or revoked.
    pub fn assignment_changes(&self) -> u64 {
        self.assignment_changes
    }

    /// Registers a consumed message carrying `ids` ids (0 for a message already
    /// handled, e.g. dead-lettered) and returns its receipt. `generation` is the
    /// partition's generation when the message was received; `None` when the
    /// partition was revoked since (its new owner, or this consumer after a new
    /// assignment, reads it again from the committed offset, and registering it
    /// here could move the position past messages before it).
    pub fn register(
        &mut self,
        topic: &Arc<str>,
        partition: i32,
        generation: Option<u64>,
        offset: i64,
        ids: u32,
    ) -> Option<Receipt> {
        let key = (topic.clone(), partition);
        let current = *self.assigned.get(&key)?;
        if generation != Some(current) {
            return None;
        }
        let state = self
            .partitions
            .entry(key)
            .or_insert_with(|| PartitionState {
                generation: current,
                pending: BTreeMap::new(),
                next_offset: offset,
                committed: None,
            });
        if ids > 0 {
            *state.pending.entry(offset).or_insert(0) += ids;
        }
        state.next_offset = state.next_offset.max(offset + 1);
        Some(Receipt {
            topic: topic.clone(),
            partition,
            generation: current,
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
        self.assignment_changes += 1;
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

    /// Registers a message received under the partition's current assignment.
    fn register(
        tracker: &mut OffsetTracker,
        partition: i32,
        offset: i64,
        ids: u32,
    ) -> Option<Receipt> {
        let generation = tracker.generation("orders", partition);
        tracker.register(&topic(), partition, generation, offset, ids)
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
        let first = register(&mut tracker, 0, 10, 1).unwrap();
        let second = register(&mut tracker, 0, 11, 2).unwrap();
        let third = register(&mut tracker, 0, 12, 1).unwrap();
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
    }

    #[test]
    fn messages_without_ids_do_not_hold_the_position() {
        let mut tracker = tracker();
        register(&mut tracker, 3, 5, 0).unwrap();
        register(&mut tracker, 3, 6, 0).unwrap();
        assert_eq!(positions(&tracker), vec![(3, 7)]);
    }

    #[test]
    fn committed_positions_are_not_repeated_and_never_go_back() {
        let mut tracker = tracker();
        let receipt = register(&mut tracker, 0, 0, 1).unwrap();
        tracker.acknowledge(&receipt);
        let position = tracker.committable().pop().unwrap();
        tracker.mark_committed(&position);
        assert!(tracker.committable().is_empty());
        tracker.mark_committed(&CommitPosition {
            topic: topic(),
            partition: 0,
            offset: 0,
        });
        register(&mut tracker, 0, 1, 0).unwrap();
        assert_eq!(positions(&tracker), vec![(0, 2)]);
    }

    #[test]
    fn revoked_partitions_ignore_late_acknowledgements() {
        let mut tracker = tracker();
        let done = register(&mut tracker, 1, 100, 1).unwrap();
        let in_flight = register(&mut tracker, 1, 101, 1).unwrap();
        tracker.acknowledge(&done);
        let final_position = tracker.revoke("orders", 1).unwrap();
        assert_eq!(
            final_position.offset, 101,
            "only what is done is committed on revoke"
        );
        assert_eq!(register(&mut tracker, 1, 102, 1), None, "not ours any more");
        // reassigned later: a fresh generation starting where the group committed
        tracker.assign("orders", 1);
        let again = register(&mut tracker, 1, 101, 1).unwrap();
        tracker.acknowledge(&in_flight); // from the old generation: ignored
        assert_eq!(positions(&tracker), vec![(1, 101)]);
        tracker.acknowledge(&again);
        assert_eq!(positions(&tracker), vec![(1, 102)]);
        assert_eq!(tracker.revoke("unknown", 0), None);
    }

    #[test]
    fn messages_received_before_a_reassignment_are_refused() {
        let mut tracker = tracker();
        let changes = tracker.assignment_changes();
        let before = tracker.generation("orders", 0);
        let retained = tracker.generation("orders", 1);
        tracker.revoke("orders", 0);
        assert_eq!(tracker.generation("orders", 0), None);
        tracker.assign("orders", 0);
        assert!(tracker.assignment_changes() > changes);
        assert_ne!(tracker.generation("orders", 0), before);
        assert_eq!(
            tracker.register(&topic(), 0, before, 7, 1),
            None,
            "buffered before the revoke: fetched again from the commit"
        );
        assert!(
            tracker.register(&topic(), 1, retained, 7, 1).is_some(),
            "a partition that stayed assigned keeps its buffered messages"
        );
        assert_eq!(tracker.register(&topic(), 2, None, 7, 1), None);
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = tracker();
        let slow = register(&mut tracker, 0, 0, 1).unwrap();
        let fast = register(&mut tracker, 1, 0, 1).unwrap();
        tracker.acknowledge(&fast);
        assert_eq!(positions(&tracker), vec![(0, 0), (1, 1)]);
        tracker.acknowledge(&slow);
        assert_eq!(positions(&tracker), vec![(0, 1), (1, 1)]);
    }
}

/// A model of the daemon's consumer loop against a broker: random
/// interleavings of fetches, the pause buffer, worker progress, commits,
/// eager and cooperative rebalances, and another group member working the
/// partitions this one does not own. After every step no committed offset
/// may pass a message that was never handled, and in the end everything is
/// handled and committed.
#[cfg(test)]
mod consumer_model {
    use super::*;
    use std::collections::{HashSet, VecDeque};

    const PARTITIONS: i32 = 3;
    const MESSAGES: i64 = 10;
    const QUEUE_CAPACITY: usize = 2;
    const STEPS: usize = 150;

    /// How the loop treats messages that waited in the pause buffer.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Buffering {
        /// Each message is tagged with its partition's generation (the daemon).
        Generations,
        /// The whole buffer is dropped on any assignment change (the old loop,
        /// which lost messages of partitions that stayed assigned).
        ClearAllOnChange,
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Protocol {
        Eager,
        Cooperative,
    }

    struct Buffered {
        partition: i32,
        offset: i64,
        generation: Option<u64>,
        changes: u64,
    }

    struct Model {
        buffering: Buffering,
        protocol: Protocol,
        rng: u64,
        tracker: OffsetTracker,
        committed: [i64; PARTITIONS as usize],
        /// librdkafka's fetch position of each assigned partition.
        fetch: HashMap<i32, i64>,
        buffer: VecDeque<Buffered>,
        queue: VecDeque<Receipt>,
        handled: HashSet<(i32, i64)>,
    }

    fn topic() -> Arc<str> {
        Arc::from("orders")
    }

    impl Model {
        fn new(buffering: Buffering, protocol: Protocol, seed: u64) -> Model {
            let mut model = Model {
                buffering,
                protocol,
                rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                tracker: OffsetTracker::new(),
                committed: [0; PARTITIONS as usize],
                fetch: HashMap::new(),
                buffer: VecDeque::new(),
                queue: VecDeque::new(),
                handled: HashSet::new(),
            };
            for partition in 0..PARTITIONS {
                model.assign(partition);
            }
            model
        }

        fn below(&mut self, bound: u64) -> u64 {
            // xorshift64
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng % bound
        }

        fn assign(&mut self, partition: i32) {
            self.tracker.assign("orders", partition);
            self.fetch
                .insert(partition, self.committed[partition as usize]);
        }

        fn revoke(&mut self, partition: i32) {
            if let Some(position) = self.tracker.revoke("orders", partition) {
                self.commit(&position);
            }
            self.fetch.remove(&partition);
        }

        fn commit(&mut self, position: &CommitPosition) {
            self.committed[position.partition as usize] = position.offset;
            self.tracker.mark_committed(position);
        }

        fn queue_has_room(&self) -> bool {
            self.queue.len() < QUEUE_CAPACITY
        }

        /// The loop takes a message from the buffer or from Kafka and either
        /// registers it or keeps it while the worker's queue is full.
        fn receive(&mut self) {
            let fetchable: Vec<i32> = (0..PARTITIONS)
                .filter(|partition| self.fetch.get(partition).is_some_and(|at| *at < MESSAGES))
                .collect();
            if fetchable.is_empty() {
                return;
            }
            let partition = fetchable[self.below(fetchable.len() as u64) as usize];
            let offset = self.fetch[&partition];
            self.fetch.insert(partition, offset + 1);
            self.buffer.push_back(Buffered {
                partition,
                offset,
                generation: self.tracker.generation("orders", partition),
                changes: self.tracker.assignment_changes(),
            });
        }

        fn dispatch_buffered(&mut self) {
            if !self.queue_has_room() {
                return;
            }
            let Some(message) = self.buffer.pop_front() else {
                return;
            };
            let generation = match self.buffering {
                Buffering::Generations => message.generation,
                Buffering::ClearAllOnChange => {
                    if message.changes != self.tracker.assignment_changes() {
                        self.buffer.clear();
                        return;
                    }
                    self.tracker.generation("orders", message.partition)
                }
            };
            if let Some(receipt) =
                self.tracker
                    .register(&topic(), message.partition, generation, message.offset, 1)
            {
                self.queue.push_back(receipt);
            }
        }

        fn work(&mut self) {
            if let Some(receipt) = self.queue.pop_front() {
                self.handled.insert((receipt.partition, receipt.offset));
                self.tracker.acknowledge(&receipt);
            }
        }

        fn commit_interval(&mut self) {
            for position in self.tracker.committable() {
                self.commit(&position);
            }
        }

        fn rebalance(&mut self) {
            match self.protocol {
                Protocol::Eager => {
                    let owned: Vec<i32> = self.fetch.keys().copied().collect();
                    for partition in owned {
                        self.revoke(partition);
                    }
                    for partition in 0..PARTITIONS {
                        if self.below(3) > 0 {
                            self.assign(partition);
                        }
                    }
                }
                Protocol::Cooperative => {
                    let partition = self.below(PARTITIONS as u64) as i32;
                    if self.fetch.contains_key(&partition) {
                        self.revoke(partition);
                    } else {
                        self.assign(partition);
                    }
                }
            }
        }

        /// Another member owns the partitions this one does not, handles
        /// their next message and commits it.
        fn other_member(&mut self) {
            let partition = self.below(PARTITIONS as u64) as i32;
            let next = self.committed[partition as usize];
            if !self.fetch.contains_key(&partition) && next < MESSAGES {
                self.handled.insert((partition, next));
                self.committed[partition as usize] = next + 1;
            }
        }

        fn step(&mut self) {
            match self.below(12) {
                0..=3 => self.receive(),
                4..=6 => self.dispatch_buffered(),
                7..=8 => self.work(),
                9 => self.commit_interval(),
                10 => self.rebalance(),
                _ => self.other_member(),
            }
        }

        /// A committed offset that passes an unhandled message.
        fn skipped_message(&self) -> Option<(i32, i64)> {
            (0..PARTITIONS).find_map(|partition| {
                (0..self.committed[partition as usize])
                    .find(|offset| !self.handled.contains(&(partition, *offset)))
                    .map(|offset| (partition, offset))
            })
        }

        /// Runs random steps, then lets this member own everything and drain.
        fn run(mut self) -> Result<(), String> {
            for step in 0..STEPS {
                self.step();
                if let Some((partition, offset)) = self.skipped_message() {
                    return Err(format!(
                        "step {step}: partition {partition} committed at {} past unhandled offset {offset}",
                        self.committed[partition as usize]
                    ));
                }
            }
            for partition in 0..PARTITIONS {
                if !self.fetch.contains_key(&partition) {
                    self.assign(partition);
                }
            }
            for _ in 0..1_000 {
                if self.committed.iter().all(|at| *at == MESSAGES) {
                    break;
                }
                self.receive();
                self.dispatch_buffered();
                self.work();
                self.commit_interval();
            }
            if let Some((partition, offset)) = self.skipped_message() {
                return Err(format!("partition {partition} skipped offset {offset}"));
            }
            match self.committed.iter().position(|at| *at != MESSAGES) {
                Some(partition) => Err(format!(
                    "partition {partition} stalled at {}",
                    self.committed[partition]
                )),
                None => Ok(()),
            }
        }
    }

    fn failures(buffering: Buffering, protocol: Protocol, seeds: u64) -> Vec<String> {
        (0..seeds)
            .filter_map(|seed| {
                Model::new(buffering, protocol, seed)
                    .run()
                    .err()
                    .map(|error| format!("seed {seed}: {error}"))
            })
            .collect()
    }

    #[test]
    fn no_commit_passes_an_unhandled_message_eager() {
        let failed = failures(Buffering::Generations, Protocol::Eager, 1000);
        assert!(failed.is_empty(), "{:#?}", &failed[..failed.len().min(5)]);
    }

    #[test]
    fn no_commit_passes_an_unhandled_message_cooperative() {
        let failed = failures(Buffering::Generations, Protocol::Cooperative, 1000);
        assert!(failed.is_empty(), "{:#?}", &failed[..failed.len().min(5)]);
    }

    /// The model finds the defect of the loop before the fix (issue 9,
    /// item 5): clearing the whole buffer on any rebalance dropped messages
    /// that Kafka would not deliver again.
    #[test]
    fn the_model_finds_the_old_clear_all_buffering_unsafe() {
        for protocol in [Protocol::Eager, Protocol::Cooperative] {
            assert!(
                !failures(Buffering::ClearAllOnChange, protocol, 1000).is_empty(),
                "{protocol:?}"
            );
        }
    }
}
