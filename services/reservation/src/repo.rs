//! PostgreSQL access for the reservation schema.
use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use chrono::{DateTime, Duration, Utc};
use platform::auth::Principal;
use platform::{db, money::Won};
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgRow};
use uuid::Uuid;

use crate::{
    debit_recorder::RecordedDebit,
    domain::{Payment, PaymentStatus, Reservation, ReservationStatus},
    error::ReservationError,
    hold_batcher::HoldBatcher,
};

const RESERVATION_COLUMNS: &str =
    "r.reservation_id, r.user_id, r.token, r.concert_id, r.schedule_id, r.seat_number, r.price,
     r.status, r.held_at, r.expires_at,
     EXISTS (SELECT 1 FROM payments p WHERE p.reservation_id = r.reservation_id) AS payment_started";

/// SQL for "token `$1` has paid for a seat": the payment states of
/// [`PaymentStatus::is_paid`]. Such a token books nothing more (HoldSeat, PayReservation).
/// Written once here because the batch insert, the hold diagnosis and `start_payment` all
/// apply it; `{token}` is replaced by the column or parameter holding the token.
///
/// Written as a scalar subquery, not `EXISTS`: PostgreSQL may turn `NOT EXISTS` into a hash
/// anti-join over every paid payment, and with stale statistics it did, once per batch of
/// holds (holds fell from ~11,000/s to ~2,000/s once payments existed). A scalar subquery
/// is always a per-row probe of `payments_by_token`.
const TOKEN_HAS_PAID: &str = "COALESCE((SELECT true FROM payments paid
     WHERE paid.token = {token} AND paid.status IN ('CONFIRMED', 'COMPLETED') LIMIT 1), false)";

fn token_has_paid(token: &str) -> String {
    TOKEN_HAS_PAID.replace("{token}", token)
}

static INSERT_HOLDS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO reservations
             (reservation_id, user_id, token, schedule_id, seat_number, price, status, held_at, expires_at,
              concert_id, hold_slot)
         SELECT u.id, u.user_id, u.token, u.schedule_id, u.seat, u.price, 'HELD', u.held_at, u.expires_at,
                u.concert_id, slot.n
         FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::int[], $6::bigint[],
                     $7::timestamptz[], $8::timestamptz[], $9::uuid[], $10::int[])
              WITH ORDINALITY AS u(id, user_id, token, schedule_id, seat, price, held_at, expires_at, concert_id,
                                   max_holds, n)
         -- The lowest free hold slot of this user and concert; none free: no row.
         CROSS JOIN LATERAL (
             SELECT s.n FROM generate_series(1, u.max_holds) AS s (n)
             WHERE NOT EXISTS (SELECT 1 FROM reservations h
                               WHERE h.user_id = u.user_id AND h.concert_id = u.concert_id
                                 AND h.status = 'HELD' AND h.hold_slot = s.n)
             ORDER BY s.n LIMIT 1
         ) AS slot
         WHERE NOT {}
         ORDER BY u.n
         -- Any unique index: the seat's (taken) or the hold slots' (a concurrent hold of this
         -- user took the slot first); either way nothing is inserted and the caller looks why.
         ON CONFLICT DO NOTHING
         RETURNING reservation_id",
        token_has_paid("u.token")
    )
});

static HOLD_DIAGNOSIS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {},
                r.status, r.expires_at,
                EXISTS (SELECT 1 FROM payments p WHERE p.reservation_id = r.reservation_id),
                (SELECT count(*) FROM reservations h
                 WHERE h.user_id = $4 AND h.concert_id = $5 AND h.status = 'HELD' AND h.hold_slot IS NOT NULL)
         FROM (SELECT 1) AS one
         LEFT JOIN reservations r
           ON r.schedule_id = $2 AND r.seat_number = $3 AND r.status IN ('HELD', 'CONFIRMED')",
        token_has_paid("$1")
    )
});

const PAYMENT_COLUMNS: &str = "payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
     failure_reason, balance_after, paid_at, created_at";

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

/// The outcome of a hold attempt.
#[derive(Debug, Clone)]
pub enum HoldAttempt {
    /// The seat is now held by the caller.
    Held(Reservation),
    /// Someone else holds or bought the seat; it stays blocked at least until then.
    Taken { blocked_until: DateTime<Utc> },
}

