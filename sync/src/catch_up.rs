//! Holding re-reads after an assignment until the consumer has caught up.
//!
//! When partitions are assigned (at start, after a rebalance) their backlog
//! arrives in a rush. A worker that re-reads its first batch at once, before
//! the consumer has read the rest, meets later messages for the same ids
//! after their read and writes those ids again: coalescing (see
//! [`crate::coalesce`]) only joins messages that arrive while an id waits.
//! So after an assignment, workers hold their next re-read until the
//! consumer has read every assigned partition up to the end offset it had
//! when the assignment was made, or until it cannot read further (a queue is
//! full, or it stops), and never longer than the configured hold
//! (`batch.catch_up_wait`). A hold only delays reads, and receipts are still
//! taken right before each read, so offsets and versions are unaffected.
//!
//! [`CatchUpState`] is the pure state machine; [`CatchUpGate`] shares it
//! between the consumer loop and the workers.

use crate::lock::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A partition: topic and number.
pub type Partition = (Arc<str>, i32);

/// Why a hold ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Every assigned partition was read to its end offset.
    CaughtUp,
    /// The consumer cannot read further: a queue is full, or it stops.
    ConsumerBlocked,
    /// The hold's limit passed (e.g. the end offsets could not be read).
    TimedOut,
}

impl Opened {
    /// As logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Opened::CaughtUp => "caught up with the backlog",
            Opened::ConsumerBlocked => "the consumer cannot read further",
            Opened::TimedOut => "batch.catch_up_wait is over",
        }
    }
}

/// The gate: open, or held since an assignment.
#[derive(Debug, Default)]
pub struct CatchUpState {
    /// Assignments seen; identifies which one an end-offset answer is for.
    epoch: u64,
    held: Option<Hold>,
    /// The consumer reads no further (a queue is full): nothing is held.
    consumer_blocked: bool,
}

#[derive(Debug)]
struct Hold {
    since: Instant,
    until: Instant,
    /// End offsets (exclusive) still to read, once known.
    ends: Option<HashMap<Partition, i64>>,
    /// The highest offset received per partition since the hold began.
    received: HashMap<Partition, i64>,
}

impl CatchUpState {
    /// The assignment changed at `now`: holds reads for at most `limit`. A
    /// change during a hold keeps its limit, so that rebalances in a row
    /// cannot hold reads longer. Returns the epoch to pass to
    /// [`CatchUpState::ends_known`].
    pub fn assigned(&mut self, now: Instant, limit: Duration) -> u64 {
        self.epoch += 1;
        match &mut self.held {
            Some(hold) => {
                // the answer for the new assignment reads positions after now
                hold.ends = None;
                hold.received.clear();
            }
            None if !limit.is_zero() && !self.consumer_blocked => {
                self.held = Some(Hold {
                    since: now,
                    until: now + limit,
                    ends: None,
                    received: HashMap::new(),
                })
            }
            None => {}
        }
        self.epoch
    }

    /// The end offset of each assigned partition that has messages left to
    /// read, for the assignment of `epoch` (a later assignment's answer
    /// replaces it). Returns how the hold ended when this ends it.
    pub fn ends_known(
        &mut self,
        epoch: u64,
        mut ends: HashMap<Partition, i64>,
        now: Instant,
    ) -> Option<(Opened, Duration)> {
        let hold = self.held.as_mut().filter(|_| epoch == self.epoch)?;
        ends.retain(|partition, end| {
            hold.received
                .get(partition)
                .is_none_or(|received| received + 1 < *end)
        });
        hold.ends = Some(ends);
        self.open_if_caught_up(now)
    }

    /// The consumer received `offset` of `partition`. Returns how the hold
    /// ended when this ends it.
    pub fn received(
        &mut self,
        partition: &Partition,
        offset: i64,
        now: Instant,
    ) -> Option<(Opened, Duration)> {
        let hold = self.held.as_mut()?;
        match &mut hold.ends {
            Some(ends) => {
                if ends.get(partition).is_some_and(|end| offset + 1 >= *end) {
                    ends.remove(partition);
                }
            }
            None => {
                let highest = hold.received.entry(partition.clone()).or_insert(offset);
                *highest = (*highest).max(offset);
            }
        }
        self.open_if_caught_up(now)
    }

    /// The consumer cannot read further (a queue is full, or it stops)
    /// until [`CatchUpState::unblocked`]: holding reads would only hold
    /// everything, so nothing is held meanwhile, not even after an
    /// assignment. Returns how a hold ended.
    pub fn blocked(&mut self, now: Instant) -> Option<(Opened, Duration)> {
        self.consumer_blocked = true;
        let hold = self.held.take()?;
        Some((Opened::ConsumerBlocked, now - hold.since))
    }

