//! Rate limiting: a token bucket over rows, and the adaptive rule that lowers
//! the rate when Elasticsearch pushes back or the database slows down, and
//! raises it again once things are calm.
//!
//! Pure: the clock is injected as a [`Duration`] since an arbitrary start, so
//! every decision is testable without sleeping. The caller sleeps.

use std::time::Duration;

/// A token bucket counting rows. Reservations may go into debt: a page of
/// more rows than the bucket holds is still allowed, and the caller waits
/// until the debt is paid back.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    /// Rows per second; `None` is unlimited.
    rate_per_second: Option<f64>,
    /// Tokens available now (negative: debt).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated_at: Duration,
}

/// How many seconds of tokens the bucket holds: a short burst after an idle
/// moment, never a long one.
const BURST_SECONDS: f64 = 1.0;

impl TokenBucket {
    /// A full bucket for `rate_per_second` rows per second (`None`: unlimited).
    pub fn new(rate_per_second: Option<f64>, now: Duration) -> TokenBucket {
        let mut bucket = TokenBucket {
            rate_per_second: None,
            tokens: 0.0,
            updated_at: now,
        };
        bucket.set_rate(rate_per_second, now);
        bucket.tokens = bucket.capacity();
        bucket
    }

    /// The current rate.
    pub fn rate(&self) -> Option<f64> {
        self.rate_per_second
    }

    /// Changes the rate from `now` on; tokens earned so far are kept (up to the
    /// new capacity), debt is kept too.
    pub fn set_rate(&mut self, rate_per_second: Option<f64>, now: Duration) {
        self.refill(now);
        self.rate_per_second = rate_per_second.filter(|rate| rate.is_finite() && *rate > 0.0);
        self.tokens = self.tokens.min(self.capacity());
    }

    /// Takes `rows` tokens and returns how long to wait before using them.
    pub fn reserve(&mut self, rows: u64, now: Duration) -> Duration {
        self.refill(now);
        let Some(rate) = self.rate_per_second else {
            return Duration::ZERO;
        };
        self.tokens -= rows as f64;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.tokens / rate)
    }

    fn capacity(&self) -> f64 {
        self.rate_per_second
            .map_or(0.0, |rate| (rate * BURST_SECONDS).max(1.0))
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.updated_at).as_secs_f64();
        self.updated_at = self.updated_at.max(now);
        if let Some(rate) = self.rate_per_second {
            self.tokens = (self.tokens + elapsed * rate).min(self.capacity());
        }
    }
}

/// The wait left for rows reserved at `old_rate` once the rate becomes
/// `new_rate`: the rows still owed, paid at the new rate. A worker sleeping
/// off a page reserved at 20 rows/s must not sleep on for seconds after an
/// operator raised the limit to 5000.
pub fn rescale_wait(remaining: Duration, old_rate: Option<f64>, new_rate: Option<f64>) -> Duration {
    match (old_rate, new_rate) {
        (_, None) => Duration::ZERO,
        (Some(old_rate), Some(new_rate)) if new_rate > 0.0 && old_rate.is_finite() => {
            Duration::from_secs_f64(remaining.as_secs_f64() * old_rate / new_rate)
        }
        _ => remaining,
    }
}

/// Settings of the adaptive rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveSettings {
    /// The configured ceiling (`--max-rate`); `None`: unlimited when calm.
    pub max_rate: Option<f64>,
    /// Never slower than this, rows per second.
    pub min_rate: f64,
    /// Mean keyset-query latency above which the database counts as strained.
    pub db_latency_threshold: Duration,
    /// Calm time required before each step back up.
    pub calm_period: Duration,
    /// Factor applied on pressure (e.g. 0.5).
    pub decrease_factor: f64,
    /// Factor applied per calm period (e.g. 1.25).
    pub increase_factor: f64,
}

