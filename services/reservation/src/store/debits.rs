//! The saga's "debit recorded" write: after the wallet took the money, sell the seat and
//! confirm the payment, or send the payment to compensation when the hold is gone.
use std::{collections::HashMap, sync::LazyLock};

use chrono::{DateTime, Utc};
use platform::money::Won;
use uuid::Uuid;

use super::{PAYMENT_COLUMNS, ReservationRepo, payment_from_row};
use crate::{domain::Payment, error::ReservationError};

/// A debit the wallet confirmed, to record on its payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedDebit {
    pub payment_id: Uuid,
    /// The payment's first (for a single-seat payment, only) reservation.
    pub reservation_id: Uuid,
    /// How many seats the payment covers.
    pub seats: u32,
    /// The wallet's balance after the debit, in won.
    pub balance_after: Won,
    /// When the debit was recorded (the payment's `paid_at` when the seat is confirmed).
    pub at: DateTime<Utc>,
}

/// [`ReservationRepo::record_debits`] for single-seat payments (most of them): the seat is
/// the payment's own `reservation_id`, so no further seat is read. See [`RECORD_ORDERS`] for
/// why the status tests are written `IS NOT DISTINCT FROM`.
static RECORD_SINGLES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH sold AS (
             UPDATE reservations res
             SET status = 'CONFIRMED',
                 confirmed_at = ($4::timestamptz[])[array_position($2::uuid[], res.reservation_id)]
             WHERE res.reservation_id = ANY($2::uuid[]) AND res.status IS NOT DISTINCT FROM 'HELD'
               AND EXISTS (SELECT 1 FROM payments p
                           WHERE p.reservation_id = res.reservation_id
                             AND p.payment_id = ANY($1::uuid[])
                             AND p.status IS NOT DISTINCT FROM 'STARTED')
             RETURNING res.reservation_id
         )
         UPDATE payments p
         SET status = CASE WHEN p.reservation_id IN (SELECT reservation_id FROM sold)
                           THEN 'CONFIRMED' ELSE 'COMPENSATING' END,
             balance_after = ($3::bigint[])[array_position($1::uuid[], p.payment_id)],
             updated_at = ($4::timestamptz[])[array_position($1::uuid[], p.payment_id)],
             paid_at = CASE WHEN p.reservation_id IN (SELECT reservation_id FROM sold)
                            THEN ($4::timestamptz[])[array_position($1::uuid[], p.payment_id)] END
         WHERE p.payment_id = ANY($1::uuid[]) AND p.status IS NOT DISTINCT FROM 'STARTED'
         RETURNING {}",
        moved_columns()
    )
});

