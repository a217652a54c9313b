//! Starting payment sagas: the STARTED row is written in the same transaction that locks the
//! reservation and checks the rules (owner, concert, hold still payable, token unused), one
//! request at a time or many in one transaction.
use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use chrono::{DateTime, Duration, Utc};
use platform::{auth::Principal, db, money::Won};
use sqlx::Row;
use uuid::Uuid;

use super::{
    PaymentRow, RESERVATION_COLUMNS, ReservationRepo, payment_of_reservation, reservation_from_row,
    set_reservation_status, violated_constraint,
};
use crate::{
    domain::{Payer, Payment, PaymentStatus, Reservation, ReservationStatus, StartStep, payment_start::start_step},
    error::ReservationError,
};

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

/// One try of [`ReservationRepo::start_payment`].
enum StartAttempt {
    Done(Box<PaymentStart>),
    /// A concurrent call inserted this reservation's payment first.
    Raced,
}

impl ReservationRepo {
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
                token_has_paid!("i.token")
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
        let (mut outcomes, insert) = decide_batch(requests, &locked);
        if insert.is_empty() {
            tx.rollback().await?;
            return Ok(outcomes);
        }
        let started = insert_started(&mut tx, requests, &insert, &locked).await?;
        tx.commit().await?;
        // A request whose row conflicted (a payment committed meanwhile, or its key already
        // paid another reservation) keeps `None`: the single path reports it.
        for (index, payment) in started {
            let reservation = locked[&index].0.clone();
            outcomes[index] = Some(Ok(PaymentStart::New(payment, reservation)));
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
        static LOCK_ONE: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {RESERVATION_COLUMNS}, {} AS token_paid
                 FROM reservations r WHERE r.reservation_id = $2 FOR UPDATE OF r",
                token_has_paid!("$1")
            )
        });
        let row = sqlx::query(&LOCK_ONE)
            .bind(payer.token)
            .bind(reservation_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(ReservationError::NotFound)?;
        let mut r = reservation_from_row(&row)?;
        let payer_now =
            Payer { user_id: &payer.user_id, concert_id: payer.concert_id, token_paid: row.try_get("token_paid")? };
        // `payment_started` comes from the statement's snapshot; the common case (no payment
        // yet) skips a round trip, and a payment committed meanwhile is caught by the unique
        // index on insert (then `recheck`, which reads the payment whatever the snapshot said).
        if recheck && r.check_caller(payer_now.user_id, payer_now.concert_id).is_ok() {
            r.payment_started = payment_of_reservation(&mut tx, reservation_id).await?.is_some();
        }
        match start_step(&r, payer_now, now) {
            StartStep::Start => {}
            StartStep::Existing => {
                if let Some(existing) = payment_of_reservation(&mut tx, reservation_id).await? {
                    // A retry from a fresh page (a new key) resumes that payment and learns
                    // its real outcome instead of waiting for its lease.
                    return Ok(StartAttempt::Done(Box::new(PaymentStart::Existing(existing))));
                }
                return Ok(StartAttempt::Raced);
            }
            StartStep::ReleaseAndRefuse(e) => {
                // Expired on read: release the seat now rather than wait for the sweeper.
                set_reservation_status(&mut tx, reservation_id, ReservationStatus::Expired, now).await?;
                tx.commit().await?;
                return Err(e);
            }
            StartStep::Refuse(e) => return Err(e),
        }
        let Some(payment) = insert_one_started(&mut tx, &r, payer, key, now, lease).await? else {
            return Ok(StartAttempt::Raced);
        };
        tx.commit().await?;
        Ok(StartAttempt::Done(Box::new(PaymentStart::New(payment, r))))
    }
}

