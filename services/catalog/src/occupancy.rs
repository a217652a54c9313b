//! Live seat status, read from the reservation service on every call.
use std::collections::HashMap;

use concert_proto::concert::reservation::v1::{
    GetOccupancyRequest, ReservationStatus, reservation_internal_service_client::ReservationInternalServiceClient,
};
use platform::status::from_peer;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{domain::SeatStatus, error::CatalogError};

/// Occupied seats keyed by `(schedule_id, seat_number)`; absent means AVAILABLE.
pub type Occupancy = HashMap<(Uuid, u32), SeatStatus>;

/// Client of reservation's occupancy lookup.
#[derive(Debug, Clone)]
pub struct OccupancyClient {
    client: ReservationInternalServiceClient<Channel>,
}

impl OccupancyClient {
    #[must_use]
    pub fn new(channel: Channel) -> Self {
        Self { client: ReservationInternalServiceClient::new(channel) }
    }

    /// Who holds or bought which seat of `schedules`, right now.
    ///
    /// # Errors
    /// [`CatalogError::Peer`] with UNAVAILABLE when reservation cannot be reached.
    pub async fn occupancy(&self, schedules: &[Uuid]) -> Result<Occupancy, CatalogError> {
        if schedules.is_empty() {
            return Ok(Occupancy::new());
        }
        let request = GetOccupancyRequest { schedule_ids: schedules.iter().map(Uuid::to_string).collect() };
        let response = self
            .client
            .clone()
            .get_occupancy(request)
            .await
            .map_err(|s| CatalogError::Peer(from_peer("reservation", &s)))?;
        let mut occupancy = Occupancy::new();
        for seat in response.into_inner().seats {
            let schedule = Uuid::parse_str(&seat.schedule_id)
                .map_err(|e| CatalogError::Unexpected(anyhow::anyhow!("reservation sent a bad schedule id: {e}")))?;
            let status = match ReservationStatus::try_from(seat.status) {
                Ok(ReservationStatus::Confirmed) => SeatStatus::Sold,
                _ => SeatStatus::Held,
            };
            occupancy.insert((schedule, seat.seat_number), status);
        }
        Ok(occupancy)
    }
}
