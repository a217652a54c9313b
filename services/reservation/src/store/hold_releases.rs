//! Holds ending without a payment: expired ones released (by the sweeper, or before a
//! user's next hold), those of admissions that ended, and the purge of ended holds after
//! the retention.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ReservationRepo;
use crate::error::ReservationError;

impl ReservationRepo {
    /// Marks the expired, unpaid holds of one user and concert EXPIRED (freeing their hold
    /// slots); true when any was released. See `expire_unpaid` for the race with a payment
    /// that starts at the expiry instant.
    ///
    /// # Errors
    /// Database failures only.
    pub async fn release_stale_holds_of(
        &self,
        user_id: &str,
        concert_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, ReservationError> {
        let mut tx = self.pool.begin().await?;
        let locked = sqlx::query_scalar!(
            "SELECT reservation_id FROM reservations
             WHERE user_id = $1 AND concert_id = $2 AND status = 'HELD' AND expires_at <= $3
             FOR UPDATE SKIP LOCKED",
            user_id,
            concert_id,
            now
        )
        .fetch_all(&mut *tx)
        .await?;
        Ok(expire_unpaid(tx, &locked, now).await? > 0)
    }

    /// Marks an expired, unpaid hold on one seat EXPIRED; true when one was released. See
    /// `expire_unpaid`.
    ///
    /// # Errors
    /// Database failures only.
    pub async fn release_stale_hold(
        &self,
        schedule_id: Uuid,
        seat: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, ReservationError> {
        let mut tx = self.pool.begin().await?;
        let locked = sqlx::query_scalar!(
            "SELECT reservation_id FROM reservations
             WHERE schedule_id = $1 AND seat_number = $2 AND status = 'HELD' AND expires_at <= $3
             FOR UPDATE SKIP LOCKED",
            schedule_id,
            i32::try_from(seat).unwrap_or(0),
            now
        )
        .fetch_all(&mut *tx)
        .await?;
        Ok(expire_unpaid(tx, &locked, now).await? > 0)
    }

    /// Marks up to `limit` expired, unpaid holds EXPIRED (the sweeper). Safe with several
    /// replicas sweeping at once: rows another sweeper has locked are skipped.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn expire_holds(&self, now: DateTime<Utc>, limit: i64) -> Result<u64, ReservationError> {
        let mut tx = self.pool.begin().await?;
        let locked = sqlx::query_scalar!(
            "SELECT reservation_id FROM reservations
             WHERE status = 'HELD' AND expires_at <= $1
             ORDER BY expires_at LIMIT $2
             FOR UPDATE SKIP LOCKED",
            now,
            limit
        )
        .fetch_all(&mut *tx)
        .await?;
        expire_unpaid(tx, &locked, now).await
    }

    /// The queue tokens behind live holds with no payment under way (at most `limit`), for
    /// the sweeper's check of admissions that ended.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn tokens_of_live_holds(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, ReservationError> {
        Ok(sqlx::query_scalar!(
            "SELECT DISTINCT r.token FROM reservations r
             WHERE r.status = 'HELD' AND r.expires_at > $1
               AND NOT EXISTS (SELECT 1 FROM payment_seats s WHERE s.reservation_id = r.reservation_id)
             LIMIT $2",
            now,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks the unpaid holds placed with `tokens` (admissions that ended) EXPIRED, as the
    /// sweeper does: locked rows skipped, a hold whose payment began kept. How many.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(tokens = tokens.len()))]
    pub async fn release_holds_of_tokens(&self, tokens: &[Uuid], now: DateTime<Utc>) -> Result<u64, ReservationError> {
        let mut tx = self.pool.begin().await?;
        let locked = sqlx::query_scalar!(
            "SELECT reservation_id FROM reservations
             WHERE status = 'HELD' AND token = ANY($1)
             FOR UPDATE SKIP LOCKED",
            tokens
        )
        .fetch_all(&mut *tx)
        .await?;
        expire_unpaid(tx, &locked, now).await
    }
}

/// Expires the holds `tx` has locked (`locked`: HELD and past `expires_at`, `FOR UPDATE SKIP
/// LOCKED`) that have no payment, and commits; how many.
///
/// A payment starts by locking its hold, checking it is still payable and inserting the
/// payment, in one transaction (`ReservationRepo::start_payment`). At the expiry instant the
/// two can meet, and whoever locks the row first decides: a hold being paid is skipped
/// (locked), and the "no payment" check runs in a statement of its own after the lock is
/// held, so it sees a payment that committed while the candidates were read. (Checked in the
/// locking statement it used that statement's snapshot, taken before the payment committed,
/// and expired a hold whose payment had just begun: a spurious failure and a refund for the
/// payer.)
async fn expire_unpaid(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    locked: &[Uuid],
    now: DateTime<Utc>,
) -> Result<u64, ReservationError> {
    if locked.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let expired = sqlx::query!(
        "UPDATE reservations r SET status = 'EXPIRED', released_at = $2
         WHERE r.reservation_id = ANY($1) AND r.status = 'HELD'
           AND NOT EXISTS (SELECT 1 FROM payment_seats s WHERE s.reservation_id = r.reservation_id)",
        locked,
        now
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(expired)
}

impl platform::retention::Purge for ReservationRepo {
    type Error = ReservationError;

    /// Deletes at most `limit` holds that ended without a payment (EXPIRED or CANCELLED,
    /// released before `cutoff`), oldest first; how many. A hold any payment names — one
    /// seat or a seat of an order, paid, failed or compensated — is the books' and stays.
    /// Rows another replica is deleting are skipped, not waited for.
    ///
    /// # Errors
    /// When the database cannot be reached.
    async fn purge_ended(&self, cutoff: DateTime<Utc>, limit: i64) -> Result<u64, ReservationError> {
        let purged = sqlx::query!(
            "DELETE FROM reservations WHERE reservation_id IN (
                 SELECT r.reservation_id FROM reservations r
                 WHERE r.status IN ('EXPIRED', 'CANCELLED') AND r.released_at < $1
                   AND NOT EXISTS (SELECT 1 FROM payment_seats s WHERE s.reservation_id = r.reservation_id)
                 ORDER BY r.released_at LIMIT $2 FOR UPDATE OF r SKIP LOCKED)",
            cutoff,
            limit
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(purged)
    }
}
