//! The batched start of payment sagas against real PostgreSQL: one batch starts the common
//! case, decides what the rules refuse, and leaves everything else to the single path,
//! which `PaymentStartBatcher` then runs, so each request gets the answer it would get alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use chrono::{DateTime, Duration, Utc};
use platform::{auth::Principal, money::Won};
use reservation_service::{
    batch::payment_starts::PaymentStartBatcher,
    domain::PaymentStatus,
    error::ReservationError,
    store::{PaymentRequest, PaymentStart, ReservationRepo},
};
use sqlx::PgPool;
use uuid::Uuid;

const PRICE: i64 = 70_000;
const LEASE: Duration = Duration::seconds(30);

use crate::support::payer;

/// Holds `seat` for `who` until `now + ttl`; returns the reservation id.
async fn hold(repo: &ReservationRepo, who: &Principal, seat: u32, now: DateTime<Utc>, ttl: Duration) -> Uuid {
    crate::support::hold(repo, who, Uuid::from_u128(7), seat, PRICE, now, ttl).await
}

fn request(reservation_id: Uuid, who: &Principal, key: &str, now: DateTime<Utc>) -> PaymentRequest {
    PaymentRequest { reservation_ids: vec![reservation_id], payer: who.clone(), key: key.into(), now, lease: LEASE }
}

