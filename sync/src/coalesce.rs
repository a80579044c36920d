//! Coalescing ids that wait for a worker.
//!
//! Pure. Under a backlog an id is often announced again while its first
//! announcement still waits in the worker's queue or batch. The later
//! messages then join the waiting one instead of being queued again: they are
//! acknowledged by the same write, whose re-read happens after all of them
//! arrived (the worker takes the receipts just before it reads), so each
//! message is still answered by a read that saw its change.
//!
//! The protocol, between the consumer and one worker:
//! 1. the consumer calls [`Waiting::offer`] for each id; only when it answers
//!    [`Offer::Queue`] does it queue the id;
//! 2. the worker collects queued ids into a batch and, before re-reading
//!    them, calls [`Waiting::take`] for each: what it gets back are the
//!    receipts to acknowledge after the write; an id that yields none was
//!    already written for all its messages and is left out of the read.
//!
//! A waiting id holds at most `limit` receipts; past that every further
//! message is queued as well, so a hot id cannot grow memory or escape the
//! queue's back-pressure.

use crate::id::Id;
use std::collections::HashMap;

/// What the consumer does with an id after [`Waiting::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queue the id for the worker.
    Queue,
    /// The id is already waiting; its receipt joined it.
    Joined,
}

/// The ids queued to one worker and not yet taken, with the receipts of
/// every message that announced them.
#[derive(Debug)]
pub struct Waiting<Receipt> {
    ids: HashMap<(usize, Id), Vec<Receipt>>,
    limit: usize,
}

impl<Receipt> Waiting<Receipt> {
    /// Nothing waiting; an id gathers at most `limit` receipts (at least 1).
    pub fn new(limit: usize) -> Waiting<Receipt> {
        Waiting {
            ids: HashMap::new(),
            limit: limit.max(1),
        }
    }

    /// Records that a message announced `id` of `mapping`.
    pub fn offer(&mut self, mapping: usize, id: &Id, receipt: Receipt) -> Offer {
        match self.ids.get_mut(&(mapping, id.clone())) {
            Some(receipts) => {
                receipts.push(receipt);
                if receipts.len() > self.limit {
                    Offer::Queue
                } else {
                    Offer::Joined
                }
            }
            None => {
                self.ids.insert((mapping, id.clone()), vec![receipt]);
                Offer::Queue
            }
        }
    }

    /// The receipts of `id` of `mapping`, which stops waiting: called right
    /// before its re-read. Empty when an earlier take answered them all.
    pub fn take(&mut self, mapping: usize, id: &Id) -> Vec<Receipt> {
        self.ids.remove(&(mapping, id.clone())).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::VecDeque;

    #[test]
    fn a_repeat_joins_the_waiting_id_until_it_is_taken() {
        let mut waiting = Waiting::new(10);
        assert_eq!(waiting.offer(0, &Id::Int(7), "m1"), Offer::Queue);
        assert_eq!(waiting.offer(0, &Id::Int(7), "m2"), Offer::Joined);
        assert_eq!(
            waiting.offer(1, &Id::Int(7), "m3"),
            Offer::Queue,
            "other mapping"
        );
        assert_eq!(waiting.take(0, &Id::Int(7)), vec!["m1", "m2"]);
        assert_eq!(waiting.take(0, &Id::Int(7)), Vec::<&str>::new());
        assert_eq!(
            waiting.offer(0, &Id::Int(7), "m4"),
            Offer::Queue,
            "taken: queued again"
        );
        assert_eq!(waiting.ids.len(), 2);
    }

    #[test]
    fn a_hot_id_is_queued_again_past_the_limit() {
        let mut waiting = Waiting::new(2);
        let offers: Vec<Offer> = (0..4).map(|n| waiting.offer(0, &Id::Int(1), n)).collect();
        assert_eq!(
            offers,
            [Offer::Queue, Offer::Joined, Offer::Queue, Offer::Queue]
        );
        assert_eq!(waiting.take(0, &Id::Int(1)), vec![0, 1, 2, 3]);
    }

    /// A message: the id it announces and the row's version when it arrived.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Message {
        number: usize,
        id: i64,
        version_at_arrival: u64,
    }

    /// The rows, the consumer's side of the protocol, one worker's queue and
    /// batch, and what was acknowledged.
    struct Model {
        seed: u64,
        versions: Vec<u64>,
        waiting: Waiting<Message>,
        queue: VecDeque<i64>,
        batch: Vec<i64>,
        arrived: usize,
        acknowledged: Vec<u32>,
        reads: usize,
    }

    impl Model {
        /// A row changes, then a message announces it.
        fn arrive(&mut self, id: i64) {
            self.versions[id as usize] += 1;
            let message = Message {
                number: self.arrived,
                id,
                version_at_arrival: self.versions[id as usize],
            };
            self.arrived += 1;
            self.acknowledged.push(0);
            if self.waiting.offer(0, &Id::Int(id), message) == Offer::Queue {
                self.queue.push_back(id);
            }
        }

        /// The worker moves one queued id into its batch.
        fn dequeue(&mut self) {
            if let Some(id) = self.queue.pop_front() {
                self.batch.push(id);
            }
        }

        /// The worker takes its batch's receipts, re-reads and acknowledges.
        fn write(&mut self) {
            for id in std::mem::take(&mut self.batch) {
                let receipts = self.waiting.take(0, &Id::Int(id));
                if receipts.is_empty() {
                    continue;
                }
                self.reads += 1;
                let version_read = self.versions[id as usize];
                for message in receipts {
                    assert_eq!(message.id, id, "seed {}", self.seed);
                    assert!(
                        version_read >= message.version_at_arrival,
                        "seed {}: {message:?} acknowledged by a read of v{version_read}",
                        self.seed
                    );
                    self.acknowledged[message.number] += 1;
                }
            }
        }
    }

    /// Random interleavings of row updates with arrivals, the worker's
    /// dequeues and its batch writes: every message is acknowledged exactly
    /// once, only by a write whose read saw its change, and repeats are
    /// coalesced.
    #[test]
    fn every_message_is_answered_by_a_read_after_it_arrived() {
        let mut coalesced_runs = 0;
        for seed in 0..500 {
            let mut rng = StdRng::seed_from_u64(seed);
            let ids = rng.random_range(1..6i64);
            let mut model = Model {
                seed,
                versions: vec![0; ids as usize],
                waiting: Waiting::new(rng.random_range(1..4)),
                queue: VecDeque::new(),
                batch: Vec::new(),
                arrived: 0,
                acknowledged: Vec::new(),
                reads: 0,
            };
            for _ in 0..rng.random_range(10..200) {
                match rng.random_range(0..9) {
                    0..=4 => model.arrive(rng.random_range(0..ids)),
                    5..=6 => model.dequeue(),
                    _ => model.write(),
                }
            }
            // drain: everything queued is eventually written
            while !model.queue.is_empty() || !model.batch.is_empty() {
                model.dequeue();
                model.write();
            }
            assert!(
                model.waiting.ids.is_empty(),
                "seed {seed}: receipts left waiting"
            );
            assert!(
                model.acknowledged.iter().all(|count| *count == 1),
                "seed {seed}: each message acknowledged once: {:?}",
                model.acknowledged
            );
            if model.reads < model.arrived {
                coalesced_runs += 1;
            }
        }
        assert!(
            coalesced_runs > 100,
            "repeats coalesced in {coalesced_runs} runs"
        );
    }
}