/// A request to start paying for a reservation (see [`ReservationRepo::start_payments`]).
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    pub reservation_id: Uuid,
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
    /// A new saga was recorded (status STARTED), for this reservation (as locked then).
    New(Payment, Reservation),
    /// The same request was made before; continue or report that saga.
    Existing(Payment),
}

/// One occupied seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccupiedSeat {
    pub schedule_id: Uuid,
    pub seat_number: u32,
    pub status: ReservationStatus,
}

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

    /// Places a hold. The unique index over live reservations decides races: of any
    /// number of concurrent attempts on one seat, from any number of replicas, one wins.
    /// A loser learns until when the seat is blocked (the blocking hold's expiry, or
    /// "indefinitely" for a sold seat or a hold being paid).
    ///
    /// # Errors
    /// [`ReservationError::TokenUsed`] when the token already paid for a seat;
    /// [`ReservationError::HoldLimit`] when the user already holds `max_holds` seats of the
    /// concert.
    #[tracing::instrument(skip_all, fields(schedule_id = %h.schedule_id, seat = h.seat_number))]
    pub async fn hold(&self, h: &NewHold, inserter: &HoldBatcher) -> Result<HoldAttempt, ReservationError> {
        // A second and third try only after the blocker vanished or a stale hold was released.
        for _ in 0..3 {
            if let Some(r) = inserter.insert(h.clone()).await? {
                return Ok(HoldAttempt::Held(r));
            }
            // One read tells why the insert did nothing.
            let row = sqlx::query(&HOLD_DIAGNOSIS)
                .bind(h.token)
                .bind(h.schedule_id)
                .bind(i32::try_from(h.seat_number).unwrap_or(0))
                .bind(&h.user_id)
                .bind(h.concert_id)
                .fetch_one(&self.pool)
                .await?;
            let token_used: bool = row.try_get(0)?;
            if token_used {
                return Err(ReservationError::TokenUsed);
            }
            let status: Option<String> = row.try_get(1)?;
            let expires_at: Option<DateTime<Utc>> = row.try_get(2)?;
            let paying: bool = row.try_get(3)?;
            let user_holds: i64 = row.try_get(4)?;
            match (status.as_deref(), expires_at) {
                (None, _) | (_, None) if user_holds >= i64::from(h.max_holds) => {
                    // Every slot is taken; holds that expired but were not swept yet free theirs.
                    if !self.release_stale_holds_of(&h.user_id, h.concert_id, h.now).await? {
                        return Err(ReservationError::HoldLimit { max: h.max_holds });
                    }
                }
                (None, _) | (_, None) => continue, // the blocker is gone: try again
                (Some("HELD"), Some(exp)) if !paying => {
                    if exp > h.now {
                        return Ok(HoldAttempt::Taken { blocked_until: exp });
                    }
                    if !self.release_stale_hold(h.schedule_id, h.seat_number, h.now).await? {
                        return Ok(HoldAttempt::Taken { blocked_until: h.now });
                    }
                }
                _ => return Ok(HoldAttempt::Taken { blocked_until: DateTime::<Utc>::MAX_UTC }),
            }
        }
        Ok(HoldAttempt::Taken { blocked_until: h.now })
    }

    /// Inserts holds in one statement; returns the ids of the rows actually inserted. A
    /// hold is skipped when its seat is live (unique index) or its token already paid.
    ///
    /// # Errors
    /// Database failures only.
    pub async fn insert_holds(&self, ids: &[Uuid], holds: &[NewHold]) -> Result<HashSet<Uuid>, ReservationError> {
        let users: Vec<&str> = holds.iter().map(|h| h.user_id.as_str()).collect();
        let tokens: Vec<Uuid> = holds.iter().map(|h| h.token).collect();
        let schedules: Vec<Uuid> = holds.iter().map(|h| h.schedule_id).collect();
        let seats: Vec<i32> = holds.iter().map(|h| i32::try_from(h.seat_number).unwrap_or(0)).collect();
        let prices: Vec<i64> = holds.iter().map(|h| h.price.get()).collect();
        let held_at: Vec<DateTime<Utc>> = holds.iter().map(|h| h.now).collect();
        let expires_at: Vec<DateTime<Utc>> = holds.iter().map(|h| h.now + h.ttl).collect();
        let concerts: Vec<Uuid> = holds.iter().map(|h| h.concert_id).collect();
        let max_holds: Vec<i32> = holds.iter().map(|h| i32::try_from(h.max_holds).unwrap_or(i32::MAX)).collect();
        let inserted: Vec<Uuid> = sqlx::query_scalar(&INSERT_HOLDS)
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
        Ok(inserted.into_iter().collect())
    }

    /// Marks the expired, unpaid holds of one user and concert EXPIRED (freeing their hold
    /// slots); true when any was released.
    async fn release_stale_holds_of(
        &self,
        user_id: &str,
        concert_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, ReservationError> {
        let released = sqlx::query(
            "UPDATE reservations r SET status = 'EXPIRED', released_at = $3
             WHERE user_id = $1 AND concert_id = $2 AND status = 'HELD' AND expires_at <= $3
               AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.reservation_id = r.reservation_id)",
        )
        .bind(user_id)
        .bind(concert_id)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(released > 0)
    }

    /// Marks an expired, unpaid hold on one seat EXPIRED; true when one was released.
    async fn release_stale_hold(
        &self,
        schedule_id: Uuid,
        seat: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, ReservationError> {
        let released = sqlx::query(
            "UPDATE reservations r SET status = 'EXPIRED', released_at = $3
             WHERE schedule_id = $1 AND seat_number = $2 AND status = 'HELD' AND expires_at <= $3
               AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.reservation_id = r.reservation_id)",
        )
        .bind(schedule_id)
        .bind(i32::try_from(seat).unwrap_or(0))
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(released > 0)
    }

    /// Marks up to `limit` expired, unpaid holds EXPIRED (the sweeper). Safe with several
    /// replicas sweeping at once: rows another sweeper has locked are skipped.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn expire_holds(&self, now: DateTime<Utc>, limit: i64) -> Result<u64, ReservationError> {
        let n = sqlx::query(
            "UPDATE reservations SET status = 'EXPIRED', released_at = $1
             WHERE reservation_id IN (
                 SELECT reservation_id FROM reservations r
                 WHERE status = 'HELD' AND expires_at <= $1
                   AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.reservation_id = r.reservation_id)
                 ORDER BY expires_at LIMIT $2
                 FOR UPDATE SKIP LOCKED)",
        )
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    /// One reservation.
    ///
    /// # Errors
    /// [`ReservationError::NotFound`].
    #[tracing::instrument(skip_all, fields(%id))]
    pub async fn get(&self, id: Uuid) -> Result<Reservation, ReservationError> {
        let row = sqlx::query(&format!("SELECT {RESERVATION_COLUMNS} FROM reservations r WHERE r.reservation_id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(ReservationError::NotFound)?;
        reservation_from_row(&row)
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
        let (at, id) = page.after.map_or((None, None), |c| (Some(c.at), Some(c.id)));
        let rows = sqlx::query(&format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations r
             WHERE r.user_id = $1 AND ($2::timestamptz IS NULL OR (r.held_at, r.reservation_id) < ($2, $3))
             ORDER BY r.held_at DESC, r.reservation_id DESC LIMIT $4"
        ))
        .bind(user_id)
        .bind(at)
        .bind(id)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(reservation_from_row).collect()
    }

    /// Releases the owner's unpaid hold. Idempotent on an already CANCELLED reservation.
    ///
    /// # Errors
    /// [`ReservationError::NotFound`], [`ReservationError::NotOwner`],
    /// [`ReservationError::WrongConcert`], [`ReservationError::NotHeld`].
    #[tracing::instrument(skip_all, fields(%id))]
    pub async fn cancel(
        &self,
        id: Uuid,
        user_id: &str,
        concert_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Reservation, ReservationError> {
        let mut tx = self.pool.begin().await?;
        let r = lock_reservation(&mut tx, id).await?;
        r.check_caller(user_id, concert_id)?;
        if r.status == ReservationStatus::Cancelled {
            return Ok(r);
        }
        r.check_cancellable(now)?;
        set_reservation_status(&mut tx, id, ReservationStatus::Cancelled, now).await?;
        tx.commit().await?;
        Ok(Reservation { status: ReservationStatus::Cancelled, ..r })
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
        let rows = sqlx::query(
            "SELECT schedule_id, seat_number, status FROM reservations r
             WHERE schedule_id = ANY($1) AND status IN ('HELD', 'CONFIRMED')
               AND (status = 'CONFIRMED' OR expires_at > $2
                    OR EXISTS (SELECT 1 FROM payments p WHERE p.reservation_id = r.reservation_id))",
        )
        .bind(schedules)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get(2)?;
                let seat: i32 = r.try_get(1)?;
                Ok(OccupiedSeat {
                    schedule_id: r.try_get(0)?,
                    seat_number: u32::try_from(seat).unwrap_or(0),
                    status: parse_reservation_status(&status)?,
                })
            })
            .collect()
    }

    /// Records the start of a payment saga, or finds the one this request already started.
    ///
    /// The reservation row lock serializes concurrent payment attempts of one reservation.
    ///
    /// # Errors
    /// [`ReservationError::NotFound`], [`ReservationError::NotOwner`], the payability rules
    /// of [`Reservation::check_payable`], [`ReservationError::TokenUsed`] /
    /// [`ReservationError::AdmissionInUse`] when the token paid or is paying for another
    /// seat, and [`ReservationError::IdempotencyKeyReused`] when the key paid another
    /// reservation. A reservation that already has a payment answers it, whatever the key.
    #[tracing::instrument(skip_all, fields(%reservation_id))]
    pub async fn start_payment(
        &self,
        reservation_id: Uuid,
        payer: &Principal,
        key: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<PaymentStart, ReservationError> {
        let start = |recheck| self.try_start_payment(reservation_id, payer, key, now, lease, recheck);
        match start(false).await? {
            StartAttempt::Done(started) => Ok(*started),
            // Another call inserted this reservation's payment between our snapshot and our
            // insert: look again, now reading the payment whatever the snapshot said.
            StartAttempt::Raced => match start(true).await? {
                StartAttempt::Done(started) => Ok(*started),
                StartAttempt::Raced => Err(ReservationError::PaymentInProgress),
            },
        }
    }

    /// [`Self::start_payment`] for many requests at once, for the common case only: each
    /// request whose reservation has no payment yet and passes every rule gets its STARTED
    /// payment; a request the rules refuse gets its error; anything else (a payment already
    /// exists or was inserted meanwhile, the hold expired and must be released, two requests
    /// for one reservation) gets `None` and is left to [`Self::start_payment`], which is
    /// run after this batch committed. One transaction ([`db::begin_batch`], planned for its
    /// batch), four round trips, whatever the size.
    ///
    /// The reservation rows are locked in key order, as [`Self::record_debits`] does, so
    /// concurrent batches never deadlock on each other.
    ///
    /// # Errors
    /// Database failures fail the whole batch (nothing is written).
    #[tracing::instrument(skip_all, fields(requests = requests.len()))]
    pub async fn start_payments(
        &self,
        requests: &[PaymentRequest],
    ) -> Result<Vec<Option<Result<PaymentStart, ReservationError>>>, ReservationError> {
        static LOCK: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT i.n, {RESERVATION_COLUMNS}, {} AS token_paid
                 FROM UNNEST($1::uuid[], $2::uuid[]) WITH ORDINALITY AS i (reservation_id, token, n)
                 JOIN reservations r ON r.reservation_id = i.reservation_id
                 ORDER BY r.reservation_id
                 FOR UPDATE OF r",
                token_has_paid("i.token")
            )
        });
        let mut tx = db::begin_batch(&self.pool).await?;
        let rows = sqlx::query(&LOCK)
            .bind(requests.iter().map(|q| q.reservation_id).collect::<Vec<_>>())
            .bind(requests.iter().map(|q| q.payer.token).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?;
        let mut locked: HashMap<usize, (Reservation, bool)> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let n: i64 = row.try_get("n")?;
            let index = usize::try_from(n - 1).map_err(|_| anyhow::anyhow!("ordinality {n} out of range"))?;
            locked.insert(index, (reservation_from_row(row)?, row.try_get("token_paid")?));
        }

        // Decide each request; `insert` holds the indices of the payments to write.
        let mut outcomes: Vec<Option<Result<PaymentStart, ReservationError>>> = Vec::with_capacity(requests.len());
        let mut insert: Vec<usize> = Vec::new();
        let mut claimed: HashSet<Uuid> = HashSet::new();
        for (index, q) in requests.iter().enumerate() {
            let Some((r, token_paid)) = locked.get(&index) else {
                outcomes.push(Some(Err(ReservationError::NotFound)));
                continue;
            };
            let decided = match r.check_caller(&q.payer.user_id, q.payer.concert_id) {
                Err(e) => Some(Err(e)),
                // Existing payments, repeats inside this batch: the single path sorts them out.
                Ok(()) if r.payment_started || !claimed.insert(r.reservation_id) => None,
                Ok(()) if *token_paid => Some(Err(ReservationError::TokenUsed)),
                // An expired hold is released by the single path, which reports it.
                Ok(()) if r.check_payable(q.now).is_err() => None,
                Ok(()) => {
                    insert.push(index);
                    None
                }
            };
            outcomes.push(decided);
        }
        if insert.is_empty() {
            tx.rollback().await?;
            return Ok(outcomes);
        }

        let payment_ids: Vec<Uuid> = insert.iter().map(|_| Uuid::now_v7()).collect();
        let rows = sqlx::query(&format!(
            "INSERT INTO payments (payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                                   created_at, updated_at, next_attempt_at)
             SELECT payment_id, reservation_id, user_id, token, idempotency_key, amount, 'STARTED', at, at, retry_at
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::bigint[],
                         $7::timestamptz[], $8::timestamptz[])
                  AS i (payment_id, reservation_id, user_id, token, idempotency_key, amount, at, retry_at)
             ON CONFLICT DO NOTHING
             RETURNING {PAYMENT_COLUMNS}"
        ))
        .bind(&payment_ids)
        .bind(insert.iter().map(|&i| requests[i].reservation_id).collect::<Vec<_>>())
        .bind(insert.iter().map(|&i| requests[i].payer.user_id.as_str()).collect::<Vec<_>>())
        .bind(insert.iter().map(|&i| requests[i].payer.token).collect::<Vec<_>>())
        .bind(insert.iter().map(|&i| requests[i].key.as_str()).collect::<Vec<_>>())
        .bind(insert.iter().map(|&i| locked[&i].0.price.get()).collect::<Vec<_>>())
        .bind(insert.iter().map(|&i| requests[i].now).collect::<Vec<_>>())
        .bind(insert.iter().map(|&i| requests[i].now + requests[i].lease).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        let mut inserted: HashMap<Uuid, Payment> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let payment = payment_from_row(row)?;
            inserted.insert(payment.payment_id, payment);
        }
        tx.commit().await?;
        // A request whose row conflicted (a payment committed meanwhile, or its key already
        // paid another reservation) keeps `None`: the single path reports it.
        for (&index, payment_id) in insert.iter().zip(&payment_ids) {
            if let Some(payment) = inserted.remove(payment_id) {
                let reservation = locked[&index].0.clone();
                outcomes[index] = Some(Ok(PaymentStart::New(payment, reservation)));
            }
        }
        Ok(outcomes)
    }

    async fn try_start_payment(
        &self,
        reservation_id: Uuid,
        payer: &Principal,
        key: &str,
        now: DateTime<Utc>,
        lease: Duration,
        recheck: bool,
    ) -> Result<StartAttempt, ReservationError> {
        let mut tx = self.pool.begin().await?;
        // The row lock and the paid-token check in one round trip.
        let row = sqlx::query(&format!(
            "SELECT {RESERVATION_COLUMNS}, {} AS token_paid
             FROM reservations r WHERE r.reservation_id = $2 FOR UPDATE OF r",
            token_has_paid("$1")
        ))
        .bind(payer.token)
        .bind(reservation_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ReservationError::NotFound)?;
        let r = reservation_from_row(&row)?;
        let used: bool = row.try_get("token_paid")?;
        r.check_caller(&payer.user_id, payer.concert_id)?;
        // `payment_started` comes from the statement's snapshot; the common case (no payment
        // yet) skips a round trip, and a payment committed meanwhile is caught by the unique
        // index on insert (then `recheck`).
        let existing =
            if r.payment_started || recheck { payment_of_reservation(&mut tx, reservation_id).await? } else { None };
        if let Some(existing) = existing {
            // Whatever the key: the caller owns this reservation (checked above), and it has
            // one payment. A retry from a fresh page (a new key) resumes that payment and
            // learns its real outcome instead of waiting for its lease.
            return Ok(StartAttempt::Done(Box::new(PaymentStart::Existing(existing))));
        }
        if used {
            return Err(ReservationError::TokenUsed);
        }
        if let Err(e) = r.check_payable(now) {
            if r.status == ReservationStatus::Held {
                // Expired on read: release the seat now rather than wait for the sweeper.
                set_reservation_status(&mut tx, reservation_id, ReservationStatus::Expired, now).await?;
                tx.commit().await?;
            }
            return Err(e);
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO payments (payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                                   created_at, updated_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'STARTED', $7, $7, $8)
             RETURNING {PAYMENT_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(reservation_id)
        .bind(&payer.user_id)
        .bind(payer.token)
        .bind(key)
        .bind(r.price.get())
        .bind(now)
        .bind(now + lease)
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if violated_constraint(&e).as_deref() == Some("payments_reservation_id_key") => {
                return Ok(StartAttempt::Raced);
            }
            // This admission already pays (or paid) for another seat.
            Err(e) if violated_constraint(&e).as_deref() == Some("payments_one_purchase_per_token") => {
                return Err(ReservationError::AdmissionInUse);
            }
            Err(e) if db::sqlstate(&e).as_deref() == Some(db::UNIQUE_VIOLATION) => {
                return Err(ReservationError::IdempotencyKeyReused);
            }
            Err(e) => return Err(e.into()),
        };
        let payment = payment_from_row(&row)?;
        tx.commit().await?;
        Ok(StartAttempt::Done(Box::new(PaymentStart::New(payment, r))))
    }

    /// After successful debits: confirms each reservation and its payment together, or,
    /// when the hold is no longer HELD, moves the payment to COMPENSATING. Idempotent: a
    /// payment that already left STARTED is returned as it is. Returns one payment per
    /// debit, in order (see [`crate::debit_recorder`], which batches the calls).
    ///
    /// One statement: sell the seats still HELD whose payment in this batch is STARTED, then
    /// move those payments to CONFIRMED and the other STARTED ones to COMPENSATING. It rests
    /// on a rule the rest of the saga keeps: a reservation with a payment stays HELD only
    /// while that payment is STARTED (this statement sells it as the payment leaves STARTED;
    /// a refused debit releases it in the same transaction as the FAILED write; COMPENSATING
    /// is only ever set on a hold that is gone), and a reservation never returns to HELD. So
    /// a hold seen not HELD is final, and one seen
    /// HELD is re-checked under its row lock by the UPDATE itself. The rows are locked in
    /// the order the plan visits them, not by key; two batches can only meet on one row when
    /// a payment is retried while its saga runs, and a deadlock there is detected by
    /// PostgreSQL and the batch retried payment by payment (see `platform::batch`).
    ///
    /// It is sent unprepared, so it is planned for its batch every time (as in
    /// [`db::begin_batch`], in one round trip fewer for a lone statement); it is written
    /// without joins, as planning it is paid per batch (0.16 ms here, against 0.43 ms for
    /// the CTE-and-join form it replaced).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(payments = debits.len()))]
    pub async fn record_debits(&self, debits: &[RecordedDebit]) -> Result<Vec<Payment>, ReservationError> {
        // Rows are found by primary key and their status checked on the row. The status
        // tests are written `IS NOT DISTINCT FROM` (the same test on these NOT NULL columns)
        // so the planner cannot answer them from the partial indexes on status
        // (`reservations_held_by_expiry`, `payments_unfinished`): it used to AND those with
        // the key lookup, but a status change leaves a dead entry in them until VACUUM, and a
        // bitmap scan never prunes it, so after 8,000 payments each batch scanned 8,000 and
        // 12,000 dead entries: 1.0-1.3 ms per batch instead of 0.3-0.5 ms (EXPLAIN ANALYZE).
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let moved_columns =
                PAYMENT_COLUMNS.split(',').map(|c| format!("p.{}", c.trim())).collect::<Vec<_>>().join(", ");
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
                 RETURNING {moved_columns}"
            )
        });
        let mut payment_ids = Vec::with_capacity(debits.len());
        let mut reservation_ids = Vec::with_capacity(debits.len());
        let mut balances = Vec::with_capacity(debits.len());
        let mut ats = Vec::with_capacity(debits.len());
        for d in debits {
            payment_ids.push(d.payment_id);
            reservation_ids.push(d.reservation_id);
            balances.push(d.balance_after.get());
            ats.push(d.at);
        }
        let rows = sqlx::query(&SQL)
            .bind(&payment_ids)
            .bind(&reservation_ids)
            .bind(&balances)
            .bind(&ats)
            .persistent(false)
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
            let rows = sqlx::query(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id = ANY($1)"))
                .bind(&unmoved)
                .persistent(false)
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                let payment = payment_from_row(row)?;
                stored.insert(payment.payment_id, payment);
            }
        }
        // The same payment twice in a batch gets the same answer twice.
        payment_ids
            .iter()
            .map(|id| {
                stored.get(id).cloned().ok_or_else(|| {
                    ReservationError::Unexpected(anyhow::anyhow!("payment {id} vanished while recording its debit"))
                })
            })
            .collect()
    }

    /// The debit was refused for good: the hold is released and the payment moves to
    /// COMPENSATING with `reason`, in one transaction. A payment that already left STARTED
    /// is returned as it is.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(payment_id = %p.payment_id))]
    pub async fn record_debit_refused(
        &self,
        p: &Payment,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Payment, ReservationError> {
        let mut tx = self.pool.begin().await?;
        let r = lock_reservation(&mut tx, p.reservation_id).await?;
        let current = lock_payment(&mut tx, p.payment_id).await?;
        if current.status != PaymentStatus::Started {
            return Ok(current);
        }
        if r.status == ReservationStatus::Held {
            set_reservation_status(&mut tx, p.reservation_id, ReservationStatus::Cancelled, now).await?;
        }
        // COMPENSATING, not FAILED: the refund step settles what the wallet holds under the
        // debit key (gives it back, or voids the key) before the payment may end FAILED.
        let updated = set_payment_status(&mut tx, p.payment_id, PaymentStatus::Compensating, Some(reason), now).await?;
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
        let row = sqlx::query(&format!(
            "WITH moved AS (
                 UPDATE payments SET status = $3, updated_at = $4 WHERE payment_id = $1 AND status = $2
                 RETURNING {PAYMENT_COLUMNS}
             )
             SELECT {PAYMENT_COLUMNS} FROM moved
             UNION ALL
             SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id = $1 AND NOT EXISTS (SELECT 1 FROM moved)"
        ))
        .bind(p.payment_id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        payment_from_row(&row)
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
        .persistent(false)
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
        let rows = sqlx::query(&format!(
            "UPDATE payments SET next_attempt_at = $2, attempts = attempts + 1
             WHERE payment_id IN (
                 SELECT payment_id FROM payments
                 WHERE status IN ('STARTED', 'CONFIRMED', 'COMPENSATING') AND next_attempt_at <= $1
                   AND attempts < $4
                 ORDER BY next_attempt_at LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             RETURNING {PAYMENT_COLUMNS}, attempts"
        ))
        .bind(now)
        .bind(now + lease)
        .bind(limit)
        .bind(max_attempts)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((payment_from_row(row)?, row.try_get("attempts")?))).collect()
    }

    /// Unfinished payments the recovery worker gave up on after `max_attempts` tries: each
    /// needs a person (its hold stays blocked and its money may be taken).
    ///
    /// # Errors
    /// Database failures only.
    pub async fn needing_attention(&self, max_attempts: i32) -> Result<Vec<Payment>, ReservationError> {
        let rows = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments
             WHERE status IN ('STARTED', 'CONFIRMED', 'COMPENSATING') AND attempts >= $1
             ORDER BY created_at LIMIT 1000"
        ))
        .bind(max_attempts)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(payment_from_row).collect()
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
        let (at, id) = page.after.map_or((None, None), |c| (Some(c.at), Some(c.id)));
        let rows = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments
             WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, payment_id) < ($2, $3))
             ORDER BY created_at DESC, payment_id DESC LIMIT $4"
        ))
        .bind(user_id)
        .bind(at)
        .bind(id)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(payment_from_row).collect()
    }

    /// The payment a token made for a reservation, if any (to answer replays after the
    /// token has been expired by that very payment).
    ///
    /// # Errors
    /// Database failures only.
    pub async fn payment_by_token(
        &self,
        reservation_id: Uuid,
        token: Uuid,
    ) -> Result<Option<Payment>, ReservationError> {
        let row =
            sqlx::query(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE reservation_id = $1 AND token = $2"))
                .bind(reservation_id)
                .bind(token)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(payment_from_row).transpose()
    }
}

