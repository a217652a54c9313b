//! Fault injection into the payment saga: crashes between steps, slow and failing wallets,
//! deadlines. Failpoints (the `fail` crate) are process-wide, so every test here holds a
//! `FailScenario`, which runs them one at a time and disarms everything at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use concert_proto::concert::{
    reservation::v1::{GetReservationRequest, PayReservationRequest, ReservationStatus},
    wallet::v1::TransactionKind,
};
use e2e::{Suite, SuiteOptions, as_user, authed};
use fail::FailScenario;
use platform::outbound::CallPolicy;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::Code;

async fn reservation_status(suite: &Suite, id: &str, user: &str) -> i32 {
    suite
        .reservation(0)
        .get_reservation(as_user(user, GetReservationRequest { reservation_id: id.into(), user_id: String::new() }))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap()
        .status
}

async fn debits(suite: &Suite, user: &str) -> Vec<i64> {
    suite
        .ledger_kinds(user)
        .await
        .into_iter()
        .filter(|(k, _)| *k == TransactionKind::Debit as i32)
        .map(|(_, a)| a)
        .collect()
}

async fn balance_eventually(suite: &Suite, user: &str, want: i64) -> i64 {
    e2e::eventually(want, || suite.balance(user)).await
}

/// Fault 3: the process dies after the wallet took the money and before the seat was
/// confirmed. The restarted replica's recovery worker finishes the saga with the same key.
#[sqlx::test(migrations = false)]
async fn a_crash_between_debit_and_confirmation_is_finished_after_restart(_p: PgPoolOptions, db: PgConnectOptions) {
    let scenario = FailScenario::setup();
    let opts = SuiteOptions {
        recovery_interval: Duration::from_millis(100),
        payment_lease: chrono::Duration::seconds(1),
        ..SuiteOptions::default()
    };
    let mut suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 9).await; // VIP, 150,000 won
    suite.charge("alice", 200_000).await;

    fail::cfg("reservation::after-debit", "return").unwrap();
    let mut client = suite.reservation(0);
    let request = authed(
        &token,
        PayReservationRequest { reservation_id: id.clone(), idempotency_key: "k".into(), ..Default::default() },
    );
    let paying = tokio::spawn(async move { client.pay_reservation(request).await });

    // The wallet takes the money; the replica freezes before recording anything ...
    assert_eq!(balance_eventually(&suite, "alice", 50_000).await, 50_000);
    assert_eq!(suite.payment_status(&id).await, "STARTED");
    assert_eq!(reservation_status(&suite, &id, "alice").await, ReservationStatus::Held as i32);
    // ... and dies there. The caller never learns the outcome.
    fail::remove("reservation::after-debit");
    suite.crash_and_restart_reservation(0).await;
    assert!(paying.await.unwrap().is_err(), "the call died with its replica");

    // The new replica's recovery worker takes the payment once its lease has run out and
    // drives it on from STARTED: the debit with the same key is answered from the wallet's
    // record, the seat is confirmed, the token expired.
    assert_eq!(suite.payment_status_eventually(&id, "COMPLETED").await, "COMPLETED");
    assert_eq!(reservation_status(&suite, &id, "alice").await, ReservationStatus::Confirmed as i32);
    assert_eq!(debits(&suite, "alice").await, vec![150_000], "debited exactly once");
    assert_eq!(suite.balance("alice").await, 50_000);
    // The user's retry with the same key gets the original result.
    let replay = suite.pay(&token, &id, "k").await.unwrap();
    assert_eq!(replay.balance_after, 50_000);
    assert_eq!(debits(&suite, "alice").await, vec![150_000]);
    // Whatever the fault did, every won and every seat is accounted for across services.
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
    scenario.teardown();
}

