//! The poller's pure core: watermark, look-back window and de-duplication.
//!
//! No I/O and no clock: times are microseconds since the Unix epoch passed in
//! by the caller, so every decision is unit-tested.
//!
//! A poll scans, in `(timestamp, id)` order, from `min(watermark.timestamp,
//! database now) - look_back` onwards. Taking the database's clock into the
//! minimum means a row stamped in the future (a writer's clock running ahead,
//! a hand-typed `9999-12-31`) cannot drag the window away from the rows that
//! are being written now; the minimum can only widen the scan, never narrow it.
//!
//! Rows behind the watermark are usually ones already published; the window
//! remembers the `(timestamp, id)` pairs it published and suppresses them, so
//! only rows that are new in the window (late commits) cost a Kafka message. A
//! row changed again gets a new timestamp, hence a new pair, and is published
//! again. That only holds once the clock has moved past the pair's timestamp
//! by the column's resolution: with a `TIMESTAMP(0)` column a second update in
//! the same second carries the *same* pair. So a pair is only remembered
//! (suppressible) once its resolution step lies wholly before the database
//! time at which the poll started; until then it is published again on every
//! poll that meets it.

use crate::id::Id;
use std::collections::BTreeSet;

/// A point in the `(timestamp, id)` order of a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Microseconds since the Unix epoch (UTC).
    pub timestamp_us: i64,
    /// The row's id.
    pub id: Id,
}

/// Where a poll's (or a page's) scan starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Every row with a non-NULL timestamp.
    Beginning,
    /// Rows with `timestamp >= timestamp_us` (the start of the look-back window).
    From(i64),
    /// Rows strictly after a position (the next page).
    After(Position),
}

/// What to do with one page of scanned rows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageDecision {
    /// Ids to produce, in scan order (a pair already published is left out).
    pub publish: Vec<Id>,
    /// How many of them lie at or behind the watermark: rows that committed
    /// late and were caught by the look-back window.
    pub late: usize,
    /// Rows suppressed because their pair was already published.
    pub suppressed: usize,
}

/// The watermark of one mapping and the pairs published inside its window.
#[derive(Debug, Clone)]
pub struct Window {
    look_back_us: i64,
    /// The timestamp column's resolution (1 s for `TIMESTAMP(0)`), 0 for
    /// microseconds: two changes closer than this can carry the same pair.
    resolution_us: i64,
    watermark: Option<Position>,
    published: BTreeSet<Position>,
}

impl Window {
    /// A window starting at `watermark` (none: from the beginning), re-scanning
    /// `look_back_us` microseconds behind it, for a column that resolves
    /// `resolution_us` microseconds (0 or 1: microseconds).
    pub fn new(watermark: Option<Position>, look_back_us: i64, resolution_us: i64) -> Window {
        debug_assert!(look_back_us >= 0, "look-back is a duration");
        debug_assert!(resolution_us >= 0, "resolution is a duration");
        Window {
            look_back_us: look_back_us.max(0),
            // a microsecond column needs no hold-back: two changes of one row
            // in the same microsecond are not a realistic case
            resolution_us: if resolution_us <= 1 { 0 } else { resolution_us },
            watermark,
            published: BTreeSet::new(),
        }
    }

    /// The highest position published (and acknowledged) so far.
    pub fn watermark(&self) -> Option<&Position> {
        self.watermark.as_ref()
    }

    /// Pairs remembered for suppression.
    pub fn remembered(&self) -> usize {
        self.published.len()
    }

    /// Where the next poll starts: the look-back window behind the watermark,
    /// or behind the database's `now_us` when the watermark lies in the future.
    pub fn scan_start(&self, now_us: i64) -> Cursor {
        match &self.watermark {
            None => Cursor::Beginning,
            Some(watermark) => Cursor::From(
                watermark
                    .timestamp_us
                    .min(now_us)
                    .saturating_sub(self.look_back_us),
            ),
        }
    }

