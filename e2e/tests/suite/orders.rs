//! Issue #29: several seats in one payment, and a ticket the buyer can give back. Every test
//! ends with the cross-service reconciliation: whatever happened, every won and every seat
//! is accounted for.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{sync::Arc, time::Duration};

use concert_proto::concert::{
    catalog::v1::SeatStatus,
    reservation::v1::{ListReservationsRequest, PaymentStatus, ReservationStatus},
    wallet::v1::TransactionKind,
};
use e2e::{Suite, SuiteOptions, as_user};
use platform::{
    clock::ManualClock,
    status::{reason, violated_field},
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::Code;

const SETTLE: Duration = Duration::from_secs(10);

/// `user`'s debits, newest first, in won.
async fn debits(suite: &Suite, user: &str) -> Vec<i64> {
    let kinds = suite.ledger_kinds(user).await;
    kinds.into_iter().filter(|(k, _)| *k == TransactionKind::Debit as i32).map(|(_, a)| a).collect()
}

async fn status(suite: &Suite, user: &str, id: &str) -> i32 {
    suite.reservation_of(user, id).await.status
}

#[sqlx::test(migrations = false)]
async fn an_order_of_four_is_one_payment_through_two_replicas(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let token = suite.active_token("ann", &concert_id).await;
    // Two VIP (150,000), one R (120,000), one S (90,000): 510,000 won.
    let mut order = Vec::new();
    for (i, seat) in [1u32, 2, 20, 40].into_iter().enumerate() {
        let mut client = suite.reservation(i % 2);
        let hold = concert_proto::concert::reservation::v1::HoldSeatRequest {
            schedule_id: schedule_id.clone(),
            seat_number: seat,
            ..Default::default()
        };
        let held = client.hold_seat(e2e::authed(&token, hold)).await.unwrap().into_inner().reservation.unwrap();
        order.push(held.reservation_id);
    }
    suite.charge("ann", 600_000).await;

    // The contract's refusals, each naming the field.
    let mut five = order.clone();
    five.push(uuid::Uuid::new_v4().to_string());
    let twice = vec![order[0].clone(), order[0].clone()];
    for (bad, why) in [(five, "more than the hold limit"), (twice, "a duplicate")] {
        let err = suite.pay_order(0, &token, &bad, "bad").await.unwrap_err();
        assert_eq!(
            (err.code(), violated_field(&err).as_deref()),
            (Code::InvalidArgument, Some("reservation_ids")),
            "{why}"
        );
    }
    let both = concert_proto::concert::reservation::v1::PayReservationRequest {
        reservation_id: order[0].clone(),
        reservation_ids: order.clone(),
        idempotency_key: "both".into(),
    };
    let err = suite.reservation(0).pay_reservation(e2e::authed(&token, both)).await.unwrap_err();
    assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("reservation_ids")));
    assert_eq!(suite.balance("ann").await, 600_000, "a refused request takes nothing");

    let paid = suite.pay_order(1, &token, &order, "order-1").await.unwrap();
    let payment = paid.payment.unwrap();
    assert_eq!((payment.amount, payment.status), (510_000, PaymentStatus::Paid as i32));
    assert_eq!(payment.reservation_ids, order, "the payment names every seat, in the request's order");
    assert_eq!(paid.reservations.len(), 4);
    assert!(paid.reservations.iter().all(|r| r.status == ReservationStatus::Confirmed as i32));
    assert_eq!(paid.reservation.unwrap().reservation_id, order[0]);
    assert_eq!(paid.balance_after, 90_000);
    assert_eq!(debits(&suite, "ann").await, vec![510_000], "one debit of the sum");
    // One admission makes one payment, however many seats: the token is spent.
    assert!(suite.token_expired_eventually(&token).await);
    // The same order again, from either replica and with any key, answers that payment.
    let again = suite.pay_order(0, &token, &order, "a-fresh-page").await.unwrap();
    assert_eq!(again.payment.unwrap().payment_id, payment.payment_id);
    assert_eq!(debits(&suite, "ann").await, vec![510_000]);
    let report = suite.assert_books_settle(SETTLE).await;
    assert_eq!((report.paid, report.sold_seats), (1, 4));
}