impl AdaptiveSettings {
    /// Defaults around a ceiling: halve on pressure, +25% per 5 calm seconds,
    /// never below 10 rows/s.
    pub fn new(max_rate: Option<f64>, db_latency_threshold: Duration) -> AdaptiveSettings {
        AdaptiveSettings {
            max_rate,
            min_rate: 10.0,
            db_latency_threshold,
            calm_period: Duration::from_secs(5),
            decrease_factor: 0.5,
            increase_factor: 1.25,
        }
    }
}

/// What happened during one observation window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Window {
    /// Rows handled in the window.
    pub rows: u64,
    /// Length of the window.
    pub elapsed: Duration,
    /// Elasticsearch items or requests retried in the window (429, 5xx,
    /// connection errors): the cluster pushing back.
    pub es_retries: u64,
    /// Mean latency of the database queries in the window, if any ran.
    pub db_latency: Option<Duration>,
}

/// Why the rate went down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pressure {
    /// Elasticsearch rejected or failed this many items or requests.
    ElasticsearchRejections(u64),
    /// The database's mean query latency.
    SlowDatabase(Duration),
}

impl std::fmt::Display for Pressure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pressure::ElasticsearchRejections(count) => {
                write!(formatter, "elasticsearch pushed back on {count} item(s)")
            }
            Pressure::SlowDatabase(latency) => write!(
                formatter,
                "database query latency {} ms",
                latency.as_millis()
            ),
        }
    }
}

/// The decision after a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Leave the rate as it is.
    Keep,
    /// Lower the rate to `limit` rows per second.
    SlowDown {
        /// The new limit.
        limit: f64,
        /// Why.
        pressure: Pressure,
    },
    /// Raise the rate; `None` is unlimited.
    SpeedUp {
        /// The new limit.
        limit: Option<f64>,
    },
}

/// Multiplicative decrease on pressure, stepwise increase when calm, between
/// `min_rate` and `max_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveRate {
    settings: AdaptiveSettings,
    limit: Option<f64>,
    calm_since: Duration,
}

impl AdaptiveRate {
    /// Starts at the ceiling.
    pub fn new(settings: AdaptiveSettings, now: Duration) -> AdaptiveRate {
        AdaptiveRate {
            settings,
            limit: settings.max_rate,
            calm_since: now,
        }
    }

    /// The current limit, rows per second (`None`: unlimited).
    pub fn limit(&self) -> Option<f64> {
        self.limit
    }

    /// The ceiling (`max_rate`) now.
    pub fn ceiling(&self) -> Option<f64> {
        self.settings.max_rate
    }

    /// A new ceiling from `now` on (an operator's `ctl rate`): the limit
    /// starts again at it, as at the start of a run. Pressure that goes on
    /// lowers it again within one window, so the operator's word takes effect
    /// at once without switching the slow-down off.
    pub fn reset_ceiling(&mut self, max_rate: Option<f64>, now: Duration) {
        self.settings.max_rate = max_rate;
        self.limit = max_rate;
        self.calm_since = now;
    }

