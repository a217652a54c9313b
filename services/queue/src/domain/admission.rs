use chrono::{DateTime, Duration, Utc};

/// How many users may be ACTIVE, how fast they are let in, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// Most tokens ACTIVE at once (`QUEUE_MAX_ACTIVE`, default 100).
    pub max_active: u64,
    /// How long an admitted token stays ACTIVE (`QUEUE_ACTIVE_TTL_SECS`, default 600 s).
    pub active_ttl: Duration,
    /// Most admissions per one-second window across all replicas (`QUEUE_ADMIT_PER_SEC`);
    /// 0 = no rate limit (only `max_active` applies).
    pub admit_per_sec: u64,
    /// A WAITING token not polled (and without an open WatchQueue stream) for this long
    /// expires (`QUEUE_IDLE_TIMEOUT_SECS`, default 120 s).
    pub idle_timeout: Duration,
}

/// How far back the quickest recent journey counts ([`Pace`]): older, the room admits up to
/// `max_active` again until it has seen journeys end.
pub const PACE_MEMORY_SECS: i64 = 60;

/// Concurrency a rate-limited room allows per admission a second and second of journey
/// (Little's law, `active = rate × journey`), with half again for journeys slower than the
/// quickest.
const PACE_HEADROOM: f64 = 1.5;

/// How quickly a room's admitted people have been finishing: the quickest median time from
/// admission to the token's end (paid or left), per 10-second window, over the last
/// [`PACE_MEMORY_SECS`] (rooms.pace_ms, measured once a second by the admission round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub journey: Duration,
    /// When that window ended.
    pub seen_at: DateTime<Utc>,
}

/// Admissions made in the current one-second window (one shared row in the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    pub start: DateTime<Utc>,
    pub admitted: u64,
}

impl Pace {
    /// The pace as a room row stores it (`rooms.pace_ms`, `rooms.pace_seen_at`); `None` until
    /// one was measured.
    #[must_use]
    pub fn stored(journey_ms: Option<i64>, seen_at: Option<DateTime<Utc>>) -> Option<Self> {
        Some(Self { journey: Duration::milliseconds(journey_ms?), seen_at: seen_at? })
    }
}

impl AdmissionPolicy {
    /// Most tokens ACTIVE at once in a room whose recent pace is `pace`, at `now`.
    ///
    /// Without a rate limit, or without a pace seen within [`PACE_MEMORY_SECS`]: `max_active`.
    /// With both: as many as it takes to keep admitting `admit_per_sec` while each admitted
    /// person needs the quickest recent journey (Little's law), with half again as headroom,
    /// at least half a second's admissions and at most `max_active`. A room of buyers who
    /// never pause, a thousand at once, spent its CPU on ~800 of them racing for the earliest
    /// date's 50 seats: the sale went no faster and every call waited behind the others (the
    /// same flood admitting 100 at once sold out in 34 s instead of 51–54, admitted p99
    /// ~0.1 s instead of ~0.6 s; docs/BENCHMARKS.md). The quickest journey, not the latest,
    /// because a crowded room's journeys lengthen with the crowd: sized by them, it would
    /// admit more the slower it got. People who take their time have long journeys, so their
    /// room still admits up to `max_active`.
    #[must_use]
    pub fn concurrency(&self, pace: Option<Pace>, now: DateTime<Utc>) -> u64 {
        let fresh = |p: &Pace| now - p.seen_at <= Duration::seconds(PACE_MEMORY_SECS);
        let Some(pace) = pace.filter(|p| self.admit_per_sec > 0 && fresh(p)) else {
            return self.max_active;
        };
        let seconds = pace.journey.num_milliseconds().max(0) as f64 / 1_000.0;
        // Saturating float-to-int conversion: a pace of hours is simply max_active.
        let needed = (self.admit_per_sec as f64 * seconds * PACE_HEADROOM).ceil() as u64;
        needed.max(self.admit_per_sec.div_ceil(2)).min(self.max_active)
    }

    /// The window in force at `now` (a new one once a second has passed) and how many more
    /// tokens it may admit (`u64::MAX` without a rate limit).
    #[must_use]
    pub fn rate_budget(&self, window: RateWindow, now: DateTime<Utc>) -> (RateWindow, u64) {
        if self.admit_per_sec == 0 {
            return (window, u64::MAX);
        }
        let window =
            if now - window.start >= Duration::seconds(1) { RateWindow { start: now, admitted: 0 } } else { window };
        (window, self.admit_per_sec.saturating_sub(window.admitted))
    }

    /// How many WAITING tokens a round may admit into a room with `active` ACTIVE tokens and
    /// recent pace `pace`, and the rate window to store afterwards (before adding the
    /// admissions): the smaller of the free slots under [`Self::concurrency`] and what is
    /// left of the rate budget.
    #[must_use]
    pub fn admissions(
        &self,
        active: u64,
        pace: Option<Pace>,
        window: RateWindow,
        now: DateTime<Utc>,
    ) -> (RateWindow, u64) {
        let (window, budget) = self.rate_budget(window, now);
        (window, self.concurrency(pace, now).saturating_sub(active).min(budget))
    }

