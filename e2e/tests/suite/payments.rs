//! The payment saga: success, compensation, idempotency, wallet outages and recovery.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use concert_proto::concert::{
    catalog::v1::SeatStatus,
    reservation::v1::{HoldSeatRequest, ListPaymentsRequest, PayReservationRequest, PaymentStatus, ReservationStatus},
    wallet::v1::TransactionKind,
};
use e2e::{Suite, SuiteOptions, as_user, authed};
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
    // Another key (a fresh page) for the reservation this token paid: that payment's answer,
    // not a token error (issue #12, item 4).
    let again = suite.pay(&token, &id, "other-key").await.unwrap();
    assert_eq!(again.payment, first.payment);
    assert_eq!(suite.balance("alice").await, 210_000, "still debited once");
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
    suite.charge("alice", 1_000_000).await;
    // Key "k" pays reservation a ...
    suite.pay(&token, &a, "k").await.unwrap();
    assert!(suite.token_expired_eventually(&token).await, "paying expires the token");
    let other = suite.active_token("alice", &concert_id).await;
    let b = suite.hold(&other, &schedule_id, 32).await;
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
    let err = suite.pay(&token, &id, "k").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
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
    let err = suite.pay(&token, &id, "k").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
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
        .hold_seat(authed(
            &token,
            HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 2, ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let on_a = suite.hold(&token, &schedule_id, 3).await;
    a.pay_reservation(authed(
        &token,
        PayReservationRequest { reservation_id: on_a, idempotency_key: "p1".into(), ..Default::default() },
    ))
    .await
    .unwrap();

    // Immediately, B still has the token cached as ACTIVE, yet refuses a second booking.
    let err = b
        .hold_seat(authed(
            &token,
            HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 4, ..Default::default() },
        ))
        .await
        .unwrap_err();
    // TOKEN_USED from reservation's own payments, or TOKEN_EXPIRED once the queue has expired
    // the paid token (writes check the token fresh, so whichever comes first answers).
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(matches!(reason(&err).as_deref(), Some("TOKEN_USED" | "TOKEN_EXPIRED")), "{err:?}");
    let err = b
        .pay_reservation(authed(
            &token,
            PayReservationRequest {
                reservation_id: on_b.reservation_id,
                idempotency_key: "p2".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    // TOKEN_USED from reservation's own payments, or TOKEN_EXPIRED once the queue has expired
    // the paid token (writes check the token fresh, so whichever comes first answers).
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(matches!(reason(&err).as_deref(), Some("TOKEN_USED" | "TOKEN_EXPIRED")), "{err:?}");
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
        .list_payments(as_user("ivy", ListPaymentsRequest::default()))
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
    let other = suite.reservation(0).list_payments(as_user("nobody", ListPaymentsRequest::default())).await.unwrap();
    assert!(other.into_inner().payments.is_empty());
}

/// Issue #12, item 1: a user with exactly the seat's price pays twice at once with the same
/// key through two replicas. Every trial must end paid and debited once (before the wallet
/// fix, about 1 in 40 ended CANCELLED with the money gone and no refund).
#[sqlx::test(migrations = false)]
async fn a_double_click_with_exactly_the_price_pays_once_and_loses_nothing(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    for trial in 0..40u32 {
        let user = format!("dbl-{trial}");
        let token = suite.active_token(&user, &concert_id).await;
        let seat = trial + 1;
        let id = suite.hold(&token, &schedule_id, seat).await;
        let price = if seat <= 10 {
            150_000
        } else if seat <= 30 {
            120_000
        } else {
            90_000
        };
        suite.charge(&user, price).await;
        let request = || {
            authed(
                &token,
                PayReservationRequest { reservation_id: id.clone(), idempotency_key: "k".into(), ..Default::default() },
            )
        };
        let (mut r0, mut r1) = (suite.reservation(0), suite.reservation(1));
        let (a, b) = tokio::join!(r0.pay_reservation(request()), r1.pay_reservation(request()));
        assert!(a.is_ok() || b.is_ok(), "trial {trial}: neither call paid: {a:?} / {b:?}");
        for answer in [a, b] {
            if let Err(e) = answer {
                assert_ne!(e.code(), Code::FailedPrecondition, "trial {trial}: a paid seat refused: {e:?}");
            }
        }
        assert_eq!(suite.balance(&user).await, 0, "trial {trial}");
    }
    let report = suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
    assert_eq!(report.paid, 40);
}

/// Issue #12, item 2: a user who lets a payment stay STARTED, reads its id and charges under
/// the saga's debit key cannot wedge the seat: the keys live in separate spaces.
#[sqlx::test(migrations = false)]
async fn a_charge_under_a_saga_key_cannot_wedge_a_payment(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("mallory", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 33).await; // 90,000
    suite.charge("mallory", 90_000).await;
    suite.stop_wallet().await;
    let err = suite.pay(&token, &id, "k").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    suite.restart_wallet().await;
    let history = suite
        .reservation(0)
        .list_payments(as_user("mallory", ListPaymentsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .payments;
    let squat = format!("payment:{}:debit", history[0].payment_id);
    suite
        .wallet()
        .charge(as_user(
            "mallory",
            concert_proto::concert::wallet::v1::ChargeRequest {
                user_id: String::new(),
                amount: 1,
                idempotency_key: squat,
            },
        ))
        .await
        .unwrap();
    let paid = suite.pay(&token, &id, "k").await.unwrap();
    assert_eq!(paid.balance_after, 1);
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
}

/// Issue #12, item 2: a debit the wallet refuses for good (here: its key was voided) ends
/// the payment FAILED with the hold released, instead of retrying without end.
#[sqlx::test(migrations = false)]
async fn a_final_refusal_of_the_debit_releases_the_hold(_p: PgPoolOptions, db: PgConnectOptions) {
    use concert_proto::concert::wallet::v1::{
        RefundRequest, wallet_internal_service_client::WalletInternalServiceClient,
    };
    let mut suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("nina", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 34).await;
    suite.charge("nina", 500_000).await;
    suite.stop_wallet().await;
    let err = suite.pay(&token, &id, "k").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    suite.restart_wallet().await;
    let payment_id: uuid::Uuid = sqlx::query_scalar("SELECT payment_id FROM payments WHERE reservation_id = $1::uuid")
        .bind(&id)
        .fetch_one(&suite.pool("reservation").await)
        .await
        .unwrap();
    // Something else voids the saga's debit key first (an operator's compensation).
    let mut internal = WalletInternalServiceClient::new(suite.wallet_internal_channel());
    let void = RefundRequest {
        user_id: "nina".into(),
        amount: 90_000,
        idempotency_key: format!("payment:{payment_id}:refund"),
        debit_idempotency_key: format!("payment:{payment_id}:debit"),
    };
    assert_eq!(internal.refund(void).await.unwrap_err().code(), Code::NotFound);

    let err = suite.pay(&token, &id, "k").await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::FailedPrecondition, Some("RESERVATION_NOT_HELD")));
    assert_eq!(suite.payment_status(&id).await, "FAILED");
    assert_eq!(suite.balance("nina").await, 500_000, "nothing taken");
    assert_eq!(
        suite.seat_status_eventually(&token, &schedule_id, 34, SeatStatus::Available as i32).await,
        SeatStatus::Available as i32,
        "the seat is free again"
    );
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
}

/// Issue #12, item 2: the recovery worker stops after PAYMENT_MAX_ATTEMPTS tries and the
/// payment is reported as needing a person.
#[sqlx::test(migrations = false)]
async fn recovery_gives_up_after_its_attempts_and_says_a_person_is_needed(_p: PgPoolOptions, db: PgConnectOptions) {
    let opts = SuiteOptions {
        recovery_interval: std::time::Duration::from_millis(50),
        payment_lease: chrono::Duration::milliseconds(50),
        payment_max_attempts: 3,
        ..SuiteOptions::default()
    };
    let mut suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("olga", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 35).await;
    suite.charge("olga", 90_000).await;
    suite.stop_wallet().await;
    let err = suite.pay(&token, &id, "k").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let attempts = || async {
        sqlx::query_scalar::<_, i32>("SELECT attempts FROM payments WHERE reservation_id = $1::uuid")
            .bind(&id)
            .fetch_one(&suite.pool("reservation").await)
            .await
            .unwrap()
    };
    assert_eq!(e2e::eventually(3, attempts).await, 3);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(attempts().await, 3, "no fourth try");
    suite.restart_wallet().await;
    let report = suite.reconcile().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.needs_attention.len(), 1, "{report}");
    // The person (or the user) retries: the payment resumes and settles.
    suite.pay(&token, &id, "k").await.unwrap();
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
}

/// Issue #12, item 3: one admission buys one seat, even when ten payments start at once.
#[sqlx::test(migrations = false)]
async fn one_admission_pays_for_one_seat_even_all_at_once(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("pat", &concert_id).await;
    suite.charge("pat", 5_000_000).await;
    let mut ids = Vec::new();
    for seat in 20..24 {
        ids.push(suite.hold(&token, &schedule_id, seat).await);
    }
    let pays = ids.iter().enumerate().map(|(i, id)| {
        let mut replica = suite.reservation(i % 2);
        let request = authed(
            &token,
            PayReservationRequest { reservation_id: id.clone(), idempotency_key: id.clone(), ..Default::default() },
        );
        async move { replica.pay_reservation(request).await }
    });
    let answers = futures::future::join_all(pays).await;
    let paid = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(paid, 1, "{answers:?}");
    for e in answers.iter().filter_map(|a| a.as_ref().err()) {
        let why = (e.code(), reason(e));
        assert!(
            why == (Code::FailedPrecondition, Some("ADMISSION_IN_USE".into()))
                // TOKEN_USED from reservation's own payments, or TOKEN_EXPIRED once the queue
                // has expired the paid token (writes check the token fresh, so whichever comes
                // first answers).
                || why == (Code::Unauthenticated, Some("TOKEN_USED".into()))
                || why == (Code::Unauthenticated, Some("TOKEN_EXPIRED".into())),
            "{e:?}"
        );
    }
    assert_eq!(suite.balance("pat").await, 5_000_000 - 120_000);
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
}

/// Issue #12, item 4: the wallet was down, the person presses Pay again from a fresh page
/// (a new key): the unfinished payment resumes at once and answers its outcome; once paid,
/// any key answers that payment instead of a token error.
#[sqlx::test(migrations = false)]
async fn a_retry_with_a_new_key_resumes_the_payment_and_learns_its_outcome(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("quinn", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 36).await;
    suite.charge("quinn", 100_000).await;
    suite.stop_wallet().await;
    let err = suite.pay(&token, &id, "first-page").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    suite.restart_wallet().await;
    let started = std::time::Instant::now();
    let paid = suite.pay(&token, &id, "second-page").await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "no wait for the 30 s lease");
    assert_eq!(paid.balance_after, 10_000);
    assert!(suite.token_expired_eventually(&token).await);
    let again = suite.pay(&token, &id, "third-page").await.unwrap();
    assert_eq!(again.payment, paid.payment);
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
}
