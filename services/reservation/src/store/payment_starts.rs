//! Starting payment sagas: the STARTED payment and its seats are written in the same
//! transaction that locks the order's reservations and checks the rules (owner, concert,
//! every hold still payable, token unused), one request at a time here, many in one
//! transaction in `payment_start_batches.rs`.
use std::{collections::HashMap, sync::LazyLock};

use chrono::{DateTime, Duration, Utc};
use platform::{auth::Principal, db, money::Won};
use sqlx::Row;
use uuid::Uuid;

use super::{
    PaymentRow, RESERVATION_COLUMNS, ReservationRepo, payment_by_id, reservation_from_row, violated_constraint,
};
use crate::{
    domain::{
        Payer, Payment, PaymentStatus, Reservation, StartStep,
        payment_start::{order_amount, start_step},
    },
    error::ReservationError,
};

/// A request to start paying for an order (see [`ReservationRepo::start_payments`]).
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    /// The order: one reservation or several, distinct, in the caller's order.
    pub reservation_ids: Vec<Uuid>,
    pub payer: Principal,
    /// The request's idempotency key.
    pub key: String,
    pub now: DateTime<Utc>,
    /// How long the request owns the saga before the recovery worker may resume it.
    pub lease: Duration,
}

/// How a payment request relates to what is stored.
#[derive(Debug, Clone)]
pub enum PaymentStart {
    /// A new saga was recorded (status STARTED), for these reservations (as locked then, in
    /// the request's order).
    New(Payment, Vec<Reservation>),
    /// The order is paid for, or being paid, already; continue or report that saga.
    Existing(Payment),
}

/// Each request's answer as decided in a batch (`None`: left to the single path).
pub(super) type BatchOutcomes = Vec<Option<Result<PaymentStart, ReservationError>>>;

/// One try of [`ReservationRepo::start_payment`].
enum StartAttempt {
    Done(Box<PaymentStart>),
    /// A concurrent call started a payment of a reservation of this order first.
    Raced,
}

impl ReservationRepo {
    /// Records the start of a payment saga for an order, or finds the one that already covers
    /// it.
    ///
    /// The reservation row locks (taken in key order) serialize concurrent payment attempts
    /// of the same seats.
    ///
    /// # Errors
    /// [`ReservationError::NotFound`] (any reservation of the order), the rules of
    /// [`start_step`] ([`ReservationError::NotOwner`], [`ReservationError::WrongConcert`],
    /// [`ReservationError::HoldExpired`], [`ReservationError::NotHeld`],
    /// [`ReservationError::TokenUsed`]), [`ReservationError::AdmissionInUse`] when the token
    /// pays for other seats, and [`ReservationError::IdempotencyKeyReused`] when the key paid
    /// another order. An order that already has its payment answers it, whatever the key.
    #[tracing::instrument(skip_all, fields(seats = order.len()))]
    pub async fn start_payment(
        &self,
        order: &[Uuid],
        payer: &Principal,
        key: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<PaymentStart, ReservationError> {
        let start = |recheck| self.try_start_payment(order, payer, key, now, lease, recheck);
        match start(false).await? {
            StartAttempt::Done(started) => Ok(*started),
            // Another call started a payment of one of these seats between our snapshot and
            // our insert: look again, now reading the payments whatever the snapshot said.
            StartAttempt::Raced => match start(true).await? {
                StartAttempt::Done(started) => Ok(*started),
                StartAttempt::Raced => Err(ReservationError::PaymentInProgress),
            },
        }
    }

    async fn try_start_payment(
        &self,
        order: &[Uuid],
        payer: &Principal,
        key: &str,
        now: DateTime<Utc>,
        lease: Duration,
        recheck: bool,
    ) -> Result<StartAttempt, ReservationError> {
        let mut tx = self.pool.begin().await?;
        // The row locks and the paid-token check in one round trip.
        static LOCK_ORDER: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {RESERVATION_COLUMNS}, {} AS token_paid
                 FROM reservations r WHERE r.reservation_id = ANY($2) ORDER BY r.reservation_id FOR UPDATE OF r",
                token_has_paid!("$1")
            )
        });
        let rows = sqlx::query(&LOCK_ORDER).bind(payer.token).bind(order).fetch_all(&mut *tx).await?;
        let mut token_paid = false;
        let mut by_id = HashMap::with_capacity(rows.len());
        for row in &rows {
            token_paid |= row.try_get::<bool, _>("token_paid")?;
            let r = reservation_from_row(row)?;
            by_id.insert(r.reservation_id, r);
        }
        let mut locked = order
            .iter()
            .map(|id| by_id.remove(id).ok_or(ReservationError::NotFound))
            .collect::<Result<Vec<Reservation>, _>>()?;
        // `payment_id` comes from the statement's snapshot; the common case (no payment yet)
        // skips a round trip, and a payment committed meanwhile is caught by the insert
        // (then `recheck`, which reads the payments whatever the snapshot said).
        if recheck {
            let current = payments_of_seats(&mut tx, order).await?;
            for r in &mut locked {
                r.payment_id = current.get(&r.reservation_id).copied();
            }
        }
        let payer_now = Payer { user_id: &payer.user_id, concert_id: payer.concert_id, token_paid };
        match start_step(&locked, payer_now, now) {
            StartStep::Start => {}
            StartStep::Existing(payment_id) => {
                if let Some(existing) = payment_by_id(&mut tx, payment_id).await? {
                    // A retry from a fresh page (a new key) resumes that payment and learns
                    // its real outcome instead of waiting for its lease.
                    return Ok(StartAttempt::Done(Box::new(PaymentStart::Existing(existing))));
                }
                return Ok(StartAttempt::Raced);
            }
            StartStep::ReleaseAndRefuse { expired, error } => {
                // Expired on read: release those seats now rather than wait for the sweeper.
                sqlx::query!(
                    "UPDATE reservations SET status = 'EXPIRED', released_at = $2
                     WHERE reservation_id = ANY($1) AND status = 'HELD'",
                    &expired,
                    now
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Err(error);
            }
            // A seat seen neither held nor in a payment may have been paid after this
            // statement's snapshot: the row lock waited for that saga, and PostgreSQL
            // re-reads a locked row but not the payment subquery (a double click through two
            // replicas was refused RESERVATION_NOT_HELD while its twin paid). Look again, with
            // the payments read now.
            StartStep::Refuse(ReservationError::NotHeld) if !recheck => return Ok(StartAttempt::Raced),
            StartStep::Refuse(e) => return Err(e),
        }
        let Some(payment) = insert_one_started(&mut tx, &locked, payer, key, now, lease).await? else {
            return Ok(StartAttempt::Raced);
        };
        tx.commit().await?;
        Ok(StartAttempt::Done(Box::new(PaymentStart::New(payment, locked))))
    }
}