/// One payment saga with its reservation, for the cross-service reconciliation.
#[derive(Debug, Clone)]
pub struct PaymentBook {
    pub payment: Payment,
    pub reservation_status: ReservationStatus,
    pub schedule_id: Uuid,
    pub seat_number: u32,
    pub attempts: u32,
}

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
                let status: String = row.try_get("reservation_status")?;
                let seat: i32 = row.try_get("seat_number")?;
                let attempts: i32 = row.try_get("attempts")?;
                Ok(PaymentBook {
                    payment: payment_from_row(row)?,
                    reservation_status: parse_reservation_status(&status)?,
                    schedule_id: row.try_get("schedule_id")?,
                    seat_number: u32::try_from(seat).unwrap_or(0),
                    attempts: u32::try_from(attempts).unwrap_or(0),
                })
            })
            .collect()
    }
}

/// The constraint a database error violated, if it names one.
fn violated_constraint(e: &sqlx::Error) -> Option<String> {
    e.as_database_error().and_then(|d| d.constraint()).map(str::to_owned)
}

/// One try of [`ReservationRepo::start_payment`].
enum StartAttempt {
    Done(Box<PaymentStart>),
    /// A concurrent call inserted this reservation's payment first.
    Raced,
}

async fn lock_reservation(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<Reservation, ReservationError> {
    let row = sqlx::query(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations r WHERE r.reservation_id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(ReservationError::NotFound)?;
    reservation_from_row(&row)
}

async fn lock_payment(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<Payment, ReservationError> {
    let row = sqlx::query(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    payment_from_row(&row)
}

async fn payment_of_reservation(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<Option<Payment>, ReservationError> {
    let row = sqlx::query(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE reservation_id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(payment_from_row).transpose()
}

async fn set_reservation_status(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    status: ReservationStatus,
    now: DateTime<Utc>,
) -> Result<(), ReservationError> {
    sqlx::query("UPDATE reservations SET status = $2, released_at = $3 WHERE reservation_id = $1")
        .bind(id)
        .bind(status.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn set_payment_status(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    status: PaymentStatus,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Payment, ReservationError> {
    let row = sqlx::query(&format!(
        "UPDATE payments SET status = $2, failure_reason = $3, updated_at = $4 WHERE payment_id = $1
         RETURNING {PAYMENT_COLUMNS}"
    ))
    .bind(id)
    .bind(status.as_str())
    .bind(reason)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    payment_from_row(&row)
}

fn parse_reservation_status(s: &str) -> Result<ReservationStatus, ReservationError> {
    ReservationStatus::parse(s)
        .ok_or_else(|| ReservationError::Unexpected(anyhow::anyhow!("unknown reservation status {s:?}")))
}

fn reservation_from_row(row: &PgRow) -> Result<Reservation, ReservationError> {
    let status: String = row.try_get("status")?;
    let seat: i32 = row.try_get("seat_number")?;
    Ok(Reservation {
        reservation_id: row.try_get("reservation_id")?,
        user_id: row.try_get("user_id")?,
        token: row.try_get("token")?,
        concert_id: row.try_get("concert_id")?,
        schedule_id: row.try_get("schedule_id")?,
        seat_number: u32::try_from(seat).unwrap_or(0),
        price: Won::new(row.try_get("price")?),
        status: parse_reservation_status(&status)?,
        held_at: row.try_get("held_at")?,
        expires_at: row.try_get("expires_at")?,
        payment_started: row.try_get("payment_started")?,
    })
}

fn payment_from_row(row: &PgRow) -> Result<Payment, ReservationError> {
    let status: String = row.try_get("status")?;
    Ok(Payment {
        payment_id: row.try_get("payment_id")?,
        reservation_id: row.try_get("reservation_id")?,
        user_id: row.try_get("user_id")?,
        token: row.try_get("token")?,
        idempotency_key: row.try_get("idempotency_key")?,
        amount: Won::new(row.try_get("amount")?),
        status: PaymentStatus::parse(&status)
            .ok_or_else(|| ReservationError::Unexpected(anyhow::anyhow!("unknown payment status {status:?}")))?,
        failure_reason: row.try_get("failure_reason")?,
        balance_after: row.try_get::<Option<i64>, _>("balance_after")?.map(Won::new),
        paid_at: row.try_get("paid_at")?,
        created_at: row.try_get("created_at")?,
    })
}