    /// The consumer reads again.
    pub fn unblocked(&mut self) {
        self.consumer_blocked = false;
    }

    /// Ends the hold when its limit has passed by `now`; returns how it
    /// ended when it does.
    pub fn expire(&mut self, now: Instant) -> Option<(Opened, Duration)> {
        let hold = self.held.take_if(|hold| now >= hold.until)?;
        Some((Opened::TimedOut, now - hold.since))
    }

    /// Until when reads are held; `None` when the gate is open.
    pub fn held_until(&self) -> Option<Instant> {
        self.held.as_ref().map(|hold| hold.until)
    }

    fn open_if_caught_up(&mut self, now: Instant) -> Option<(Opened, Duration)> {
        let hold = self.held.as_ref()?;
        if !hold.ends.as_ref().is_some_and(HashMap::is_empty) {
            return None;
        }
        let since = hold.since;
        self.held = None;
        Some((Opened::CaughtUp, now - since))
    }
}

/// The end offset of a partition the consumer will read from `next` (its
/// position, else the group's committed offset; `None` when it has
/// neither), when there is anything to read: with no offset, or one out of
/// range, `auto.offset.reset` decides where reading starts.
pub fn backlog_end(next: Option<i64>, low: i64, high: i64, reset_to_earliest: bool) -> Option<i64> {
    let start = match next {
        Some(next) if (low..=high).contains(&next) => next,
        _ if reset_to_earliest => low,
        _ => high,
    };
    (start < high).then_some(high)
}

/// [`CatchUpState`] shared by the consumer loop and the workers.
#[derive(Debug)]
pub struct CatchUpGate {
    state: Mutex<CatchUpState>,
    opened: Notify,
    limit: Duration,
}

impl CatchUpGate {
    /// An open gate whose holds last at most `limit` (zero: never holds).
    pub fn new(limit: Duration) -> CatchUpGate {
        CatchUpGate {
            state: Mutex::new(CatchUpState::default()),
            opened: Notify::new(),
            limit,
        }
    }

    /// See [`CatchUpState::assigned`]; `None` when the gate does not hold
    /// (a zero limit).
    pub fn assigned(&self) -> Option<u64> {
        let mut state = lock(&self.state);
        let epoch = state.assigned(Instant::now(), self.limit);
        state.held.is_some().then_some(epoch)
    }

    /// See [`CatchUpState::ends_known`].
    pub fn ends_known(&self, epoch: u64, ends: HashMap<Partition, i64>) {
        let opened = lock(&self.state).ends_known(epoch, ends, Instant::now());
        self.announce(opened);
    }

    /// See [`CatchUpState::received`].
    pub fn received(&self, topic: &str, partition: i32, offset: i64) {
        let mut state = lock(&self.state);
        if state.held.is_none() {
            return;
        }
        let opened = state.received(&(Arc::from(topic), partition), offset, Instant::now());
        drop(state);
        self.announce(opened);
    }

    /// See [`CatchUpState::blocked`].
    pub fn blocked(&self) {
        let opened = lock(&self.state).blocked(Instant::now());
        self.announce(opened);
    }

    /// See [`CatchUpState::unblocked`].
    pub fn unblocked(&self) {
        lock(&self.state).unblocked();
    }

