//! What the cross-service reconciliation reads from this schema.
use sqlx::Row;

use super::{PAYMENT_COLUMNS, ReservationRepo, payment_from_row};
use crate::{domain::PaymentBook, error::ReservationError};

impl ReservationRepo {
    /// Every payment with its reservation, read in one REPEATABLE READ snapshot.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn payment_books(&self) -> Result<Vec<PaymentBook>, ReservationError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let moved = PAYMENT_COLUMNS.split(',').map(|c| format!("p.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {moved}, p.attempts, r.status AS reservation_status, r.schedule_id, r.seat_number
             FROM payments p JOIN reservations r USING (reservation_id)
             ORDER BY p.created_at"
        ))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                let seat: i32 = row.try_get("seat_number")?;
                let attempts: i32 = row.try_get("attempts")?;
                Ok(PaymentBook {
                    payment: payment_from_row(row)?,
                    reservation_status: row.try_get("reservation_status")?,
                    schedule_id: row.try_get("schedule_id")?,
                    seat_number: platform::db::unsigned(seat, "seat_number")?,
                    attempts: platform::db::unsigned(attempts, "attempts")?,
                })
            })
            .collect()
    }
}
