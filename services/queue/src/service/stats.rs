//! What `GetQueueStats` shows of a room: its line's counts and its effective policy. Anyone
//! may ask (no token), so each replica counts a room at most once per line refresh, however
//! many callers.
use std::time::Duration;

use chrono::{DateTime, Utc};
use platform::{clock::SharedClock, reuse::Reused};
use uuid::Uuid;

use super::rooms::Rooms;
use crate::{
    domain::{AdmissionPolicy, Room},
    error::QueueError,
    store::{QueueCounts, QueueRepo},
};

/// A room's figures as of `at`.
#[derive(Debug, Clone)]
pub struct RoomStats {
    pub room: Room,
    pub counts: QueueCounts,
    /// The service-wide policy with the room's overrides.
    pub policy: AdmissionPolicy,
    /// The database's clock at the count: whether the sale has opened is judged by it.
    pub at: DateTime<Utc>,
}

/// Counts of rooms, reused for one line refresh.
#[derive(Debug, Clone)]
pub struct Stats {
    repo: QueueRepo,
    rooms: Rooms,
    policy: AdmissionPolicy,
    clock: SharedClock,
    /// How long a count is reused (the line refresh).
    refresh: Duration,
    counts: Reused<Uuid, QueueCounts>,
}

impl Stats {
    /// Counts live for `refresh` (the line refresh); `policy` is the service-wide one.
    #[must_use]
    pub fn new(repo: QueueRepo, rooms: Rooms, policy: AdmissionPolicy, clock: SharedClock, refresh: Duration) -> Self {
        Self { repo, rooms, policy, clock, refresh, counts: Reused::new(100_000, refresh) }
    }

    /// The same figures read through `repo` (another pool), rooms included. Its counts are
    /// reused apart from this one's: a caller on the lane must not join a count in flight on
    /// the stalled public pool.
    #[must_use]
    pub fn on(&self, repo: QueueRepo) -> Self {
        Self::new(repo.clone(), self.rooms.on(repo), self.policy, self.clock.clone(), self.refresh)
    }

    /// The figures of `concert_id`'s room.
    ///
    /// # Errors
    /// [`QueueError::ConcertNotFound`]; database failures; an unreachable catalog.
    pub async fn of(&self, concert_id: Uuid) -> Result<RoomStats, QueueError> {
        let room = self.rooms.fresh(concert_id).await?;
        let at = self.clock.now();
        let read = self.repo.counts(concert_id, at);
        let counts = self.counts.get(concert_id, read, |e| QueueError::shared(e, "counting the line")).await?;
        let policy = self.policy_of(&room);
        Ok(RoomStats { room, counts, policy, at: counts.read_at })
    }

    /// The policy `room` runs under: the service-wide one with the room's overrides.
    #[must_use]
    pub fn policy_of(&self, room: &Room) -> AdmissionPolicy {
        self.policy.with_overrides(&room.overrides)
    }
}
