//! What the cross-service reconciliation reads from this schema.
use platform::money::Won;

use super::ReservationRepo;
use crate::{
    domain::{PaymentBook, PaymentStatus, ReservationStatus},
    error::ReservationError,
};

impl ReservationRepo {
    /// Every payment with its reservation, read in one REPEATABLE READ snapshot.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn payment_books(&self) -> Result<Vec<PaymentBook>, ReservationError> {
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
        let rows = sqlx::query!(
            r#"SELECT p.payment_id, p.reservation_id, p.user_id, p.token, p.idempotency_key, p.amount AS "amount: Won",
                      p.status AS "status: PaymentStatus", p.failure_reason, p.balance_after AS "balance_after: Won",
                      p.paid_at, p.created_at, p.attempts, r.status AS "reservation_status: ReservationStatus",
                      r.schedule_id, r.seat_number
               FROM payments p JOIN reservations r USING (reservation_id)
               ORDER BY p.created_at"#
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|r| {
                let payment = payment_row!(r);
                Ok(PaymentBook {
                    payment: payment.into(),
                    reservation_status: r.reservation_status,
                    schedule_id: r.schedule_id,
                    seat_number: platform::db::unsigned(r.seat_number, "seat_number")?,
                    attempts: platform::db::unsigned(r.attempts, "attempts")?,
                })
            })
            .collect()
    }
}