/// The payment columns the statements return, of `payments p`.
fn moved_columns() -> String {
    PAYMENT_COLUMNS.split(',').map(|c| format!("p.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

/// [`ReservationRepo::record_debits`] for orders of several seats.
///
/// Rows are found by primary key and their status checked on the row. The status
/// tests are written `IS NOT DISTINCT FROM` (the same test on these NOT NULL columns)
/// so the planner cannot answer them from the partial indexes on status
/// (`reservations_held_by_expiry`, `payments_unfinished`) ANDed with the key lookup: a
/// status change leaves a dead entry in those until VACUUM, and a bitmap scan never
/// prunes it, so each batch would scan every payment made so far (docs/BENCHMARKS.md).
static RECORD_ORDERS: LazyLock<String> = LazyLock::new(|| {
    let moved_columns = moved_columns();
    format!(
        "WITH seats AS (
             -- Each seat of the batch's payments with its status. A scalar subquery is a
             -- probe by key per seat; as a join it was planned as a scan of every
             -- reservation (no statistics during a sale: docs/BENCHMARKS.md).
             SELECT s.payment_id, s.reservation_id,
                    (SELECT r.status FROM reservations r WHERE r.reservation_id = s.reservation_id) AS status
             FROM payment_seats s WHERE s.payment_id = ANY($1::uuid[])
         ),
         whole AS (
             -- STARTED payments whose every seat is still HELD.
             SELECT p.payment_id FROM payments p
             WHERE p.payment_id = ANY($1::uuid[]) AND p.status IS NOT DISTINCT FROM 'STARTED'
               AND NOT EXISTS (SELECT 1 FROM seats
                               WHERE seats.payment_id = p.payment_id AND seats.status IS DISTINCT FROM 'HELD')
         ),
         sold AS (
             UPDATE reservations res
             SET status = 'CONFIRMED',
                 confirmed_at = ($3::timestamptz[])[array_position($1::uuid[], seats.payment_id)]
             FROM seats
             WHERE res.reservation_id = seats.reservation_id
               AND seats.payment_id IN (SELECT payment_id FROM whole)
               AND res.status IS NOT DISTINCT FROM 'HELD'
             RETURNING seats.payment_id
         )
         UPDATE payments p
         SET status = CASE WHEN p.payment_id IN (SELECT payment_id FROM sold)
                           THEN 'CONFIRMED' ELSE 'COMPENSATING' END,
             balance_after = ($2::bigint[])[array_position($1::uuid[], p.payment_id)],
             updated_at = ($3::timestamptz[])[array_position($1::uuid[], p.payment_id)],
             paid_at = CASE WHEN p.payment_id IN (SELECT payment_id FROM sold)
                            THEN ($3::timestamptz[])[array_position($1::uuid[], p.payment_id)] END
         WHERE p.payment_id = ANY($1::uuid[]) AND p.status IS NOT DISTINCT FROM 'STARTED'
         RETURNING {moved_columns}"
    )
});

impl ReservationRepo {
    /// After successful debits: confirms every seat of each payment and the payment
    /// together, or, when a seat of it is no longer HELD, moves the payment to COMPENSATING
    /// (all or nothing: an order is sold whole); the admission's other holds are released
    /// right after, off the answer's path ([`Self::release_admissions_other_holds`]).
    /// Idempotent: a payment that already
    /// left STARTED is returned as it is. Returns one payment per debit, in order (the debit
    /// recorder batches the calls).
    ///
    /// One statement for the single-seat payments of the batch and one for its orders. They
    /// rest on a rule the rest of the saga keeps: a reservation with a
    /// payment stays HELD only while that payment is STARTED (this statement sells it as the
    /// payment leaves STARTED; a refused debit releases it in the same transaction as the
    /// COMPENSATING write; expiry and cancel skip holds with a payment), and a reservation
    /// never returns to HELD. So the seats of a STARTED payment can only leave HELD through
    /// this payment's own saga: "every seat still HELD" read at the start of the statement
    /// stays true for its rows, which the UPDATE re-checks under their row locks anyway. The
    /// rows are locked in the order the plan visits them, not by key; two batches can only
    /// meet on one row when a payment is retried while its saga runs, and a deadlock there
    /// is detected by PostgreSQL and the batch retried payment by payment (see
    /// `platform::batch`).
    ///
    /// It is planned for its batch every time ([`db::lone_batch_prepared`], as in
    /// [`db::begin_batch`], in one round trip fewer for a lone statement).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(payments = debits.len()))]
    pub async fn record_debits(&self, debits: &[RecordedDebit]) -> Result<Vec<Payment>, ReservationError> {
        let payment_ids: Vec<Uuid> = debits.iter().map(|d| d.payment_id).collect();
        let (singles, orders): (Vec<&RecordedDebit>, Vec<&RecordedDebit>) = debits.iter().partition(|d| d.seats == 1);
        let mut rows = Vec::with_capacity(debits.len());
        if !singles.is_empty() {
            let reservation_ids: Vec<Uuid> = singles.iter().map(|d| d.reservation_id).collect();
            rows.extend(
                sqlx::query(&RECORD_SINGLES)
                    .bind(singles.iter().map(|d| d.payment_id).collect::<Vec<_>>())
                    .bind(&reservation_ids)
                    .bind(singles.iter().map(|d| d.balance_after).collect::<Vec<_>>())
                    .bind(singles.iter().map(|d| d.at).collect::<Vec<_>>())
                    .persistent(platform::db::lone_batch_prepared())
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        if !orders.is_empty() {
            rows.extend(
                sqlx::query(&RECORD_ORDERS)
                    .bind(orders.iter().map(|d| d.payment_id).collect::<Vec<_>>())
                    .bind(orders.iter().map(|d| d.balance_after).collect::<Vec<_>>())
                    .bind(orders.iter().map(|d| d.at).collect::<Vec<_>>())
                    .persistent(platform::db::lone_batch_prepared())
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        let mut stored = HashMap::with_capacity(debits.len());
        for row in &rows {
            let payment = payment_from_row(row)?;
            stored.insert(payment.payment_id, payment);
        }
        // Payments that had already left STARTED (a replay, or the request and the recovery
        // worker recording the same debit) are read as they are.
        let unmoved: Vec<Uuid> = payment_ids.iter().filter(|id| !stored.contains_key(id)).copied().collect();
        if !unmoved.is_empty() {
            for payment in self.payments_by_id(&unmoved).await? {
                stored.insert(payment.payment_id, payment);
            }
        }
        // The same payment twice in a batch gets the same answer twice.
        payment_ids
            .iter()
            .map(|id| {
                stored.get(id).cloned().ok_or_else(|| {
                    ReservationError::from(anyhow::anyhow!("payment {id} vanished while recording its debit"))
                })
            })
            .collect()
    }
}

impl ReservationRepo {
    /// The payments `ids` as they are, read unprepared (a batch's array; see
    /// `platform::db::lone_batch_prepared`).
    async fn payments_by_id(&self, ids: &[Uuid]) -> Result<Vec<Payment>, ReservationError> {
        let rows = sqlx::query(
            "SELECT payment_id, reservation_id, user_id, token, idempotency_key, amount, status, failure_reason,
                    balance_after, paid_at, created_at, seats
             FROM payments WHERE payment_id = ANY($1)",
        )
        .bind(ids)
        .persistent(platform::db::lone_batch_prepared())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(payment_from_row).collect()
    }
}
