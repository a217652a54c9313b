//! In-memory cache of schedule seat layouts.
//!
//! A schedule's seats (numbers, grades, prices) and start time never change after
//! `AddSchedule`, so they are safe to keep in memory; the TTL only bounds memory. Live seat
//! status is never cached here: it comes from reservation on every call.
use std::{sync::Arc, time::Duration};

use moka::future::Cache;
use uuid::Uuid;

use crate::{
    domain::{Schedule, Seat},
    error::CatalogError,
    store::CatalogRepo,
};

/// A schedule and its 50 seats.
pub type ScheduleSeats = Arc<(Schedule, Vec<Seat>)>;

/// Most layouts one replica keeps.
const CAPACITY: u64 = 50_000;

/// Read-through cache over [`CatalogRepo::schedule_seats`].
#[derive(Debug, Clone)]
pub struct Layouts {
    repo: CatalogRepo,
    cache: Cache<Uuid, ScheduleSeats>,
}

impl Layouts {
    #[must_use]
    pub fn new(repo: CatalogRepo, ttl: Duration) -> Self {
        Self { repo, cache: Cache::builder().max_capacity(CAPACITY).time_to_live(ttl).build() }
    }

    /// The layout of `schedule_id`; concurrent misses for one schedule share one query.
    ///
    /// # Errors
    /// [`CatalogError::ScheduleNotFound`]; database failures. Failures are not cached.
    pub async fn get(&self, schedule_id: Uuid) -> Result<ScheduleSeats, CatalogError> {
        let repo = self.repo.clone();
        self.cache
            .try_get_with(schedule_id, async move { repo.schedule_seats(schedule_id).await.map(Arc::new) })
            .await
            .map_err(|e| CatalogError::shared(&e, "loading seat layout"))
    }
}
