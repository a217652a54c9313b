//! Live seat status, read from the reservation service.
//!
//! ListSeats (the hottest read on opening day, polled by every browser) may reuse one
//! schedule's answer for `SEAT_STATUS_CACHE_MS` (default 100 ms; 0 = ask on every call), with
//! concurrent misses sharing one request; past that, the caller that finds it old asks
//! again while the others are given the kept answer (`platform::reuse::Refreshed`), so a
//! seat map lags by at most twice that long. In a rush the request took longer than the
//! 100 ms under load, and two in three ListSeats calls waited on one.
//! ListAvailableDates reuses a concert's answer for as long (`service::concerts`). Holds
//! never rely on either; reservation decides them.
use std::{collections::HashMap, sync::Arc, time::Duration};

use concert_proto::concert::reservation::v1::{
    GetOccupancyRequest, OccupiedSeat, ReservationStatus, WatchOccupancyRequest, WatchOccupancyResponse,
    reservation_internal_service_client::ReservationInternalServiceClient,
};
use platform::status::from_peer;
use platform::{
    grpc_client::PeerChannel,
    outbound::{CallPolicy, Deadline, Idempotency, Peer},
    reuse::Refreshed,
};
use uuid::Uuid;

use crate::{domain::SeatStatus, error::CatalogError};

/// Occupied seats keyed by `(schedule_id, seat_number)`; absent means AVAILABLE.
pub type Occupancy = HashMap<(Uuid, u32), SeatStatus>;

/// Client of reservation's occupancy lookup.
#[derive(Debug, Clone)]
pub struct OccupancyClient {
    /// GetOccupancy is an idempotent read, under the default call policy.
    reservation: Peer<ReservationInternalServiceClient<PeerChannel>>,
    /// The same channel for WatchOccupancy streams, which the seat-map feed reopens itself
    /// (`service::seat_maps`): a stream has no call policy to retry under.
    streams: ReservationInternalServiceClient<PeerChannel>,
    per_schedule: Refreshed<Uuid, Arc<Occupancy>>,
}

/// Most schedules one GetOccupancy call may name (reservation's documented limit).
const MAX_OCCUPANCY_SCHEDULES: usize = 1_000;

/// Most schedules whose seat status one replica keeps.
const CAPACITY: u64 = 50_000;

impl OccupancyClient {
    /// A client that may reuse one schedule's answer for `cache_ttl`, and serve it up to
    /// twice that while it is asked again (zero: never).
    #[must_use]
    pub fn new(channel: PeerChannel, cache_ttl: Duration) -> Self {
        let per_schedule = Refreshed::new(CAPACITY, cache_ttl);
        let client = ReservationInternalServiceClient::new(channel);
        Self {
            reservation: Peer::new("reservation", client.clone(), CallPolicy::default()),
            streams: client,
            per_schedule,
        }
    }

    /// Seat status of one schedule, at most twice `SEAT_STATUS_CACHE_MS` old.
    ///
    /// # Errors
    /// As [`OccupancyClient::occupancy`].
    pub async fn schedule(&self, schedule_id: Uuid) -> Result<Arc<Occupancy>, CatalogError> {
        let read = async { self.occupancy(&[schedule_id]).await.map(Arc::new) };
        self.per_schedule.get(schedule_id, read, |e| CatalogError::shared(e, "seat status")).await
    }

    /// Who holds or bought which seat of `schedules`, right now.
    ///
    /// # Errors
    /// [`CatalogError::Peer`] with UNAVAILABLE when reservation cannot be reached.
    pub async fn occupancy(&self, schedules: &[Uuid]) -> Result<Occupancy, CatalogError> {
        let mut occupancy = Occupancy::new();
        // Reservation answers at most MAX_OCCUPANCY_SCHEDULES per call.
        for chunk in schedules.chunks(MAX_OCCUPANCY_SCHEDULES) {
            self.occupancy_of(chunk, &mut occupancy).await?;
        }
        Ok(occupancy)
    }

    async fn occupancy_of(&self, schedules: &[Uuid], occupancy: &mut Occupancy) -> Result<(), CatalogError> {
        let request = GetOccupancyRequest { schedule_ids: schedules.iter().map(Uuid::to_string).collect() };
        let response = self
            .reservation
            .unary(Deadline::NONE, Idempotency::Idempotent, &request, async |mut c, r| c.get_occupancy(r).await)
            .await
            .map_err(|s| CatalogError::Peer(from_peer("reservation", &s)))?;
        add_seats(response.seats, occupancy)
    }

    /// Reservation's live occupancy of `schedule` (WatchOccupancy): now, then at each change.
    ///
    /// # Errors
    /// Reservation's status when the stream cannot be opened.
    pub async fn watch(&self, schedule: Uuid) -> Result<tonic::Streaming<WatchOccupancyResponse>, tonic::Status> {
        let request = WatchOccupancyRequest { schedule_id: schedule.to_string() };
        Ok(self.streams.clone().watch_occupancy(request).await?.into_inner())
    }
}

/// One WatchOccupancy message as an [`Occupancy`].
///
/// # Errors
/// A schedule id that is not a UUID (reservation's bug).
pub fn occupancy_of(message: WatchOccupancyResponse) -> Result<Occupancy, CatalogError> {
    let mut occupancy = Occupancy::new();
    add_seats(message.seats, &mut occupancy)?;
    Ok(occupancy)
}

fn add_seats(seats: Vec<OccupiedSeat>, occupancy: &mut Occupancy) -> Result<(), CatalogError> {
    for seat in seats {
        let schedule = Uuid::parse_str(&seat.schedule_id)
            .map_err(|e| CatalogError::from(anyhow::anyhow!("reservation sent a bad schedule id: {e}")))?;
        let status = match ReservationStatus::try_from(seat.status) {
            Ok(ReservationStatus::Confirmed) => SeatStatus::Sold,
            _ => SeatStatus::Held,
        };
        occupancy.insert((schedule, seat.seat_number), status);
    }
    Ok(())
}
