//! Payment sagas after their start: moving them between states, claiming them for
//! recovery, and reading them. Every write is a compare-and-set on the stored state, so any number of
//! drivers of one saga (the request, a retry, the recovery worker) cannot move it twice.
use chrono::{DateTime, Duration, Utc};
use platform::money::Won;
use uuid::Uuid;

use super::{PaymentRow, ReservationRepo, ReservationRow, lock_payment, set_payment_status};
use crate::{
    domain::{DebitRefusal, Payment, PaymentStatus, Reservation, ReservationStatus},
    error::ReservationError,
};

impl ReservationRepo {
    /// The debit was refused for good: every hold of the payment is released and the payment
    /// moves to COMPENSATING with `refusal` as its failure reason, in one transaction. A
    /// payment that already left STARTED is returned as it is.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(payment_id = %p.payment_id))]
    pub async fn record_debit_refused(
        &self,
        p: &Payment,
        refusal: &DebitRefusal,
        now: DateTime<Utc>,
    ) -> Result<Payment, ReservationError> {
        let mut tx = self.pool.begin().await?;
        // Seats first, in key order, then the payment: the order every writer of both takes.
        sqlx::query!(
            "SELECT r.reservation_id FROM reservations r
             WHERE r.reservation_id IN (SELECT reservation_id FROM payment_seats WHERE payment_id = $1)
             ORDER BY r.reservation_id FOR UPDATE",
            p.payment_id
        )
        .fetch_all(&mut *tx)
        .await?;
        let current = lock_payment(&mut tx, p.payment_id).await?;
        if current.status != PaymentStatus::Started {
            return Ok(current);
        }
        sqlx::query!(
            "UPDATE reservations SET status = $2, released_at = $3
             WHERE reservation_id IN (SELECT reservation_id FROM payment_seats WHERE payment_id = $1)
               AND status = 'HELD'",
            p.payment_id,
            ReservationStatus::Cancelled.as_str(),
            now
        )
        .execute(&mut *tx)
        .await?;
        // COMPENSATING, not FAILED: the refund step settles what the wallet holds under the
        // debit key (gives it back, or voids the key) before the payment may end FAILED.
        let updated =
            set_payment_status(&mut tx, p.payment_id, PaymentStatus::Compensating, Some(refusal), now).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Moves a payment from `from` to `to` (a no-op when it already moved on).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(payment_id = %p.payment_id, to = to.as_str()))]
    pub async fn advance_payment(
        &self,
        p: &Payment,
        from: PaymentStatus,
        to: PaymentStatus,
        now: DateTime<Utc>,
    ) -> Result<Payment, ReservationError> {
        // Compare-and-set in one round trip; a payment that moved on is returned as it is.
        let row = sqlx::query_as!(
            PaymentRow,
            r#"WITH moved AS (
                   UPDATE payments SET status = $3, updated_at = $4 WHERE payment_id = $1 AND status = $2
                   RETURNING payment_id, reservation_id, user_id, token, idempotency_key, amount, status, failure_reason, balance_after, paid_at, created_at, seats
               )
               SELECT payment_id AS "payment_id!", reservation_id AS "reservation_id!", user_id AS "user_id!",
                      token AS "token!", idempotency_key AS "idempotency_key!", amount AS "amount!: Won",
                      status AS "status!: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                      paid_at, created_at AS "created_at!", seats AS "seats!" FROM moved
               UNION ALL
               SELECT payment_id, reservation_id, user_id, token, idempotency_key, amount, status, failure_reason, balance_after, paid_at, created_at, seats FROM payments WHERE payment_id = $1 AND NOT EXISTS (SELECT 1 FROM moved)"#,
            p.payment_id,
            from.as_str(),
            to.as_str(),
            now
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    /// Marks CONFIRMED payments COMPLETED once their tokens are expired; returns how many
    /// moved (those already moved on are skipped).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(payments = ids.len()))]
    pub async fn complete_payments(&self, ids: &[Uuid], now: DateTime<Utc>) -> Result<u64, ReservationError> {
        // Only CONFIRMED payments are handed over, and CONFIRMED only ever moves on to
        // COMPLETED, so "not yet COMPLETED" means CONFIRMED here. Written that way so the
        // planner probes the primary key instead of AND-ing it with `payments_unfinished`
        // (which, with stale statistics and dead entries, cost a scan of the whole index).
        let done = sqlx::query(
            "UPDATE payments SET status = 'COMPLETED', updated_at = $2
             WHERE payment_id = ANY($1) AND status <> 'COMPLETED'",
        )
        .bind(ids)
        .bind(now)
        // Planned for its batch each time: `payments` starts a sale empty, and a plan cached
        // then would scan the table once it is large (see `db::begin_batch`).
        .persistent(platform::db::lone_batch_prepared())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Claims up to `limit` unfinished sagas whose lease ran out and that were tried fewer
    /// than `max_attempts` times, extending their lease so no other replica's worker takes
    /// them meanwhile. Returns each with the number of its attempt (this one included).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn claim_unfinished(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
        max_attempts: i32,
    ) -> Result<Vec<(Payment, i32)>, ReservationError> {
        let rows = sqlx::query!(
            r#"UPDATE payments SET next_attempt_at = $2, attempts = attempts + 1
               WHERE payment_id IN (
                   SELECT payment_id FROM payments
                   WHERE status IN ('STARTED', 'CONFIRMED', 'COMPENSATING') AND next_attempt_at <= $1
                     AND attempts < $4
                   ORDER BY next_attempt_at LIMIT $3
                   FOR UPDATE SKIP LOCKED)
               RETURNING payment_id, reservation_id, user_id, token, idempotency_key, amount AS "amount: Won",
                      status AS "status: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                      paid_at, created_at, seats, attempts"#,
            now,
            now + lease,
            limit,
            max_attempts
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let payment = payment_row!(r);
                (payment.into(), r.attempts)
            })
            .collect())
    }

    /// Unfinished payments the recovery worker gave up on after `max_attempts` tries: each
    /// needs a person (its hold stays blocked and its money may be taken).
    ///
    /// # Errors
    /// Database failures only.
    pub async fn needing_attention(&self, max_attempts: i32) -> Result<Vec<Payment>, ReservationError> {
        let rows = sqlx::query_as!(
            PaymentRow,
            r#"SELECT payment_id, reservation_id, user_id, token, idempotency_key, amount AS "amount: Won",
                      status AS "status: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                      paid_at, created_at, seats FROM payments
               WHERE status IN ('STARTED', 'CONFIRMED', 'COMPENSATING') AND attempts >= $1
               ORDER BY created_at LIMIT 1000"#,
            max_attempts
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Payment::from).collect())
    }

    /// One page of a user's payments, newest first.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn payments_of(
        &self,
        user_id: &str,
        page: &platform::paging::PageRequest,
    ) -> Result<Vec<Payment>, ReservationError> {
        let (at, id) = page.after_parts();
        let rows = sqlx::query_as!(
            PaymentRow,
            r#"SELECT payment_id, reservation_id, user_id, token, idempotency_key, amount AS "amount: Won",
                      status AS "status: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                      paid_at, created_at, seats FROM payments
               WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, payment_id) < ($2, $3::uuid))
               ORDER BY created_at DESC, payment_id DESC LIMIT $4"#,
            user_id,
            at,
            id,
            page.fetch_limit()
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Payment::from).collect())
    }

    /// The payment a token made that covers a reservation, if any (to answer replays after
    /// the token has been expired by that very payment).
    ///
    /// # Errors
    /// Database failures only.
    pub async fn payment_by_token(
        &self,
        reservation_id: Uuid,
        token: Uuid,
    ) -> Result<Option<Payment>, ReservationError> {
        let row = sqlx::query_as!(
            PaymentRow,
            r#"SELECT p.payment_id, p.reservation_id, p.user_id, p.token, p.idempotency_key, p.amount AS "amount: Won",
                      p.status AS "status: PaymentStatus", p.failure_reason, p.balance_after AS "balance_after: Won",
                      p.paid_at, p.created_at, p.seats
               FROM payments p
               WHERE p.payment_id = (SELECT s.payment_id FROM payment_seats s WHERE s.reservation_id = $1)
                 AND p.token = $2"#,
            reservation_id,
            token
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Payment::from))
    }

    /// The reservations payment `payment_id` covers: its first one, then the others by id.
    ///
    /// # Errors
    /// Database failures only.
    pub async fn reservations_of_payment(&self, payment_id: Uuid) -> Result<Vec<Reservation>, ReservationError> {
        let rows = sqlx::query_as!(
            ReservationRow,
            r#"SELECT r.reservation_id, r.user_id, r.token, r.concert_id, r.schedule_id, r.seat_number,
                      r.price AS "price: Won", r.status AS "status: ReservationStatus", r.held_at, r.expires_at,
                      s.payment_id AS "payment_id?"
               FROM payment_seats s JOIN reservations r ON r.reservation_id = s.reservation_id
               WHERE s.payment_id = $1
               ORDER BY s.first DESC, r.reservation_id"#,
            payment_id
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Reservation::try_from).collect()
    }

    /// The reservations each of `payments` covers (first one first, then by id).
    ///
    /// # Errors
    /// Database failures only.
    pub async fn seats_of_payments(
        &self,
        payments: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, Vec<Uuid>>, ReservationError> {
        let rows = sqlx::query!(
            r#"SELECT payment_id AS "payment_id!", reservation_id AS "reservation_id!" FROM payment_seats
               WHERE payment_id = ANY($1)
               ORDER BY payment_id, first DESC, reservation_id"#,
            payments
        )
        .fetch_all(&self.pool)
        .await?;
        let mut seats: std::collections::HashMap<Uuid, Vec<Uuid>> = std::collections::HashMap::new();
        for r in rows {
            seats.entry(r.payment_id).or_default().push(r.reservation_id);
        }
        Ok(seats)
    }

    /// Releases (CANCELLED) the other live holds of the admissions that made `payments`:
    /// each admission makes one payment, so once it is paid its other seats go back on sale.
    /// Only holds of the payment's token that no payment covers are released (none can start
    /// any more: one purchase per admission); payments not paid release nothing. Rows locked
    /// elsewhere (a payment start about to be refused, a cancel) are skipped rather than
    /// waited for; a skipped hold expires as usual. Returns how many were released.
    ///
    /// Every access is by key: payments by primary key, the user's reservations through
    /// `reservations_by_user` (a user has few). Every status test is written `IS NOT DISTINCT
    /// FROM`, so no partial index on status can be chosen: with `h.status = 'HELD'`, a plan
    /// made while the purge had left no HELD row walked `reservations_held_by_expiry`, every
    /// live hold of every user, once per payment (52–290 ms a call with a sale's 20,000
    /// holds live: `scripts/bench-stability.sh`, issue #31).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(payments = payments.len()))]
    pub async fn release_admissions_other_holds(
        &self,
        payments: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<u64, ReservationError> {
        let released = sqlx::query!(
            "UPDATE reservations other SET status = 'CANCELLED', released_at = $2
             WHERE other.reservation_id = ANY(ARRAY(
                 SELECT h.reservation_id FROM payments p
                 CROSS JOIN LATERAL (
                     SELECT h.reservation_id FROM reservations h
                     WHERE h.user_id = p.user_id AND h.status IS NOT DISTINCT FROM 'HELD' AND h.token = p.token
                       AND NOT EXISTS (SELECT 1 FROM payment_seats s WHERE s.reservation_id = h.reservation_id)
                     FOR UPDATE SKIP LOCKED
                 ) h
                 WHERE p.payment_id = ANY($1)
                   AND (p.status IS NOT DISTINCT FROM 'CONFIRMED' OR p.status IS NOT DISTINCT FROM 'COMPLETED')))
               AND other.status IS NOT DISTINCT FROM 'HELD'",
            payments,
            now
        )
        .execute(&self.pool)
        .await?;
        Ok(released.rows_affected())
    }
}
