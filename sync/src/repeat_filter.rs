//! Rate limit for repeated log lines: the same message within a window is
//! printed once; its repeats are counted and the count is printed with the
//! next occurrence after the window.
//!
//! librdkafka repeats a failure line for every reconnect attempt (a broker
//! outage gives one `Connect ... failed` line per broker every few hundred
//! milliseconds); one line per window says the same. Pure: the caller passes
//! the time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Entries kept before the expired ones are dropped (a bound on memory,
/// not on what is printed).
const MAX_ENTRIES: usize = 1024;

/// What to do with one occurrence of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Print it; `suppressed` repeats were dropped since it was last printed.
    Print {
        /// Repeats dropped in the window before this one.
        suppressed: u64,
    },
    /// A repeat within the window: drop it (it is counted).
    Drop,
}

#[derive(Debug)]
struct Seen {
    printed_at: Instant,
    suppressed: u64,
}

/// Remembers when each message was last printed.
#[derive(Debug)]
pub struct RepeatFilter {
    window: Duration,
    seen: HashMap<String, Seen>,
}

impl RepeatFilter {
    /// A filter printing each message at most once per `window`.
    pub fn new(window: Duration) -> RepeatFilter {
        RepeatFilter {
            window,
            seen: HashMap::new(),
        }
    }

    /// The verdict for `message` seen at `now`.
    pub fn check(&mut self, message: &str, now: Instant) -> Verdict {
        let key = repeat_key(message);
        if let Some(seen) = self.seen.get_mut(&key) {
            if now.saturating_duration_since(seen.printed_at) < self.window {
                seen.suppressed += 1;
                return Verdict::Drop;
            }
            let suppressed = seen.suppressed;
            *seen = Seen {
                printed_at: now,
                suppressed: 0,
            };
            return Verdict::Print { suppressed };
        }
        if self.seen.len() >= MAX_ENTRIES {
            let window = self.window;
            self.seen
                .retain(|_, seen| now.saturating_duration_since(seen.printed_at) < window);
        }
        self.seen.insert(
            key,
            Seen {
                printed_at: now,
                suppressed: 0,
            },
        );
        Verdict::Print { suppressed: 0 }
    }
}

/// The message with its counts and elapsed times (`after 12ms`, `1/1
/// brokers`, `3 identical error(s) suppressed`) taken out: they change with
/// every attempt while the message says the same. Numbers next to `.` or
/// `:` are kept: they are addresses and ports.
fn repeat_key(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut key = String::with_capacity(message.len());
    let mut index = 0;
    while index < bytes.len() {
        if !bytes[index].is_ascii_digit() {
            let next = message[index..]
                .find(|c: char| c.is_ascii_digit())
                .map_or(bytes.len(), |offset| index + offset);
            key.push_str(&message[index..next]);
            index = next;
            continue;
        }
        let end = message[index..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(bytes.len(), |offset| index + offset);
        let is_address = |byte: Option<&u8>| matches!(byte, Some(b'.' | b':'));
        if is_address(index.checked_sub(1).and_then(|before| bytes.get(before)))
            || is_address(bytes.get(end))
        {
            key.push_str(&message[index..end]);
        } else {
            key.push('#');
        }
        index = end;
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_counted_and_reported_later() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut filter = RepeatFilter::new(Duration::from_secs(30));
        let down = "1/1 brokers are down";
        assert_eq!(filter.check(down, at(0)), Verdict::Print { suppressed: 0 });
        for second in 1..=29 {
            assert_eq!(filter.check(down, at(second)), Verdict::Drop);
        }
        // another message is not held back by the first
        assert_eq!(
            filter.check("Connect to ipv4#127.0.0.1:9 failed", at(5)),
            Verdict::Print { suppressed: 0 }
        );
        assert_eq!(
            filter.check(down, at(30)),
            Verdict::Print { suppressed: 29 }
        );
        assert_eq!(filter.check(down, at(31)), Verdict::Drop);
        assert_eq!(filter.check(down, at(90)), Verdict::Print { suppressed: 1 });
    }

    #[test]
    fn elapsed_times_do_not_make_a_message_new() {
        let now = Instant::now();
        let mut filter = RepeatFilter::new(Duration::from_secs(30));
        let failed = |ms: u32| {
            format!(
                "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after {ms}ms in state CONNECT)"
            )
        };
        assert_eq!(
            filter.check(&failed(0), now),
            Verdict::Print { suppressed: 0 }
        );
        assert_eq!(filter.check(&failed(12), now), Verdict::Drop);
        assert_eq!(
            filter.check("1/1 brokers are down", now),
            Verdict::Print { suppressed: 0 }
        );
        assert_eq!(filter.check("2/2 brokers are down", now), Verdict::Drop);
        // the port is part of what is said
        assert_eq!(
            filter.check(&failed(0).replace("9092", "9093"), now),
            Verdict::Print { suppressed: 0 }
        );
    }
}
