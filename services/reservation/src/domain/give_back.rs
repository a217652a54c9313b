//! CancelReservation's one decision: release a hold, give a bought ticket back, answer a
//! repeat, or refuse, from the reservation as locked.
//!
//! A bought seat may be given back until `REFUND_DEADLINE_HOURS` before its show (a box
//! office's usual cut-off: the seat must be resellable). Giving back turns the reservation
//! REFUNDED and owes the seat's price back against the payment's debit; the money moves in
//! the saga's refund step, recorded first so it survives a crash (see
//! `service::give_back`).
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Reservation, ReservationStatus};
use crate::error::ReservationError;

/// What to do with a cancel request.
#[derive(Debug)]
pub enum CancelStep {
    /// An unpaid live hold: mark it CANCELLED (its seat is on sale at once).
    Release,
    /// A bought seat within the refund window: mark it REFUNDED and owe its price back to
    /// the payment `payment_id`'s payer.
    GiveBack { payment_id: Uuid },
    /// Already done (CANCELLED, or REFUNDED): answer it as it is; nothing more moves.
    Unchanged,
    /// Refuse with this; nothing is written.
    Refuse(ReservationError),
}

/// Decides a cancel of `r` by `user_id` at `now`. `refundable_until` is when the seat's
/// refund window closes (its show's start − `REFUND_DEADLINE_HOURS`), known when the caller
/// looked the show up (it does for a seat it saw bought); a bought seat without it is refused
/// as not held (it was bought between the look-up and the lock: the caller may retry).
///
/// The owner check comes first, so a stranger learns nothing about the reservation.
#[must_use]
pub fn cancel_step(
    r: &Reservation,
    user_id: &str,
    now: DateTime<Utc>,
    refundable_until: Option<DateTime<Utc>>,
) -> CancelStep {
    if let Err(e) = r.check_owner(user_id) {
        return CancelStep::Refuse(e);
    }
    match (r.status, r.payment_id, refundable_until) {
        (ReservationStatus::Cancelled | ReservationStatus::Refunded, _, _) => CancelStep::Unchanged,
        (ReservationStatus::Confirmed, Some(payment_id), Some(until)) if now < until => {
            CancelStep::GiveBack { payment_id }
        }
        (ReservationStatus::Confirmed, Some(_), Some(_)) => CancelStep::Refuse(ReservationError::RefundWindowClosed),
        _ => match r.check_cancellable(now) {
            Ok(()) => CancelStep::Release,
            Err(e) => CancelStep::Refuse(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use platform::money::Won;

    use super::*;

    fn reservation(status: ReservationStatus, payment: bool, now: DateTime<Utc>) -> Reservation {
        Reservation {
            reservation_id: Uuid::new_v4(),
            user_id: "ann".into(),
            token: Uuid::new_v4(),
            concert_id: Uuid::from_u128(1),
            schedule_id: Uuid::new_v4(),
            seat_number: 7,
            price: Won::new(90_000),
            status,
            held_at: now - Duration::seconds(30),
            expires_at: now + Duration::seconds(270),
            payment_id: payment.then(Uuid::new_v4),
        }
    }

    #[test]
    fn each_status_has_its_step() {
        let now = Utc::now();
        let open = Some(now + Duration::hours(1));
        let closed = Some(now - Duration::seconds(1));
        let held = reservation(ReservationStatus::Held, false, now);
        assert!(matches!(cancel_step(&held, "ann", now, None), CancelStep::Release));
        assert!(matches!(cancel_step(&held, "bob", now, open), CancelStep::Refuse(ReservationError::NotOwner)));
        let paying = reservation(ReservationStatus::Held, true, now);
        assert!(matches!(cancel_step(&paying, "ann", now, open), CancelStep::Refuse(ReservationError::NotHeld)));
        let sold = reservation(ReservationStatus::Confirmed, true, now);
        let paid_by = sold.payment_id;
        assert!(
            matches!(cancel_step(&sold, "ann", now, open), CancelStep::GiveBack { payment_id } if Some(payment_id) == paid_by)
        );
        let closing = |until| cancel_step(&sold, "ann", now, until);
        assert!(matches!(closing(closed), CancelStep::Refuse(ReservationError::RefundWindowClosed)));
        // The deadline itself is past the window.
        assert!(matches!(closing(Some(now)), CancelStep::Refuse(ReservationError::RefundWindowClosed)));
        assert!(matches!(closing(None), CancelStep::Refuse(ReservationError::NotHeld)));
        assert!(matches!(cancel_step(&sold, "bob", now, open), CancelStep::Refuse(ReservationError::NotOwner)));
        for done in [ReservationStatus::Cancelled, ReservationStatus::Refunded] {
            assert!(matches!(cancel_step(&reservation(done, true, now), "ann", now, closed), CancelStep::Unchanged));
        }
        let expired = reservation(ReservationStatus::Expired, false, now);
        assert!(matches!(cancel_step(&expired, "ann", now, open), CancelStep::Refuse(ReservationError::NotHeld)));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Whatever the reservation and the clock, money goes back only for a bought
            /// seat of the caller, inside its refund window; a hold is released only when
            /// it is the caller's live hold with no payment; a repeat moves nothing.
            #[test]
            fn money_goes_back_only_for_the_owners_bought_seat_in_time(
                status in prop_oneof![
                    Just(ReservationStatus::Held),
                    Just(ReservationStatus::Confirmed),
                    Just(ReservationStatus::Cancelled),
                    Just(ReservationStatus::Expired),
                    Just(ReservationStatus::Refunded),
                ],
                paid in any::<bool>(),
                stranger in any::<bool>(),
                window in prop::option::of(-3_600i64..3_600),
                expires_in in -60i64..300,
            ) {
                let now = Utc::now();
                let r = Reservation {
                    expires_at: now + Duration::seconds(expires_in),
                    ..reservation(status, paid, now)
                };
                let caller = if stranger { "bob" } else { "ann" };
                let until = window.map(|s| now + Duration::seconds(s));
                match cancel_step(&r, caller, now, until) {
                    CancelStep::GiveBack { payment_id } => {
                        prop_assert!(!stranger && status == ReservationStatus::Confirmed);
                        prop_assert_eq!(Some(payment_id), r.payment_id);
                        prop_assert!(until.is_some_and(|u| now < u));
                    }
                    CancelStep::Release => {
                        prop_assert!(!stranger && status == ReservationStatus::Held && !paid && expires_in > 0);
                    }
                    CancelStep::Unchanged => {
                        prop_assert!(!stranger);
                        prop_assert!(matches!(status, ReservationStatus::Cancelled | ReservationStatus::Refunded));
                    }
                    CancelStep::Refuse(_) => {}
                }
            }
        }
    }
}
