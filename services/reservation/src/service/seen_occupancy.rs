//! A per-replica snapshot of each date's held and sold seats, shared by the HoldSeat calls
//! that arrive together and reused for a moment (`SEAT_OCCUPANCY_REUSE_MS`; past that, the
//! call that finds it old reads it again while the others are given the kept one, for at
//! most twice that: `platform::reuse::Refreshed`), so that a crowd asking for seats of one
//! date is judged against one read of it rather than one read (and one losing insert) per
//! call, and does not wait on each re-read.
//!
//! Like [`super::taken_seats::TakenSeats`] it is only a reason to skip a seat, never to hold
//! one: PostgreSQL's unique index over live reservations decides every hold, so a snapshot
//! can never cause a seat to be held twice. A seat taken after the snapshot was read looks
//! free and its insert loses as before. What a snapshot can do is pass over a seat released
//! (cancelled, run out, compensated) after it was read, for at most the reuse window: the
//! caller is refused SEAT_UNAVAILABLE as if it had asked that much earlier (at most twice the
//! window). A cancel on this replica drops its date's snapshot at once.
use std::{collections::HashSet, sync::Arc};

use chrono::{DateTime, TimeDelta, Utc};
use platform::reuse::Refreshed;
use uuid::Uuid;

use crate::{error::ReservationError, store::ReservationRepo};

/// Most dates one replica keeps a snapshot of.
const CAPACITY: u64 = 10_000;

/// The held and sold seats of one date, as read at `read_at` (the service's clock).
#[derive(Debug, Clone)]
struct Snapshot {
    read_at: DateTime<Utc>,
    seats: Arc<HashSet<u32>>,
}

/// The replica's occupancy snapshots.
#[derive(Debug, Clone)]
pub struct SeenOccupancy {
    repo: ReservationRepo,
    snapshots: Refreshed<Uuid, Snapshot>,
    /// Oldest a snapshot may be and still be used: twice the reuse window.
    oldest: TimeDelta,
}

impl SeenOccupancy {
    /// Snapshots fresh for `window` and used for at most twice that (zero: every call reads).
    #[must_use]
    pub fn new(repo: ReservationRepo, window: std::time::Duration) -> Self {
        let snapshots = Refreshed::new(CAPACITY, window);
        Self { repo, snapshots, oldest: TimeDelta::from_std(window * 2).unwrap_or(TimeDelta::MAX) }
    }

    /// `schedule_id`'s held and sold seats at most twice the reuse window old by the clock's
    /// `now`: the kept snapshot, or one read now (shared with the calls that miss together;
    /// past the window, read by this call while the others are given the kept one).
    ///
    /// # Errors
    /// Database failures.
    pub async fn get(&self, schedule_id: Uuid, now: DateTime<Utc>) -> Result<Arc<HashSet<u32>>, ReservationError> {
        let reading = read(&self.repo, schedule_id, now);
        let kept =
            self.snapshots.get(schedule_id, reading, |e| ReservationError::shared(e, "a date's occupancy")).await?;
        if self.usable(&kept, now) {
            return Ok(kept.seats);
        }
        // Kept by wall time but judged by the service's clock (a test clock moved on, or
        // set back): read what holds at `now` instead.
        Ok(read(&self.repo, schedule_id, now).await?.seats)
    }

    /// The kept snapshot of `schedule_id`, if one is usable at `now`; never reads.
    pub async fn peek(&self, schedule_id: Uuid, now: DateTime<Utc>) -> Option<Arc<HashSet<u32>>> {
        self.snapshots.peek(&schedule_id).await.filter(|s| self.usable(s, now)).map(|s| s.seats)
    }

    /// Drops `schedule_id`'s snapshot (this replica just released one of its seats).
    pub async fn forget(&self, schedule_id: Uuid) {
        self.snapshots.forget(&schedule_id).await;
    }

    fn usable(&self, s: &Snapshot, now: DateTime<Utc>) -> bool {
        s.read_at <= now && now - s.read_at <= self.oldest
    }
}

async fn read(repo: &ReservationRepo, schedule_id: Uuid, now: DateTime<Utc>) -> Result<Snapshot, ReservationError> {
    let seats = repo.occupancy(&[schedule_id], now).await?;
    Ok(Snapshot { read_at: now, seats: Arc::new(seats.into_iter().map(|o| o.seat_number).collect()) })
}
