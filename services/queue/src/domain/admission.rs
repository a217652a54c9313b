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

/// Admissions made in the current one-second window (one shared row in the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    pub start: DateTime<Utc>,
    pub admitted: u64,
}

impl AdmissionPolicy {
    /// How many WAITING tokens one round may admit when `active` tokens are ACTIVE.
    #[must_use]
    pub fn free_slots(&self, active: u64) -> u64 {
        self.max_active.saturating_sub(active)
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

    /// How many WAITING tokens a round may admit into a room with `active` ACTIVE tokens,
    /// and the rate window to store afterwards (before adding the admissions): the smaller
    /// of the free slots and what is left of the rate budget.
    #[must_use]
    pub fn admissions(&self, active: u64, window: RateWindow, now: DateTime<Utc>) -> (RateWindow, u64) {
        let (window, budget) = self.rate_budget(window, now);
        (window, self.free_slots(active).min(budget))
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
        assert_eq!(policy(10, 3).admissions(2, fresh, t0).1, 3, "rate-bound");
        assert_eq!(policy(10, 30).admissions(8, fresh, t0).1, 2, "slot-bound");
        assert_eq!(policy(10, 0).admissions(10, fresh, t0).1, 0, "full");
        let (w, n) = policy(10, 3).admissions(0, RateWindow { start: t0, admitted: 2 }, t0);
        assert_eq!((w.admitted, n), (2, 1), "the window in force keeps its count");
    }

    #[test]
    fn idle_cutoff_is_the_timeout_ago() {
        let now = Utc::now();
        assert_eq!(now - policy(1, 0).idle_cutoff(now), Duration::seconds(60));
    }

    #[test]
    fn free_slots_never_negative() {
        let p = policy(3, 0);
        assert_eq!(p.free_slots(0), 3);
        assert_eq!(p.free_slots(3), 0);
        assert_eq!(p.free_slots(7), 0, "over the limit (policy lowered) admits nobody");
    }

    #[test]
    fn expiry_adds_the_ttl() {
        let p = policy(1, 0);
        let now = Utc::now();
        assert_eq!(p.expiry(now) - now, Duration::seconds(600));
    }
}
