//! The catalog's internal API: seat prices, grades and start times cached per schedule, and
//! concert titles and venues cached per concert (neither changes once created).
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use concert_proto::concert::catalog::v1::{
    GetConcertRequest, GetScheduleSeatsRequest, catalog_internal_service_client::CatalogInternalServiceClient,
};
use moka::future::Cache;
use platform::{
    grpc_client::PeerChannel,
    money::Won,
    outbound::{CallPolicy, Deadline, Idempotency, Peer},
    status::from_peer,
};
use tonic::Code;
use uuid::Uuid;

use crate::error::ReservationError;

/// Price and start time of a seat, as the catalog knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatInfo {
    /// The concert of the schedule (a token unlocks only its own concert).
    pub concert_id: Uuid,
    pub price: Won,
    pub starts_at: DateTime<Utc>,
}

/// A schedule's start and its seats' prices and grades (index = seat number − 1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    concert_id: Uuid,
    starts_at: DateTime<Utc>,
    prices: Vec<Won>,
    grades: Vec<String>,
}

/// What a ticket shows of its seat beyond the reservation: the concert, the date, the grade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketDetails {
    pub concert_title: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub grade: String,
}

/// A concert's title and venue.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConcertInfo {
    title: String,
    venue: String,
}

/// Most schedule layouts one replica keeps.
const LAYOUT_CAPACITY: u64 = 50_000;

/// The catalog's internal API, with schedule layouts cached: they never change after
/// AddSchedule, so one lookup per schedule and replica prices every hold on it.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// GetScheduleSeats is an idempotent read, under the default call policy.
    catalog: Peer<CatalogInternalServiceClient<PeerChannel>>,
    layouts: Cache<Uuid, Arc<Layout>>,
    concerts: Cache<Uuid, Arc<ConcertInfo>>,
}

impl Catalog {
    #[must_use]
    pub fn new(channel: PeerChannel, layout_ttl: Duration) -> Self {
        Self {
            catalog: Peer::new("catalog", CatalogInternalServiceClient::new(channel), CallPolicy::default()),
            layouts: Cache::builder().max_capacity(LAYOUT_CAPACITY).time_to_live(layout_ttl).build(),
            concerts: Cache::builder().max_capacity(LAYOUT_CAPACITY).time_to_live(layout_ttl).build(),
        }
    }

    async fn layout(&self, schedule_id: Uuid) -> Result<Arc<Layout>, ReservationError> {
        self.layouts
            .try_get_with(schedule_id, fetch_layout(&self.catalog, schedule_id))
            .await
            .map_err(|e| ReservationError::shared(&e, "loading seat layout"))
    }

    /// When schedule `schedule_id` starts.
    ///
    /// # Errors
    /// As [`Self::seat`].
    pub async fn starts_at(&self, schedule_id: Uuid) -> Result<DateTime<Utc>, ReservationError> {
        Ok(self.layout(schedule_id).await?.starts_at)
    }

    /// The concert, date and grade of seat `seat_number` of `schedule_id` (cached: one call
    /// per schedule and per concert and replica).
    ///
    /// # Errors
    /// As [`Self::seat`].
    pub async fn ticket_details(&self, schedule_id: Uuid, seat_number: u32) -> Result<TicketDetails, ReservationError> {
        let layout = self.layout(schedule_id).await?;
        let concert = self
            .concerts
            .try_get_with(layout.concert_id, fetch_concert(&self.catalog, layout.concert_id))
            .await
            .map_err(|e| ReservationError::shared(&e, "loading concert"))?;
        let grade = seat_index(seat_number).and_then(|i| layout.grades.get(i)).cloned().unwrap_or_default();
        Ok(TicketDetails {
            concert_title: concert.title.clone(),
            venue: concert.venue.clone(),
            starts_at: layout.starts_at,
            grade,
        })
    }

