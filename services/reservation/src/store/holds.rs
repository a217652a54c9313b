//! Holds: placing (batched inserts), diagnosing a hold that did not take, listing, and the
//! live occupancy of schedules. Holds that end unpaid: `hold_releases`.

use chrono::{DateTime, Duration, Utc};
use platform::money::Won;
use sqlx::Row;
use uuid::Uuid;

use super::{ReservationRepo, ReservationRow};
use crate::{
    domain::{Blocker, HoldDiagnosis, OccupiedSeat, Reservation, ReservationStatus},
    error::ReservationError,
};

/// Why a hold of `seat` on `schedule` by `user`'s `token` for `concert` did not take, as
/// columns: whether the token already paid, the live reservation of the seat (status,
/// expiry, whether a payment runs for it), and the user's live holds on the concert. The
/// arguments are SQL expressions; shared by the batch insert (for the holds it refused) and
/// the diagnosis read after it, so both judge a refusal by the same rule. Expanded at
/// compile time.
macro_rules! diagnosis_columns {
    ($token:literal, $user:literal, $concert:literal, $schedule:literal, $seat:literal) => {
        concat!(
            token_has_paid!($token),
            " AS token_used, r.status, r.expires_at,
             EXISTS (SELECT 1 FROM payment_seats s WHERE s.reservation_id = r.reservation_id) AS paying,
             (SELECT count(*) FROM reservations h
              WHERE h.user_id = ",
            $user,
            " AND h.concert_id = ",
            $concert,
            " AND h.status = 'HELD' AND h.hold_slot IS NOT NULL) AS user_holds
             FROM (SELECT 1) AS one
             LEFT JOIN reservations r
               ON r.schedule_id = ",
            $schedule,
            " AND r.seat_number = ",
            $seat,
            " AND r.status IN ('HELD', 'CONFIRMED')"
        )
    };
}

const INSERT_HOLDS: &str = concat!(
    "WITH u AS (
             SELECT u.*, row_number() OVER (PARTITION BY u.user_id, u.concert_id ORDER BY u.n) AS rank
             FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::int[], $6::bigint[],
                         $7::timestamptz[], $8::timestamptz[], $9::uuid[], $10::int[])
                  WITH ORDINALITY AS u(id, user_id, token, schedule_id, seat, price, held_at, expires_at,
                                       concert_id, max_holds, n)
         ),
         -- One transaction-scoped lock per user and concert of the batch (class 74201, a
         -- hash of both: a collision only makes two users' batches take turns), taken in key
         -- order before any row is inserted (the uncorrelated subquery below runs once,
         -- first): two batches never pick the same free hold slot of one user at once, so the
         -- only inserts that wait on each other are those of one seat, in seat order.
         user_locks AS (
             SELECT pg_advisory_xact_lock(74201, k)
             FROM (SELECT DISTINCT hashtext(u.user_id || '/' || u.concert_id::text) AS k FROM u ORDER BY k) AS keys
         ),
         ins AS (
         INSERT INTO reservations
             (reservation_id, user_id, token, schedule_id, seat_number, price, status, held_at, expires_at,
              concert_id, hold_slot)
         SELECT u.id, u.user_id, u.token, u.schedule_id, u.seat, u.price, 'HELD', u.held_at, u.expires_at,
                u.concert_id, slot.n
         FROM u
         -- The user's k-th hold of this batch takes the k-th free hold slot of the user and
         -- concert, so holds of one user in one batch do not collide; none free: no row.
         CROSS JOIN LATERAL (
             SELECT s.n FROM generate_series(1, u.max_holds) AS s (n)
             WHERE NOT EXISTS (SELECT 1 FROM reservations h
                               WHERE h.user_id = u.user_id AND h.concert_id = u.concert_id
                                 AND h.status = 'HELD' AND h.hold_slot = s.n)
             ORDER BY s.n OFFSET u.rank - 1 LIMIT 1
         ) AS slot
         WHERE (SELECT count(*) FROM user_locks) >= 0 AND NOT ",
    token_has_paid!("u.token"),
    "
         -- Rows are inserted in one order across all batches (seat, then user and rank): two
         -- batches racing for the same seats (the herd of an opening) wait on each other's in
         -- the same order, so they queue instead of deadlocking, which PostgreSQL would only
         -- detect after deadlock_timeout, a second (one to three stalled batches per flood
         -- run while rows went in user order). Hold slots cannot make them wait on each
         -- other: see user_locks.
         ORDER BY u.schedule_id, u.seat, u.user_id, u.concert_id, u.rank
         -- Any unique index: the seat's (taken) or the hold slots' (a concurrent hold of this
         -- user on another replica or batch took the slot first); either way nothing is
         -- inserted and the caller looks why.
         ON CONFLICT DO NOTHING
         RETURNING reservation_id
         )
         -- Every hold in the batch's order, and for each one refused why, as the statement's
         -- snapshot shows it (rows this statement inserted, and rows committed while it ran,
         -- are not in it: such a refusal shows no blocker and is read again).
         SELECT ins.reservation_id IS NOT NULL AS inserted, d.*
         FROM u
         LEFT JOIN ins ON ins.reservation_id = u.id
         LEFT JOIN LATERAL (SELECT ",
    diagnosis_columns!("u.token", "u.user_id", "u.concert_id", "u.schedule_id", "u.seat"),
    " WHERE ins.reservation_id IS NULL) AS d ON true
         ORDER BY u.n"
);

const HOLD_DIAGNOSIS: &str = concat!("SELECT ", diagnosis_columns!("$1", "$4", "$5", "$2", "$3"));

/// A hold to place.
#[derive(Debug, Clone)]
pub struct NewHold {
    pub user_id: String,
    pub token: Uuid,
    /// The schedule's concert (the token's, checked before the hold).
    pub concert_id: Uuid,
    pub schedule_id: Uuid,
    pub seat_number: u32,
    pub price: Won,
    pub now: DateTime<Utc>,
    pub ttl: Duration,
    /// Most live holds this user may have on this concert (`MAX_HOLDS_PER_USER`).
    pub max_holds: u32,
}

/// What the batch insert did with one hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldInsert {
    /// The hold is placed.
    Inserted,
    /// Nothing was inserted; why, as the statement's snapshot shows it.
    Refused(HoldDiagnosis),
}

