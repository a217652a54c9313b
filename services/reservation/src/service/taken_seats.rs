//! A per-replica hint of seats known to be taken (an insert lost to them, or this replica
//! held them), so a crowd racing for one seat is refused without a database round trip each.
//!
//! It is only a hint: whether a hold succeeds is always decided by PostgreSQL's unique index
//! over live reservations, so the hint can never cause a seat to be held twice. What it can
//! do is refuse a seat that has just been released early (cancelled, or compensated) on
//! another replica, for at most `SEAT_TAKEN_CACHE_MS`. A hint never outlives the blocking
//! hold's own expiry, and a cancel on this replica clears it at once.
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::sync::Cache;
use uuid::Uuid;

/// Most seats one replica remembers.
const CAPACITY: u64 = 200_000;

/// Seats known to be held or sold, each until a time.
#[derive(Debug, Clone)]
pub struct TakenSeats {
    cache: Option<Cache<(Uuid, u32), DateTime<Utc>>>,
}

impl TakenSeats {
    /// Remembers taken seats for at most `ttl` (zero disables the hint).
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| Cache::builder().max_capacity(CAPACITY).time_to_live(ttl).build());
        Self { cache }
    }

    /// True when the seat is known to be taken at `now`.
    #[must_use]
    pub fn is_taken(&self, schedule_id: Uuid, seat: u32, now: DateTime<Utc>) -> bool {
        self.cache.as_ref().and_then(|c| c.get(&(schedule_id, seat))).is_some_and(|until| until > now)
    }

    /// Records that the seat is blocked until `until`.
    pub fn mark(&self, schedule_id: Uuid, seat: u32, until: DateTime<Utc>) {
        if let Some(c) = &self.cache {
            c.insert((schedule_id, seat), until);
        }
    }

    /// Forgets a seat (after this replica released it).
    pub fn forget(&self, schedule_id: Uuid, seat: u32) {
        if let Some(c) = &self.cache {
            c.invalidate(&(schedule_id, seat));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_lasts_until_the_blocking_hold_expires() {
        let seats = TakenSeats::new(Duration::from_secs(60));
        let (id, now) = (Uuid::new_v4(), Utc::now());
        assert!(!seats.is_taken(id, 1, now));
        seats.mark(id, 1, now + chrono::Duration::seconds(5));
        assert!(seats.is_taken(id, 1, now));
        assert!(!seats.is_taken(id, 1, now + chrono::Duration::seconds(5)), "not past the hold's expiry");
        assert!(!seats.is_taken(id, 2, now));
        seats.forget(id, 1);
        assert!(!seats.is_taken(id, 1, now));
    }

    #[test]
    fn a_zero_ttl_disables_the_hint() {
        let seats = TakenSeats::new(Duration::ZERO);
        let (id, now) = (Uuid::new_v4(), Utc::now());
        seats.mark(id, 1, now + chrono::Duration::seconds(5));
        assert!(!seats.is_taken(id, 1, now));
    }
}