/// Fault 2: the wallet commits the debit but answers after reservation's per-call
/// deadline. Reservation retries the same key and gets the first debit's result.
#[sqlx::test(migrations = false)]
async fn a_wallet_slower_than_the_deadline_is_retried_with_the_same_key(_p: PgPoolOptions, db: PgConnectOptions) {
    let scenario = FailScenario::setup();
    let peer_policy = CallPolicy { timeout: Duration::from_millis(300), ..CallPolicy::default() };
    let suite = Suite::start(db, SuiteOptions { peer_policy, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 20).await; // R, 120,000 won
    suite.charge("alice", 200_000).await;

    // Only the first debit is slow: 1 s, three times the deadline.
    fail::cfg("wallet::debit-reply-delay", "1*return(1000)").unwrap();
    let paid = suite.pay(&token, &id, "k").await.unwrap();

    assert_eq!(paid.balance_after, 80_000);
    assert_eq!(paid.reservation.unwrap().status, ReservationStatus::Confirmed as i32);
    assert_eq!(debits(&suite, "alice").await, vec![120_000], "the retry did not debit again");
    assert_eq!(suite.payment_status_eventually(&id, "COMPLETED").await, "COMPLETED");
    // Whatever the fault did, every won and every seat is accounted for across services.
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
    scenario.teardown();
}

/// A caller's deadline shorter than the wallet's answer ends the call with
/// DEADLINE_EXCEEDED at that deadline (propagated, not the 2 s per-call timeout); the
/// payment stays pending and the caller's retry with the same key completes it once.
#[sqlx::test(migrations = false)]
async fn the_callers_deadline_bounds_the_saga_and_a_retry_completes_it(_p: PgPoolOptions, db: PgConnectOptions) {
    let scenario = FailScenario::setup();
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 40).await; // S, 90,000 won
    suite.charge("alice", 100_000).await;

    fail::cfg("wallet::debit-reply-delay", "1*return(1500)").unwrap();
    let mut request = authed(
        &token,
        PayReservationRequest { reservation_id: id.clone(), idempotency_key: "k".into(), ..Default::default() },
    );
    request.set_timeout(Duration::from_millis(400));
    let started = std::time::Instant::now();
    let err = suite.reservation(0).pay_reservation(request).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "caller's deadline answered {:?}: {}",
        err.code(),
        err.message()
    );
    assert!(took < Duration::from_millis(1_400), "the saga waited {took:?}, past the caller's 400 ms");
    assert_eq!(suite.payment_status(&id).await, "STARTED", "outcome unknown: nothing guessed");

    let paid = suite.pay(&token, &id, "k").await.unwrap();
    assert_eq!(paid.balance_after, 10_000);
    assert_eq!(debits(&suite, "alice").await, vec![90_000]);
    // Whatever the fault did, every won and every seat is accounted for across services.
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
    scenario.teardown();
}

/// Transient wallet failures (UNAVAILABLE before anything is written) are retried with
/// backoff inside one PayReservation call.
#[sqlx::test(migrations = false)]
async fn transient_wallet_failures_are_retried_within_the_call(_p: PgPoolOptions, db: PgConnectOptions) {
    let scenario = FailScenario::setup();
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 1).await; // VIP, 150,000 won
    suite.charge("alice", 150_000).await;

    // The first two debits fail; the default policy allows three retries.
    fail::cfg("wallet::debit-unavailable", "2*return").unwrap();
    let paid = suite.pay(&token, &id, "k").await.unwrap();
    assert_eq!(paid.balance_after, 0);
    assert_eq!(debits(&suite, "alice").await, vec![150_000]);
    // Whatever the fault did, every won and every seat is accounted for across services.
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
    scenario.teardown();
}

/// Issue #29: the process dies after a give-back released the seat and recorded its refund
/// as owed, before the wallet refunded it. The seat is on sale already; the restarted
/// replica's recovery worker refunds the price once.
#[sqlx::test(migrations = false)]
async fn a_crash_between_a_give_back_and_its_refund_is_finished_after_restart(_p: PgPoolOptions, db: PgConnectOptions) {
    let scenario = FailScenario::setup();
    let opts = SuiteOptions {
        recovery_interval: Duration::from_millis(100),
        payment_lease: chrono::Duration::seconds(1),
        ..SuiteOptions::default()
    };
    let mut suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 9).await; // VIP, 150,000 won
    suite.charge("alice", 150_000).await;
    suite.pay(&token, &id, "k").await.unwrap();
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;

    fail::cfg("reservation::after-give-back", "return").unwrap();
    let mut client = suite.reservation(0);
    let mut request = as_user(
        "alice",
        concert_proto::concert::reservation::v1::CancelReservationRequest { reservation_id: id.clone() },
    );
    request.set_timeout(Duration::from_secs(30));
    let giving_back = tokio::spawn(async move { client.cancel_reservation(request).await });

    // The seat is given back (REFUNDED, on sale) and the replica freezes before the refund.
    let refunded = ReservationStatus::Refunded as i32;
    assert_eq!(e2e::eventually(refunded, || reservation_status(&suite, &id, "alice")).await, refunded);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(suite.balance("alice").await, 0, "no refund yet");
    assert!(!suite.reconcile().await.is_settled(), "the refund is owed");
    // ... and dies there.
    fail::remove("reservation::after-give-back");
    suite.crash_and_restart_reservation(0).await;
    assert!(giving_back.await.unwrap().is_err(), "the call died with its replica");

    // The new replica's recovery worker refunds it once its lease has run out.
    assert_eq!(balance_eventually(&suite, "alice", 150_000).await, 150_000);
    let refunds: Vec<i64> = suite
        .ledger_kinds("alice")
        .await
        .into_iter()
        .filter(|(k, _)| *k == TransactionKind::Refund as i32)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(refunds, vec![150_000], "refunded exactly once");
    // Giving it back again answers the same and moves nothing.
    let again = suite.cancel_as("alice", &id).await.unwrap();
    assert_eq!(again.status, refunded);
    assert_eq!(suite.balance("alice").await, 150_000);
    let report = suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
    assert_eq!(report.given_back, 1);
    scenario.teardown();
}
