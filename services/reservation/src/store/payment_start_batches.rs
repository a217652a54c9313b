//! Starting payment sagas in batches (`batch::payment_starts`): one transaction locks the
//! seats of every request, decides each by the one rule and writes the payments that may
//! start, leaving anything unusual to the single path (`payment_starts.rs`).
use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use chrono::{DateTime, Utc};
use platform::{db, money::Won};
use sqlx::Row;
use uuid::Uuid;

use super::{
    PaymentRow, RESERVATION_COLUMNS, ReservationRepo,
    payment_starts::{BatchOutcomes, PaymentRequest, PaymentStart},
    reservation_from_row, violated_constraint,
};
use crate::{
    domain::{
        Payer, Payment, PaymentStatus, Reservation, StartStep,
        payment_start::{order_amount, start_step},
    },
    error::ReservationError,
};

impl ReservationRepo {
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
            // Possibly paid after this statement's snapshot (see `start_payment`): the single
            // path, which reads the payments again, answers it.
            StartStep::Refuse(ReservationError::NotHeld) => None,
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

/// The columns of the payments a batch writes, one entry per payment, and of their
/// further seats (an order's first seat is on its payment's row).
struct StartRows<'a> {
    payment_ids: Vec<Uuid>,
    firsts: Vec<Uuid>,
    users: Vec<&'a str>,
    tokens: Vec<Uuid>,
    keys: Vec<&'a str>,
    /// Won: the sum of the order's prices.
    amounts: Vec<i64>,
    /// Seats of each payment.
    counts: Vec<i16>,
    at: Vec<DateTime<Utc>>,
    retry_at: Vec<DateTime<Utc>>,
    further_payments: Vec<Uuid>,
    further_ids: Vec<Uuid>,
}

impl<'a> StartRows<'a> {
    fn new(requests: &'a [PaymentRequest], insert: &[(usize, Vec<Reservation>)]) -> Result<Self, ReservationError> {
        let mut rows = StartRows {
            payment_ids: Vec::with_capacity(insert.len()),
            firsts: Vec::with_capacity(insert.len()),
            users: Vec::with_capacity(insert.len()),
            tokens: Vec::with_capacity(insert.len()),
            keys: Vec::with_capacity(insert.len()),
            amounts: Vec::with_capacity(insert.len()),
            counts: Vec::with_capacity(insert.len()),
            at: Vec::with_capacity(insert.len()),
            retry_at: Vec::with_capacity(insert.len()),
            further_payments: Vec::new(),
            further_ids: Vec::new(),
        };
        for (index, order) in insert {
            let q = &requests[*index];
            let payment_id = Uuid::now_v7();
            rows.amounts.push(order_amount(order)?.get());
            rows.counts
                .push(i16::try_from(order.len()).map_err(|_| anyhow::anyhow!("an order of {} seats", order.len()))?);
            rows.firsts.push(order[0].reservation_id);
            for r in &order[1..] {
                rows.further_payments.push(payment_id);
                rows.further_ids.push(r.reservation_id);
            }
            rows.payment_ids.push(payment_id);
            rows.users.push(q.payer.user_id.as_str());
            rows.tokens.push(q.payer.token);
            rows.keys.push(q.key.as_str());
            rows.at.push(q.now);
            rows.retry_at.push(q.now + q.lease);
        }
        Ok(rows)
    }
}

/// Writes a STARTED payment with its seats for each order of `insert` in one statement; the
/// payments written, by request index, with their orders (an order whose payment row
/// conflicts writes nothing). `None` when a seat of the batch got a payment meanwhile: then
/// nothing is written (the statement failed) and the transaction must be rolled back.
///
/// The statements read in their own snapshot, taken after every seat was locked, so they see
/// every payment of those seats that committed: a first seat's (ON CONFLICT on
/// `payments_reservation_id_key`), a further seat's (the NOT EXISTS); a further seat of this
/// batch taken meanwhile fails the statement on `order_seats_pkey`.
async fn insert_started(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    requests: &[PaymentRequest],
    insert: &[(usize, Vec<Reservation>)],
) -> Result<Option<Vec<(usize, Payment, Vec<Reservation>)>>, ReservationError> {
    let rows = StartRows::new(requests, insert)?;
    let written =
        if rows.further_ids.is_empty() { insert_singles(tx, &rows).await } else { insert_orders(tx, &rows).await };
    let written = match written {
        Ok(written) => written,
        // A further seat's payment committed while this batch waited for its row locks (the
        // lock statement's snapshot did not show it): the statement wrote nothing, and every
        // request of it goes to the single path, which reads the payments after its locks.
        Err(e) if violated_constraint(&e).as_deref() == Some("order_seats_pkey") => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut inserted: HashMap<Uuid, Payment> =
        written.into_iter().map(|row| (row.payment_id, Payment::from(row))).collect();
    Ok(Some(
        insert
            .iter()
            .zip(&rows.payment_ids)
            .filter_map(|((index, order), id)| Some((*index, inserted.remove(id)?, order.clone())))
            .collect(),
    ))
}

/// Single seats only (the common case): the payments alone, as before orders existed.
async fn insert_singles(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    r: &StartRows<'_>,
) -> Result<Vec<PaymentRow>, sqlx::Error> {
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
        &r.payment_ids,
        &r.firsts,
        &r.users as &[&str],
        &r.tokens,
        &r.keys as &[&str],
        &r.amounts,
        &r.at,
        &r.retry_at
    )
    .fetch_all(&mut **tx)
    .await
}

/// Orders among them: the payments and their further seats.
async fn insert_orders(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    r: &StartRows<'_>,
) -> Result<Vec<PaymentRow>, sqlx::Error> {
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
        &r.payment_ids,
        &r.firsts,
        &r.users as &[&str],
        &r.tokens,
        &r.keys as &[&str],
        &r.amounts,
        &r.at,
        &r.retry_at,
        &r.further_payments,
        &r.further_ids,
        &r.counts
    )
    .fetch_all(&mut **tx)
    .await
}
