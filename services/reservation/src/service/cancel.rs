//! CancelReservation as one use case: release a hold, or give a bought ticket back. Reads
//! top to bottom: look the reservation up → for a bought seat, when its refund window closes
//! (the show's start, from the cached catalog layout) → decide and write under the row lock
//! (`ReservationRepo::cancel`: a give-back releases the seat and records its refund as owed in
//! one transaction) → refund the seat's price (the saga's refund step; a crash or an
//! unreachable wallet leaves it to the recovery worker).
use chrono::Duration;
use platform::{clock::SharedClock, outbound::Deadline};
use uuid::Uuid;

use crate::{
    clients::Catalog,
    domain::{Reservation, ReservationStatus},
    error::ReservationError,
    service::{saga::Saga, seen_occupancy::SeenOccupancy, taken_seats::TakenSeats},
    store::ReservationRepo,
};

/// Releases holds and takes tickets back.
#[derive(Debug, Clone)]
pub struct Cancels {
    pub(crate) repo: ReservationRepo,
    pub(crate) catalog: Catalog,
    pub(crate) saga: Saga,
    pub(crate) taken: TakenSeats,
    /// Dates' occupancy snapshots: a release here drops its date's.
    pub(crate) seen: SeenOccupancy,
    pub(crate) clock: SharedClock,
    /// How long before a show a bought seat can still be given back.
    pub(crate) refund_deadline: Duration,
    /// How long the request owns a give-back's refund before the recovery worker may take it.
    pub(crate) lease: Duration,
}

impl Cancels {
    /// Cancels `user_id`'s reservation `reservation_id`: an unpaid hold is released, a
    /// bought seat given back and its price refunded (waiting at most until `deadline` for
    /// the wallet; past it, or with the wallet unreachable, the refund stays owed and the
    /// recovery worker finishes it: the answer is REFUNDED either way).
    ///
    /// # Errors
    /// As [`ReservationRepo::cancel`]; [`ReservationError::Peer`] when the catalog cannot
    /// tell when a bought seat's show starts.
    pub async fn cancel(
        &self,
        user_id: &str,
        reservation_id: Uuid,
        deadline: Deadline,
    ) -> Result<Reservation, ReservationError> {
        let seen = self.repo.get(reservation_id).await?;
        seen.check_owner(user_id)?;
        let refundable_until = match seen.status {
            ReservationStatus::Confirmed => {
                Some(self.catalog.starts_at(seen.schedule_id).await? - self.refund_deadline)
            }
            _ => None,
        };
        let now = self.clock.now();
        let done = self.repo.cancel(reservation_id, user_id, now, refundable_until, self.lease).await?;
        self.taken.forget(done.reservation.schedule_id, done.reservation.seat_number);
        self.seen.forget(done.reservation.schedule_id).await;
        if let Some(refund) = &done.refund
            && let Err(e) = self.saga.give_back(refund, deadline).await
        {
            // Recorded as owed: the recovery worker refunds it. The ticket is given back.
            tracing::warn!(error = %e, %reservation_id, "give-back refund deferred to the recovery worker");
        }
        Ok(done.reservation)
    }
}
