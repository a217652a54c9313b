//! Whether a request may start paying for an order of reservations (one seat or several):
//! the one decision both the batched and the single start of a payment saga apply to what
//! they read under the row locks.
use chrono::{DateTime, Utc};
use platform::money::Won;
use uuid::Uuid;

use super::{Reservation, ReservationStatus};
use crate::error::ReservationError;

/// The next step for a request to pay for an order, as locked.
#[derive(Debug)]
pub enum StartStep {
    /// Record a STARTED payment covering every reservation of the order.
    Start,
    /// Every reservation of the order is in this payment already: answer that one, whatever
    /// the request's key (the caller owns them, and a reservation has one payment).
    Existing(Uuid),
    /// A hold of the order ran out but is still marked HELD: mark those (`expired`) EXPIRED,
    /// then refuse the whole order with this (all or nothing: nothing is paid).
    ReleaseAndRefuse { expired: Vec<Uuid>, error: ReservationError },
    /// Refuse with this; nothing is written.
    Refuse(ReservationError),
}

/// What an order costs: the sum of its seats' prices (won, fixed at hold time), debited once.
///
/// # Errors
/// [`ReservationError::System`] when the sum overflows (no order of real prices does).
pub fn order_amount(order: &[Reservation]) -> Result<Won, ReservationError> {
    let total = order.iter().try_fold(Won::ZERO, |sum, r| sum.checked_add(r.price));
    total.ok_or_else(|| anyhow::anyhow!("the order's total overflows").into())
}

/// What the caller is, for the decision.
#[derive(Debug, Clone, Copy)]
pub struct Payer<'a> {
    pub user_id: &'a str,
    /// The concert the caller's admission is for.
    pub concert_id: Uuid,
    /// The admission already paid (one admission makes one payment).
    pub token_paid: bool,
}

