//! PostgreSQL access for the reservation schema: SQL only. Each function reads or writes
//! rows and maps them to domain types; deciding what to do (retry, release, compensate) is
//! left to the callers in `service`, `batch` and `saga`.
//!
//! - [`holds`]: placing, diagnosing and listing holds; seat occupancy.
//! - [`hold_releases`]: holds ending unpaid (expired, admission ended), and their purge.
//! - [`payment_starts`]: starting sagas, one request or many in one transaction.
//! - [`payments`]: moving sagas between states, recovery claims, listings.
//! - [`debits`]: recording the wallet's debits on their payments, in batches.
//! - [`books`]: the export the cross-service reconciliation reads.
//! - [`seat_changes`]: which schedules' seats changed (LISTEN), for the live seat maps.

/// The SQL expression "the token in `$token` (a column or parameter, as a string literal)
/// has paid for a seat": a payment of it is CONFIRMED or COMPLETED (the seat is sold). Such a token
/// books nothing more (HoldSeat, PayReservation). Written once here because the batch
/// insert, the hold diagnosis and both saga starts apply it; expanded at compile time.
///
/// A scalar subquery, not `EXISTS`: PostgreSQL may turn `NOT EXISTS` into a hash anti-join
/// over every paid payment, and with stale statistics it does, once per batch of holds (the
/// figures are in docs/BENCHMARKS.md). A scalar subquery is always a per-row probe of
/// `payments_one_purchase_per_token`.
macro_rules! token_has_paid {
    ($token:literal) => {
        concat!(
            "COALESCE((SELECT true FROM payments paid WHERE paid.token = ",
            $token,
            " AND paid.status IN ('CONFIRMED', 'COMPLETED') LIMIT 1), false)"
        )
    };
}

/// A [`PaymentRow`] from the record of a `query!` that selected the payment's columns
/// (each statement has a record type of its own, so no function can take them all).
macro_rules! payment_row {
    ($r:expr) => {
        $crate::store::PaymentRow {
            payment_id: $r.payment_id,
            reservation_id: $r.reservation_id,
            user_id: $r.user_id,
            token: $r.token,
            idempotency_key: $r.idempotency_key,
            amount: $r.amount,
            status: $r.status,
            failure_reason: $r.failure_reason,
            balance_after: $r.balance_after,
            paid_at: $r.paid_at,
            created_at: $r.created_at,
            seats: $r.seats,
        }
    };
}

mod books;
mod debits;
mod gauges;
mod give_backs;
mod hold_releases;
mod holds;
mod payment_start_batches;
mod payment_starts;
mod payments;
mod seat_changes;

use chrono::{DateTime, Utc};
use platform::money::Won;
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgRow};
use uuid::Uuid;

use crate::{
    domain::{DebitRefusal, Payment, PaymentStatus, Reservation, ReservationStatus},
    error::ReservationError,
};

pub use debits::RecordedDebit;
pub use gauges::Gauges;
pub use give_backs::Cancelled;
pub use holds::{HoldAttempt, HoldInsert, NewHold};
pub use payment_starts::{PaymentRequest, PaymentStart};
pub use seat_changes::{SeatChange, listen as listen_for_seat_changes};

const RESERVATION_COLUMNS: &str =
    "r.reservation_id, r.user_id, r.token, r.concert_id, r.schedule_id, r.seat_number, r.price,
     r.status, r.held_at, r.expires_at,
     (SELECT s.payment_id FROM payment_seats s WHERE s.reservation_id = r.reservation_id) AS payment_id";

const PAYMENT_COLUMNS: &str = "payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
     failure_reason, balance_after, paid_at, created_at, seats";

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

    /// The key that signs this service's page tokens (made by its migration).
    ///
    /// # Errors
    /// Database failures; a key too short for `platform::paging`.
    pub async fn page_key(&self) -> anyhow::Result<platform::paging::PageKey> {
        let key = sqlx::query_scalar!("SELECT key FROM page_token_key").fetch_one(&self.pool).await?;
        platform::paging::PageKey::from_bytes(&key)
    }
}

/// The constraint a database error violated, if it names one.
pub(super) fn violated_constraint(e: &sqlx::Error) -> Option<String> {
    e.as_database_error().and_then(|d| d.constraint()).map(str::to_owned)
}