    /// The position to checkpoint after a poll that started at database time
    /// `poll_started_us`: `min(watermark, poll_started_us)`.
    ///
    /// A restarted publisher scans from the saved position minus `look_back`,
    /// and its own clock only narrows that further. A watermark in the future
    /// (a row stamped ahead) saved as it is would put the window past every
    /// row written while the publisher was down, once the down time exceeds
    /// `look_back`. Every row stamped up to the poll's start was scanned by
    /// it (or is a late commit the look-back window is for), so the poll's
    /// start is a safe place to resume; the future row is scanned (and
    /// published) once more, which is harmless.
    pub fn checkpoint(&self, poll_started_us: i64) -> Option<Position> {
        let watermark = self.watermark.as_ref()?;
        if watermark.timestamp_us <= poll_started_us {
            return Some(watermark.clone());
        }
        // The id only orders rows within one timestamp; scans resume by
        // timestamp, so keeping the watermark's id (and its type) is enough.
        Some(Position {
            timestamp_us: poll_started_us,
            id: watermark.id.clone(),
        })
    }

    /// Decides which rows of a page (in scan order) must be produced.
    pub fn decide(&self, rows: &[Position]) -> PageDecision {
        let mut decision = PageDecision::default();
        for row in rows {
            if self.published.contains(row) {
                decision.suppressed += 1;
                continue;
            }
            if self
                .watermark
                .as_ref()
                .is_some_and(|watermark| row <= watermark)
            {
                decision.late += 1;
            }
            decision.publish.push(row.id.clone());
        }
        decision
    }

    /// Records a page whose ids Kafka acknowledged, read by a poll that
    /// started at database time `poll_started_us`: the watermark moves to the
    /// page's highest position, and the pairs that can no longer be stamped
    /// again (their resolution step ended before the poll started) are
    /// remembered.
    pub fn acknowledge(&mut self, rows: &[Position], poll_started_us: i64) {
        for row in rows {
            if self
                .watermark
                .as_ref()
                .is_none_or(|watermark| row > watermark)
            {
                self.watermark = Some(row.clone());
            }
            let settled = self.resolution_us == 0
                || row.timestamp_us.saturating_add(self.resolution_us) <= poll_started_us;
            if settled {
                let _ = self.published.insert(row.clone());
            }
        }
    }

    /// Forgets pairs that the next scan cannot meet again (older than the
    /// window's start at database time `now_us`). Call once per poll.
    pub fn prune(&mut self, now_us: i64) {
        let Cursor::From(start) = self.scan_start(now_us) else {
            return;
        };
        let floor = Position {
            timestamp_us: start,
            id: Id::Int(i64::MIN),
        };
        self.published = self.published.split_off(&floor);
    }
}

/// Seconds from the watermark's timestamp to `now_us` (0 without a watermark
/// or when the watermark is in the future).
pub fn lag_seconds(watermark: Option<&Position>, now_us: i64) -> f64 {
    watermark.map_or(0.0, |watermark| {
        (now_us.saturating_sub(watermark.timestamp_us)).max(0) as f64 / 1e6
    })
}

