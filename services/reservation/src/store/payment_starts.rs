//! Starting payment sagas: the STARTED payment and its seats are written in the same
//! transaction that locks the order's reservations and checks the rules (owner, concert,
//! every hold still payable, token unused), one request at a time or many in one
//! transaction.
use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use chrono::{DateTime, Duration, Utc};
use platform::{auth::Principal, db, money::Won};
use sqlx::Row;
use uuid::Uuid;

use super::{
    PaymentRow, RESERVATION_COLUMNS, ReservationRepo, payment_by_id, reservation_from_row, violated_constraint,
};
use crate::{
    domain::{Payer, Payment, PaymentStatus, Reservation, StartStep, payment_start::start_step},
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
type BatchOutcomes = Vec<Option<Result<PaymentStart, ReservationError>>>;

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

    /// [`Self::start_payment`] for many requests at once, for the common case only: each
    /// request whose seats have no payment yet and pass every rule gets its STARTED payment;
    /// a request the rules refuse gets its error; anything else (a payment already exists or
    /// was inserted meanwhile, a hold expired and must be released, two requests sharing a
    /// seat) gets `None` and is left to [`Self::start_payment`], which is run after this
    /// batch committed. One transaction ([`db::begin_batch`], planned for its batch), four
    /// round trips, whatever the size.
    ///
    /// The reservation rows are locked in key order, as [`Self::start_payment`] does, so
    /// concurrent batches never deadlock on each other.
    ///
    /// # Errors
    /// Database failures fail the whole batch (nothing is written).
    #[tracing::instrument(skip_all, fields(requests = requests.len()))]
    pub async fn start_payments(&self, requests: &[PaymentRequest]) -> Result<BatchOutcomes, ReservationError> {
        static LOCK: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT i.n, {RESERVATION_COLUMNS}, {} AS token_paid
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::int[]) AS i (reservation_id, token, n)
                 JOIN reservations r ON r.reservation_id = i.reservation_id
                 ORDER BY r.reservation_id
                 FOR UPDATE OF r",
                token_has_paid!("i.token")
            )
        });
        let mut ids = Vec::new();
        let mut tokens = Vec::new();
        let mut owners = Vec::new();
        for (n, q) in requests.iter().enumerate() {
            let n = i32::try_from(n).map_err(|_| anyhow::anyhow!("batch of {} requests", requests.len()))?;
            for id in &q.reservation_ids {
                ids.push(*id);
                tokens.push(q.payer.token);
                owners.push(n);
            }
        }
        let mut tx = db::begin_batch(&self.pool).await?;
        let rows = sqlx::query(&LOCK).bind(&ids).bind(&tokens).bind(&owners).fetch_all(&mut *tx).await?;
        let mut locked: HashMap<(usize, Uuid), (Reservation, bool)> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let n: i32 = row.try_get("n")?;
            let index = usize::try_from(n).map_err(|_| anyhow::anyhow!("request index {n} out of range"))?;
            let r = reservation_from_row(row)?;
            locked.insert((index, r.reservation_id), (r, row.try_get("token_paid")?));
        }
        let (mut outcomes, insert) = decide_batch(requests, &locked);
        if insert.is_empty() {
            tx.rollback().await?;
            return Ok(outcomes);
        }
        let Some(started) = insert_started(&mut tx, requests, &insert).await? else {
            tx.rollback().await?;
            return Ok(outcomes);
        };
        tx.commit().await?;
        // A request whose payment was not written (a payment of one of its seats committed
        // meanwhile, its key already paid another order, its admission pays already) keeps
        // `None`: the single path reports it.
        for (index, payment, order) in started {
            outcomes[index] = Some(Ok(PaymentStart::New(payment, order)));
        }
        Ok(outcomes)
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
        r#"SELECT reservation_id AS "reservation_id!", payment_id AS "payment_id!" FROM payments
           WHERE reservation_id = ANY($1)
           UNION ALL
           SELECT reservation_id, payment_id FROM order_seats WHERE reservation_id = ANY($1)"#,
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
    let amount = order.iter().try_fold(Won::ZERO, |sum, r| sum.checked_add(r.price));
    let amount = amount.ok_or_else(|| anyhow::anyhow!("the order's total overflows"))?;
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
                    WHERE NOT EXISTS (SELECT 1 FROM f JOIN payments taken ON taken.reservation_id = f.reservation_id)
                      AND NOT EXISTS (SELECT 1 FROM f JOIN order_seats taken USING (reservation_id))
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

