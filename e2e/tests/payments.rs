//! The payment saga: success, compensation, idempotency, wallet outages and recovery.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use concert_proto::concert::{
    catalog::v1::SeatStatus,
    reservation::v1::{HoldSeatRequest, ListPaymentsRequest, PayReservationRequest, PaymentStatus, ReservationStatus},
    wallet::v1::TransactionKind,
};
use e2e::{Suite, SuiteOptions, authed};
use platform::status::{reason, violated_field};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::Code;

#[sqlx::test(migrations = false)]
async fn insufficient_balance_releases_the_hold(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 1).await;
    suite.charge("alice", 100_000).await; // seat 1 costs 150,000

    let err = suite.pay(&token, &id, "k1").await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::FailedPrecondition, Some("INSUFFICIENT_BALANCE")));
    assert_eq!(suite.balance("alice").await, 100_000, "nothing taken");
    assert_eq!(
        suite.seat_status_eventually(&token, &schedule_id, 1, SeatStatus::Available as i32).await,
        SeatStatus::Available as i32,
        "hold released"
    );
    assert_eq!(suite.payment_status(&id).await, "FAILED");
    // A replay gives the same answer.
    let err = suite.pay(&token, &id, "k1").await.unwrap_err();
    assert_eq!(reason(&err).as_deref(), Some("INSUFFICIENT_BALANCE"));
}

#[sqlx::test(migrations = false)]
async fn paying_twice_charges_once(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 40).await; // 90,000
    suite.charge("alice", 300_000).await;

    let first = suite.pay(&token, &id, "pay-key").await.unwrap();
    // The token is expired by the payment, yet the same request replays its result.
    let replay = suite.pay(&token, &id, "pay-key").await.unwrap();
    assert_eq!(first.payment, replay.payment);
    assert_eq!(first.balance_after, 210_000);
    assert_eq!(suite.balance("alice").await, 210_000);
    let debits = suite.ledger_kinds("alice").await.iter().filter(|(k, _)| *k == TransactionKind::Debit as i32).count();
    assert_eq!(debits, 1);
    // A different key is a different request, refused by the expired token.
    let err = suite.pay(&token, &id, "other-key").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[sqlx::test(migrations = false)]
async fn concurrent_payments_of_one_reservation_debit_once(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 12).await; // 120,000
    suite.charge("alice", 1_000_000).await;

    let attempts = (0..50).map(|_| suite.pay(&token, &id, "same-key"));
    let results = futures::future::join_all(attempts).await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(!ok.is_empty());
    assert!(ok.iter().all(|r| r.payment == ok[0].payment), "one payment");
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        // Late arrivals may find the token already expired by the winning call.
        assert!(matches!(e.code(), Code::Unauthenticated | Code::Aborted), "{e:?}");
    }
    assert_eq!(suite.balance("alice").await, 880_000, "debited exactly once");
}

#[sqlx::test(migrations = false)]
async fn an_idempotency_key_cannot_pay_two_reservations(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let a = suite.hold(&token, &schedule_id, 31).await;
    let b = suite.hold(&token, &schedule_id, 32).await;
    suite.charge("alice", 1_000_000).await;
    // Key "k" pays reservation a ...
    suite.pay(&token, &a, "k").await.unwrap();
    assert!(suite.token_expired_eventually(&token).await, "paying expires the token");
    let other = suite.active_token("alice", &concert_id).await;
    // ... so it cannot also pay reservation b.
    let err = suite.pay(&other, &b, "k").await.unwrap_err();
    assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("idempotency_key")));
    assert_eq!(suite.balance("alice").await, 1_000_000 - 90_000);
}

#[sqlx::test(migrations = false)]
async fn wallet_down_means_unavailable_and_a_retry_pays_once(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 45).await; // 90,000
    suite.charge("alice", 100_000).await;

    suite.stop_wallet().await;
    let err = suite.pay(&token, &id, "k").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(suite.payment_status(&id).await, "STARTED");
    assert_eq!(
        suite.seat_status_eventually(&token, &schedule_id, 45, SeatStatus::Held as i32).await,
        SeatStatus::Held as i32,
        "the hold lives on"
    );

    suite.restart_wallet().await;
    assert_eq!(suite.balance("alice").await, 100_000, "no debit while the wallet was down");
    let ok = suite.pay(&token, &id, "k").await.unwrap();
    assert_eq!(ok.balance_after, 10_000);
    assert_eq!(ok.reservation.unwrap().status, ReservationStatus::Confirmed as i32);
    assert_eq!(suite.balance("alice").await, 10_000);
}