/// A reservation as stored, with the payment that covers it, if any (what the compile-time
/// checked reads return; [`Reservation`] is the domain's view of it).
pub(super) struct ReservationRow {
    pub reservation_id: Uuid,
    pub user_id: String,
    pub token: Uuid,
    pub concert_id: Uuid,
    pub schedule_id: Uuid,
    pub seat_number: i32,
    pub price: Won,
    pub status: ReservationStatus,
    pub held_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub payment_id: Option<Uuid>,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = ReservationError;

    fn try_from(r: ReservationRow) -> Result<Self, ReservationError> {
        Ok(Reservation {
            reservation_id: r.reservation_id,
            user_id: r.user_id,
            token: r.token,
            concert_id: r.concert_id,
            schedule_id: r.schedule_id,
            seat_number: platform::db::unsigned(r.seat_number, "seat_number")?,
            price: r.price,
            status: r.status,
            held_at: r.held_at,
            expires_at: r.expires_at,
            payment_id: r.payment_id,
        })
    }
}

/// A payment as stored (the refusal by its stored name).
pub(super) struct PaymentRow {
    pub payment_id: Uuid,
    pub reservation_id: Uuid,
    pub user_id: String,
    pub token: Uuid,
    pub idempotency_key: String,
    pub amount: Won,
    pub status: PaymentStatus,
    pub failure_reason: Option<String>,
    pub balance_after: Option<Won>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub seats: i16,
}

impl From<PaymentRow> for Payment {
    fn from(p: PaymentRow) -> Self {
        Payment {
            payment_id: p.payment_id,
            reservation_id: p.reservation_id,
            user_id: p.user_id,
            token: p.token,
            idempotency_key: p.idempotency_key,
            amount: p.amount,
            status: p.status,
            failure_reason: p.failure_reason.as_deref().map(DebitRefusal::from_reason),
            balance_after: p.balance_after,
            paid_at: p.paid_at,
            created_at: p.created_at,
            seats: u32::from(p.seats.unsigned_abs()),
        }
    }
}

pub(super) async fn lock_reservation(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<Reservation, ReservationError> {
    sqlx::query_as!(
        ReservationRow,
        r#"SELECT r.reservation_id, r.user_id, r.token, r.concert_id, r.schedule_id, r.seat_number,
                      r.price AS "price: Won", r.status AS "status: ReservationStatus", r.held_at, r.expires_at,
                      (SELECT s.payment_id FROM payment_seats s WHERE s.reservation_id = r.reservation_id) AS payment_id
           FROM reservations r WHERE r.reservation_id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(ReservationError::NotFound)?
    .try_into()
}

pub(super) async fn lock_payment(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<Payment, ReservationError> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"SELECT payment_id, reservation_id, user_id, token, idempotency_key, amount AS "amount: Won",
                      status AS "status: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                      paid_at, created_at, seats FROM payments WHERE payment_id = $1 FOR UPDATE"#,
        id
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.into())
}

pub(super) async fn payment_by_id(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<Option<Payment>, ReservationError> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"SELECT payment_id, reservation_id, user_id, token, idempotency_key, amount AS "amount: Won",
                      status AS "status: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                      paid_at, created_at, seats FROM payments WHERE payment_id = $1"#,
        id
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(Payment::from))
}

pub(super) async fn set_reservation_status(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    status: ReservationStatus,
    now: DateTime<Utc>,
) -> Result<(), ReservationError> {
    sqlx::query!(
        "UPDATE reservations SET status = $2, released_at = $3 WHERE reservation_id = $1",
        id,
        status.as_str(),
        now
    )
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
    let row = sqlx::query_as!(
        PaymentRow,
        r#"UPDATE payments SET status = $2, failure_reason = $3, updated_at = $4 WHERE payment_id = $1
           RETURNING payment_id, reservation_id, user_id, token, idempotency_key, amount AS "amount: Won",
                      status AS "status: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                      paid_at, created_at, seats"#,
        id,
        status.as_str(),
        refusal.map(DebitRefusal::as_str),
        now
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.into())
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
        payment_id: row.try_get("payment_id")?,
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
        seats: u32::from(row.try_get::<i16, _>("seats")?.unsigned_abs()),
    })
}