/// What the single path answers `q`.
async fn single(repo: &ReservationRepo, q: &PaymentRequest) -> Result<PaymentStart, ReservationError> {
    repo.start_payment(&q.reservation_ids, &q.payer, &q.key, q.now, q.lease).await
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn one_batch_starts_refuses_and_defers(pool: PgPool) {
    let repo = ReservationRepo::new(pool.clone());
    let concert = Uuid::new_v4();
    let now = Utc::now();
    let ann = payer("ann", concert, now);
    let bob = payer("bob", concert, now);
    let cat = payer("cat", concert, now);
    let dan = payer("dan", concert, now);
    let ann_seat = hold(&repo, &ann, 1, now, Duration::minutes(5)).await;
    let bob_seat = hold(&repo, &bob, 2, now, Duration::minutes(5)).await;
    let cat_late = hold(&repo, &cat, 3, now - Duration::minutes(6), Duration::minutes(5)).await;
    let dan_seat = hold(&repo, &dan, 4, now, Duration::minutes(5)).await;
    let dan_other = hold(&repo, &dan, 5, now, Duration::minutes(5)).await;
    // Dan already started paying for seat 4 with key "dan-1".
    let PaymentStart::New(dan_first, _) = repo.start_payment(&[dan_seat], &dan, "dan-1", now, LEASE).await.unwrap()
    else {
        panic!("dan's first payment existed already");
    };

    let batch = [
        request(ann_seat, &ann, "ann-1", now),       // 0: the common case
        request(bob_seat, &ann, "ann-2", now),       // 1: someone else's hold
        request(Uuid::now_v7(), &bob, "bob-1", now), // 2: no such reservation
        request(bob_seat, &bob, "bob-1", now),       // 3: the common case
        request(bob_seat, &bob, "bob-1", now),       // 4: the same request again, same batch
        request(cat_late, &cat, "cat-1", now),       // 5: the hold ran out
        request(dan_seat, &dan, "dan-1", now),       // 6: a retry of a started payment
        request(dan_other, &dan, "dan-1", now),      // 7: that key, another reservation
    ];
    let out = repo.start_payments(&batch).await.unwrap();
    assert_eq!(out.len(), batch.len(), "one answer per request, in order");

    let Some(Ok(PaymentStart::New(ann_payment, ann_reservation))) = &out[0] else { panic!("{:?}", out[0]) };
    assert_eq!((ann_payment.status, ann_payment.amount), (PaymentStatus::Started, Won::new(PRICE)));
    assert_eq!((ann_payment.reservation_id, ann_payment.idempotency_key.as_str()), (ann_seat, "ann-1"));
    assert_eq!(ann_reservation[0].reservation_id, ann_seat);
    assert!(matches!(out[1], Some(Err(ReservationError::NotOwner))), "{:?}", out[1]);
    assert!(matches!(out[2], Some(Err(ReservationError::NotFound))), "{:?}", out[2]);
    let Some(Ok(PaymentStart::New(bob_payment, _))) = &out[3] else { panic!("{:?}", out[3]) };
    assert_eq!(bob_payment.reservation_id, bob_seat);
    assert!(out[4].is_none(), "a second request for one reservation goes to the single path: {:?}", out[4]);
    assert!(out[5].is_none(), "an expired hold is released by the single path: {:?}", out[5]);
    assert!(out[6].is_none(), "an existing payment is found by the single path: {:?}", out[6]);
    assert!(out[7].is_none(), "a key conflict is reported by the single path: {:?}", out[7]);
    assert_eq!(count(&pool, "SELECT count(*) FROM payments").await, 3, "dan's, ann's and bob's");

    // What the single path then says to the deferred requests.
    let Ok(PaymentStart::Existing(again)) = single(&repo, &batch[4]).await else { panic!("bob's repeat") };
    assert_eq!(again.payment_id, bob_payment.payment_id);
    assert!(matches!(single(&repo, &batch[5]).await, Err(ReservationError::HoldExpired)));
    let Ok(PaymentStart::Existing(retried)) = single(&repo, &batch[6]).await else { panic!("dan's retry") };
    assert_eq!(retried.payment_id, dan_first.payment_id);
    assert!(matches!(single(&repo, &batch[7]).await, Err(ReservationError::IdempotencyKeyReused)));
    assert_eq!(count(&pool, "SELECT count(*) FROM payments").await, 3);
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn a_token_that_paid_starts_nothing_more(pool: PgPool) {
    let repo = ReservationRepo::new(pool.clone());
    let now = Utc::now();
    let ann = payer("ann", Uuid::new_v4(), now);
    let first = hold(&repo, &ann, 1, now, Duration::minutes(5)).await;
    let second = hold(&repo, &ann, 2, now, Duration::minutes(5)).await;
    let PaymentStart::New(paid, _) = repo.start_payment(&[first], &ann, "ann-1", now, LEASE).await.unwrap() else {
        panic!("first payment existed");
    };
    sqlx::query("UPDATE payments SET status = 'CONFIRMED' WHERE payment_id = $1")
        .bind(paid.payment_id)
        .execute(&pool)
        .await
        .unwrap();

    let out = repo.start_payments(&[request(second, &ann, "ann-2", now)]).await.unwrap();
    assert!(matches!(out[0], Some(Err(ReservationError::TokenUsed))), "{:?}", out[0]);
    assert_eq!(count(&pool, "SELECT count(*) FROM payments").await, 1);
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn concurrent_starts_through_the_starter_get_one_payment_per_reservation(pool: PgPool) {
    let repo = ReservationRepo::new(pool.clone());
    let mut tasks = platform::app::Tasks::new();
    let starter = PaymentStartBatcher::start(repo.clone(), &mut tasks);
    let concert = Uuid::new_v4();
    let now = Utc::now();
    let mut holds = Vec::new();
    for seat in 1..=30 {
        let who = payer(&format!("user-{seat}"), concert, now);
        let id = hold(&repo, &who, seat, now, Duration::minutes(5)).await;
        holds.push((who, id));
    }
    // Every user pays twice at once with the same key (a double click), all users together.
    let calls: Vec<_> = holds
        .iter()
        .flat_map(|(who, id)| {
            let q = request(*id, who, &format!("key-{}", who.user_id), now);
            [q.clone(), q]
        })
        .map(|q| {
            let starter = starter.clone();
            tokio::spawn(async move { starter.start_payment(q).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap().unwrap());
    }
    for (pair, (_, id)) in answers.chunks(2).zip(&holds) {
        let ids: Vec<Uuid> = pair
            .iter()
            .map(|a| match a {
                PaymentStart::New(p, _) | PaymentStart::Existing(p) => {
                    assert_eq!(p.reservation_id, *id);
                    p.payment_id
                }
            })
            .collect();
        assert_eq!(ids[0], ids[1], "both clicks see the same payment");
        let new = pair.iter().filter(|a| matches!(a, PaymentStart::New(..))).count();
        assert_eq!(new, 1, "exactly one of the two started it");
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM payments").await, 30);
}
