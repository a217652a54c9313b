use chrono::{DateTime, Utc};
use platform::money::Won;
use uuid::Uuid;

use crate::error::ReservationError;

/// Seats of a schedule are numbered 1..=50.
pub const SEATS_PER_SCHEDULE: u32 = 50;

/// Lifecycle of a reservation:
/// HELD → CONFIRMED (paid), HELD → CANCELLED (by the user, by compensation, or because the
/// admission's payment for other seats completed), HELD → EXPIRED (not paid in time),
/// CONFIRMED → REFUNDED (given back by its owner before the refund deadline; the price is
/// refunded). Stored by name in the TEXT column `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Cancelled,
    Expired,
    /// Bought, then given back: the seat is on sale again and its price refunded.
    Refunded,
}

impl ReservationStatus {
    /// The stored name (as sqlx writes it), for logs and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "HELD",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
            Self::Refunded => "REFUNDED",
        }
    }
}

/// One occupied seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccupiedSeat {
    pub schedule_id: Uuid,
    pub seat_number: u32,
    pub status: ReservationStatus,
}

/// A hold or sale of one seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub reservation_id: Uuid,
    pub user_id: String,
    pub token: Uuid,
    /// The concert of the schedule (from the catalog at hold time).
    pub concert_id: Uuid,
    pub schedule_id: Uuid,
    pub seat_number: u32,
    pub price: Won,
    pub status: ReservationStatus,
    pub held_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The payment saga that covers this reservation, if one started (a reservation has at
    /// most one, ever); a hold with one is not released by expiry until the saga finishes.
    pub payment_id: Option<Uuid>,
}

impl Reservation {
    /// A payment saga exists for this reservation.
    #[must_use]
    pub fn payment_started(&self) -> bool {
        self.payment_id.is_some()
    }

    /// The status as seen at `now`: a HELD reservation past `expires_at` with no payment
    /// under way no longer holds its seat, even before the sweeper marks it.
    #[must_use]
    pub fn effective_status(&self, now: DateTime<Utc>) -> ReservationStatus {
        if self.status == ReservationStatus::Held && self.expires_at <= now && !self.payment_started() {
            ReservationStatus::Expired
        } else {
            self.status
        }
    }

    /// Checks that `user_id` owns the reservation.
    ///
    /// # Errors
    /// [`ReservationError::NotOwner`].
    pub fn check_owner(&self, user_id: &str) -> Result<(), ReservationError> {
        if self.user_id == user_id { Ok(()) } else { Err(ReservationError::NotOwner) }
    }

    /// Checks that the caller owns the reservation and that its queue token was admitted
    /// for this reservation's concert (a token unlocks only its own concert).
    ///
    /// # Errors
    /// [`ReservationError::NotOwner`]; [`ReservationError::WrongConcert`].
    pub fn check_caller(&self, user_id: &str, concert_id: Uuid) -> Result<(), ReservationError> {
        self.check_owner(user_id)?;
        if self.concert_id == concert_id { Ok(()) } else { Err(ReservationError::WrongConcert) }
    }

    /// Checks that a payment may start now.
    ///
    /// # Errors
    /// [`ReservationError::HoldExpired`] when the hold ran out (or expired earlier);
    /// [`ReservationError::NotHeld`] when it was cancelled or is already confirmed.
    pub fn check_payable(&self, now: DateTime<Utc>) -> Result<(), ReservationError> {
        match self.effective_status(now) {
            ReservationStatus::Held => Ok(()),
            ReservationStatus::Expired => Err(ReservationError::HoldExpired),
            ReservationStatus::Confirmed | ReservationStatus::Cancelled | ReservationStatus::Refunded => {
                Err(ReservationError::NotHeld)
            }
        }
    }

    /// Checks that the user may release the hold now.
    ///
    /// # Errors
    /// [`ReservationError::NotHeld`] when it is not an unpaid live hold.
    pub fn check_cancellable(&self, now: DateTime<Utc>) -> Result<(), ReservationError> {
        if self.effective_status(now) == ReservationStatus::Held && !self.payment_started() {
            Ok(())
        } else {
            Err(ReservationError::NotHeld)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn held(expires_in: i64, paying: bool) -> Reservation {
        let now = Utc::now();
        Reservation {
            reservation_id: Uuid::new_v4(),
            user_id: "u".into(),
            token: Uuid::new_v4(),
            concert_id: Uuid::from_u128(1),
            schedule_id: Uuid::new_v4(),
            seat_number: 1,
            price: Won::new(1),
            status: ReservationStatus::Held,
            held_at: now - Duration::seconds(600),
            expires_at: now + Duration::seconds(expires_in),
            payment_id: paying.then(Uuid::new_v4),
        }
    }

    #[test]
    fn an_expired_hold_is_not_payable_or_cancellable() {
        let now = Utc::now();
        let r = held(-1, false);
        assert_eq!(r.effective_status(now), ReservationStatus::Expired);
        assert!(matches!(r.check_payable(now), Err(ReservationError::HoldExpired)));
        assert!(matches!(r.check_cancellable(now), Err(ReservationError::NotHeld)));
    }

    #[test]
    fn a_hold_with_a_payment_under_way_does_not_expire() {
        let now = Utc::now();
        let r = held(-1, true);
        assert_eq!(r.effective_status(now), ReservationStatus::Held);
        assert!(matches!(r.check_cancellable(now), Err(ReservationError::NotHeld)), "payment under way");
    }

    #[test]
    fn a_live_hold_is_payable_by_its_owner_only() {
        let now = Utc::now();
        let r = held(60, false);
        assert!(r.check_payable(now).is_ok());
        assert!(r.check_cancellable(now).is_ok());
        assert!(r.check_owner("u").is_ok());
        assert!(matches!(r.check_owner("v"), Err(ReservationError::NotOwner)));
        let concert = Uuid::new_v4();
        let scoped = Reservation { concert_id: concert, ..r.clone() };
        assert!(scoped.check_caller("u", concert).is_ok());
        assert!(matches!(scoped.check_caller("u", Uuid::new_v4()), Err(ReservationError::WrongConcert)));
        assert!(matches!(scoped.check_caller("v", concert), Err(ReservationError::NotOwner)));
        assert!(matches!(r.check_caller("u", Uuid::new_v4()), Err(ReservationError::WrongConcert)), "no exception");
        let confirmed = Reservation { status: ReservationStatus::Confirmed, ..r };
        assert!(matches!(confirmed.check_payable(now), Err(ReservationError::NotHeld)));
    }
}
