//! The batched "debit recorded" write of the saga against real PostgreSQL: one statement
//! confirms some payments, compensates one whose hold is gone, leaves one that moved on,
//! and answers a payment listed twice twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use chrono::Utc;
use platform::money::Won;
use reservation_service::{
    batch::debits::DebitBatcher,
    domain::{Payment, PaymentStatus},
    store::{PaymentStart, RecordedDebit, ReservationRepo},
};
use sqlx::PgPool;
use uuid::Uuid;

const PRICE: i64 = 90_000;

/// Holds seat `seat` for a fresh user and starts its payment; returns the STARTED payment.
async fn started_payment(repo: &ReservationRepo, schedule_id: Uuid, seat: u32) -> Payment {
    let now = Utc::now();
    let payer = crate::support::payer(&format!("user-{seat}"), Uuid::nil(), now);
    let id = crate::support::hold(repo, &payer, schedule_id, seat, PRICE, now, chrono::Duration::seconds(300)).await;
    match repo.start_payment(&[id], &payer, &format!("key-{seat}"), now, chrono::Duration::seconds(30)).await.unwrap() {
        PaymentStart::New(payment, _) => payment,
        PaymentStart::Existing(p) => panic!("a first payment was found existing: {p:?}"),
    }
}

fn debit(p: &Payment, balance_after: i64) -> RecordedDebit {
    RecordedDebit {
        payment_id: p.payment_id,
        reservation_id: p.reservation_id,
        seats: p.seats,
        balance_after: Won::new(balance_after),
        at: Utc::now(),
    }
}

async fn reservation_status(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM reservations WHERE reservation_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn one_statement_confirms_compensates_and_leaves_finished_payments_alone(pool: PgPool) {
    let repo = ReservationRepo::new(pool.clone());
    let schedule = Uuid::new_v4();
    let held = started_payment(&repo, schedule, 1).await;
    let also_held = started_payment(&repo, schedule, 2).await;
    let lost = started_payment(&repo, schedule, 3).await;
    let done = started_payment(&repo, schedule, 4).await;
    // Seat 3's hold is gone before its debit is recorded (whatever released it).
    sqlx::query("UPDATE reservations SET status = 'EXPIRED' WHERE reservation_id = $1")
        .bind(lost.reservation_id)
        .execute(&pool)
        .await
        .unwrap();
    // Seat 4's debit was recorded already.
    let first = repo.record_debits(&[debit(&done, 10_000)]).await.unwrap();
    assert_eq!(first[0].status, PaymentStatus::Confirmed);

    let batch = [debit(&held, 110_000), debit(&also_held, 20_000), debit(&lost, 0), debit(&done, 999), debit(&held, 1)];
    let out = repo.record_debits(&batch).await.unwrap();

    assert_eq!(out.len(), batch.len(), "one answer per item, in order");
    assert_eq!((out[0].payment_id, out[0].status), (held.payment_id, PaymentStatus::Confirmed));
    assert_eq!(out[0].balance_after, Some(Won::new(110_000)));
    assert!(out[0].paid_at.is_some());
    assert_eq!((out[1].payment_id, out[1].status), (also_held.payment_id, PaymentStatus::Confirmed));
    assert_eq!((out[2].payment_id, out[2].status), (lost.payment_id, PaymentStatus::Compensating));
    assert_eq!(out[2].paid_at, None);
    assert_eq!(out[3], first[0], "a payment that moved on is returned as stored");
    assert_eq!(out[4], out[0], "the same payment twice gets the same answer");

    assert_eq!(reservation_status(&pool, held.reservation_id).await, "CONFIRMED");
    assert_eq!(reservation_status(&pool, also_held.reservation_id).await, "CONFIRMED");
    assert_eq!(reservation_status(&pool, lost.reservation_id).await, "EXPIRED", "a lost hold is not sold");
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn concurrent_records_through_the_batcher_each_get_their_own_payment(pool: PgPool) {
    let repo = ReservationRepo::new(pool.clone());
    let schedule = Uuid::new_v4();
    let mut payments = Vec::new();
    for seat in 1..=40 {
        payments.push(started_payment(&repo, schedule, seat).await);
    }
    let mut tasks = platform::app::Tasks::new();
    let recorder = DebitBatcher::start(repo.clone(), &mut tasks);
    let calls: Vec<_> = payments
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let recorder = recorder.clone();
            let d = debit(p, i64::try_from(i).unwrap() * 1_000);
            tokio::spawn(async move { recorder.record(d).await })
        })
        .collect();
    for (i, (p, call)) in payments.iter().zip(calls).enumerate() {
        let got = call.await.unwrap().unwrap();
        assert_eq!(got.payment_id, p.payment_id);
        assert_eq!(got.status, PaymentStatus::Confirmed);
        assert_eq!(got.balance_after, Some(Won::new(i64::try_from(i).unwrap() * 1_000)));
    }
    let sold: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reservations WHERE schedule_id = $1 AND status = 'CONFIRMED'")
            .bind(schedule)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(sold, 40);
}