#[sqlx::test(migrations = false)]
async fn the_recovery_worker_finishes_an_interrupted_payment(_p: PgPoolOptions, db: PgConnectOptions) {
    let opts = SuiteOptions {
        recovery_interval: std::time::Duration::from_millis(100),
        payment_lease: chrono::Duration::milliseconds(200),
        ..SuiteOptions::default()
    };
    let mut suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 9).await; // 150,000
    suite.charge("alice", 150_000).await;

    suite.stop_wallet().await;
    assert_eq!(suite.pay(&token, &id, "k").await.unwrap_err().code(), Code::Unavailable);
    suite.restart_wallet().await;

    // Nobody retries: the worker resumes the saga with the same debit key.
    assert_eq!(suite.payment_status_eventually(&id, "COMPLETED").await, "COMPLETED");
    assert_eq!(suite.balance("alice").await, 0);
    let other = suite.active_token("bob", &concert_id).await;
    assert_eq!(
        suite.seat_status_eventually(&other, &schedule_id, 9, SeatStatus::Sold as i32).await,
        SeatStatus::Sold as i32
    );
}

#[sqlx::test(migrations = false)]
async fn a_debit_that_cannot_be_confirmed_is_refunded(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 25).await; // 120,000
    suite.charge("alice", 200_000).await;

    // The payment starts while the wallet is down ...
    suite.stop_wallet().await;
    assert_eq!(suite.pay(&token, &id, "k").await.unwrap_err().code(), Code::Unavailable);
    // ... and meanwhile the hold is released behind the saga's back (an operator, a bug).
    sqlx::query("UPDATE reservations SET status = 'CANCELLED' WHERE reservation_id = $1::uuid")
        .bind(&id)
        .execute(&suite.pool("reservation").await)
        .await
        .unwrap();
    suite.restart_wallet().await;

    // The retry debits (same key), finds the seat no longer held, and compensates.
    let err = suite.pay(&token, &id, "k").await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::FailedPrecondition, Some("RESERVATION_NOT_HELD")));
    assert_eq!(suite.payment_status(&id).await, "COMPENSATED");
    assert_eq!(suite.balance("alice").await, 200_000, "money whole again");
    let kinds: Vec<i32> = suite.ledger_kinds("alice").await.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        vec![TransactionKind::Refund as i32, TransactionKind::Debit as i32, TransactionKind::Charge as i32]
    );
}

#[sqlx::test(migrations = false)]
async fn a_token_that_paid_is_refused_at_once_even_where_it_is_cached(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    suite.charge("alice", 1_000_000).await;
    let (mut a, mut b) = (suite.reservation(0), suite.reservation(1));

    // Replica B caches the token (a hold there), replica A takes the payment.
    let on_b = b
        .hold_seat(authed(&token, HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 2 }))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let on_a = suite.hold(&token, &schedule_id, 3).await;
    a.pay_reservation(authed(&token, PayReservationRequest { reservation_id: on_a, idempotency_key: "p1".into() }))
        .await
        .unwrap();

    // Immediately, B still has the token cached as ACTIVE, yet refuses a second booking.
    let err = b
        .hold_seat(authed(&token, HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 4 }))
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::Unauthenticated, Some("TOKEN_USED")));
    let err = b
        .pay_reservation(authed(
            &token,
            PayReservationRequest { reservation_id: on_b.reservation_id, idempotency_key: "p2".into() },
        ))
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::Unauthenticated, Some("TOKEN_USED")));
    assert_eq!(suite.balance("alice").await, 1_000_000 - 150_000, "one seat paid, once");
}

#[sqlx::test(migrations = false)]
async fn payment_history_shows_amount_time_and_outcome(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("ivy", &concert_id).await;
    let short = suite.hold(&token, &schedule_id, 1).await; // 150,000
    let fine = suite.hold(&token, &schedule_id, 50).await; // 90,000
    suite.charge("ivy", 100_000).await;
    assert_eq!(suite.pay(&token, &short, "a").await.unwrap_err().code(), Code::FailedPrecondition);
    suite.pay(&token, &fine, "b").await.unwrap();

    let history = suite
        .reservation(0)
        .list_payments(ListPaymentsRequest { user_id: "ivy".into() })
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(history.len(), 2);
    assert_eq!((history[0].reservation_id.as_str(), history[0].amount), (fine.as_str(), 90_000), "newest first");
    assert_eq!(history[0].status, PaymentStatus::Paid as i32);
    assert!(history[0].paid_at.is_some() && history[0].created_at.is_some());
    assert_eq!(
        (history[1].status, history[1].failure_reason.as_str()),
        (PaymentStatus::Failed as i32, "INSUFFICIENT_BALANCE")
    );
    assert!(history[1].paid_at.is_none());
    let other = suite.reservation(0).list_payments(ListPaymentsRequest { user_id: "nobody".into() }).await.unwrap();
    assert!(other.into_inner().payments.is_empty());
}