/// How long to pause so that `rows` read since `elapsed_us` stay under
/// `max_per_second` (0 when no cap or already slow enough).
pub fn pacing_delay_us(rows: u64, elapsed_us: u64, max_per_second: Option<u32>) -> u64 {
    let Some(cap) = max_per_second.filter(|cap| *cap > 0) else {
        return 0;
    };
    let needed_us = rows.saturating_mul(1_000_000) / u64::from(cap);
    needed_us.saturating_sub(elapsed_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(timestamp_us: i64, id: i64) -> Position {
        Position {
            timestamp_us,
            id: Id::Int(id),
        }
    }

    fn ids(decision: &PageDecision) -> Vec<i64> {
        decision
            .publish
            .iter()
            .map(|id| match id {
                Id::Int(int) => *int,
                Id::Str(_) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn scan_starts_behind_the_watermark() {
        let cases = [
            (None, 10, Cursor::Beginning),
            (Some(at(1_000, 5)), 100, Cursor::From(900)),
            (Some(at(1_000, 5)), 0, Cursor::From(1_000)),
            (Some(at(i64::MIN + 5, 5)), 100, Cursor::From(i64::MIN)),
        ];
        for (watermark, look_back, expected) in cases {
            assert_eq!(
                Window::new(watermark.clone(), look_back, 0).scan_start(i64::MAX),
                expected,
                "{watermark:?} {look_back}"
            );
        }
    }

    /// Table-driven: (already acknowledged pages, next page, ids to publish, late count, suppressed count).
    #[test]
    fn decisions() {
        type Case = (
            &'static str,
            Vec<Vec<Position>>,
            Vec<Position>,
            Vec<i64>,
            usize,
            usize,
        );
        let cases: Vec<Case> = vec![
            (
                "first page publishes all",
                vec![],
                vec![at(1, 1), at(2, 2)],
                vec![1, 2],
                0,
                0,
            ),
            (
                "re-scan of the window is suppressed",
                vec![vec![at(1, 1), at(2, 2)]],
                vec![at(1, 1), at(2, 2), at(3, 3)],
                vec![3],
                0,
                2,
            ),
            (
                "a late commit behind the watermark is published and counted",
                vec![vec![at(10, 1), at(20, 2)]],
                vec![at(15, 7), at(20, 2)],
                vec![7],
                1,
                1,
            ),
            (
                "same id with a newer timestamp is a new change",
                vec![vec![at(10, 1)]],
                vec![at(10, 1), at(11, 1)],
                vec![1],
                0,
                1,
            ),
            (
                "same timestamp, other id",
                vec![vec![at(10, 1)]],
                vec![at(10, 1), at(10, 2)],
                vec![2],
                0,
                1,
            ),
            (
                "same timestamp, lower id, committed late",
                vec![vec![at(10, 5)]],
                vec![at(10, 3), at(10, 5)],
                vec![3],
                1,
                1,
            ),
        ];
        for (name, acknowledged, page, expected, late, suppressed) in cases {
            let mut window = Window::new(None, 100, 0);
            for earlier in &acknowledged {
                window.acknowledge(earlier, i64::MAX);
            }
            let decision = window.decide(&page);
            assert_eq!(ids(&decision), expected, "{name}");
            assert_eq!(decision.late, late, "{name}: late");
            assert_eq!(decision.suppressed, suppressed, "{name}: suppressed");
        }
    }

    #[test]
    fn watermark_only_moves_forward() {
        let mut window = Window::new(Some(at(100, 9)), 50, 0);
        window.acknowledge(&[at(60, 1), at(80, 2)], i64::MAX);
        assert_eq!(
            window.watermark(),
            Some(&at(100, 9)),
            "late rows do not move it back"
        );
        window.acknowledge(&[at(100, 10), at(130, 3)], i64::MAX);
        assert_eq!(window.watermark(), Some(&at(130, 3)));
    }

    #[test]
    fn prune_keeps_exactly_the_window() {
        let mut window = Window::new(None, 50, 0);
        window.acknowledge(
            &[at(10, 1), at(79, 2), at(80, 3), at(81, 4), at(130, 5)],
            i64::MAX,
        );
        window.prune(i64::MAX);
        // window starts at 130 - 50 = 80: pairs at 80 and later may be scanned again
        assert_eq!(window.remembered(), 3);
        let decision = window.decide(&[at(79, 2), at(80, 3), at(130, 5)]);
        assert_eq!(
            ids(&decision),
            vec![2],
            "a forgotten pair is published again if met"
        );
    }

    /// A row stamped in the future (writer clock ahead, a hand-typed date)
    /// moves the watermark there; the window must still cover what is being
    /// written now, by the database's clock.
    #[test]
    fn a_future_watermark_does_not_move_the_window_past_now() {
        let far_future = at(253_402_300_799_000_000, 1); // 9999-12-31T23:59:59Z
        let mut window = Window::new(Some(at(1_000, 5)), 100, 0);
        window.acknowledge(std::slice::from_ref(&far_future), 2_000);
        assert_eq!(window.watermark(), Some(&far_future));
        assert_eq!(window.scan_start(2_000), Cursor::From(1_900));
        let decision = window.decide(&[at(1_950, 2), far_future.clone()]);
        assert_eq!(ids(&decision), vec![2], "a row written now is still seen");
        window.prune(2_000);
        assert_eq!(window.remembered(), 1, "the future pair stays suppressed");
    }

    /// Issue 9 item 13: the saved watermark is what a restarted publisher
    /// scans behind. Saving a future watermark made a restart that came later
    /// than `look_back` start its window at `now - look_back`, past the rows
    /// written while it was down; the checkpoint is capped at the database
    /// time at which the poll started.
    #[test]
    fn a_restart_after_look_back_scans_rows_written_while_down() {
        let look_back = 100;
        let far_future = at(253_402_300_799_000_000, 1);
        let mut window = Window::new(Some(at(1_000, 5)), look_back, 0);
        // last poll before the stop started at 2_000 and saw the future row
        window.acknowledge(&[at(1_990, 6), far_future.clone()], 2_000);
        let saved = window.checkpoint(2_000);
        assert_eq!(
            saved.as_ref().map(|position| position.timestamp_us),
            Some(2_000),
            "capped at the poll's start"
        );
        // rows written while down (2_000..5_000), restart at 5_000 > 2_000 + look_back
        let restarted = Window::new(saved, look_back, 0);
        let Cursor::From(start) = restarted.scan_start(5_000) else {
            panic!("a window with a watermark scans from a timestamp");
        };
        assert!(
            start <= 2_000,
            "the scan starts at {start}, past rows written at 2_000"
        );
        let decision = restarted.decide(&[at(2_001, 7), at(4_999, 8), far_future.clone()]);
        assert_eq!(ids(&decision), vec![7, 8, 1]);
        // a watermark behind the poll's start is saved as it is
        let mut behind = Window::new(None, look_back, 0);
        behind.acknowledge(&[at(1_500, 3)], 2_000);
        assert_eq!(behind.checkpoint(2_000), Some(at(1_500, 3)));
        assert_eq!(Window::new(None, look_back, 0).checkpoint(2_000), None);
    }

    /// With a one-second column (`TIMESTAMP(0)`), a row updated twice in the
    /// same second carries the same pair both times: the pair must not be
    /// suppressed until the second it names is over, or the second update
    /// is never published.
    #[test]
    fn coarse_timestamps_are_not_suppressed_within_their_second() {
        let second = 1_000_000;
        let mut window = Window::new(None, 30 * second, second);
        // poll 1 starts at 10.3 s and sees row 7 stamped 10 s (truncated)
        let row = at(10 * second, 7);
        window.acknowledge(std::slice::from_ref(&row), 10 * second + 300_000);
        assert_eq!(window.remembered(), 0);
        // poll 2 at 10.9 s: the row may have been updated again within 10 s
        let decision = window.decide(std::slice::from_ref(&row));
        assert_eq!(ids(&decision), vec![7], "published again");
        window.acknowledge(std::slice::from_ref(&row), 10 * second + 900_000);
        // poll 3 starts at 11.0 s: no later update can carry 10 s any more
        window.acknowledge(std::slice::from_ref(&row), 11 * second);
        assert_eq!(window.remembered(), 1);
        assert_eq!(window.decide(&[row]).suppressed, 1);
        // microsecond columns are suppressed at once
        let mut fine = Window::new(None, 30 * second, 1);
        fine.acknowledge(&[at(10, 1)], 0);
        assert_eq!(fine.remembered(), 1);
    }

    #[test]
    fn string_ids_order_and_prune() {
        let text = |timestamp_us, id: &str| Position {
            timestamp_us,
            id: Id::Str(id.into()),
        };
        let mut window = Window::new(None, 0, 0);
        window.acknowledge(&[text(5, "b"), text(5, "a"), text(4, "z")], i64::MAX);
        assert_eq!(window.watermark(), Some(&text(5, "b")));
        window.prune(i64::MAX);
        assert_eq!(
            window.remembered(),
            2,
            "string ids sort after the Int(MIN) floor"
        );
    }

    #[test]
    fn lag_and_pacing() {
        assert_eq!(lag_seconds(None, 5_000_000), 0.0);
        assert_eq!(lag_seconds(Some(&at(1_000_000, 1)), 3_500_000), 2.5);
        assert_eq!(
            lag_seconds(Some(&at(9_000_000, 1)), 3_500_000),
            0.0,
            "clock skew never gives a negative lag"
        );
        let cases = [
            (1000, 0, None, 0),
            (1000, 0, Some(1000), 1_000_000),
            (1000, 400_000, Some(1000), 600_000),
            (1000, 2_000_000, Some(1000), 0),
            (10, 0, Some(3), 3_333_333),
        ];
        for (rows, elapsed, cap, expected) in cases {
            assert_eq!(
                pacing_delay_us(rows, elapsed, cap),
                expected,
                "{rows} rows in {elapsed}us, cap {cap:?}"
            );
        }
    }
}
