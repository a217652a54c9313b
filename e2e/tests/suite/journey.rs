//! The whole booking journey across the four services.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use concert_proto::concert::{
    catalog::v1::{ListAvailableDatesRequest, ListConcertsRequest, ListSeatsRequest, SeatStatus},
    reservation::v1::{HoldSeatRequest, PayReservationRequest, ReservationStatus},
    wallet::v1::{ListTransactionsRequest, TransactionKind},
};
use e2e::{Suite, SuiteOptions, as_user, authed};
use platform::status::reason;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::Code;

#[sqlx::test(migrations = false)]
async fn join_hold_charge_pay_and_the_seat_is_sold(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(7)).await;
    let (mut catalog, mut reservation) = (suite.catalog(), suite.reservation(0));

    // Join the queue and get admitted.
    let token = suite.active_token("alice", &concert_id).await;

    // Browse.
    let concerts = catalog.list_concerts(ListConcertsRequest::default()).await.unwrap().into_inner().concerts;
    assert!(concerts.iter().any(|c| c.concert_id == concert_id));
    let dates = catalog
        .list_available_dates(authed(&token, ListAvailableDatesRequest { concert_id: concert_id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .schedules;
    assert_eq!(dates.len(), 1);
    assert_eq!((dates[0].total_seats, dates[0].available_seats), (50, 50));
    let seats = catalog
        .list_seats(authed(&token, ListSeatsRequest { schedule_id: schedule_id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .seats;
    assert_eq!(seats.len(), 50);
    assert!(seats.iter().all(|s| s.status == SeatStatus::Available as i32));
    assert_eq!((seats[0].seat_number, seats[0].grade.as_str(), seats[0].price), (1, "VIP", 150_000));

    // Hold seat 7.
    let held = reservation
        .hold_seat(authed(
            &token,
            HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 7, ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!((held.status, held.price, held.user_id.as_str()), (ReservationStatus::Held as i32, 150_000, "alice"));
    // The seat map shows the hold within the seat-status cache TTL.
    let shown = Some(suite.seat_status_eventually(&token, &schedule_id, 7, SeatStatus::Held as i32).await);
    assert_eq!(shown, Some(SeatStatus::Held as i32), "seat map lags at most twice {:?}", e2e::SEAT_STATUS_CACHE);

    // Charge and pay.
    suite.charge("alice", 200_000).await;
    let paid = reservation
        .pay_reservation(authed(
            &token,
            PayReservationRequest {
                reservation_id: held.reservation_id.clone(),
                idempotency_key: "pay-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.balance_after, 50_000);
    assert_eq!(paid.payment.as_ref().unwrap().amount, 150_000);
    assert_eq!(paid.reservation.unwrap().status, ReservationStatus::Confirmed as i32);

    // The seat is sold, the balance reduced, the ledger shows the debit.
    assert_eq!(suite.balance("alice").await, 50_000);
    let ledger = suite
        .wallet()
        .list_transactions(as_user("alice", ListTransactionsRequest { user_id: String::new(), limit: 10 }))
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(ledger[0].kind, TransactionKind::Debit as i32);
    assert_eq!(ledger[0].amount, 150_000);

    // The paid token opens nothing any more: reservation refuses it at once, and the
    // saga's last step (batched, right after the answer) expires it in the queue.
    assert!(suite.token_expired_eventually(&token).await, "paying expires the token");
    let err = reservation
        .hold_seat(authed(
            &token,
            HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 8, ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Read-only catalog calls notice within the token-cache TTL.
    let mut refused = None;
    for _ in 0..40 {
        if let Err(e) = catalog.list_seats(authed(&token, ListSeatsRequest { schedule_id: schedule_id.clone() })).await
        {
            refused = Some(e.code());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(refused, Some(Code::Unauthenticated), "catalog drops the paid token within {:?}", e2e::TOKEN_CACHE_TTL);

    // Another user sees the seat SOLD and cannot hold it.
    let bob = suite.active_token("bob", &concert_id).await;
    let sold = suite.seat_status_eventually(&bob, &schedule_id, 7, SeatStatus::Sold as i32).await;
    assert_eq!(sold, SeatStatus::Sold as i32);
    let dates = catalog
        .list_available_dates(authed(&bob, ListAvailableDatesRequest { concert_id }))
        .await
        .unwrap()
        .into_inner()
        .schedules;
    assert_eq!(dates[0].available_seats, 49);
    let err = reservation
        .hold_seat(authed(&bob, HoldSeatRequest { schedule_id, seat_number: 7, ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::AlreadyExists, Some("SEAT_UNAVAILABLE")));
}

/// Issue #12, item 10: a concert with more dates than one occupancy lookup may name (1,000)
/// still lists them all, instead of INTERNAL.
#[sqlx::test(migrations = false)]
async fn a_concert_with_over_a_thousand_dates_lists_them_all(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("marathon", &concert_id).await;
    suite.hold(&token, &schedule_id, 7).await;
    // 1,000 more dates written straight into the catalog's tables (AddSchedule one by one
    // would only make the test slow).
    sqlx::query(
        "WITH added AS (
             INSERT INTO schedules (schedule_id, concert_id, starts_at, total_seats)
             SELECT gen_random_uuid(), $1::uuid, now() + make_interval(days => 2 + n), 50
             FROM generate_series(1, 1000) AS n
             RETURNING schedule_id)
         INSERT INTO seats (schedule_id, seat_number, grade, price)
         SELECT schedule_id, s, 'R', 100000 FROM added, generate_series(1, 50) AS s",
    )
    .bind(&concert_id)
    .execute(&suite.pool("catalog").await)
    .await
    .unwrap();
    let dates = suite
        .catalog()
        .list_available_dates(authed(&token, ListAvailableDatesRequest { concert_id }))
        .await
        .unwrap()
        .into_inner()
        .schedules;
    assert_eq!(dates.len(), 1_001);
    assert_eq!(dates.iter().find(|d| d.schedule_id == schedule_id).unwrap().available_seats, 49);
}

/// The prod overlay puts PgBouncer (transaction pooling) between every replica and
/// PostgreSQL. Every statement the suite runs must work there: no named prepared statement,
/// session setting or session lock may outlive its transaction. Forty people join, hold,
/// charge and pay concurrently through two reservation replicas, and the books reconcile.
#[sqlx::test(migrations = false)]
async fn the_journey_and_the_books_hold_through_pgbouncer(_p: PgPoolOptions, db: PgConnectOptions) {
    let opts = SuiteOptions { pgbouncer: true, reservation_replicas: 2, ..SuiteOptions::default() };
    let suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(7)).await;
    let people = (1..=40u32).map(|n| {
        let (suite, concert_id, schedule_id) = (&suite, &concert_id, &schedule_id);
        async move {
            let user = format!("fan-{n}");
            let token = suite.active_token(&user, concert_id).await;
            let id = suite.hold(&token, schedule_id, n).await;
            suite.charge(&user, 300_000).await;
            let paid = suite.pay(&token, &id, "once").await.unwrap();
            assert_eq!(paid.balance_after, 300_000 - paid.payment.unwrap().amount);
        }
    });
    futures::future::join_all(people).await;
    let report = suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
    assert_eq!((report.payments, report.paid, report.sold_seats), (40, 40, 40), "{report}");
    // Through both replicas' pools: each transaction ran on whatever server connection the
    // pooler gave it.
    let mut reservation = suite.reservation(1);
    let seat = reservation
        .hold_seat(authed(
            &suite.active_token("late", &concert_id).await,
            HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 1, ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(seat.code(), Code::AlreadyExists, "seat 1 is sold");
}