    /// Decides from one window ending at `now`.
    pub fn observe(&mut self, window: &Window, now: Duration) -> Decision {
        let settings = &self.settings;
        let pressure = if window.es_retries > 0 {
            Some(Pressure::ElasticsearchRejections(window.es_retries))
        } else {
            window
                .db_latency
                .filter(|latency| *latency > settings.db_latency_threshold)
                .map(Pressure::SlowDatabase)
        };
        let observed_rate = if window.elapsed.is_zero() {
            0.0
        } else {
            window.rows as f64 / window.elapsed.as_secs_f64()
        };
        if let Some(pressure) = pressure {
            self.calm_since = now;
            // Decrease from what actually went through: a limit far above the
            // real rate would take many windows to bite.
            let base = match (self.limit, observed_rate > 0.0) {
                (Some(limit), true) => limit.min(observed_rate),
                (Some(limit), false) => limit,
                (None, true) => observed_rate,
                (None, false) => settings.min_rate / settings.decrease_factor,
            };
            let limit = (base * settings.decrease_factor).max(settings.min_rate);
            self.limit = Some(limit);
            return Decision::SlowDown { limit, pressure };
        }
        let Some(limit) = self.limit else {
            return Decision::Keep;
        };
        if settings.max_rate.is_some_and(|max_rate| limit >= max_rate) {
            return Decision::Keep;
        }
        if now.saturating_sub(self.calm_since) < settings.calm_period {
            return Decision::Keep;
        }
        self.calm_since = now;
        let raised = limit * settings.increase_factor;
        self.limit = match settings.max_rate {
            Some(max_rate) => Some(raised.min(max_rate)),
            // Without a ceiling, the limit goes away once it no longer binds.
            None if observed_rate > 0.0 && raised > 2.0 * observed_rate => None,
            None => Some(raised),
        };
        Decision::SpeedUp { limit: self.limit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn bucket_paces_reservations() {
        // (rate, steps of (at ms, rows, expected wait ms))
        type Case = (Option<f64>, Vec<(u64, u64, u64)>);
        let cases: Vec<Case> = vec![
            // a full bucket lets one second's worth through, then paces
            (Some(100.0), vec![(0, 100, 0), (0, 50, 500), (0, 50, 1000)]),
            // time refills it
            (Some(100.0), vec![(0, 100, 0), (500, 50, 0), (500, 10, 100)]),
            // a page bigger than the bucket goes into debt
            (Some(10.0), vec![(0, 30, 2000), (2000, 10, 1000)]),
            // idle time never saves more than one second of tokens
            (Some(10.0), vec![(0, 10, 0), (60_000, 20, 1000)]),
            (None, vec![(0, 1_000_000, 0), (0, 1_000_000, 0)]),
        ];
        for (rate, steps) in cases {
            let mut bucket = TokenBucket::new(rate, ms(0));
            for (at, rows, expected) in steps {
                let wait = bucket.reserve(rows, ms(at));
                assert_eq!(
                    wait.as_millis(),
                    u128::from(expected),
                    "rate {rate:?}: {rows} rows at {at} ms"
                );
            }
        }
    }

    #[test]
    fn bucket_rate_changes_keep_debt() {
        let mut bucket = TokenBucket::new(Some(100.0), ms(0));
        assert_eq!(bucket.reserve(200, ms(0)), ms(1000));
        bucket.set_rate(Some(50.0), ms(0));
        assert_eq!(
            bucket.reserve(0, ms(0)),
            ms(2000),
            "debt is paid at the new rate"
        );
        bucket.set_rate(None, ms(0));
        assert_eq!(bucket.reserve(10_000, ms(0)), Duration::ZERO);
        bucket.set_rate(Some(f64::NAN), ms(0));
        assert_eq!(bucket.rate(), None, "nonsense rates mean unlimited");
    }

    fn window(rows: u64, es_retries: u64, db_latency_ms: Option<u64>) -> Window {
        Window {
            rows,
            elapsed: Duration::from_secs(1),
            es_retries,
            db_latency: db_latency_ms.map(ms),
        }
    }

    #[test]
    fn adaptive_rate_reacts_to_pressure_and_calm() {
        let settings = AdaptiveSettings::new(Some(1000.0), ms(200));
        // (at s, window, expected decision)
        let steps = vec![
            (1, window(1000, 0, Some(10)), Decision::Keep),
            (
                2,
                window(800, 3, Some(10)),
                Decision::SlowDown {
                    limit: 400.0,
                    pressure: Pressure::ElasticsearchRejections(3),
                },
            ),
            (
                3,
                window(400, 0, Some(450)),
                Decision::SlowDown {
                    limit: 200.0,
                    pressure: Pressure::SlowDatabase(ms(450)),
                },
            ),
            (4, window(200, 0, Some(10)), Decision::Keep),
            (
                8,
                window(200, 0, Some(10)),
                Decision::SpeedUp { limit: Some(250.0) },
            ),
            (9, window(250, 0, None), Decision::Keep),
            (
                13,
                window(250, 0, None),
                Decision::SpeedUp { limit: Some(312.5) },
            ),
        ];
        let mut adaptive = AdaptiveRate::new(settings, Duration::ZERO);
        assert_eq!(adaptive.limit(), Some(1000.0));
        for (at, window, expected) in steps {
            assert_eq!(
                adaptive.observe(&window, Duration::from_secs(at)),
                expected,
                "at {at} s"
            );
        }
    }

    #[test]
    fn adaptive_rate_respects_floor_and_ceiling() {
        let mut settings = AdaptiveSettings::new(Some(100.0), ms(200));
        settings.calm_period = Duration::ZERO;
        let mut adaptive = AdaptiveRate::new(settings, Duration::ZERO);
        for at in 1..10 {
            adaptive.observe(&window(5, 1, None), Duration::from_secs(at));
        }
        assert_eq!(adaptive.limit(), Some(10.0), "never below min_rate");
        for at in 10..40 {
            adaptive.observe(&window(100, 0, None), Duration::from_secs(at));
        }
        assert_eq!(adaptive.limit(), Some(100.0), "never above max_rate");
        assert_eq!(
            adaptive.observe(&window(100, 0, None), Duration::from_secs(41)),
            Decision::Keep
        );
    }

    #[test]
    fn waits_are_rescaled_to_the_new_rate() {
        // (remaining ms, old rate, new rate, expected ms)
        let cases = [
            (2000, Some(20.0), Some(5000.0), 8),
            (1000, Some(100.0), Some(50.0), 2000),
            (1000, Some(100.0), None, 0),
            (1000, None, Some(100.0), 1000),
            (1000, Some(100.0), Some(0.0), 1000),
            (0, Some(1.0), Some(2.0), 0),
        ];
        for (remaining, old, new, expected) in cases {
            assert_eq!(
                rescale_wait(ms(remaining), old, new).as_millis(),
                expected,
                "{remaining} ms at {old:?} -> {new:?}"
            );
        }
    }

    #[test]
    fn a_new_ceiling_restarts_the_limit_there() {
        let mut adaptive =
            AdaptiveRate::new(AdaptiveSettings::new(Some(100.0), ms(200)), Duration::ZERO);
        adaptive.observe(&window(100, 5, None), Duration::from_secs(1));
        assert_eq!(adaptive.limit(), Some(50.0));
        adaptive.reset_ceiling(Some(5000.0), Duration::from_secs(2));
        assert_eq!(
            (adaptive.limit(), adaptive.ceiling()),
            (Some(5000.0), Some(5000.0))
        );
        // pressure still bites, from what went through
        assert_eq!(
            adaptive.observe(&window(1000, 1, None), Duration::from_secs(3)),
            Decision::SlowDown {
                limit: 500.0,
                pressure: Pressure::ElasticsearchRejections(1)
            }
        );
        // calm time counts from the reset
        adaptive.reset_ceiling(None, Duration::from_secs(4));
        assert_eq!(adaptive.limit(), None);
        assert_eq!(
            adaptive.observe(&window(1000, 0, None), Duration::from_secs(5)),
            Decision::Keep
        );
    }

    #[test]
    fn without_ceiling_the_limit_disappears_once_it_stops_binding() {
        let mut settings = AdaptiveSettings::new(None, ms(200));
        settings.calm_period = Duration::ZERO;
        let mut adaptive = AdaptiveRate::new(settings, Duration::ZERO);
        assert_eq!(
            adaptive.observe(&window(1000, 0, None), Duration::from_secs(1)),
            Decision::Keep
        );
        assert_eq!(
            adaptive.observe(&window(1000, 2, None), Duration::from_secs(2)),
            Decision::SlowDown {
                limit: 500.0,
                pressure: Pressure::ElasticsearchRejections(2)
            }
        );
        let mut at = 3;
        while adaptive.limit().is_some() {
            // the rest of the pipeline only does 400 rows/s
            adaptive.observe(&window(400, 0, None), Duration::from_secs(at));
            at += 1;
            assert!(at < 20, "the limit should have gone");
        }
        assert_eq!(adaptive.limit(), None);
    }
}