    /// Returns once the gate is open, or after the hold's limit.
    pub async fn wait(&self) {
        loop {
            // registered before the check, so an opening in between wakes it
            let opened = self.opened.notified();
            let (expired, until) = {
                let mut state = lock(&self.state);
                (state.expire(Instant::now()), state.held_until())
            };
            self.announce(expired);
            let Some(until) = until else {
                return;
            };
            tokio::select! {
                () = opened => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    fn announce(&self, opened: Option<(Opened, Duration)>) {
        let Some((reason, after)) = opened else {
            return;
        };
        tracing::info!(
            reason = reason.as_str(),
            held_ms = after.as_millis() as u64,
            "re-reads resume after the assignment"
        );
        self.opened.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    fn partition(number: i32) -> Partition {
        (Arc::from("orders"), number)
    }

    fn ends(pairs: &[(i32, i64)]) -> HashMap<Partition, i64> {
        pairs
            .iter()
            .map(|(number, end)| (partition(*number), *end))
            .collect()
    }

    #[test]
    fn holds_until_every_partition_is_read_to_its_end() {
        let now = Instant::now();
        let mut gate = CatchUpState::default();
        assert_eq!(gate.held_until(), None, "open at first");
        let epoch = gate.assigned(now, LIMIT);
        assert_eq!(gate.held_until(), Some(now + LIMIT));
        assert_eq!(gate.ends_known(epoch, ends(&[(0, 10), (1, 5)]), now), None);
        assert_eq!(gate.received(&partition(0), 9, now), None);
        assert_eq!(gate.received(&partition(1), 3, now), None);
        let later = now + Duration::from_millis(300);
        assert_eq!(
            gate.received(&partition(1), 4, later),
            Some((Opened::CaughtUp, Duration::from_millis(300)))
        );
        assert_eq!(gate.held_until(), None);
    }

    #[test]
    fn messages_received_before_the_ends_are_known_count() {
        let now = Instant::now();
        let mut gate = CatchUpState::default();
        let epoch = gate.assigned(now, LIMIT);
        assert_eq!(gate.received(&partition(0), 7, now), None);
        assert_eq!(gate.received(&partition(0), 4, now), None, "out of order");
        assert_eq!(
            gate.ends_known(epoch, ends(&[(0, 8)]), now),
            Some((Opened::CaughtUp, Duration::ZERO))
        );
    }

    #[test]
    fn nothing_to_read_opens_at_once() {
        let now = Instant::now();
        let mut gate = CatchUpState::default();
        let epoch = gate.assigned(now, LIMIT);
        assert_eq!(
            gate.ends_known(epoch, HashMap::new(), now),
            Some((Opened::CaughtUp, Duration::ZERO))
        );
    }

    #[test]
    fn an_earlier_assignments_ends_are_ignored() {
        let now = Instant::now();
        let mut gate = CatchUpState::default();
        let first = gate.assigned(now, LIMIT);
        let second = gate.assigned(now + Duration::from_secs(1), LIMIT);
        assert_eq!(gate.ends_known(first, HashMap::new(), now), None);
        assert_eq!(
            gate.held_until(),
            Some(now + LIMIT),
            "the second assignment kept the first one's limit"
        );
        assert_eq!(gate.expire(now + LIMIT), Some((Opened::TimedOut, LIMIT)));
        let third = gate.assigned(now + LIMIT, LIMIT);
        assert!(
            gate.ends_known(third, ends(&[(0, 3)]), now + LIMIT)
                .is_none()
        );
        assert!(
            gate.ends_known(second, HashMap::new(), now + LIMIT)
                .is_none()
        );
    }

    #[test]
    fn a_blocked_consumer_or_the_limit_opens_it() {
        let now = Instant::now();
        let mut gate = CatchUpState::default();
        let epoch = gate.assigned(now, LIMIT);
        gate.ends_known(epoch, ends(&[(0, 1000)]), now);
        let blocked = now + Duration::from_millis(50);
        assert_eq!(
            gate.blocked(blocked),
            Some((Opened::ConsumerBlocked, Duration::from_millis(50)))
        );
        assert_eq!(gate.held_until(), None);
        assert_eq!(gate.blocked(blocked), None, "already open");

        assert_eq!(gate.assigned(now, LIMIT), 2);
        assert_eq!(
            gate.held_until(),
            None,
            "an assignment while blocked holds nothing"
        );
        gate.unblocked();
        gate.assigned(now, LIMIT);
        assert_eq!(gate.expire(now + LIMIT - Duration::from_millis(1)), None);
        assert_eq!(gate.expire(now + LIMIT), Some((Opened::TimedOut, LIMIT)));
        assert_eq!(gate.held_until(), None);
    }

    #[test]
    fn the_backlog_starts_at_the_position_else_the_commit_else_the_reset_rule() {
        assert_eq!(backlog_end(Some(40), 10, 50, true), Some(50));
        assert_eq!(backlog_end(Some(50), 10, 50, true), None, "read to the end");
        assert_eq!(backlog_end(None, 10, 50, true), Some(50), "earliest");
        assert_eq!(backlog_end(None, 10, 50, false), None, "latest");
        assert_eq!(
            backlog_end(Some(3), 10, 50, true),
            Some(50),
            "deleted: reset"
        );
        assert_eq!(backlog_end(Some(3), 10, 50, false), None);
        assert_eq!(backlog_end(None, 0, 0, true), None, "empty partition");
    }

    #[test]
    fn a_zero_limit_never_holds() {
        let now = Instant::now();
        let mut gate = CatchUpState::default();
        gate.assigned(now, Duration::ZERO);
        assert_eq!(gate.held_until(), None);
    }

    #[tokio::test]
    async fn a_waiting_worker_is_woken_when_the_consumer_catches_up() {
        let gate = Arc::new(CatchUpGate::new(Duration::from_secs(600)));
        let epoch = gate.assigned().expect("a hold");
        gate.ends_known(epoch, ends(&[(0, 2)]));
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "held");
        gate.received("orders", 0, 1);
        tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("woken long before the limit")
            .expect("the waiter runs");
    }

    #[tokio::test]
    async fn a_waiting_worker_goes_on_after_the_limit() {
        let gate = CatchUpGate::new(Duration::from_millis(200));
        gate.assigned();
        let started = Instant::now();
        gate.wait().await;
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