/// A [`HoldDiagnosis`] from the columns of `diagnosis_columns!`.
fn diagnosis(row: &sqlx::postgres::PgRow) -> Result<HoldDiagnosis, ReservationError> {
    let status: Option<ReservationStatus> = row.try_get("status")?;
    let expires_at: Option<DateTime<Utc>> = row.try_get("expires_at")?;
    let blocker = match (status, expires_at) {
        (Some(status), Some(expires_at)) => Some(Blocker { status, expires_at, paying: row.try_get("paying")? }),
        _ => None,
    };
    Ok(HoldDiagnosis { token_used: row.try_get("token_used")?, blocker, user_holds: row.try_get("user_holds")? })
}

/// The outcome of a hold attempt.
#[derive(Debug, Clone)]
pub enum HoldAttempt {
    /// The seat is now held by the caller.
    Held(Reservation),
    /// Someone else holds or bought the seat; it stays blocked at least until then.
    Taken { blocked_until: DateTime<Utc> },
}

impl ReservationRepo {
    /// Inserts holds in one statement; returns, for each hold in order, whether it was
    /// inserted and, when not, why as the statement saw it. A hold is skipped when its seat
    /// is live (unique index), its token already paid, or its user has no free hold slot.
    ///
    /// The reason is read in the statement's snapshot, so it misses a blocker that committed
    /// while the statement ran or that this statement inserted (two holds of one seat in one
    /// batch): such a refusal shows no blocker, and the caller reads why again
    /// ([`ReservationRepo::hold_diagnosis`]).
    ///
    /// # Errors
    /// Database failures only.
    pub async fn insert_holds(&self, ids: &[Uuid], holds: &[NewHold]) -> Result<Vec<HoldInsert>, ReservationError> {
        let users: Vec<&str> = holds.iter().map(|h| h.user_id.as_str()).collect();
        let tokens: Vec<Uuid> = holds.iter().map(|h| h.token).collect();
        let schedules: Vec<Uuid> = holds.iter().map(|h| h.schedule_id).collect();
        let seats: Vec<i32> = holds.iter().map(|h| i32::try_from(h.seat_number).unwrap_or(0)).collect();
        let prices: Vec<Won> = holds.iter().map(|h| h.price).collect();
        let held_at: Vec<DateTime<Utc>> = holds.iter().map(|h| h.now).collect();
        let expires_at: Vec<DateTime<Utc>> = holds.iter().map(|h| h.now + h.ttl).collect();
        let concerts: Vec<Uuid> = holds.iter().map(|h| h.concert_id).collect();
        let max_holds: Vec<i32> = holds.iter().map(|h| i32::try_from(h.max_holds).unwrap_or(i32::MAX)).collect();
        let rows = sqlx::query(INSERT_HOLDS)
            .bind(ids)
            .bind(&users)
            .bind(&tokens)
            .bind(&schedules)
            .bind(&seats)
            .bind(&prices)
            .bind(&held_at)
            .bind(&expires_at)
            .bind(&concerts)
            .bind(&max_holds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(if row.try_get("inserted")? { HoldInsert::Inserted } else { HoldInsert::Refused(diagnosis(row)?) })
            })
            .collect()
    }

    /// Why a hold insert did nothing, read in one statement: whether the token already paid,
    /// the live reservation blocking the seat (if any), and how many live holds the user has
    /// on the concert.
    ///
    /// # Errors
    /// Database failures only.
    pub async fn hold_diagnosis(&self, h: &NewHold) -> Result<HoldDiagnosis, ReservationError> {
        let row = sqlx::query(HOLD_DIAGNOSIS)
            .bind(h.token)
            .bind(h.schedule_id)
            .bind(i32::try_from(h.seat_number).unwrap_or(0))
            .bind(&h.user_id)
            .bind(h.concert_id)
            .fetch_one(&self.pool)
            .await?;
        diagnosis(&row)
    }

    /// One reservation.
    ///
    /// # Errors
    /// [`ReservationError::NotFound`].
    #[tracing::instrument(skip_all, fields(%id))]
    pub async fn get(&self, id: Uuid) -> Result<Reservation, ReservationError> {
        sqlx::query_as!(
            ReservationRow,
            r#"SELECT r.reservation_id, r.user_id, r.token, r.concert_id, r.schedule_id, r.seat_number,
                      r.price AS "price: Won", r.status AS "status: ReservationStatus", r.held_at, r.expires_at,
                      (SELECT s.payment_id FROM payment_seats s WHERE s.reservation_id = r.reservation_id) AS payment_id
               FROM reservations r WHERE r.reservation_id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ReservationError::NotFound)?
        .try_into()
    }

    /// One page of a user's reservations, newest first.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn list_for_user(
        &self,
        user_id: &str,
        page: &platform::paging::PageRequest,
    ) -> Result<Vec<Reservation>, ReservationError> {
        let (at, id) = page.after_parts();
        let rows = sqlx::query_as!(
            ReservationRow,
            r#"SELECT r.reservation_id, r.user_id, r.token, r.concert_id, r.schedule_id, r.seat_number,
                      r.price AS "price: Won", r.status AS "status: ReservationStatus", r.held_at, r.expires_at,
                      (SELECT s.payment_id FROM payment_seats s WHERE s.reservation_id = r.reservation_id) AS payment_id
               FROM reservations r
               WHERE r.user_id = $1 AND ($2::timestamptz IS NULL OR (r.held_at, r.reservation_id) < ($2, $3::uuid))
               ORDER BY r.held_at DESC, r.reservation_id DESC LIMIT $4"#,
            user_id,
            at,
            id,
            page.fetch_limit()
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Reservation::try_from).collect()
    }

    /// Live occupancy of `schedules`: HELD (not expired, or with a payment under way) and
    /// CONFIRMED seats.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(schedules = schedules.len()))]
    pub async fn occupancy(
        &self,
        schedules: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<Vec<OccupiedSeat>, ReservationError> {
        let rows = sqlx::query!(
            r#"SELECT schedule_id, seat_number, status AS "status: ReservationStatus" FROM reservations r
               WHERE schedule_id = ANY($1) AND status IN ('HELD', 'CONFIRMED')
                 AND (status = 'CONFIRMED' OR expires_at > $2
                      OR EXISTS (SELECT 1 FROM payment_seats s WHERE s.reservation_id = r.reservation_id))"#,
            schedules,
            now
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let seat_number = platform::db::unsigned(r.seat_number, "seat_number")?;
                Ok(OccupiedSeat { schedule_id: r.schedule_id, seat_number, status: r.status })
            })
            .collect()
    }
}
