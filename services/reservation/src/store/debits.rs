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
    /// The wallet's balance after the debit, in won.
    pub balance_after: Won,
    /// When the debit was recorded (the payment's `paid_at` when the seat is confirmed).
    pub at: DateTime<Utc>,
}

/// The statement of [`ReservationRepo::record_debits`].
///
/// Rows are found by primary key and their status checked on the row. The status
/// tests are written `IS NOT DISTINCT FROM` (the same test on these NOT NULL columns)
/// so the planner cannot answer them from the partial indexes on status
/// (`reservations_held_by_expiry`, `payments_unfinished`) ANDed with the key lookup: a
/// status change leaves a dead entry in those until VACUUM, and a bitmap scan never
/// prunes it, so each batch would scan every payment made so far (docs/BENCHMARKS.md).
static RECORD_DEBITS: LazyLock<String> = LazyLock::new(|| {
    let moved_columns = PAYMENT_COLUMNS.split(',').map(|c| format!("p.{}", c.trim())).collect::<Vec<_>>().join(", ");
    format!(
        "WITH seats AS (
             SELECT s.payment_id, s.reservation_id FROM payment_seats s
             WHERE s.payment_id = ANY($1::uuid[])
         ),
         whole AS (
             -- STARTED payments whose every seat is still HELD.
             SELECT p.payment_id FROM payments p
             WHERE p.payment_id = ANY($1::uuid[]) AND p.status IS NOT DISTINCT FROM 'STARTED'
               AND NOT EXISTS (SELECT 1 FROM seats JOIN reservations gone USING (reservation_id)
                               WHERE seats.payment_id = p.payment_id
                                 AND gone.status IS DISTINCT FROM 'HELD')
         ),
         sold AS (
             UPDATE reservations res
             SET status = 'CONFIRMED',
                 confirmed_at = ($3::timestamptz[])[array_position($1::uuid[], seats.payment_id)]
             FROM seats
             WHERE res.reservation_id = seats.reservation_id
               AND seats.payment_id IN (SELECT payment_id FROM whole)
               AND res.status IS NOT DISTINCT FROM 'HELD'
             RETURNING seats.payment_id, res.user_id, res.concert_id, res.token
         ),
         released AS (
             -- The admission's other live holds (same token), none in a payment: no
             -- payment of them can start any more (one purchase per admission, and
             -- this one is paid). Rows locked elsewhere (a payment start about to be
             -- refused, a cancel) are skipped rather than waited for, so two such
             -- statements never wait on each other; a skipped hold expires as usual.
             UPDATE reservations other
             SET status = 'CANCELLED',
                 released_at = ($3::timestamptz[])[array_position($1::uuid[], candidate.payment_id)]
             FROM (SELECT h.reservation_id, buyer.payment_id
                   FROM (SELECT DISTINCT ON (payment_id) payment_id, user_id, concert_id, token FROM sold) buyer
                   JOIN reservations h ON h.user_id = buyer.user_id AND h.concert_id = buyer.concert_id
                                      AND h.status = 'HELD' AND h.token = buyer.token
                   WHERE NOT EXISTS (SELECT 1 FROM payment_seats s WHERE s.reservation_id = h.reservation_id)
                   FOR UPDATE OF h SKIP LOCKED) candidate
             WHERE other.reservation_id = candidate.reservation_id
             RETURNING other.reservation_id
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
    /// (all or nothing: an order is sold whole). A payment that is confirmed releases the
    /// admission's other live holds (its token's, none in a payment): the admission has made
    /// its one payment, so its other seats go back on sale at once. Idempotent: a payment that already
    /// left STARTED is returned as it is. Returns one payment per debit, in order (the debit
    /// recorder batches the calls).
    ///
    /// One statement. It rests on a rule the rest of the saga keeps: a reservation with a
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
        let mut payment_ids = Vec::with_capacity(debits.len());
        let mut balances = Vec::with_capacity(debits.len());
        let mut ats = Vec::with_capacity(debits.len());
        for d in debits {
            payment_ids.push(d.payment_id);
            balances.push(d.balance_after);
            ats.push(d.at);
        }
        let rows = sqlx::query(&RECORD_DEBITS)
            .bind(&payment_ids)
            .bind(&balances)
            .bind(&ats)
            .persistent(platform::db::lone_batch_prepared())
            .fetch_all(&self.pool)
            .await?;
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
                    balance_after, paid_at, created_at
             FROM payments WHERE payment_id = ANY($1)",
        )
        .bind(ids)
        .persistent(platform::db::lone_batch_prepared())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(payment_from_row).collect()
    }
}
