//! Issue #27, item 9: at a hold's expiry instant, releasing it as stale and starting its
//! payment are decided under the row lock. A release that began while a payment start held
//! the lock used to expire the hold once the payment committed (its "no payment" check read
//! the snapshot from before), leaving a STARTED payment on an EXPIRED hold: a spurious
//! failure and a refund for the payer. The same snapshot, in a payment start that waited for
//! its twin's payment, refused a seat its twin had just paid.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use reservation_service::store::ReservationRepo;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{hold, payer, status};

const SCHEDULE: Uuid = Uuid::from_u128(9);

/// Runs `release` while another transaction has locked the hold and inserted its payment, as
/// a payment start does, then commits that payment; what `release` returned.
async fn release_during_a_payment_start<T: Send + 'static>(
    pool: &PgPool,
    reservation_id: Uuid,
    user: &str,
    release: impl Future<Output = T> + Send + 'static,
) -> T {
    while_paid(pool, reservation_id, user, false, release).await
}

/// Runs `call` while another transaction has locked the hold and inserted its payment (and,
/// with `confirm`, marked the seat CONFIRMED, as the saga's last step does), then commits;
/// what `call` returned.
async fn while_paid<T: Send + 'static>(
    pool: &PgPool,
    reservation_id: Uuid,
    user: &str,
    confirm: bool,
    release: impl Future<Output = T> + Send + 'static,
) -> T {
    let mut paying = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM reservations WHERE reservation_id = $1 FOR UPDATE")
        .bind(reservation_id)
        .execute(&mut *paying)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO payments (payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                               created_at, updated_at, next_attempt_at)
         VALUES (gen_random_uuid(), $1, $2, gen_random_uuid(), 'k', 70000, 'STARTED', now(), now(), now())",
    )
    .bind(reservation_id)
    .bind(user)
    .execute(&mut *paying)
    .await
    .unwrap();
    if confirm {
        sqlx::query("UPDATE reservations SET status = 'CONFIRMED' WHERE reservation_id = $1")
            .bind(reservation_id)
            .execute(&mut *paying)
            .await
            .unwrap();
    }
    let release = tokio::spawn(release);
    // Until the release either finished or waits for the row lock (as it did before).
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 || release.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    paying.commit().await.unwrap();
    release.await.unwrap()
}

/// A hold placed 5 minutes before `now` for 5 minutes: expired at `now` by a second.
async fn expiring_hold(repo: &ReservationRepo, user: &str, seat: u32, now: DateTime<Utc>) -> Uuid {
    let who = payer(user, Uuid::from_u128(1), now);
    hold(repo, &who, SCHEDULE, seat, 70_000, now - Duration::seconds(301), Duration::minutes(5)).await
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn a_hold_whose_payment_began_is_never_released_as_stale(pool: PgPool) {
    let repo = ReservationRepo::new(pool.clone());
    let now = Utc::now();

    let seat = expiring_hold(&repo, "ann", 1, now).await;
    let r = repo.clone();
    let released = release_during_a_payment_start(&pool, seat, "ann", async move {
        r.release_stale_hold(SCHEDULE, 1, now).await.unwrap()
    })
    .await;
    assert!(!released);
    assert_eq!(status(&pool, seat).await, "HELD", "the seat's release lost to the payment");

    let users = expiring_hold(&repo, "bob", 2, now).await;
    let r = repo.clone();
    let released = release_during_a_payment_start(&pool, users, "bob", async move {
        r.release_stale_holds_of("bob", Uuid::from_u128(1), now).await.unwrap()
    })
    .await;
    assert!(!released);
    assert_eq!(status(&pool, users).await, "HELD", "the user's release lost to the payment");

    let swept = expiring_hold(&repo, "cat", 3, now).await;
    let r = repo.clone();
    let expired =
        release_during_a_payment_start(&pool, swept, "cat", async move { r.expire_holds(now, 100).await.unwrap() })
            .await;
    assert_eq!(expired, 0);
    assert_eq!(status(&pool, swept).await, "HELD", "the sweeper lost to the payment");

    // Without a payment, each still releases.
    let unpaid = [expiring_hold(&repo, "dan", 4, now).await, expiring_hold(&repo, "eve", 5, now).await];
    let last = expiring_hold(&repo, "fay", 6, now).await;
    assert!(repo.release_stale_hold(SCHEDULE, 4, now).await.unwrap());
    assert!(repo.release_stale_holds_of("eve", Uuid::from_u128(1), now).await.unwrap());
    assert_eq!(repo.expire_holds(now, 100).await.unwrap(), 1);
    for id in unpaid.into_iter().chain([last]) {
        assert_eq!(status(&pool, id).await, "EXPIRED");
    }
}

/// A second payment start of a seat whose first payment committed while it waited for the
/// row lock (a double click through two replicas) answers that payment. It used to see the
/// seat CONFIRMED (the locked row re-read) but no payment (the snapshot from before) and
/// refuse RESERVATION_NOT_HELD while its twin paid (seen once in CI, e2e
/// `a_double_click_with_exactly_the_price_pays_once_and_loses_nothing`).
#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn a_payment_start_that_waited_for_its_twin_answers_the_twin_s_payment(pool: PgPool) {
    use reservation_service::store::{PaymentRequest, PaymentStart};
    let repo = ReservationRepo::new(pool.clone());
    let now = Utc::now();
    for (user, seat, batched) in [("gil", 1, false), ("hal", 2, true)] {
        let who = payer(user, Uuid::from_u128(1), now);
        let id = hold(&repo, &who, SCHEDULE, seat, 70_000, now, Duration::minutes(5)).await;
        let (r, who_then) = (repo.clone(), who.clone());
        let started = while_paid(&pool, id, user, true, async move {
            let who = who_then;
            if batched {
                let request = PaymentRequest {
                    reservation_ids: vec![id],
                    payer: who.clone(),
                    key: "twin".into(),
                    now,
                    lease: Duration::seconds(30),
                };
                r.start_payments(&[request]).await.unwrap().remove(0)
            } else {
                Some(r.start_payment(&[id], &who, "twin", now, Duration::seconds(30)).await)
            }
        })
        .await;
        match started {
            Some(Ok(PaymentStart::Existing(p))) => assert_eq!(p.reservation_id, id),
            // The batch leaves it to the single path, which answers as above.
            None if batched => {
                let again = repo.start_payment(&[id], &who, "twin", now, Duration::seconds(30)).await;
                assert!(matches!(again, Ok(PaymentStart::Existing(_))), "{again:?}");
            }
            other => panic!("seat {seat} (batched: {batched}): {other:?}"),
        }
    }
}
