//! CancelReservation's writes: releasing a hold, or giving a bought seat back (the seat is
//! on sale again and its refund recorded as owed in the same transaction), and the refund
//! step's own bookkeeping (finished, claimed for recovery).
use chrono::{DateTime, Duration, Utc};
use platform::money::Won;
use uuid::Uuid;

use super::{ReservationRepo, lock_reservation, set_reservation_status};
use crate::{
    domain::{CancelStep, Reservation, ReservationStatus, SeatRefund, cancel_step},
    error::ReservationError,
};

/// What a cancel did.
#[derive(Debug, Clone)]
pub struct Cancelled {
    /// The reservation after it: CANCELLED or REFUNDED.
    pub reservation: Reservation,
    /// A give-back's refund still owed (just recorded, or recorded earlier and not yet
    /// answered by the wallet): the caller drives it.
    pub refund: Option<SeatRefund>,
}

impl ReservationRepo {
    /// Cancels reservation `id` for `user_id` at `now` by the one rule ([`cancel_step`]):
    /// an unpaid hold is released; a bought seat within its refund window (`refundable_until`,
    /// when the caller knows it) is given back, its refund recorded as owed with a lease of
    /// `lease` before the recovery worker may take it. Idempotent: a repeat answers the
    /// reservation as it is (with its refund while still owed).
    ///
    /// # Errors
    /// [`ReservationError::NotFound`], [`ReservationError::NotOwner`],
    /// [`ReservationError::NotHeld`], [`ReservationError::RefundWindowClosed`].
    #[tracing::instrument(skip_all, fields(%id))]
    pub async fn cancel(
        &self,
        id: Uuid,
        user_id: &str,
        now: DateTime<Utc>,
        refundable_until: Option<DateTime<Utc>>,
        lease: Duration,
    ) -> Result<Cancelled, ReservationError> {
        let mut tx = self.pool.begin().await?;
        let r = lock_reservation(&mut tx, id).await?;
        match cancel_step(&r, user_id, now, refundable_until) {
            CancelStep::Refuse(e) => Err(e),
            CancelStep::Unchanged => {
                let refund = owed_refund(&mut tx, &r).await?;
                Ok(Cancelled { reservation: r, refund })
            }
            CancelStep::Release => {
                set_reservation_status(&mut tx, id, ReservationStatus::Cancelled, now).await?;
                tx.commit().await?;
                Ok(Cancelled { reservation: Reservation { status: ReservationStatus::Cancelled, ..r }, refund: None })
            }
            CancelStep::GiveBack { payment_id } => {
                set_reservation_status(&mut tx, id, ReservationStatus::Refunded, now).await?;
                // The seat's price is its reservation's (fixed at hold time): its share of the
                // payment's debit.
                sqlx::query!(
                    "INSERT INTO give_backs (reservation_id, payment_id, user_id, price, status, requested_at,
                                             next_attempt_at)
                     VALUES ($1, $2, $3, $4, 'REFUNDING', $5, $6)",
                    id,
                    payment_id,
                    r.user_id,
                    r.price.get(),
                    now,
                    now + lease
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                let refund = SeatRefund { payment_id, reservation_id: id, user_id: r.user_id.clone(), amount: r.price };
                Ok(Cancelled {
                    reservation: Reservation { status: ReservationStatus::Refunded, ..r },
                    refund: Some(refund),
                })
            }
        }
    }

    /// Marks the give-back of `reservation_id` refunded (a no-op when it already was).
    ///
    /// # Errors
    /// Database failures only.
    pub async fn finish_give_back(&self, reservation_id: Uuid, now: DateTime<Utc>) -> Result<(), ReservationError> {
        sqlx::query!(
            "UPDATE give_backs SET status = 'REFUNDED', refunded_at = $2
             WHERE reservation_id = $1 AND status = 'REFUNDING'",
            reservation_id,
            now
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims up to `limit` give-back refunds still owed whose lease ran out, extending the
    /// lease so no other replica's worker takes them meanwhile; each with its attempt number.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn claim_give_backs(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<(SeatRefund, i32)>, ReservationError> {
        let rows = sqlx::query!(
            r#"UPDATE give_backs SET next_attempt_at = $2, attempts = attempts + 1
               WHERE reservation_id IN (
                   SELECT reservation_id FROM give_backs
                   WHERE status = 'REFUNDING' AND next_attempt_at <= $1
                   ORDER BY next_attempt_at LIMIT $3
                   FOR UPDATE SKIP LOCKED)
               RETURNING reservation_id, payment_id, user_id, price AS "price: Won", attempts"#,
            now,
            now + lease,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let refund = SeatRefund {
                    payment_id: r.payment_id,
                    reservation_id: r.reservation_id,
                    user_id: r.user_id,
                    amount: r.price,
                };
                (refund, r.attempts)
            })
            .collect())
    }
}

/// The refund a given-back reservation still owes, if any.
async fn owed_refund(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    r: &Reservation,
) -> Result<Option<SeatRefund>, ReservationError> {
    if r.status != ReservationStatus::Refunded {
        return Ok(None);
    }
    let owed = sqlx::query!(
        r#"SELECT payment_id, price AS "price: Won" FROM give_backs
           WHERE reservation_id = $1 AND status = 'REFUNDING'"#,
        r.reservation_id
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(owed.map(|o| SeatRefund {
        payment_id: o.payment_id,
        reservation_id: r.reservation_id,
        user_id: r.user_id.clone(),
        amount: o.price,
    }))
}
