//! Past sales leave the hot tables (issue #31): holds that ended without a payment and
//! tokens that ended are deleted once older than their retention (30 days here, purged every
//! second), while the books — the payment, its seat, the wallet's ledger — stay and still
//! reconcile.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{sync::Arc, time::Duration};

use concert_proto::concert::reservation::v1::ReservationStatus;
use e2e::{Suite, SuiteOptions};
use platform::clock::ManualClock;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Rows of `table` (schema-qualified) whose `column` is `id`.
async fn rows(pool: &sqlx::PgPool, table: &str, column: &str, id: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {column}::text = $1"))
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn ended_holds_and_tokens_are_purged_after_the_retention_and_the_books_stay(
    _p: PgPoolOptions,
    db: PgConnectOptions,
) {
    let clock = ManualClock::new();
    let opts = SuiteOptions {
        clock: Arc::new(clock.clone()),
        hold_ttl: chrono::Duration::seconds(300),
        ..SuiteOptions::default()
    };
    let suite = Suite::start(db.clone(), opts).await;
    let pool = PgPoolOptions::new().connect_with(db).await.unwrap();
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let token = suite.active_token("ida", &concert_id).await;
    let ran_out = suite.hold(&token, &schedule_id, 1).await;
    let released = suite.hold(&token, &schedule_id, 2).await;
    suite.cancel_as("ida", &released).await.unwrap();
    let bought = suite.hold(&token, &schedule_id, 3).await;
    suite.charge("ida", 1_000_000).await;
    suite.pay_order(0, &token, std::slice::from_ref(&bought), "ida-pays").await.unwrap();
    // Paying spends the token: the saga's last step expires it (after the answer). Wait for
    // it before the clock moves, or it would end at the moved time and stay within the
    // retention.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, String>("SELECT state FROM queue.tokens WHERE token::text = $1")
        .bind(&token)
        .fetch_one(&pool)
        .await
        .unwrap()
        != "EXPIRED"
    {
        assert!(std::time::Instant::now() < until, "the paid token was not spent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clock.advance(chrono::Duration::seconds(301));
    let until = std::time::Instant::now() + Duration::from_secs(10);
    // It ends either way: run out (the sweeper) or released when the same admission paid
    // (the saga's completion), whichever comes first.
    while suite.reservation_of("ida", &ran_out).await.status == ReservationStatus::Held as i32 {
        assert!(std::time::Instant::now() < until, "the hold did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A day short of the retention: nothing goes.
    clock.advance(chrono::Duration::days(29));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rows(&pool, "reservation.reservations", "reservation_id", &ran_out).await, 1);
    assert_eq!(rows(&pool, "queue.tokens", "token", &token).await, 1);

    // Past it: the ended hold, the released one and the spent token go.
    clock.advance(chrono::Duration::days(2));
    let until = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = [
            rows(&pool, "reservation.reservations", "reservation_id", &ran_out).await,
            rows(&pool, "reservation.reservations", "reservation_id", &released).await,
            rows(&pool, "queue.tokens", "token", &token).await,
        ];
        if left == [0, 0, 0] {
            break;
        }
        assert!(std::time::Instant::now() < until, "not purged (ran out, released, token): {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The books stay: the sold seat, its payment, the ledger; and they still reconcile.
    assert_eq!(suite.reservation_of("ida", &bought).await.status, ReservationStatus::Confirmed as i32);
    assert_eq!(rows(&pool, "reservation.payments", "reservation_id", &bought).await, 1);
    let report = suite.assert_books_settle(Duration::from_secs(10)).await;
    assert_eq!((report.paid, report.sold_seats, report.total_debited), (1, 1, 150_000), "{report:?}");
    assert_eq!(suite.balance("ida").await, 1_000_000 - 150_000);
}