    /// When a WAITING token last seen before this instant counts as abandoned.
    #[must_use]
    pub fn idle_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.idle_timeout
    }

    /// When a token admitted at `now` expires.
    #[must_use]
    pub fn expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.active_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_active: u64, admit_per_sec: u64) -> AdmissionPolicy {
        AdmissionPolicy {
            max_active,
            active_ttl: Duration::seconds(600),
            admit_per_sec,
            idle_timeout: Duration::seconds(60),
        }
    }

    #[test]
    fn the_rate_window_admits_at_most_m_per_second() {
        let p = policy(1_000, 5);
        let t0 = Utc::now();
        let (w, budget) = p.rate_budget(RateWindow { start: t0, admitted: 0 }, t0);
        assert_eq!(budget, 5);
        let used = RateWindow { admitted: 5, ..w };
        assert_eq!(p.rate_budget(used, t0 + Duration::milliseconds(999)).1, 0, "same window: spent");
        let (next, budget) = p.rate_budget(used, t0 + Duration::seconds(1));
        assert_eq!((next.admitted, budget), (0, 5), "a new second, a new window");
        assert_eq!(policy(10, 0).rate_budget(used, t0).1, u64::MAX, "0 means no rate limit");
    }

    #[test]
    fn admissions_are_the_smaller_of_free_slots_and_rate_budget() {
        let t0 = Utc::now();
        let fresh = RateWindow { start: t0 - Duration::seconds(5), admitted: 0 };
        assert_eq!(policy(10, 3).admissions(2, None, fresh, t0).1, 3, "rate-bound");
        assert_eq!(policy(10, 30).admissions(8, None, fresh, t0).1, 2, "slot-bound");
        assert_eq!(policy(10, 0).admissions(10, None, fresh, t0).1, 0, "full");
        let (w, n) = policy(10, 3).admissions(0, None, RateWindow { start: t0, admitted: 2 }, t0);
        assert_eq!((w.admitted, n), (2, 1), "the window in force keeps its count");
        // A quick pace bounds the slots: 250/s × 0.2 s × 1.5 = 75, at least 125.
        let quick = Some(Pace { journey: Duration::milliseconds(200), seen_at: t0 });
        assert_eq!(policy(1_000, 250).admissions(100, quick, fresh, t0).1, 25, "pace-bound");
        assert_eq!(policy(1_000, 250).admissions(125, quick, fresh, t0).1, 0);
    }

    fn pace(ms: i64, seen_at: DateTime<Utc>) -> Option<Pace> {
        Some(Pace { journey: Duration::milliseconds(ms), seen_at })
    }

    #[test]
    fn the_concurrency_follows_the_quickest_recent_journey_within_max_active() {
        let now = Utc::now();
        let p = policy(1_000, 250);
        assert_eq!(p.concurrency(None, now), 1_000, "no journey seen yet");
        assert_eq!(p.concurrency(pace(400, now), now), 150, "250/s × 0.4 s × 1.5");
        assert_eq!(p.concurrency(pace(1_000, now), now), 375);
        assert_eq!(p.concurrency(pace(10, now), now), 125, "at least half a second's admissions");
        assert_eq!(p.concurrency(pace(0, now), now), 125);
        assert_eq!(p.concurrency(pace(20_000, now), now), 1_000, "people who take their time: max_active");
        assert_eq!(p.concurrency(pace(i64::MAX / 2_000_000, now), now), 1_000, "no overflow");
        let stale = now - Duration::seconds(PACE_MEMORY_SECS + 1);
        assert_eq!(p.concurrency(pace(400, stale), now), 1_000, "a pace older than the memory is forgotten");
        assert_eq!(p.concurrency(pace(400, now - Duration::seconds(PACE_MEMORY_SECS)), now), 150);
        assert_eq!(policy(1_000, 0).concurrency(pace(400, now), now), 1_000, "no rate limit: max_active");
        assert_eq!(policy(100, 250).concurrency(pace(1_000, now), now), 100, "never above max_active");
        assert_eq!(policy(50, 250).concurrency(pace(10, now), now), 50, "the floor too");
    }

    proptest::proptest! {
        /// Monotone in the journey (a slower pace never admits fewer at once), and within
        /// [min(max_active, ⌈rate / 2⌉), max_active].
        #[test]
        fn the_concurrency_is_monotone_and_bounded(
            max_active in 1u64..=1_000_000,
            rate in 1u64..=1_000_000,
            a in 0i64..=600_000,
            b in 0i64..=600_000,
        ) {
            let now = Utc::now();
            let p = policy(max_active, rate);
            let (lo, hi) = (a.min(b), a.max(b));
            let (c_lo, c_hi) = (p.concurrency(pace(lo, now), now), p.concurrency(pace(hi, now), now));
            proptest::prop_assert!(c_lo <= c_hi);
            proptest::prop_assert!(c_hi <= max_active);
            proptest::prop_assert!(c_lo >= max_active.min(rate.div_ceil(2)));
        }
    }

    #[test]
    fn idle_cutoff_is_the_timeout_ago() {
        let now = Utc::now();
        assert_eq!(now - policy(1, 0).idle_cutoff(now), Duration::seconds(60));
    }

    #[test]
    fn free_slots_never_negative() {
        let (p, t0) = (policy(3, 0), Utc::now());
        let free = |active| p.admissions(active, None, RateWindow { start: t0, admitted: 0 }, t0).1;
        assert_eq!(free(0), 3);
        assert_eq!(free(3), 0);
        assert_eq!(free(7), 0, "over the limit (policy lowered) admits nobody");
    }

    #[test]
    fn expiry_adds_the_ttl() {
        let p = policy(1, 0);
        let now = Utc::now();
        assert_eq!(p.expiry(now) - now, Duration::seconds(600));
    }
}
