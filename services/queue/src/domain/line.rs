//! A picture of the waiting line, and the wait estimate drawn from it.
//!
//! **Why a snapshot.** Position is the number of WAITING tokens with a lower `seq`, plus one.
//! Counting them per poll costs a scan of the line (~4,000 polls/s at 10,000 waiting on two
//! cores). Instead each replica reads the whole line — the sorted `seq`s of WAITING tokens,
//! one index-only scan — on a short tick (`QUEUE_LINE_REFRESH_MS`, default 250 ms) and
//! answers every poll and every open `WatchQueue` stream from that one read with a binary
//! search. A position is therefore exact as of the snapshot, at most one tick old, and
//! counts every departure ahead (admissions, leaves, idle expiry) because departed tokens
//! are simply absent. The token's own state is still read per poll (a primary-key read).
//!
//! **ETA formula.** Between two snapshots `d` tokens left the line (admitted, left or
//! expired) in `Δt` seconds. The departure rate `r` is an exponentially weighted moving
//! average of `d / Δt` with a time constant τ = 10 s: `r ← r + (1 − e^(−Δt/τ))·(d/Δt − r)`.
//! A token at position `p` is estimated to wait `ceil(p / r)` seconds; with `r` below one
//! departure per 100 s the estimate is unknown (none is given rather than a wild one).
use chrono::{DateTime, Utc};

/// Time constant of the departure-rate average, in seconds.
pub const RATE_TIME_CONSTANT_SECS: f64 = 10.0;
/// Below this departure rate (per second) no wait is estimated.
pub const MIN_RATE_FOR_ETA: f64 = 0.01;

/// The line as one replica last read it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSnapshot {
    /// `seq` of every WAITING token, ascending.
    pub waiting: Vec<i64>,
    /// ACTIVE tokens (unexpired) at the time of the read.
    pub active: u64,
    /// Highest `seq` of any token at the time of the read (0 for none).
    pub max_seq: i64,
    /// Departures per second from the line (EWMA, see the module docs).
    pub departure_rate: f64,
    /// When the read was made.
    pub taken_at: DateTime<Utc>,
}

impl LineSnapshot {
    /// An empty line, before the first read.
    #[must_use]
    pub fn empty(now: DateTime<Utc>) -> Self {
        Self { waiting: Vec::new(), active: 0, max_seq: 0, departure_rate: 0.0, taken_at: now }
    }

    /// The next snapshot, from a fresh read of the line taken at `now`.
    #[must_use]
    pub fn next(&self, waiting: Vec<i64>, active: u64, max_seq: i64, now: DateTime<Utc>) -> Self {
        let dt = (now - self.taken_at).num_milliseconds() as f64 / 1_000.0;
        let departure_rate = if dt > 0.0 {
            let departed = departures(&self.waiting, &waiting) as f64;
            let alpha = 1.0 - (-dt / RATE_TIME_CONSTANT_SECS).exp();
            self.departure_rate + alpha * (departed / dt - self.departure_rate)
        } else {
            self.departure_rate
        };
        Self { waiting, active, max_seq, departure_rate, taken_at: now }
    }

    /// WAITING tokens ahead of `seq` (those with a lower `seq`).
    ///
    /// A token that joined after the snapshot (`seq > max_seq`) is not in it, and neither
    /// are the joins between; it is counted behind everyone in the snapshot and behind
    /// every `seq` drawn since, which can only overstate its place (some of those seqs
    /// were never used or have left). So a position never rises from one snapshot to the
    /// next.
    #[must_use]
    pub fn ahead_of(&self, seq: i64) -> u64 {
        let in_snapshot = self.waiting.partition_point(|&s| s < seq) as u64;
        let drawn_since = seq.saturating_sub(self.max_seq.max(self.waiting.last().copied().unwrap_or(0))) - 1;
        in_snapshot + u64::try_from(drawn_since).unwrap_or(0)
    }

    /// Whether `seq` was WAITING when the snapshot was taken.
    #[must_use]
    pub fn contains(&self, seq: i64) -> bool {
        self.waiting.binary_search(&seq).is_ok()
    }