#[sqlx::test(migrations = false)]
async fn an_order_with_one_expired_hold_pays_nothing(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    let opts = SuiteOptions {
        clock: Arc::new(clock.clone()),
        hold_ttl: chrono::Duration::seconds(300),
        ..SuiteOptions::default()
    };
    let suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let token = suite.active_token("bea", &concert_id).await;
    let early = suite.hold(&token, &schedule_id, 31).await;
    clock.advance(chrono::Duration::seconds(200));
    let late = [suite.hold(&token, &schedule_id, 32).await, suite.hold(&token, &schedule_id, 33).await];
    clock.advance(chrono::Duration::seconds(150)); // the first hold ran out 50 s ago
    suite.charge("bea", 1_000_000).await;

    let order = vec![early.clone(), late[0].clone(), late[1].clone()];
    let err = suite.pay_order(0, &token, &order, "all").await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::FailedPrecondition, Some("HOLD_EXPIRED")));
    assert_eq!(suite.balance("bea").await, 1_000_000, "all or nothing: nothing was taken");
    assert_eq!(status(&suite, "bea", &early).await, ReservationStatus::Expired as i32);
    for id in &late {
        assert_eq!(status(&suite, "bea", id).await, ReservationStatus::Held as i32, "the live holds stay");
    }
    // The seats still held can be paid together.
    let paid = suite.pay_order(0, &token, &late, "the-rest").await.unwrap();
    assert_eq!(paid.payment.unwrap().amount, 180_000);
    suite.assert_books_settle(SETTLE).await;
}

#[sqlx::test(migrations = false)]
async fn a_double_click_on_an_order_pays_once(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let token = suite.active_token("cid", &concert_id).await;
    let order = vec![suite.hold(&token, &schedule_id, 21).await, suite.hold(&token, &schedule_id, 22).await];
    suite.charge("cid", 240_000).await; // exactly the price: a second debit would be refused
    // Two clicks with the same key and two fresh pages with keys of their own, across both
    // replicas, all at once.
    let clicks = ["k", "k", "page-2", "page-3"].into_iter().enumerate().map(|(i, key)| {
        let (suite, token, order) = (&suite, token.clone(), order.clone());
        async move { suite.pay_order(i % 2, &token, &order, key).await }
    });
    let answers = futures::future::join_all(clicks).await;
    let paid: Vec<String> =
        answers.iter().filter_map(|a| a.as_ref().ok()).map(|a| a.payment.clone().unwrap().payment_id).collect();
    assert!(!paid.is_empty(), "{answers:?}");
    assert!(paid.iter().all(|id| *id == paid[0]), "one payment: {paid:?}");
    for e in answers.iter().filter_map(|a| a.as_ref().err()) {
        // A click that met the payment under way is told to retry; nothing else.
        assert!(matches!(e.code(), Code::Aborted | Code::FailedPrecondition), "{e:?}");
    }
    assert_eq!(debits(&suite, "cid").await, vec![240_000]);
    assert_eq!(suite.balance("cid").await, 0);
    suite.assert_books_settle(SETTLE).await;
}

#[sqlx::test(migrations = false)]
async fn paying_releases_the_admissions_other_holds_and_a_refusal_releases_the_order(
    _p: PgPoolOptions,
    db: PgConnectOptions,
) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let token = suite.active_token("dee", &concert_id).await;
    let held: Vec<String> = futures::future::join_all((41..=44).map(|s| suite.hold(&token, &schedule_id, s))).await;
    // Too little money for the order: every hold of the order is released (compensation),
    // the hold outside it stays.
    suite.charge("dee", 100_000).await;
    let err = suite.pay_order(0, &token, &held[..3], "short").await.unwrap_err();
    assert_eq!(reason(&err).as_deref(), Some("INSUFFICIENT_BALANCE"));
    for id in &held[..3] {
        assert_eq!(status(&suite, "dee", id).await, ReservationStatus::Cancelled as i32);
    }
    assert_eq!(status(&suite, "dee", &held[3]).await, ReservationStatus::Held as i32);

    // After the top-up she holds two more and pays for one of her three: the other two go
    // back on sale at once, and the spent token (or none) may still release them: done.
    suite.charge("dee", 200_000).await;
    let more = [suite.hold(&token, &schedule_id, 45).await, suite.hold(&token, &schedule_id, 46).await];
    let other = suite.active_token("eli", &concert_id).await;
    suite.pay_order(0, &token, &more[..1], "one").await.unwrap();
    // Released right after the answer (the completion step, batched): on the seat map that
    // another buyer has open within a second.
    let paid_at = std::time::Instant::now();
    let available = SeatStatus::Available as i32;
    for seat in [44, 46] {
        assert_eq!(suite.seat_status_eventually(&other, &schedule_id, seat, available).await, available);
    }
    assert!(paid_at.elapsed() < Duration::from_secs(1), "back on sale after {:?}", paid_at.elapsed());
    for id in [&held[3], &more[1]] {
        assert_eq!(status(&suite, "dee", id).await, ReservationStatus::Cancelled as i32, "released on payment");
        let again = suite.cancel_as("dee", id).await.unwrap();
        assert_eq!(again.status, ReservationStatus::Cancelled as i32);
    }
    // Someone else can hold a released seat right away.
    suite.hold(&other, &schedule_id, 46).await;
    suite.assert_books_settle(SETTLE).await;
}