/// Decides each request of a batch by the one rule ([`start_step`]) over what was locked
/// (`locked`: request index and reservation → the reservation and whether the request's
/// token paid): the answers decided here (`None`: left to the single path), and the indices
/// of the payments to write.
fn decide_batch(
    requests: &[PaymentRequest],
    locked: &HashMap<(usize, Uuid), (Reservation, bool)>,
) -> (BatchOutcomes, Vec<(usize, Vec<Reservation>)>) {
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut insert = Vec::new();
    let mut claimed: HashSet<Uuid> = HashSet::new();
    for (index, q) in requests.iter().enumerate() {
        let mut token_paid = false;
        let mut order = Vec::with_capacity(q.reservation_ids.len());
        for id in &q.reservation_ids {
            if let Some((r, paid)) = locked.get(&(index, *id)) {
                token_paid |= *paid;
                order.push(r.clone());
            }
        }
        if order.len() != q.reservation_ids.len() {
            outcomes.push(Some(Err(ReservationError::NotFound)));
            continue;
        }
        let payer = Payer { user_id: &q.payer.user_id, concert_id: q.payer.concert_id, token_paid };
        let decided = match start_step(&order, payer, q.now) {
            StartStep::Refuse(e) => Some(Err(e)),
            // Existing payments and expired holds to release: the single path answers them
            // (and writes the release).
            StartStep::Existing(_) | StartStep::ReleaseAndRefuse { .. } => None,
            // Two requests of this batch sharing a seat: the single path too.
            StartStep::Start if !q.reservation_ids.iter().all(|id| claimed.insert(*id)) => None,
            StartStep::Start => {
                insert.push((index, order));
                None
            }
        };
        outcomes.push(decided);
    }
    (outcomes, insert)
}