    /// WAITING tokens in the line.
    #[must_use]
    pub fn waiting_count(&self) -> u64 {
        self.waiting.len() as u64
    }

    /// Estimated seconds until position `position` (1-based) is admitted, if the line moves.
    #[must_use]
    pub fn estimated_wait_secs(&self, position: u64) -> Option<u64> {
        if position == 0 || self.departure_rate < MIN_RATE_FOR_ETA {
            return None;
        }
        let secs = (position as f64 / self.departure_rate).ceil();
        // Saturating float-to-int conversion; an absurd estimate is capped, not wrapped.
        Some(secs.min(u64::MAX as f64) as u64)
    }
}

/// Tokens in `before` that are no longer in `after` (both ascending). Tokens only ever
/// leave the line, and new ones join at the end, so this is a merge walk.
fn departures(before: &[i64], after: &[i64]) -> usize {
    let mut gone = 0;
    let mut j = 0;
    for &seq in before {
        while j < after.len() && after[j] < seq {
            j += 1;
        }
        if after.get(j) != Some(&seq) {
            gone += 1;
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn position_counts_only_waiting_tokens_ahead() {
        let s = LineSnapshot { waiting: vec![3, 7, 8, 20], max_seq: 22, ..LineSnapshot::empty(t0()) };
        assert_eq!(s.ahead_of(3), 0);
        assert_eq!(s.ahead_of(8), 2);
        assert_eq!(s.ahead_of(21), 4, "21 was not waiting when the snapshot was taken");
        assert_eq!(s.ahead_of(23), 4, "the first join after the snapshot is behind everyone in it");
        assert_eq!(s.ahead_of(26), 7, "and behind every seq drawn since, at most");
        assert!(s.contains(7) && !s.contains(5));
    }

    #[test]
    fn a_join_newer_than_the_snapshot_never_sees_its_position_rise() {
        // Snapshot 1 saw seqs 1, 2 waiting (max 2); token 4 joins after it; 3 joins too.
        let old = LineSnapshot { waiting: vec![1, 2], max_seq: 2, ..LineSnapshot::empty(t0()) };
        let first = old.ahead_of(4) + 1;
        // Snapshot 2 sees everyone, nobody admitted yet.
        let new = old.next(vec![1, 2, 3, 4], 0, 4, t0() + Duration::seconds(1));
        let second = new.ahead_of(4) + 1;
        assert!(second <= first, "{first} then {second}");
    }

    #[test]
    fn departures_count_leavers_anywhere_in_the_line_but_not_joiners() {
        assert_eq!(departures(&[1, 2, 3, 4], &[2, 4, 5, 6]), 2);
        assert_eq!(departures(&[1, 2, 3], &[1, 2, 3, 9]), 0);
        assert_eq!(departures(&[1, 2, 3], &[]), 3);
    }

    #[test]
    fn the_rate_follows_admissions_and_gives_a_wait_estimate() {
        let mut s = LineSnapshot { waiting: (1..=1_000).collect(), ..LineSnapshot::empty(t0()) };
        // 10 tokens leave every second for a minute: the average converges on 10/s.
        for tick in 1..=60 {
            let waiting = s.waiting[10..].to_vec();
            s = s.next(waiting, 5, 1_000, t0() + Duration::seconds(tick));
        }
        assert!((s.departure_rate - 10.0).abs() < 0.1, "rate {}", s.departure_rate);
        assert_eq!(s.estimated_wait_secs(95), Some(10), "95 places at ~10/s");
        assert_eq!(s.estimated_wait_secs(0), None);
        assert_eq!(s.active, 5);
    }

    #[test]
    fn a_line_that_does_not_move_has_no_estimate() {
        let mut s = LineSnapshot { waiting: vec![1, 2, 3], ..LineSnapshot::empty(t0()) };
        for tick in 1..=5 {
            s = s.next(vec![1, 2, 3], 0, 3, t0() + Duration::seconds(tick));
        }
        assert_eq!(s.estimated_wait_secs(1), None);
    }
}