/// Writes the STARTED payment of `r` for `payer`; `None` when a concurrent call inserted
/// this reservation's payment first.
///
/// # Errors
/// [`ReservationError::AdmissionInUse`] when the admission pays for another seat;
/// [`ReservationError::IdempotencyKeyReused`] when the key paid another reservation.
async fn insert_one_started(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    r: &Reservation,
    payer: &Principal,
    key: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Payment>, ReservationError> {
    let inserted = sqlx::query_as!(
        PaymentRow,
        r#"INSERT INTO payments (payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                                 created_at, updated_at, next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, $6, 'STARTED', $7, $7, $8)
           RETURNING payment_id, reservation_id, user_id, token, idempotency_key, amount AS "amount: Won",
                   status AS "status: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                   paid_at, created_at"#,
        Uuid::now_v7(),
        r.reservation_id,
        payer.user_id,
        payer.token,
        key,
        r.price.get(),
        now,
        now + lease
    )
    .fetch_one(&mut **tx)
    .await;
    match inserted {
        Ok(row) => Ok(Some(row.into())),
        Err(e) if violated_constraint(&e).as_deref() == Some("payments_reservation_id_key") => Ok(None),
        // This admission already pays (or paid) for another seat.
        Err(e) if violated_constraint(&e).as_deref() == Some("payments_one_purchase_per_token") => {
            Err(ReservationError::AdmissionInUse)
        }
        Err(e) if db::sqlstate(&e).as_deref() == Some(db::UNIQUE_VIOLATION) => {
            Err(ReservationError::IdempotencyKeyReused)
        }
        Err(e) => Err(e.into()),
    }
}

/// Decides each request of a batch by the one rule ([`start_step`]) over what was locked
/// (`locked`: request index → its reservation and whether its token paid): the answers
/// decided here (`None`: left to the single path), and the indices of the payments to write.
fn decide_batch(
    requests: &[PaymentRequest],
    locked: &HashMap<usize, (Reservation, bool)>,
) -> (Vec<Option<Result<PaymentStart, ReservationError>>>, Vec<usize>) {
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut insert = Vec::new();
    let mut claimed: HashSet<Uuid> = HashSet::new();
    for (index, q) in requests.iter().enumerate() {
        let Some((r, token_paid)) = locked.get(&index) else {
            outcomes.push(Some(Err(ReservationError::NotFound)));
            continue;
        };
        let payer = Payer { user_id: &q.payer.user_id, concert_id: q.payer.concert_id, token_paid: *token_paid };
        let decided = match start_step(r, payer, q.now) {
            StartStep::Refuse(e) => Some(Err(e)),
            // Existing payments and expired holds to release: the single path answers them
            // (and writes the release).
            StartStep::Existing | StartStep::ReleaseAndRefuse(_) => None,
            // A second request for one reservation in this batch: the single path too.
            StartStep::Start if !claimed.insert(r.reservation_id) => None,
            StartStep::Start => {
                insert.push(index);
                None
            }
        };
        outcomes.push(decided);
    }
    (outcomes, insert)
}

/// Writes a STARTED payment for each request of `insert` in one statement; the payments
/// written, by request index (a conflicting row writes nothing).
async fn insert_started(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    requests: &[PaymentRequest],
    insert: &[usize],
    locked: &HashMap<usize, (Reservation, bool)>,
) -> Result<Vec<(usize, Payment)>, ReservationError> {
    let payment_ids: Vec<Uuid> = insert.iter().map(|_| Uuid::now_v7()).collect();
    let reservations: Vec<Uuid> = insert.iter().map(|&i| requests[i].reservation_id).collect();
    let users: Vec<&str> = insert.iter().map(|&i| requests[i].payer.user_id.as_str()).collect();
    let tokens: Vec<Uuid> = insert.iter().map(|&i| requests[i].payer.token).collect();
    let keys: Vec<&str> = insert.iter().map(|&i| requests[i].key.as_str()).collect();
    let amounts: Vec<i64> = insert.iter().map(|&i| locked[&i].0.price.get()).collect();
    let at: Vec<DateTime<Utc>> = insert.iter().map(|&i| requests[i].now).collect();
    let retry_at: Vec<DateTime<Utc>> = insert.iter().map(|&i| requests[i].now + requests[i].lease).collect();
    let rows = sqlx::query_as!(
        PaymentRow,
        r#"INSERT INTO payments (payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                                 created_at, updated_at, next_attempt_at)
           SELECT payment_id, reservation_id, user_id, token, idempotency_key, amount, 'STARTED', at, at, retry_at
           FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::bigint[],
                       $7::timestamptz[], $8::timestamptz[])
                AS i (payment_id, reservation_id, user_id, token, idempotency_key, amount, at, retry_at)
           ON CONFLICT DO NOTHING
           RETURNING payment_id, reservation_id, user_id, token, idempotency_key, amount AS "amount: Won",
                   status AS "status: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                   paid_at, created_at"#,
        &payment_ids,
        &reservations,
        &users as &[&str],
        &tokens,
        &keys as &[&str],
        &amounts,
        &at,
        &retry_at
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut inserted: HashMap<Uuid, Payment> =
        rows.into_iter().map(|row| (row.payment_id, Payment::from(row))).collect();
    Ok(insert.iter().zip(&payment_ids).filter_map(|(&index, id)| Some((index, inserted.remove(id)?))).collect())
}