/// Writes a STARTED payment with its seats for each order of `insert` in one statement; the
/// payments written, by request index, with their orders (an order whose payment row
/// conflicts writes nothing). `None` when a seat of the batch got a payment meanwhile: then
/// nothing is written (the statement failed) and the transaction must be rolled back.
async fn insert_started(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    requests: &[PaymentRequest],
    insert: &[(usize, Vec<Reservation>)],
) -> Result<Option<Vec<(usize, Payment, Vec<Reservation>)>>, ReservationError> {
    let payment_ids: Vec<Uuid> = insert.iter().map(|_| Uuid::now_v7()).collect();
    let firsts: Vec<Uuid> = insert.iter().map(|(_, order)| order[0].reservation_id).collect();
    let users: Vec<&str> = insert.iter().map(|&(i, _)| requests[i].payer.user_id.as_str()).collect();
    let tokens: Vec<Uuid> = insert.iter().map(|&(i, _)| requests[i].payer.token).collect();
    let keys: Vec<&str> = insert.iter().map(|&(i, _)| requests[i].key.as_str()).collect();
    let mut amounts = Vec::with_capacity(insert.len());
    let mut counts = Vec::with_capacity(insert.len());
    // The further seats of the orders (the first is on the payment's row).
    let (mut further_payments, mut further_ids) = (Vec::new(), Vec::new());
    for ((_, order), payment_id) in insert.iter().zip(&payment_ids) {
        let mut amount = Won::ZERO;
        for r in order {
            amount = amount.checked_add(r.price).ok_or_else(|| anyhow::anyhow!("the order's total overflows"))?;
        }
        for r in &order[1..] {
            further_payments.push(*payment_id);
            further_ids.push(r.reservation_id);
        }
        amounts.push(amount.get());
        counts.push(i16::try_from(order.len()).map_err(|_| anyhow::anyhow!("an order of {} seats", order.len()))?);
    }
    let at: Vec<DateTime<Utc>> = insert.iter().map(|&(i, _)| requests[i].now).collect();
    let retry_at: Vec<DateTime<Utc>> = insert.iter().map(|&(i, _)| requests[i].now + requests[i].lease).collect();
    // Both statements read in their own snapshot, taken after every seat was locked, so they
    // see every payment of those seats that committed: a first seat's (ON CONFLICT on
    // `payments_reservation_id_key`), a further seat's (the NOT EXISTS), and a further seat
    // of this batch taken meanwhile fails the statement on `order_seats_pkey`.
    let rows = if further_ids.is_empty() {
        // Single seats only (the common case): the payments alone, as before orders existed.
        sqlx::query_as!(
            PaymentRow,
            r#"INSERT INTO payments (payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                                     created_at, updated_at, next_attempt_at)
               SELECT payment_id, reservation_id, user_id, token, idempotency_key, amount, 'STARTED', at, at, retry_at
               FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::bigint[],
                           $7::timestamptz[], $8::timestamptz[])
                    AS i (payment_id, reservation_id, user_id, token, idempotency_key, amount, at, retry_at)
               WHERE NOT EXISTS (SELECT 1 FROM order_seats o WHERE o.reservation_id = i.reservation_id)
               ON CONFLICT DO NOTHING
               RETURNING payment_id, reservation_id, user_id, token, idempotency_key, amount AS "amount: Won",
                         status AS "status: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                         paid_at, created_at, seats"#,
            &payment_ids,
            &firsts,
            &users as &[&str],
            &tokens,
            &keys as &[&str],
            &amounts,
            &at,
            &retry_at
        )
        .fetch_all(&mut **tx)
        .await
    } else {
        sqlx::query_as!(
            PaymentRow,
            r#"WITH f AS (SELECT * FROM UNNEST($9::uuid[], $10::uuid[]) AS f (payment_id, reservation_id)),
                    p AS (
                        INSERT INTO payments (payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                                              created_at, updated_at, next_attempt_at, seats)
                        SELECT payment_id, reservation_id, user_id, token, idempotency_key, amount, 'STARTED', at, at,
                               retry_at, seats
                        FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::bigint[],
                                    $7::timestamptz[], $8::timestamptz[], $11::smallint[])
                             AS i (payment_id, reservation_id, user_id, token, idempotency_key, amount, at, retry_at, seats)
                        WHERE NOT EXISTS (SELECT 1 FROM order_seats o WHERE o.reservation_id = i.reservation_id)
                          AND NOT EXISTS (SELECT 1 FROM f JOIN payments taken ON taken.reservation_id = f.reservation_id
                                          WHERE f.payment_id = i.payment_id)
                        ON CONFLICT DO NOTHING
                        RETURNING payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                                  failure_reason, balance_after, paid_at, created_at, seats
                    ),
                    s AS (INSERT INTO order_seats (reservation_id, payment_id)
                          SELECT f.reservation_id, f.payment_id FROM f JOIN p USING (payment_id))
               SELECT payment_id AS "payment_id!", reservation_id AS "reservation_id!", user_id AS "user_id!",
                      token AS "token!", idempotency_key AS "idempotency_key!", amount AS "amount!: Won",
                      status AS "status!: PaymentStatus", failure_reason, balance_after AS "balance_after: Won",
                      paid_at, created_at AS "created_at!", seats AS "seats!" FROM p"#,
            &payment_ids,
            &firsts,
            &users as &[&str],
            &tokens,
            &keys as &[&str],
            &amounts,
            &at,
            &retry_at,
            &further_payments,
            &further_ids,
            &counts
        )
        .fetch_all(&mut **tx)
        .await
    };
    let rows = match rows {
        Ok(rows) => rows,
        // A further seat's payment committed while this batch waited for its row locks (the
        // lock statement's snapshot did not show it): the statement wrote nothing, and every
        // request of it goes to the single path, which reads the payments after its locks.
        Err(e) if violated_constraint(&e).as_deref() == Some("order_seats_pkey") => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut inserted: HashMap<Uuid, Payment> =
        rows.into_iter().map(|row| (row.payment_id, Payment::from(row))).collect();
    Ok(Some(
        insert
            .iter()
            .zip(&payment_ids)
            .filter_map(|((index, order), id)| Some((*index, inserted.remove(id)?, order.clone())))
            .collect(),
    ))
}