/// Decides a payment start for `order` (its reservations as locked, in the request's order,
/// each with the payment that covers it, if any) at `now`. The order of the checks is the
/// contract: owner and concert of every seat first (a stranger learns nothing), then an
/// existing payment (a retry learns its outcome), then the admission's one purchase, then
/// every hold's life.
#[must_use]
pub fn start_step(order: &[Reservation], payer: Payer<'_>, now: DateTime<Utc>) -> StartStep {
    if let Some(e) = order.iter().find_map(|r| r.check_caller(payer.user_id, payer.concert_id).err()) {
        return StartStep::Refuse(e);
    }
    if let Some(payment_id) = order.iter().find_map(|r| r.payment_id) {
        // Some seat is paid for, or being paid: the same order again is answered with its
        // payment; a different order containing it cannot pay it a second time.
        return if order.iter().all(|r| r.payment_id == Some(payment_id)) {
            StartStep::Existing(payment_id)
        } else {
            StartStep::Refuse(ReservationError::NotHeld)
        };
    }
    if payer.token_paid {
        return StartStep::Refuse(ReservationError::TokenUsed);
    }
    let Some(error) = order.iter().find_map(|r| r.check_payable(now).err()) else {
        return StartStep::Start;
    };
    let expired: Vec<Uuid> = order
        .iter()
        .filter(|r| r.status == ReservationStatus::Held && r.check_payable(now).is_err())
        .map(|r| r.reservation_id)
        .collect();
    if expired.is_empty() { StartStep::Refuse(error) } else { StartStep::ReleaseAndRefuse { expired, error } }
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
            payment_id: None,
        }
    }

    fn ann(token_paid: bool) -> Payer<'static> {
        Payer { user_id: "ann", concert_id: Uuid::from_u128(1), token_paid }
    }

    #[test]
    fn every_outcome_in_the_contracts_order() {
        let now = Utc::now();
        let one = |r: &Reservation, payer| start_step(std::slice::from_ref(r), payer, now);
        assert!(matches!(one(&held(now, 60), ann(false)), StartStep::Start));
        let stranger = Payer { user_id: "bob", ..ann(true) };
        assert!(matches!(one(&held(now, 60), stranger), StartStep::Refuse(ReservationError::NotOwner)));
        let elsewhere = Payer { concert_id: Uuid::from_u128(2), ..ann(false) };
        assert!(matches!(one(&held(now, 60), elsewhere), StartStep::Refuse(ReservationError::WrongConcert)));
        // A payment exists: its outcome, even past expiry and with the token spent.
        let payment = Uuid::new_v4();
        let paying = Reservation { payment_id: Some(payment), ..held(now, -5) };
        assert!(matches!(one(&paying, ann(true)), StartStep::Existing(p) if p == payment));
        assert!(matches!(one(&held(now, 60), ann(true)), StartStep::Refuse(ReservationError::TokenUsed)));
        assert!(matches!(
            one(&held(now, 0), ann(false)),
            StartStep::ReleaseAndRefuse { error: ReservationError::HoldExpired, .. }
        ));
        let cancelled = Reservation { status: ReservationStatus::Cancelled, ..held(now, 60) };
        assert!(matches!(one(&cancelled, ann(false)), StartStep::Refuse(ReservationError::NotHeld)));
    }

    #[test]
    fn an_order_is_decided_as_a_whole() {
        let now = Utc::now();
        let live: Vec<Reservation> = (0..4).map(|_| held(now, 60)).collect();
        assert!(matches!(start_step(&live, ann(false), now), StartStep::Start));
        // One stranger's seat refuses the order, whichever position it has.
        let mut with_strangers = live.clone();
        with_strangers[2].user_id = "bob".into();
        assert!(matches!(start_step(&with_strangers, ann(false), now), StartStep::Refuse(ReservationError::NotOwner)));
        // One expired hold: nothing is paid, and only that hold is released.
        let mut one_expired = live.clone();
        one_expired[1].expires_at = now;
        match start_step(&one_expired, ann(false), now) {
            StartStep::ReleaseAndRefuse { expired, error: ReservationError::HoldExpired } => {
                assert_eq!(expired, vec![one_expired[1].reservation_id]);
            }
            other => panic!("expected the order refused, got {other:?}"),
        }
        // The same order again answers its payment; an order mixing paid and free seats, or
        // seats of two payments, is refused.
        let payment = Uuid::new_v4();
        let paid: Vec<Reservation> =
            live.iter().map(|r| Reservation { payment_id: Some(payment), ..r.clone() }).collect();
        assert!(matches!(start_step(&paid, ann(true), now), StartStep::Existing(p) if p == payment));
        let mut mixed = paid.clone();
        mixed[3].payment_id = None;
        assert!(matches!(start_step(&mixed, ann(false), now), StartStep::Refuse(ReservationError::NotHeld)));
        mixed[3].payment_id = Some(Uuid::new_v4());
        assert!(matches!(start_step(&mixed, ann(false), now), StartStep::Refuse(ReservationError::NotHeld)));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A reservation of `ann`'s concert 1 in any state: owner, concert, status, expiry
        /// and payment drawn at random (payments from a small pool, so orders share them).
        fn any_reservation(now: DateTime<Utc>) -> impl Strategy<Value = Reservation> {
            let statuses = prop_oneof![
                4 => Just(ReservationStatus::Held),
                1 => Just(ReservationStatus::Confirmed),
                1 => Just(ReservationStatus::Cancelled),
                1 => Just(ReservationStatus::Expired),
                1 => Just(ReservationStatus::Refunded),
            ];
            (any::<bool>(), any::<bool>(), statuses, -60i64..300, prop::option::weighted(0.3, 0u128..3)).prop_map(
                move |(stranger, elsewhere, status, ttl, payment)| Reservation {
                    user_id: if stranger { "bob".into() } else { "ann".into() },
                    concert_id: Uuid::from_u128(if elsewhere { 2 } else { 1 }),
                    status,
                    payment_id: payment.map(|p| Uuid::from_u128(100 + p)),
                    ..held(now, ttl)
                },
            )
        }

        proptest! {
            /// Whatever the order, a payment starts only when every seat is the caller's
            /// live, unpaid hold of the admission's concert and the admission has not paid;
            /// an existing payment is answered only when it covers every seat; a release
            /// names exactly the seats whose hold ran out.
            #[test]
            fn an_order_starts_only_when_every_seat_may_be_paid(
                order in prop::collection::vec(any_reservation(Utc::now()), 1..=4),
                token_paid in any::<bool>(),
            ) {
                let now = order[0].held_at;
                let step = start_step(&order, ann(token_paid), now);
                let mine = order.iter().all(|r| r.user_id == "ann" && r.concert_id == Uuid::from_u128(1));
                let live = |r: &Reservation| r.status == ReservationStatus::Held && r.expires_at > now;
                match step {
                    StartStep::Start => {
                        prop_assert!(mine && !token_paid);
                        prop_assert!(order.iter().all(|r| live(r) && r.payment_id.is_none()));
                    }
                    StartStep::Existing(p) => {
                        prop_assert!(mine);
                        prop_assert!(order.iter().all(|r| r.payment_id == Some(p)));
                    }
                    StartStep::ReleaseAndRefuse { expired, error } => {
                        prop_assert!(mine && !token_paid && order.iter().all(|r| r.payment_id.is_none()));
                        prop_assert!(matches!(error, ReservationError::HoldExpired | ReservationError::NotHeld));
                        let want: Vec<Uuid> = order
                            .iter()
                            .filter(|r| r.status == ReservationStatus::Held && !live(r))
                            .map(|r| r.reservation_id)
                            .collect();
                        prop_assert_eq!(expired, want);
                    }
                    StartStep::Refuse(_) => {
                        let startable = mine && !token_paid && order.iter().all(|r| live(r) && r.payment_id.is_none());
                        prop_assert!(!startable, "a payable order was refused");
                    }
                }
            }
        }
    }
}
