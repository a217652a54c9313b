//! The catalog's use cases: concerts and their dates, what is left on sale, and a date's seat
//! map with live status from reservation.
use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use platform::{clock::SharedClock, money::Won, paging::PageRequest, reuse::Refreshed, validate::FieldViolation};
use uuid::Uuid;

use super::{
    layouts::{Layouts, ScheduleSeats},
    sales::{self, Sales},
};
use crate::{
    clients::reservation::{Occupancy, OccupancyClient},
    domain::{Concert, Schedule, Seat, SeatStatus, UpcomingDates},
    error::CatalogError,
    store::CatalogRepo,
};

/// A concert's dates on sale with their seats left, as one answer shares them.
type DatesOnSale = Arc<Vec<(Schedule, u32)>>;

/// Most concerts whose dates on sale one replica keeps at once.
const DATES_CAPACITY: u64 = 10_000;

/// Concerts, dates and seats, with live seat status.
#[derive(Debug, Clone)]
pub struct Concerts {
    repo: CatalogRepo,
    layouts: Layouts,
    occupancy: OccupancyClient,
    clock: SharedClock,
    /// ListAvailableDates' answers per concert, fresh for `SEAT_STATUS_CACHE_MS` as seat
    /// maps are (served up to twice that while one caller reads again), and concurrent
    /// misses share one read: in a rush every admitted buyer who finds the dates full asks
    /// again each second, and each answer reads every date's occupancy (5,000 rows for 100
    /// dates). Never reused when that setting is 0.
    dates: Refreshed<Uuid, DatesOnSale>,
}

impl Concerts {
    /// `status_ttl`: how long a date's seats left may be reused (`SEAT_STATUS_CACHE_MS`).
    #[must_use]
    pub fn new(
        repo: CatalogRepo,
        layouts: Layouts,
        occupancy: OccupancyClient,
        clock: SharedClock,
        status_ttl: Duration,
    ) -> Self {
        Self { repo, layouts, occupancy, clock, dates: Refreshed::new(DATES_CAPACITY, status_ttl) }
    }

    /// One page of concerts, newest first, each with its paging key.
    ///
    /// # Errors
    /// Database failures.
    pub async fn page(&self, page: &PageRequest) -> Result<Vec<(DateTime<Utc>, Concert, UpcomingDates)>, CatalogError> {
        self.repo.concerts(page, self.clock.now()).await
    }

    /// One concert.
    ///
    /// # Errors
    /// [`CatalogError::ConcertNotFound`]; database failures.
    pub async fn concert(&self, concert_id: Uuid) -> Result<Concert, CatalogError> {
        self.repo.concert(concert_id).await
    }

    /// The dates of `concert_id` that have not started, each with its seats left (neither
    /// held nor sold), at most twice `SEAT_STATUS_CACHE_MS` old (see [`Refreshed`]).
    ///
    /// # Errors
    /// Database failures; an unreachable reservation service.
    pub async fn available_dates(&self, concert_id: Uuid) -> Result<DatesOnSale, CatalogError> {
        let read = self.read_available_dates(concert_id);
        self.dates.get(concert_id, read, |e| CatalogError::shared(e, "dates on sale")).await
    }

    async fn read_available_dates(&self, concert_id: Uuid) -> Result<DatesOnSale, CatalogError> {
        let schedules = self.repo.upcoming_schedules(concert_id, self.clock.now()).await?;
        let ids: Vec<_> = schedules.iter().map(|s| s.schedule_id).collect();
        let occupancy = self.occupancy.occupancy(&ids).await?;
        // One pass over the occupied seats, not one per date.
        let mut taken: HashMap<Uuid, u32> = HashMap::with_capacity(schedules.len());
        for (schedule_id, _) in occupancy.keys() {
            *taken.entry(*schedule_id).or_default() += 1;
        }
        Ok(Arc::new(
            schedules
                .into_iter()
                .map(|s| {
                    let left = s.total_seats.saturating_sub(taken.get(&s.schedule_id).copied().unwrap_or(0));
                    (s, left)
                })
                .collect(),
        ))
    }

    /// A date and its seats, as laid out (cached: layouts never change).
    ///
    /// # Errors
    /// [`CatalogError::ScheduleNotFound`]; database failures.
    pub async fn layout(&self, schedule_id: Uuid) -> Result<ScheduleSeats, CatalogError> {
        self.layouts.get(schedule_id).await
    }

    /// The seats of `layout` with their live status.
    ///
    /// # Errors
    /// An unreachable reservation service.
    pub async fn seat_map(&self, layout: &ScheduleSeats) -> Result<Vec<(Seat, SeatStatus)>, CatalogError> {
        let occupancy: Arc<_> = self.occupancy.schedule(layout.0.schedule_id).await?;
        Ok(with_status(layout, &occupancy))
    }

    /// What is left of the sale of `concert_id` now.
    ///
    /// # Errors
    /// As [`sales::concert_sales`].
    pub async fn sales(&self, concert_id: Uuid) -> Result<Sales, CatalogError> {
        sales::concert_sales(&self.repo, &self.occupancy, concert_id, self.clock.now()).await
    }

    /// Creates a concert whose sale opens at `sale_opens_at` (`None`: open at once).
    ///
    /// # Errors
    /// Database failures.
    pub async fn create(
        &self,
        title: &str,
        venue: &str,
        sale_opens_at: Option<DateTime<Utc>>,
    ) -> Result<Concert, CatalogError> {
        self.repo.create_concert(title, venue, sale_opens_at).await
    }

    /// Adds a date starting at `starts_at` with seats priced by `layout` (first seat, grade,
    /// price in won per range).
    ///
    /// # Errors
    /// INVALID_ARGUMENT `starts_at` when it is not in the future; [`CatalogError::ConcertNotFound`].
    pub async fn add_date(
        &self,
        concert_id: Uuid,
        starts_at: DateTime<Utc>,
        layout: &[(u32, String, Won)],
    ) -> Result<(Schedule, Vec<Seat>), CatalogError> {
        if starts_at <= self.clock.now() {
            return Err(FieldViolation::new("starts_at", "must be in the future").into());
        }
        self.repo.add_schedule(concert_id, starts_at, layout).await
    }
}

/// The seats of `layout` with their status in `occupancy` (absent: available).
#[must_use]
pub fn with_status(layout: &ScheduleSeats, occupancy: &Occupancy) -> Vec<(Seat, SeatStatus)> {
    let schedule_id = layout.0.schedule_id;
    layout
        .1
        .iter()
        .map(|s| {
            let status = occupancy.get(&(schedule_id, s.seat_number)).copied().unwrap_or(SeatStatus::Available);
            (s.clone(), status)
        })
        .collect()
}