/// The payments that cover `seats` now, by reservation.
async fn payments_of_seats(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    seats: &[Uuid],
) -> Result<HashMap<Uuid, Uuid>, ReservationError> {
    let rows = sqlx::query!(
        r#"SELECT reservation_id AS "reservation_id!", payment_id AS "payment_id!" FROM payment_seats
           WHERE reservation_id = ANY($1)"#,
        seats
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|r| (r.reservation_id, r.payment_id)).collect())
}

/// Writes the STARTED payment of `order` (locked, payable) for `payer`, with its seats; `None`
/// when a concurrent call started a payment of one of its seats first.
///
/// # Errors
/// [`ReservationError::AdmissionInUse`] when the admission pays for other seats;
/// [`ReservationError::IdempotencyKeyReused`] when the key paid another order.
async fn insert_one_started(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    order: &[Reservation],
    payer: &Principal,
    key: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Payment>, ReservationError> {
    let seats: Vec<Uuid> = order.iter().map(|r| r.reservation_id).collect();
    let amount = order_amount(order)?;
    let count = i16::try_from(order.len()).map_err(|_| anyhow::anyhow!("an order of {} seats", order.len()))?;
    // One statement: the payment (its first seat on its row), then its further seats,
    // unless a seat of the order already has a payment. This statement's snapshot is taken
    // after every seat was locked, and a payment starts only under those locks, so it sees
    // every payment of them that committed.
    let inserted = sqlx::query_as!(
        PaymentRow,
        r#"WITH f AS (SELECT * FROM UNNEST($9::uuid[]) AS f (reservation_id)),
                p AS (
                    INSERT INTO payments (payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                                          created_at, updated_at, next_attempt_at, seats)
                    SELECT $1::uuid, $2::uuid, $3::text, $4::uuid, $5::text, $6::bigint, 'STARTED', $7::timestamptz, $7,
                           $8::timestamptz, $10::smallint
                    WHERE NOT EXISTS (SELECT 1 FROM f JOIN payment_seats taken USING (reservation_id))
                    RETURNING payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                              failure_reason, balance_after, paid_at, created_at, seats
                ),
                s AS (INSERT INTO order_seats (reservation_id, payment_id)
                      SELECT f.reservation_id, p.payment_id FROM f CROSS JOIN p
                      WHERE f.reservation_id <> p.reservation_id)
           SELECT payment_id AS "payment_id!", reservation_id AS "reservation_id!", user_id AS "user_id!",
                  token AS "token!", idempotency_key AS "idempotency_key!", amount AS "amount!: Won",
                  status AS "status!: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                  paid_at, created_at AS "created_at!", seats AS "seats!" FROM p"#,
        Uuid::now_v7(),
        seats[0],
        payer.user_id,
        payer.token,
        key,
        amount.get(),
        now,
        now + lease,
        &seats,
        count
    )
    .fetch_optional(&mut **tx)
    .await;
    match inserted {
        Ok(row) => Ok(row.map(Payment::from)),
        // A seat's payment committed between the check and the insert (a batch of another
        // replica): the caller looks again.
        Err(e)
            if matches!(
                violated_constraint(&e).as_deref(),
                Some("payments_reservation_id_key" | "order_seats_pkey")
            ) =>
        {
            Ok(None)
        }
        // This admission already pays (or paid) for other seats.
        Err(e) if violated_constraint(&e).as_deref() == Some("payments_one_purchase_per_token") => {
            Err(ReservationError::AdmissionInUse)
        }
        Err(e) if db::sqlstate(&e).as_deref() == Some(db::UNIQUE_VIOLATION) => {
            Err(ReservationError::IdempotencyKeyReused)
        }
        Err(e) => Err(e.into()),
    }
}