    /// Price and start of one seat.
    ///
    /// # Errors
    /// [`ReservationError::ScheduleNotFound`] for an unknown schedule or seat;
    /// [`ReservationError::Peer`] when catalog fails.
    pub async fn seat(&self, schedule_id: Uuid, seat_number: u32) -> Result<SeatInfo, ReservationError> {
        let layout = self.layout(schedule_id).await?;
        let price =
            seat_index(seat_number).and_then(|i| layout.prices.get(i)).ok_or(ReservationError::ScheduleNotFound)?;
        Ok(SeatInfo { concert_id: layout.concert_id, price: *price, starts_at: layout.starts_at })
    }

    /// The seats of `schedule_id` of the same grade and price as `seat_number` (it
    /// included), in seat order: where a best-available hold may land.
    ///
    /// # Errors
    /// As [`Self::seat`].
    pub async fn same_grade(&self, schedule_id: Uuid, seat_number: u32) -> Result<Vec<u32>, ReservationError> {
        let layout = self.layout(schedule_id).await?;
        let wanted = seat_index(seat_number)
            .and_then(|i| Some((layout.grades.get(i)?, layout.prices.get(i)?)))
            .ok_or(ReservationError::ScheduleNotFound)?;
        Ok((1..)
            .zip(layout.grades.iter().zip(&layout.prices))
            .filter(|&(_, seat)| seat == wanted)
            .map(|(n, _)| n)
            .collect())
    }
}

/// A seat's index in a layout (seat numbers start at 1).
fn seat_index(seat_number: u32) -> Option<usize> {
    usize::try_from(seat_number).ok()?.checked_sub(1)
}

async fn fetch_layout(
    catalog: &Peer<CatalogInternalServiceClient<PeerChannel>>,
    schedule_id: Uuid,
) -> Result<Arc<Layout>, ReservationError> {
    let request = GetScheduleSeatsRequest { schedule_id: schedule_id.to_string() };
    let response = catalog
        .unary(Deadline::NONE, Idempotency::Idempotent, &request, async |mut c, r| c.get_schedule_seats(r).await)
        .await
        .map_err(|s| match s.code() {
            Code::NotFound => ReservationError::ScheduleNotFound,
            _ => ReservationError::Peer(from_peer("catalog", &s)),
        })?;
    let schedule = response.schedule.unwrap_or_default();
    let starts_at = platform::convert::datetime("starts_at", schedule.starts_at.as_ref())
        .map_err(|e| ReservationError::from(anyhow::anyhow!("catalog sent a bad schedule: {e}")))?;
    let concert_id = Uuid::parse_str(&schedule.concert_id)
        .map_err(|_| ReservationError::from(anyhow::anyhow!("catalog sent a schedule without a concert")))?;
    let mut seats = response.seats;
    seats.sort_by_key(|s| s.seat_number);
    let in_order = seats.iter().zip(1..).all(|(s, n)| s.seat_number == n);
    if !in_order {
        return Err(ReservationError::from(anyhow::anyhow!("catalog sent seats that are not 1..=n")));
    }
    Ok(Arc::new(Layout {
        concert_id,
        starts_at,
        prices: seats.iter().map(|s| Won::new(s.price)).collect(),
        grades: seats.into_iter().map(|s| s.grade).collect(),
    }))
}

async fn fetch_concert(
    catalog: &Peer<CatalogInternalServiceClient<PeerChannel>>,
    concert_id: Uuid,
) -> Result<Arc<ConcertInfo>, ReservationError> {
    let request = GetConcertRequest { concert_id: concert_id.to_string() };
    let response = catalog
        .unary(Deadline::NONE, Idempotency::Idempotent, &request, async |mut c, r| c.get_concert(r).await)
        .await
        .map_err(|s| match s.code() {
            Code::NotFound => ReservationError::ScheduleNotFound,
            _ => ReservationError::Peer(from_peer("catalog", &s)),
        })?;
    let concert = response.concert.unwrap_or_default();
    Ok(Arc::new(ConcertInfo { title: concert.title, venue: concert.venue }))
}
