use chrono::{DateTime, Utc};
use platform::money::Won;
use uuid::Uuid;

/// A concert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concert {
    pub concert_id: Uuid,
    pub title: String,
    pub venue: String,
    /// When tickets go on sale; `None`: on sale at once. The queue keeps joins made before
    /// it in a pre-queue.
    pub sale_opens_at: Option<DateTime<Utc>>,
}

/// What the concert list shows of a concert's dates that have not started yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpcomingDates {
    pub count: u32,
    /// The first and last date's start; `None` when there is none.
    pub first_starts_at: Option<DateTime<Utc>>,
    pub last_starts_at: Option<DateTime<Utc>>,
    /// The cheapest and the dearest seat of those dates; `None` when there is none.
    pub price_from: Option<Won>,
    pub price_to: Option<Won>,
}

/// One date of a concert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub schedule_id: Uuid,
    pub concert_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub total_seats: u32,
}

/// A seat of a schedule, with its grade and price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub schedule_id: Uuid,
    /// 1..=50.
    pub seat_number: u32,
    pub grade: String,
    pub price: Won,
}

/// Live status of a seat, derived from reservation's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
    /// Not looked up (internal layout answers carry no status).
    Unknown,
}
