//! What the cross-service reconciliation reads from this schema.
use std::collections::HashMap;

use platform::money::Won;
use uuid::Uuid;

use super::ReservationRepo;
use crate::{
    domain::{BookSeat, GiveBack, PaymentBook, PaymentStatus, ReservationStatus},
    error::ReservationError,
};

impl ReservationRepo {
    /// Every payment with its seats, read in one REPEATABLE READ snapshot.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn payment_books(&self) -> Result<Vec<PaymentBook>, ReservationError> {
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
        let rows = sqlx::query!(
            r#"SELECT p.payment_id, p.reservation_id, p.user_id, p.token, p.idempotency_key, p.amount AS "amount: Won",
                      p.status AS "status: PaymentStatus", p.failure_reason, p.balance_after AS "balance_after: Won",
                      p.paid_at, p.created_at, p.seats, p.attempts
               FROM payments p
               ORDER BY p.created_at"#
        )
        .fetch_all(&mut *tx)
        .await?;
        let seat_rows = sqlx::query!(
            r#"SELECT s.payment_id AS "payment_id!", s.reservation_id AS "reservation_id!", r.price AS "price: Won",
                      g.status AS "give_back?: GiveBack", r.status AS "status: ReservationStatus", r.schedule_id,
                      r.seat_number
               FROM payment_seats s
               JOIN reservations r ON r.reservation_id = s.reservation_id
               LEFT JOIN give_backs g ON g.reservation_id = s.reservation_id
               ORDER BY s.payment_id, s.reservation_id"#
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut seats: HashMap<Uuid, Vec<BookSeat>> = HashMap::new();
        for s in seat_rows {
            seats.entry(s.payment_id).or_default().push(BookSeat {
                reservation_id: s.reservation_id,
                schedule_id: s.schedule_id,
                seat_number: platform::db::unsigned(s.seat_number, "seat_number")?,
                price: s.price,
                status: s.status,
                give_back: s.give_back,
            });
        }
        rows.into_iter()
            .map(|r| {
                let payment = payment_row!(r);
                let seats = seats.remove(&r.payment_id).unwrap_or_default();
                Ok(PaymentBook {
                    payment: payment.into(),
                    attempts: platform::db::unsigned(r.attempts, "attempts")?,
                    seats,
                })
            })
            .collect()
    }
}