#[sqlx::test(migrations = false)]
async fn a_ticket_given_back_is_refunded_once_and_sold_again(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let token = suite.active_token("fay", &concert_id).await;
    let order = vec![suite.hold(&token, &schedule_id, 3).await, suite.hold(&token, &schedule_id, 23).await];
    suite.charge("fay", 300_000).await;
    let paid = suite.pay_order(0, &token, &order, "order").await.unwrap();
    let payment_id = paid.payment.unwrap().payment_id;
    assert_eq!(suite.balance("fay").await, 30_000);

    // "My tickets" carries what the page shows, without a call per row.
    let mine = suite
        .reservation(1)
        .list_reservations(as_user("fay", ListReservationsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .reservations;
    assert_eq!(mine.len(), 2);
    for t in &mine {
        assert_eq!((t.concert_title.as_str(), t.venue.as_str()), ("Test Concert", "Hall"));
        assert_eq!(t.payment_id, payment_id);
        assert_eq!(t.concert_id, concert_id);
        assert!(t.starts_at.is_some() && t.refundable_until.is_some(), "{t:?}");
    }
    let grades: Vec<&str> = mine.iter().map(|t| t.grade.as_str()).collect();
    assert!(grades.contains(&"VIP") && grades.contains(&"R"), "{grades:?}");

    // A stranger cannot give it back; the owner can, with the access token alone.
    let err = suite.cancel_as("gus", &order[0]).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::PermissionDenied, Some("NOT_OWNER")));
    let back = suite.cancel_as("fay", &order[0]).await.unwrap();
    assert_eq!(back.status, ReservationStatus::Refunded as i32);
    assert_eq!(suite.balance("fay").await, 180_000, "the VIP seat's 150,000 won are back");
    let again = suite.cancel_as("fay", &order[0]).await.unwrap();
    assert_eq!(again.status, ReservationStatus::Refunded as i32, "the same outcome");
    assert_eq!(suite.balance("fay").await, 180_000, "refunded once");
    assert_eq!(status(&suite, "fay", &order[1]).await, ReservationStatus::Confirmed as i32, "the other seat is kept");

    // The seat is on sale again: gus buys it; it has one live owner.
    let gus = suite.active_token("gus", &concert_id).await;
    let resold = suite.hold(&gus, &schedule_id, 3).await;
    suite.charge("gus", 150_000).await;
    suite.pay(&gus, &resold, "gus").await.unwrap();
    let report = suite.assert_books_settle(SETTLE).await;
    assert_eq!((report.sold_seats, report.given_back), (2, 1));
}

#[sqlx::test(migrations = false)]
async fn a_ticket_cannot_be_given_back_after_the_deadline(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    // The show starts in 23 hours; tickets can be given back until 24 hours before.
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::hours(23)).await;
    let token = suite.active_token("hal", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 35).await;
    suite.charge("hal", 90_000).await;
    suite.pay(&token, &id, "k").await.unwrap();
    let err = suite.cancel_as("hal", &id).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::FailedPrecondition, Some("REFUND_WINDOW_CLOSED")));
    assert_eq!(suite.balance("hal").await, 0);
    assert_eq!(status(&suite, "hal", &id).await, ReservationStatus::Confirmed as i32);
    suite.assert_books_settle(SETTLE).await;
}

/// A give-back of a seat races buyers trying to take it: whoever gets it, the seat has one
/// live owner and the money adds up.
#[sqlx::test(migrations = false)]
async fn a_give_back_racing_buyers_of_the_seat_leaves_one_owner(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let owner = suite.active_token("ida", &concert_id).await;
    let id = suite.hold(&owner, &schedule_id, 12).await;
    suite.charge("ida", 120_000).await;
    suite.pay(&owner, &id, "k").await.unwrap();
    let mut buyers = Vec::new();
    for i in 0..4 {
        buyers.push(suite.active_token(&format!("buyer-{i}"), &concert_id).await);
    }
    for i in 0..4 {
        suite.charge(&format!("buyer-{i}"), 120_000).await;
    }
    let give_back = async { suite.cancel_as("ida", &id).await.unwrap() };
    let buy = |i: usize| {
        let (suite, token, schedule_id) = (&suite, buyers[i].clone(), schedule_id.clone());
        async move {
            // Keep trying until the seat is ours or someone else's for good.
            for _ in 0..200 {
                let hold = concert_proto::concert::reservation::v1::HoldSeatRequest {
                    schedule_id: schedule_id.clone(),
                    seat_number: 12,
                    ..Default::default()
                };
                if let Ok(h) = suite.reservation(i % 2).hold_seat(e2e::authed(&token, hold)).await {
                    let h = h.into_inner().reservation.unwrap();
                    return suite.pay(&token, &h.reservation_id, "k").await.is_ok();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    let (back, bought) = tokio::join!(give_back, futures::future::join_all((0..4).map(buy)));
    assert_eq!(back.status, ReservationStatus::Refunded as i32);
    assert_eq!(bought.iter().filter(|b| **b).count(), 1, "exactly one buyer got the seat: {bought:?}");
    assert_eq!(suite.balance("ida").await, 120_000);
    let report = suite.assert_books_settle(SETTLE).await;
    assert_eq!((report.sold_seats, report.given_back), (1, 1));
}
