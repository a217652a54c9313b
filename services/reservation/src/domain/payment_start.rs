//! Whether a request may start paying for a reservation: the one decision both the batched
//! and the single start of a payment saga apply to what they read under the row lock.
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Reservation, ReservationStatus};
use crate::error::ReservationError;

/// The next step for a request to pay for a reservation, as locked.
#[derive(Debug)]
pub enum StartStep {
    /// Record a STARTED payment.
    Start,
    /// A payment exists for it: answer that one, whatever the request's key (the caller owns
    /// the reservation, and it has one payment).
    Existing,
    /// The hold ran out but is still marked HELD: mark it EXPIRED, then refuse with this.
    ReleaseAndRefuse(ReservationError),
    /// Refuse with this; nothing is written.
    Refuse(ReservationError),
}

/// What the caller is, for the decision.
#[derive(Debug, Clone, Copy)]
pub struct Payer<'a> {
    pub user_id: &'a str,
    /// The concert the caller's admission is for.
    pub concert_id: Uuid,
    /// The admission already paid for a seat (one admission buys one seat).
    pub token_paid: bool,
}

/// Decides a payment start for `r` (as locked, with whether a payment exists for it) at
/// `now`. The order is the contract: the owner and concert first (a stranger learns
/// nothing), then an existing payment (a retry learns its outcome), then the admission's
/// one purchase, then the hold's life.
#[must_use]
pub fn start_step(r: &Reservation, payer: Payer<'_>, now: DateTime<Utc>) -> StartStep {
    if let Err(e) = r.check_caller(payer.user_id, payer.concert_id) {
        return StartStep::Refuse(e);
    }
    if r.payment_started {
        return StartStep::Existing;
    }
    if payer.token_paid {
        return StartStep::Refuse(ReservationError::TokenUsed);
    }
    match r.check_payable(now) {
        Ok(()) => StartStep::Start,
        Err(e) if r.status == ReservationStatus::Held => StartStep::ReleaseAndRefuse(e),
        Err(e) => StartStep::Refuse(e),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use platform::money::Won;

    use super::*;

    fn held(now: DateTime<Utc>, ttl_secs: i64) -> Reservation {
        Reservation {
            reservation_id: Uuid::new_v4(),
            user_id: "ann".into(),
            token: Uuid::new_v4(),
            concert_id: Uuid::from_u128(1),
            schedule_id: Uuid::new_v4(),
            seat_number: 1,
            price: Won::new(70_000),
            status: ReservationStatus::Held,
            held_at: now,
            expires_at: now + Duration::seconds(ttl_secs),
            payment_started: false,
        }
    }

    fn ann(token_paid: bool) -> Payer<'static> {
        Payer { user_id: "ann", concert_id: Uuid::from_u128(1), token_paid }
    }

    #[test]
    fn every_outcome_in_the_contracts_order() {
        let now = Utc::now();
        assert!(matches!(start_step(&held(now, 60), ann(false), now), StartStep::Start));
        let stranger = Payer { user_id: "bob", ..ann(true) };
        assert!(matches!(start_step(&held(now, 60), stranger, now), StartStep::Refuse(ReservationError::NotOwner)));
        let elsewhere = Payer { concert_id: Uuid::from_u128(2), ..ann(false) };
        assert!(matches!(
            start_step(&held(now, 60), elsewhere, now),
            StartStep::Refuse(ReservationError::WrongConcert)
        ));
        // A payment exists: its outcome, even past expiry and with the token spent.
        let paying = Reservation { payment_started: true, ..held(now, -5) };
        assert!(matches!(start_step(&paying, ann(true), now), StartStep::Existing));
        assert!(matches!(start_step(&held(now, 60), ann(true), now), StartStep::Refuse(ReservationError::TokenUsed)));
        assert!(matches!(
            start_step(&held(now, 0), ann(false), now),
            StartStep::ReleaseAndRefuse(ReservationError::HoldExpired)
        ));
        let cancelled = Reservation { status: ReservationStatus::Cancelled, ..held(now, 60) };
        assert!(matches!(start_step(&cancelled, ann(false), now), StartStep::Refuse(ReservationError::NotHeld)));
    }
}
