//! What is left of a concert's sale: its dates that have not started, their seats, and how
//! many of them reservation reports sold or held (the waiting room's sold-out notice).
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{clients::reservation::OccupancyClient, domain::SeatStatus, error::CatalogError, store::CatalogRepo};

/// Seat counts over the dates of one concert that have not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sales {
    pub seats: u32,
    pub sold: u32,
    pub held: u32,
}

impl Sales {
    /// Whether every seat is sold (held seats may still come back, so they do not count).
    #[must_use]
    pub fn sold_out(self) -> bool {
        self.seats > 0 && self.sold >= self.seats
    }
}

/// Counts the sale of `concert_id` as of `now`.
///
/// # Errors
/// Database failures; [`CatalogError`] for an unreachable reservation service.
pub async fn concert_sales(
    repo: &CatalogRepo,
    occupancy: &OccupancyClient,
    concert_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Sales, CatalogError> {
    let schedules = repo.upcoming_schedules(concert_id, now).await?;
    let ids: Vec<_> = schedules.iter().map(|s| s.schedule_id).collect();
    let taken = occupancy.occupancy(&ids).await?;
    let mut sales = Sales { seats: schedules.iter().map(|s| s.total_seats).sum(), ..Sales::default() };
    for status in taken.values() {
        match status {
            SeatStatus::Sold => sales.sold += 1,
            SeatStatus::Held => sales.held += 1,
            _ => {}
        }
    }
    Ok(sales)
}

#[cfg(test)]
mod tests {
    use super::Sales;

    #[test]
    fn sold_out_means_every_seat_paid_for_not_merely_held() {
        assert!(Sales { seats: 100, sold: 100, held: 0 }.sold_out());
        assert!(!Sales { seats: 100, sold: 99, held: 1 }.sold_out(), "a hold may come back");
        assert!(!Sales { seats: 0, sold: 0, held: 0 }.sold_out(), "no dates on sale is not a sell-out");
    }
}
