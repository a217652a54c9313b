//! PostgreSQL access for the reservation schema: SQL only. Each function reads or writes
//! rows and maps them to domain types; deciding what to do (retry, release, compensate) is
//! left to the callers in `service`, `batch` and `saga`.
//!
//! - [`holds`]: placing, diagnosing, releasing and listing holds; seat occupancy.
//! - [`payment_starts`]: starting sagas, one request or many in one transaction.
//! - [`payments`]: moving sagas between states, recovery claims, listings.
//! - [`debits`]: recording the wallet's debits on their payments, in batches.
//! - [`books`]: the export the cross-service reconciliation reads.

/// The SQL expression "the token in `$token` (a column or parameter, as a string literal)
/// has paid for a seat": a payment of it is CONFIRMED or COMPLETED (the seat is sold). Such a token
/// books nothing more (HoldSeat, PayReservation). Written once here because the batch
/// insert, the hold diagnosis and both saga starts apply it; expanded at compile time.
///
/// A scalar subquery, not `EXISTS`: PostgreSQL may turn `NOT EXISTS` into a hash anti-join
/// over every paid payment, and with stale statistics it did, once per batch of holds
/// (holds fell from ~11,000/s to ~2,000/s once payments existed). A scalar subquery is
/// always a per-row probe of `payments_one_purchase_per_token`.
macro_rules! token_has_paid {
    ($token:literal) => {
        concat!(
            "COALESCE((SELECT true FROM payments paid WHERE paid.token = ",
            $token,
            " AND paid.status IN ('CONFIRMED', 'COMPLETED') LIMIT 1), false)"
        )
    };
}

mod books;
mod debits;
mod gauges;
mod holds;
mod payment_starts;
mod payments;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgRow};
use uuid::Uuid;

use crate::{
    domain::{DebitRefusal, Payment, PaymentStatus, Reservation, ReservationStatus},
    error::ReservationError,
};

pub use debits::RecordedDebit;
pub use gauges::Gauges;
pub use holds::{HoldAttempt, NewHold};
pub use payment_starts::{PaymentRequest, PaymentStart};

const RESERVATION_COLUMNS: &str =
    "r.reservation_id, r.user_id, r.token, r.concert_id, r.schedule_id, r.seat_number, r.price,
     r.status, r.held_at, r.expires_at,
     EXISTS (SELECT 1 FROM payments p WHERE p.reservation_id = r.reservation_id) AS payment_started";

const PAYMENT_COLUMNS: &str = "payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
     failure_reason, balance_after, paid_at, created_at";

/// Reservation storage.
#[derive(Debug, Clone)]
pub struct ReservationRepo {
    pool: PgPool,
}

impl ReservationRepo {
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// The constraint a database error violated, if it names one.
pub(super) fn violated_constraint(e: &sqlx::Error) -> Option<String> {
    e.as_database_error().and_then(|d| d.constraint()).map(str::to_owned)
}

pub(super) async fn lock_reservation(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<Reservation, ReservationError> {
    let row = sqlx::query(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations r WHERE r.reservation_id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(ReservationError::NotFound)?;
    reservation_from_row(&row)
}

pub(super) async fn lock_payment(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<Payment, ReservationError> {
    let row = sqlx::query(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    payment_from_row(&row)
}

pub(super) async fn payment_of_reservation(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<Option<Payment>, ReservationError> {
    let row = sqlx::query(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE reservation_id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(payment_from_row).transpose()
}

pub(super) async fn set_reservation_status(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    status: ReservationStatus,
    now: DateTime<Utc>,
) -> Result<(), ReservationError> {
    sqlx::query("UPDATE reservations SET status = $2, released_at = $3 WHERE reservation_id = $1")
        .bind(id)
        .bind(status)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn set_payment_status(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    status: PaymentStatus,
    refusal: Option<&DebitRefusal>,
    now: DateTime<Utc>,
) -> Result<Payment, ReservationError> {
    let row = sqlx::query(&format!(
        "UPDATE payments SET status = $2, failure_reason = $3, updated_at = $4 WHERE payment_id = $1
         RETURNING {PAYMENT_COLUMNS}"
    ))
    .bind(id)
    .bind(status)
    .bind(refusal.map(DebitRefusal::as_str))
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    payment_from_row(&row)
}

pub(super) fn reservation_from_row(row: &PgRow) -> Result<Reservation, ReservationError> {
    let seat: i32 = row.try_get("seat_number")?;
    Ok(Reservation {
        reservation_id: row.try_get("reservation_id")?,
        user_id: row.try_get("user_id")?,
        token: row.try_get("token")?,
        concert_id: row.try_get("concert_id")?,
        schedule_id: row.try_get("schedule_id")?,
        seat_number: platform::db::unsigned(seat, "seat_number")?,
        price: row.try_get("price")?,
        status: row.try_get("status")?,
        held_at: row.try_get("held_at")?,
        expires_at: row.try_get("expires_at")?,
        payment_started: row.try_get("payment_started")?,
    })
}

pub(super) fn payment_from_row(row: &PgRow) -> Result<Payment, ReservationError> {
    Ok(Payment {
        payment_id: row.try_get("payment_id")?,
        reservation_id: row.try_get("reservation_id")?,
        user_id: row.try_get("user_id")?,
        token: row.try_get("token")?,
        idempotency_key: row.try_get("idempotency_key")?,
        amount: row.try_get("amount")?,
        status: row.try_get("status")?,
        failure_reason: row.try_get::<Option<&str>, _>("failure_reason")?.map(DebitRefusal::from_reason),
        balance_after: row.try_get("balance_after")?,
        paid_at: row.try_get("paid_at")?,
        created_at: row.try_get("created_at")?,
    })
}
