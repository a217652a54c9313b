//! Holding seats: races, expiry, authorisation and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::sync::Arc;

use concert_proto::concert::{
    catalog::v1::{ListAvailableDatesRequest, ListSeatsRequest, SeatStatus},
    queue::v1::IssueTokenRequest,
    reservation::v1::{
        CancelReservationRequest, GetReservationRequest, HoldSeatRequest, ListReservationsRequest,
        PayReservationRequest, ReservationStatus,
    },
};
use e2e::{Suite, SuiteOptions, as_user, authed};
use platform::{
    clock::ManualClock,
    status::{reason, violated_field},
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::{Code, Request};

/// A hold of `seat_number` or, when it is taken, the first free of `alternatives`.
fn or_next(schedule_id: &str, seat_number: u32, alternatives: Vec<u32>) -> HoldSeatRequest {
    HoldSeatRequest {
        schedule_id: schedule_id.into(),
        seat_number,
        alternative_seat_numbers: alternatives,
        ..Default::default()
    }
}

fn hold(schedule_id: &str, seat_number: u32) -> HoldSeatRequest {
    HoldSeatRequest { schedule_id: schedule_id.into(), seat_number, ..Default::default() }
}

/// `n` people of `concert_id` at once, alternating between the two reservation replicas,
/// person `i` sending `request(i)`: the seats won (with their prices, in seat order), every
/// other answer checked to be ALREADY_EXISTS (SEAT_UNAVAILABLE).
async fn crowd(
    suite: &Suite,
    concert_id: &str,
    n: usize,
    request: impl Fn(usize) -> HoldSeatRequest,
) -> Vec<(u32, i64)> {
    let racers: Vec<String> = futures::future::join_all(
        (0..n).map(|i| async move { suite.active_token(&format!("racer-{i}"), concert_id).await }),
    )
    .await;
    let attempts = racers.iter().enumerate().map(|(i, token)| {
        let mut client = suite.reservation(i % 2);
        let (token, request) = (token.clone(), request(i));
        async move { client.hold_seat(authed(&token, request)).await }
    });
    let mut won = Vec::new();
    for answer in futures::future::join_all(attempts).await {
        match answer {
            Ok(r) => won.extend(r.get_ref().reservation.as_ref().map(|h| (h.seat_number, h.price))),
            Err(e) => {
                assert_eq!((e.code(), reason(&e).as_deref()), (Code::AlreadyExists, Some("SEAT_UNAVAILABLE")), "{e:?}");
            }
        }
    }
    won.sort_unstable();
    won
}

#[sqlx::test(migrations = false)]
async fn one_seat_two_replicas_many_racers_exactly_one_winner(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let mut tokens = Vec::new();
    for i in 0..20 {
        tokens.push(suite.active_token(&format!("racer-{i}"), &concert_id).await);
    }
    // 200 concurrent attempts on seat 13, alternating between the two replicas.
    let attempts = (0..200).map(|i| {
        let mut client = suite.reservation(i % 2);
        let token = tokens[i % tokens.len()].clone();
        let schedule_id = schedule_id.clone();
        async move { client.hold_seat(authed(&token, hold(&schedule_id, 13))).await }
    });
    let results = futures::future::join_all(attempts).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "exactly one hold succeeds");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!((r.code(), reason(r).as_deref()), (Code::AlreadyExists, Some("SEAT_UNAVAILABLE")), "{r:?}");
    }
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE seat_number = 13 AND status = 'HELD'")
        .fetch_one(&suite.pool("reservation").await)
        .await
        .unwrap();
    assert_eq!(live, 1);
}

/// A replica remembers the seats it just held (`SEAT_TAKEN_CACHE_MS`): its next calls for
/// them are refused without an insert, so a crowd on one replica does not lose them one by
/// one against its older snapshot. Only a hint: the database decides on the other replica,
/// and the hint never sells a seat twice.
#[sqlx::test(migrations = false)]
async fn a_replica_refuses_a_seat_it_just_held_without_a_query(_p: PgPoolOptions, db: PgConnectOptions) {
    let long = std::time::Duration::from_secs(60);
    let opts = SuiteOptions { reservation_replicas: 2, seat_taken_ttl: long, ..SuiteOptions::default() };
    let suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let (alice, bob) = (suite.active_token("alice", &concert_id).await, suite.active_token("bob", &concert_id).await);
    let held = suite.hold(&alice, &schedule_id, 7).await;
    // Released through the other replica: replica 0 is not told, and its hint of the seat it
    // held still refuses it, though the database would let bob have it.
    let cancel = CancelReservationRequest { reservation_id: held };
    suite.reservation(1).cancel_reservation(as_user("alice", cancel)).await.unwrap();
    let err = suite.reservation(0).hold_seat(authed(&bob, hold(&schedule_id, 7))).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::AlreadyExists, Some("SEAT_UNAVAILABLE")));
    // The database decides on replica 1: bob gets the seat, once.
    let got = suite.reservation(1).hold_seat(authed(&bob, hold(&schedule_id, 7))).await.unwrap().into_inner();
    assert_eq!(got.reservation.unwrap().seat_number, 7);
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE seat_number = 7 AND status = 'HELD'")
        .fetch_one(&suite.pool("reservation").await)
        .await
        .unwrap();
    assert_eq!(live, 1);
}

/// "Or the next best": a taken seat's alternatives are tried in the caller's order, the first
/// free one is held, and only a list of taken seats is refused. A crowd naming the same
/// seats, on two replicas, gets each seat once.
#[sqlx::test(migrations = false)]
async fn a_taken_seat_s_alternatives_are_held_in_order(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let first = suite.active_token("first", &concert_id).await;
    let mut reservation = suite.reservation(0);
    reservation.hold_seat(authed(&first, hold(&schedule_id, 5))).await.unwrap();
    reservation.hold_seat(authed(&first, hold(&schedule_id, 9))).await.unwrap();

    let second = suite.active_token("second", &concert_id).await;
    // 5 and 9 are taken (9 is skipped on the occupancy read after 5 was lost); 7 is next.
    let held = reservation
        .hold_seat(authed(&second, or_next(&schedule_id, 5, vec![9, 7, 3])))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(held.seat_number, 7, "the first free seat in the caller's order, not the lowest");
    // On the other replica (which has seen none of it taken) as well.
    let third = suite.active_token("third", &concert_id).await;
    let held = suite
        .reservation(1)
        .hold_seat(authed(&third, or_next(&schedule_id, 7, vec![5, 9, 3])))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(held.seat_number, 3);
    let fourth = suite.active_token("fourth", &concert_id).await;
    let err = reservation.hold_seat(authed(&fourth, or_next(&schedule_id, 3, vec![5, 7, 9]))).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::AlreadyExists, Some("SEAT_UNAVAILABLE")));

    // Twenty people at once, each naming seats 20..=30 in its own order, over both replicas:
    // eleven seats, eleven holds, nobody's seat twice.
    let won = crowd(&suite, &concert_id, 20, |i| {
        let mut seats: Vec<u32> = (20..=30).collect();
        seats.rotate_left(i % 11);
        or_next(&schedule_id, seats[0], seats[1..].to_vec())
    })
    .await;
    assert_eq!(
        won.iter().map(|&(n, _)| n).collect::<Vec<_>>(),
        (20..=30).collect::<Vec<_>>(),
        "each named seat held once"
    );
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE status = 'HELD'")
        .fetch_one(&suite.pool("reservation").await)
        .await
        .unwrap();
    assert_eq!(live, 4 + 11);
}

/// A hold of `seat_number`, its `alternatives`, or else the best available of its grade.
fn or_best(schedule_id: &str, seat_number: u32, alternatives: Vec<u32>) -> HoldSeatRequest {
    HoldSeatRequest { best_available: true, ..or_next(schedule_id, seat_number, alternatives) }
}

/// The best available: the front-most free seat of the wanted seat's grade and price (never
/// another grade), and a crowd asking at once on two replicas gets every seat of the grade,
/// each once, with a refusal for the rest.
#[sqlx::test(migrations = false)]
async fn best_available_holds_the_front_most_free_seat_of_the_grade(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let first = suite.active_token("first", &concert_id).await;
    let mut reservation = suite.reservation(0);
    for seat in [1, 2] {
        reservation.hold_seat(authed(&first, hold(&schedule_id, seat))).await.unwrap();
    }
    let held_seat = |r: tonic::Response<concert_proto::concert::reservation::v1::HoldSeatResponse>| {
        r.into_inner().reservation.unwrap()
    };

    // 1 and 2 are held: the named next pick (7) first, then the front-most free VIP seat.
    let second = suite.active_token("second", &concert_id).await;
    let held = held_seat(reservation.hold_seat(authed(&second, or_best(&schedule_id, 1, vec![2, 7]))).await.unwrap());
    assert_eq!((held.seat_number, held.price), (7, 150_000), "a named pick before the best available");
    let held = held_seat(reservation.hold_seat(authed(&second, or_best(&schedule_id, 2, vec![]))).await.unwrap());
    assert_eq!((held.seat_number, held.price), (3, 150_000), "the front-most free seat of the grade");
    // On the other replica, which has seen none of it taken.
    let held =
        held_seat(suite.reservation(1).hold_seat(authed(&second, or_best(&schedule_id, 9, vec![]))).await.unwrap());
    assert_eq!(held.seat_number, 9, "the seat wanted, when free, whatever is in front of it");

    // The R grade (11..=30, 120,000 won) is untouched by the VIP holds: 40 people at once,
    // over both replicas, all wanting seat 11 or the best available.
    let won = crowd(&suite, &concert_id, 40, |_| or_best(&schedule_id, 11, vec![])).await;
    assert_eq!(won, (11..=30).map(|n| (n, 120_000)).collect::<Vec<_>>(), "every R seat held once, no other grade");

    // Every VIP seat taken: the best available does not spill into another grade or price.
    for seat in [4, 5, 6, 8, 10] {
        let token = suite.active_token(&format!("vip-{seat}"), &concert_id).await;
        reservation.hold_seat(authed(&token, hold(&schedule_id, seat))).await.unwrap();
    }
    let late = suite.active_token("late", &concert_id).await;
    for replica in [0, 1] {
        let err =
            suite.reservation(replica).hold_seat(authed(&late, or_best(&schedule_id, 1, vec![]))).await.unwrap_err();
        assert_eq!((err.code(), reason(&err).as_deref()), (Code::AlreadyExists, Some("SEAT_UNAVAILABLE")));
    }
    let held = held_seat(reservation.hold_seat(authed(&late, or_best(&schedule_id, 31, vec![]))).await.unwrap());
    assert_eq!((held.seat_number, held.price), (31, 90_000));
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE status = 'HELD'")
        .fetch_one(&suite.pool("reservation").await)
        .await
        .unwrap();
    assert_eq!(live, 10 + 20 + 1, "each hold answered is one live hold");
}

#[sqlx::test(migrations = false)]
async fn an_expired_hold_frees_the_seat_and_cannot_be_paid(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    let opts = SuiteOptions {
        clock: Arc::new(clock.clone()),
        hold_ttl: chrono::Duration::seconds(5),
        ..SuiteOptions::default()
    };
    let suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let (alice, bob) = (suite.active_token("alice", &concert_id).await, suite.active_token("bob", &concert_id).await);
    let mut reservation = suite.reservation(0);
    let mut catalog = suite.catalog();

    let held =
        reservation.hold_seat(authed(&alice, hold(&schedule_id, 20))).await.unwrap().into_inner().reservation.unwrap();
    let err = reservation.hold_seat(authed(&bob, hold(&schedule_id, 20))).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    clock.advance(chrono::Duration::seconds(6));
    // The seat is free at once (expiry is checked on read), before any sweep.
    let seats = catalog.list_seats(authed(&bob, ListSeatsRequest { schedule_id: schedule_id.clone() })).await.unwrap();
    assert_eq!(seats.into_inner().seats[19].status, SeatStatus::Available as i32);
    let dates = catalog.list_available_dates(authed(&bob, ListAvailableDatesRequest { concert_id })).await.unwrap();
    assert_eq!(dates.into_inner().schedules[0].available_seats, 50);

    // Alice's expired hold cannot be paid.
    suite.charge("alice", 500_000).await;
    let err = reservation
        .pay_reservation(authed(
            &alice,
            PayReservationRequest {
                reservation_id: held.reservation_id.clone(),
                idempotency_key: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::FailedPrecondition, Some("HOLD_EXPIRED")));
    assert_eq!(suite.balance("alice").await, 500_000, "nothing debited");

    // Bob takes the seat.
    let bobs =
        reservation.hold_seat(authed(&bob, hold(&schedule_id, 20))).await.unwrap().into_inner().reservation.unwrap();
    assert_eq!(bobs.status, ReservationStatus::Held as i32);
    let old = reservation
        .get_reservation(as_user(
            "alice",
            GetReservationRequest { reservation_id: held.reservation_id, user_id: String::new() },
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(old.status, ReservationStatus::Expired as i32);
}

#[sqlx::test(migrations = false)]
async fn the_sweeper_marks_expired_holds(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    let opts = SuiteOptions {
        clock: Arc::new(clock.clone()),
        hold_ttl: chrono::Duration::seconds(5),
        ..SuiteOptions::default()
    };
    let suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let alice = suite.active_token("alice", &concert_id).await;
    for seat in 1..=3 {
        suite.reservation(0).hold_seat(authed(&alice, hold(&schedule_id, seat))).await.unwrap();
    }
    clock.advance(chrono::Duration::seconds(6));
    let pool = suite.pool("reservation").await;
    let mut expired = 0;
    for _ in 0..100 {
        expired = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM reservations WHERE status = 'EXPIRED'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if expired == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(expired, 3, "the sweeper released every expired hold");
}

#[sqlx::test(migrations = false)]
async fn protected_calls_need_an_active_token(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { max_active: 1, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let _first = suite.active_token("first", &concert_id).await;
    let waiting = suite
        .queue()
        .issue_token(as_user("second", IssueTokenRequest { user_id: String::new(), concert_id: concert_id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .token;
    e2e::register_token(&waiting, "second");
    let mut reservation = suite.reservation(0);
    let mut catalog = suite.catalog();

    let err = reservation.hold_seat(Request::new(hold(&schedule_id, 1))).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::Unauthenticated, Some("ACCESS_TOKEN_MISSING")));
    let err = reservation.hold_seat(as_user("second", hold(&schedule_id, 1))).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::Unauthenticated, Some("TOKEN_MISSING")));
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = reservation.hold_seat(authed(&unknown, hold(&schedule_id, 1))).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::Unauthenticated, Some("TOKEN_UNKNOWN")));
    let err = reservation.hold_seat(authed("garbage", hold(&schedule_id, 1))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = reservation.hold_seat(authed(&waiting, hold(&schedule_id, 1))).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::PermissionDenied, Some("TOKEN_WAITING")));
    let err = catalog.list_seats(authed(&waiting, ListSeatsRequest { schedule_id })).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err =
        catalog.list_available_dates(as_user("second", ListAvailableDatesRequest { concert_id })).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::Unauthenticated, Some("TOKEN_MISSING")));
}

#[sqlx::test(migrations = false)]
async fn bad_input_is_refused_with_the_field_named(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let mut reservation = suite.reservation(0);
    let mut catalog = suite.catalog();

    for seat in [0, 51, u32::MAX] {
        let err = reservation.hold_seat(authed(&token, hold(&schedule_id, seat))).await.unwrap_err();
        assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("seat_number")));
    }
    // Alternatives out of range, repeated (the seat wanted included), or more than ten.
    for alternatives in [vec![2, 0], vec![51], vec![2, 3, 2], vec![1], (2..=12).collect()] {
        let err = reservation
            .hold_seat(authed(&token, or_next(&schedule_id, 1, alternatives.clone())))
            .await
            .expect_err(&format!("{alternatives:?}"));
        assert_eq!(
            (err.code(), violated_field(&err).as_deref()),
            (Code::InvalidArgument, Some("alternative_seat_numbers")),
            "{alternatives:?}"
        );
    }
    let err = reservation.hold_seat(authed(&token, hold("not-a-uuid", 1))).await.unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("schedule_id"));
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = reservation.hold_seat(authed(&token, hold(&unknown, 1))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = catalog.list_seats(authed(&token, ListSeatsRequest { schedule_id: unknown.clone() })).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The token unlocks its own concert only, so any other id (known or not) is refused
    // without saying whether it exists.
    let err = catalog
        .list_available_dates(authed(&token, ListAvailableDatesRequest { concert_id: unknown.clone() }))
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::PermissionDenied, Some("TOKEN_WRONG_CONCERT")));
    let err = catalog
        .list_available_dates(authed(&token, ListAvailableDatesRequest { concert_id: "x".into() }))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("concert_id"));
    let err = reservation
        .pay_reservation(authed(
            &token,
            PayReservationRequest { reservation_id: "x".into(), idempotency_key: String::new(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("reservation_id"));
    let err = reservation
        .pay_reservation(authed(
            &token,
            PayReservationRequest { reservation_id: unknown, idempotency_key: String::new(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let _ = concert_id;
}

#[sqlx::test(migrations = false)]
async fn a_started_date_cannot_be_held(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    let suite = Suite::start(db, SuiteOptions { clock: Arc::new(clock.clone()), ..SuiteOptions::default() }).await;
    let (concert_id, _) = suite.seed_schedule(chrono::Duration::days(1)).await;
    // AddSchedule refuses a start in the past, so the date starts while the clock moves on.
    let past = suite.add_schedule(&concert_id, chrono::Duration::hours(1)).await;
    clock.advance(chrono::Duration::hours(2));
    let token = suite.active_token("alice", &concert_id).await;
    let err = suite.reservation(0).hold_seat(authed(&token, hold(&past, 1))).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::FailedPrecondition, Some("SCHEDULE_STARTED")));
    let dates = suite
        .catalog()
        .list_available_dates(authed(&token, ListAvailableDatesRequest { concert_id }))
        .await
        .unwrap()
        .into_inner()
        .schedules;
    assert_eq!(dates.len(), 1, "only dates that have not started are listed");
}

#[sqlx::test(migrations = false)]
async fn owners_cancel_and_read_their_reservations(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let (alice, bob) = (suite.active_token("alice", &concert_id).await, suite.active_token("bob", &concert_id).await);
    let mut reservation = suite.reservation(0);
    let held =
        reservation.hold_seat(authed(&alice, hold(&schedule_id, 5))).await.unwrap().into_inner().reservation.unwrap();
    let id = held.reservation_id.clone();

    let err = reservation
        .get_reservation(as_user("bob", GetReservationRequest { reservation_id: id.clone(), user_id: String::new() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = reservation
        .cancel_reservation(authed(&bob, CancelReservationRequest { reservation_id: id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = reservation
        .pay_reservation(authed(
            &bob,
            PayReservationRequest { reservation_id: id.clone(), idempotency_key: String::new(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let cancelled = reservation
        .cancel_reservation(authed(&alice, CancelReservationRequest { reservation_id: id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(cancelled.status, ReservationStatus::Cancelled as i32);
    let again =
        reservation.cancel_reservation(authed(&alice, CancelReservationRequest { reservation_id: id.clone() })).await;
    assert!(again.is_ok(), "cancel is idempotent");
    reservation.hold_seat(authed(&bob, hold(&schedule_id, 5))).await.expect("the seat is free again");

    let list = reservation
        .list_reservations(as_user("alice", ListReservationsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .reservations;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].status, ReservationStatus::Cancelled as i32);
    // The user is the access token's: a request naming someone else is refused.
    let err = reservation
        .list_reservations(as_user("bob", ListReservationsRequest { user_id: "alice".into(), ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::PermissionDenied, Some("USER_MISMATCH")));
}

#[sqlx::test(migrations = false)]
async fn a_released_seat_is_offered_again_within_the_taken_hint_ttl(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let (alice, bob) = (suite.active_token("alice", &concert_id).await, suite.active_token("bob", &concert_id).await);
    let (mut r0, mut r1) = (suite.reservation(0), suite.reservation(1));

    // Same replica: bob is refused (replica 0 now has a hint), alice cancels there, and
    // bob gets the seat at once.
    let held = r0.hold_seat(authed(&alice, hold(&schedule_id, 8))).await.unwrap().into_inner().reservation.unwrap();
    assert_eq!(r0.hold_seat(authed(&bob, hold(&schedule_id, 8))).await.unwrap_err().code(), Code::AlreadyExists);
    r0.cancel_reservation(authed(&alice, CancelReservationRequest { reservation_id: held.reservation_id }))
        .await
        .unwrap();
    let bobs = r0.hold_seat(authed(&bob, hold(&schedule_id, 8))).await.expect("hint cleared by the local cancel");

    // Other replica: alice is refused on replica 1 (hint there), bob cancels on replica 0;
    // replica 1 may refuse for at most the hint TTL (500 ms), then offers the seat again.
    assert_eq!(r1.hold_seat(authed(&alice, hold(&schedule_id, 8))).await.unwrap_err().code(), Code::AlreadyExists);
    let cancelled_at = std::time::Instant::now();
    let id = bobs.into_inner().reservation.unwrap().reservation_id;
    r0.cancel_reservation(authed(&bob, CancelReservationRequest { reservation_id: id })).await.unwrap();
    loop {
        match r1.hold_seat(authed(&alice, hold(&schedule_id, 8))).await {
            Ok(_) => break,
            Err(e) => assert_eq!(e.code(), Code::AlreadyExists),
        }
        assert!(
            cancelled_at.elapsed() < std::time::Duration::from_millis(1_500),
            "stale refusal outlived the hint TTL"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn a_token_unlocks_only_the_concert_whose_queue_admitted_it(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_a, schedule_a) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let (concert_b, schedule_b) = suite.seed_schedule(chrono::Duration::days(2)).await;
    let token_a = suite.active_token("alice", &concert_a).await;
    let token_b = suite.active_token("alice", &concert_b).await;
    assert_ne!(token_a, token_b, "one token per concert");
    let mut catalog = suite.catalog();
    let mut reservation = suite.reservation(0);
    let wrong = |e: tonic::Status| (e.code(), reason(&e));
    let denied = (Code::PermissionDenied, Some("TOKEN_WRONG_CONCERT".to_owned()));

    // A's token on B's dates, seat map and seats.
    let err = catalog
        .list_available_dates(authed(&token_a, ListAvailableDatesRequest { concert_id: concert_b.clone() }))
        .await
        .unwrap_err();
    assert_eq!(wrong(err), denied);
    let err =
        catalog.list_seats(authed(&token_a, ListSeatsRequest { schedule_id: schedule_b.clone() })).await.unwrap_err();
    assert_eq!(wrong(err), denied);
    let err = reservation.hold_seat(authed(&token_a, hold(&schedule_b, 1))).await.unwrap_err();
    assert_eq!(wrong(err), denied);

    // Its own concert works; a hold on A cannot be paid with B's token. (Releasing it needs no
    // queue token at all: the hold is alice's, issue #29.)
    catalog.list_seats(authed(&token_a, ListSeatsRequest { schedule_id: schedule_a.clone() })).await.unwrap();
    let held = suite.hold(&token_a, &schedule_a, 1).await;
    suite.charge("alice", 500_000).await;
    let err = suite.pay(&token_b, &held, "pay-with-b").await.unwrap_err();
    assert_eq!(wrong(err), denied);
    assert_eq!(suite.balance("alice").await, 500_000, "nothing was debited");
    suite.pay(&token_a, &held, "pay-with-a").await.unwrap();
    assert_eq!(suite.balance("alice").await, 500_000 - 150_000);
}

/// Issue #12, item 5: one user may hold at most MAX_HOLDS_PER_USER (4) seats of a concert,
/// even with many concurrent requests through two replicas; a paid, cancelled or expired
/// hold frees its place; another concert has its own limit.
#[sqlx::test(migrations = false)]
async fn a_user_holds_at_most_four_seats_of_a_concert(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let second_date = suite.add_schedule(&concert_id, chrono::Duration::days(2)).await;
    let token = suite.active_token("hoarder", &concert_id).await;
    // Twenty seats over two dates, all at once, alternating replicas.
    let attempts = (0..20u32).map(|i| {
        let mut client = suite.reservation((i % 2) as usize);
        let schedule = if i % 3 == 0 { second_date.clone() } else { schedule_id.clone() };
        let token = token.clone();
        async move { client.hold_seat(authed(&token, hold(&schedule, i + 1))).await }
    });
    let results = futures::future::join_all(attempts).await;
    let held: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.get_ref().reservation.clone().unwrap().reservation_id)
        .collect();
    assert_eq!(held.len(), 4, "{results:?}");
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!((e.code(), reason(e).as_deref()), (Code::FailedPrecondition, Some("HOLD_LIMIT")), "{e:?}");
    }
    // Cancelling one frees a place.
    let mut client = suite.reservation(0);
    client
        .cancel_reservation(authed(&token, CancelReservationRequest { reservation_id: held[0].clone() }))
        .await
        .unwrap();
    client.hold_seat(authed(&token, hold(&schedule_id, 40))).await.unwrap();
    let err = client.hold_seat(authed(&token, hold(&schedule_id, 41))).await.unwrap_err();
    assert_eq!(reason(&err).as_deref(), Some("HOLD_LIMIT"));
    // Another concert is another limit.
    let (other_concert, other_schedule) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let other_token = suite.active_token("hoarder", &other_concert).await;
    client.hold_seat(authed(&other_token, hold(&other_schedule, 1))).await.unwrap();
}

#[sqlx::test(migrations = false)]
async fn expired_holds_give_their_place_back(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    let opts = SuiteOptions {
        clock: Arc::new(clock.clone()),
        hold_ttl: chrono::Duration::seconds(5),
        max_holds_per_user: 2,
        ..SuiteOptions::default()
    };
    let suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("tess", &concert_id).await;
    suite.hold(&token, &schedule_id, 1).await;
    suite.hold(&token, &schedule_id, 2).await;
    let mut client = suite.reservation(0);
    let err = client.hold_seat(authed(&token, hold(&schedule_id, 3))).await.unwrap_err();
    assert_eq!(reason(&err).as_deref(), Some("HOLD_LIMIT"));
    // Past the hold TTL the two holds are gone, swept or not.
    clock.advance(chrono::Duration::seconds(6));
    client.hold_seat(authed(&token, hold(&schedule_id, 3))).await.unwrap();
    client.hold_seat(authed(&token, hold(&schedule_id, 4))).await.unwrap();
}

/// Issue #12, item 7: a token that left the queue is refused at once by every call that
/// writes, also on a replica that has it cached as ACTIVE.
#[sqlx::test(migrations = false)]
async fn a_token_that_left_the_queue_books_nothing_more_anywhere(_p: PgPoolOptions, db: PgConnectOptions) {
    use concert_proto::concert::queue::v1::LeaveQueueRequest;
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("uma", &concert_id).await;
    suite.charge("uma", 1_000_000).await;
    let mut b = suite.reservation(1);
    // Replica B has seen (and cached) the token.
    let held = b.hold_seat(authed(&token, hold(&schedule_id, 5))).await.unwrap().into_inner().reservation.unwrap();

    suite.queue().leave_queue(authed(&token, LeaveQueueRequest { token: token.clone() })).await.unwrap();

    // Well within TOKEN_CACHE_TTL (1 s): every write on B is refused.
    let err = b.hold_seat(authed(&token, hold(&schedule_id, 6))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = b
        .pay_reservation(authed(
            &token,
            PayReservationRequest {
                reservation_id: held.reservation_id.clone(),
                idempotency_key: "k".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // Her hold ended with her admission (issue #26): released by the replicas' admission
    // check (or, had she been quicker, by her own cancel, which needs only her access token).
    let status = ended_hold(&suite, "uma", &held.reservation_id).await;
    assert!(status == ReservationStatus::Expired as i32 || status == ReservationStatus::Cancelled as i32, "{status}");
    assert_eq!(suite.balance("uma").await, 1_000_000);
}

/// The status of `user`'s reservation `id` once it is no longer HELD (within 10 s).
async fn ended_hold(suite: &Suite, user: &str, id: &str) -> i32 {
    for _ in 0..200 {
        let status = suite.reservation_of(user, id).await.status;
        if status != ReservationStatus::Held as i32 {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{user}'s hold {id} is still HELD 10 s after its admission ended");
}

/// Issue #26: a hold lasts at most as long as the admission that placed it. A buyer who
/// walks away from a hold and leaves the waiting room gives the seat back within the sweep
/// interval, long before the hold's TTL (5 minutes here): in an on-sale rush those seats are
/// the last to sell. A buyer who pays for one seat gives back the other (as before). A hold
/// of a token still ACTIVE is kept, and a paid seat stays sold.
#[sqlx::test(migrations = false)]
async fn a_hold_ends_with_the_admission_that_placed_it(_p: PgPoolOptions, db: PgConnectOptions) {
    use concert_proto::concert::queue::v1::LeaveQueueRequest;
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..SuiteOptions::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let (ann, bob, cid) = (
        suite.active_token("ann", &concert_id).await,
        suite.active_token("bob", &concert_id).await,
        suite.active_token("cid", &concert_id).await,
    );
    let anns = suite.hold(&ann, &schedule_id, 1).await;
    let bobs_paid = suite.hold(&bob, &schedule_id, 2).await;
    let bobs_left = suite.hold(&bob, &schedule_id, 3).await;
    let cids = suite.hold(&cid, &schedule_id, 4).await;

    // Ann walks away and leaves the line; Bob pays for one of his two seats (paying ends
    // his admission); Cid is still choosing.
    suite.queue().leave_queue(authed(&ann, LeaveQueueRequest { token: ann.clone() })).await.unwrap();
    suite.charge("bob", 1_000_000).await;
    suite
        .reservation(1)
        .pay_reservation(authed(
            &bob,
            PayReservationRequest {
                reservation_id: bobs_paid.clone(),
                idempotency_key: "b".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    assert_eq!(ended_hold(&suite, "ann", &anns).await, ReservationStatus::Expired as i32);
    // Bob's other hold went with his payment (CANCELLED, the saga's rule since issue #29).
    assert_eq!(ended_hold(&suite, "bob", &bobs_left).await, ReservationStatus::Cancelled as i32);
    // Their seats are on sale again: someone else holds them (past the replica's taken-seat
    // hint, SEAT_TAKEN_CACHE_MS: 500 ms).
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let dan = suite.active_token("dan", &concert_id).await;
    suite.hold(&dan, &schedule_id, 1).await;
    suite.hold(&dan, &schedule_id, 3).await;
    // Sweeps later, the paid seat is still Bob's, and Cid, still admitted, still holds his.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (user, id, status) in
        [("bob", &bobs_paid, ReservationStatus::Confirmed), ("cid", &cids, ReservationStatus::Held)]
    {
        assert_eq!(suite.reservation_of(user, id).await.status, status as i32, "{user}");
    }
}

/// Issue #12, item 13: lists come in pages (AIP-158): `page_size` (0 = 50, at most 1,000),
/// an opaque `next_page_token`, nothing skipped or repeated, no silent cap at 1,000.
#[sqlx::test(migrations = false)]
async fn lists_come_in_pages_with_nothing_skipped_or_repeated(_p: PgPoolOptions, db: PgConnectOptions) {
    use concert_proto::concert::{catalog::v1::ListConcertsRequest, reservation::v1::ListPaymentsRequest};
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("pager", &concert_id).await;
    suite.hold(&token, &schedule_id, 1).await;
    // 1,200 older reservations of this user, written straight into reservation's table.
    sqlx::query(
        "INSERT INTO reservations (reservation_id, user_id, token, schedule_id, seat_number, price, status,
                                   held_at, expires_at, concert_id)
         SELECT gen_random_uuid(), 'pager', gen_random_uuid(), $1::uuid, 2 + n % 49, 90000, 'EXPIRED',
                now() - make_interval(mins => n), now() - make_interval(mins => n) + interval '5 minutes', $2::uuid
         FROM generate_series(1, 1200) AS n",
    )
    .bind(&schedule_id)
    .bind(&concert_id)
    .execute(&suite.pool("reservation").await)
    .await
    .unwrap();
    let mut reservation = suite.reservation(0);
    let (mut seen, mut page_token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let request = ListReservationsRequest { user_id: "pager".into(), page_size: 1_000, page_token };
        let page = reservation.list_reservations(as_user("pager", request)).await.unwrap().into_inner();
        pages += 1;
        seen.extend(page.reservations.iter().map(|r| (r.held_at.unwrap().seconds, r.reservation_id.clone())));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!((pages, seen.len()), (2, 1_201), "no silent cap at 1,000");
    let distinct: std::collections::HashSet<_> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(distinct.len(), 1_201, "nothing served twice");
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first across pages");
    let first = reservation.list_reservations(as_user("pager", ListReservationsRequest::default())).await;
    assert_eq!(first.unwrap().into_inner().reservations.len(), 50, "page_size 0 means 50");

    for (request, field) in [
        (ListReservationsRequest { user_id: "pager".into(), page_size: -1, ..Default::default() }, "page_size"),
        (
            ListReservationsRequest { user_id: "pager".into(), page_token: "forged".into(), ..Default::default() },
            "page_token",
        ),
    ] {
        let err = reservation.list_reservations(as_user("pager", request)).await.unwrap_err();
        assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some(field)));
    }
    let err = reservation
        .list_payments(as_user("pager", ListPaymentsRequest { page_size: -5, ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("page_size"));

    // Concerts: a concert created between two pages is not served on the second.
    for i in 0..3 {
        suite.seed_schedule(chrono::Duration::days(i + 2)).await;
    }
    let mut catalog = suite.catalog();
    let first =
        catalog.list_concerts(ListConcertsRequest { page_size: 2, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(first.concerts.len(), 2);
    suite.seed_schedule(chrono::Duration::days(9)).await;
    let second = catalog
        .list_concerts(ListConcertsRequest { page_size: 10, page_token: first.next_page_token })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.concerts.len(), 2, "the two older concerts, not the one created meanwhile");
    assert!(second.next_page_token.is_empty());
    let all: std::collections::HashSet<_> =
        first.concerts.iter().chain(&second.concerts).map(|c| c.concert_id.clone()).collect();
    assert_eq!(all.len(), 4);
}

/// Issue #27, item 1: page tokens are tamper-evident. A forged token (the old unsigned
/// format with a time PostgreSQL cannot hold answered INTERNAL and logged an ERROR; one in
/// range was served), an altered one, and another list's are refused with INVALID_ARGUMENT
/// naming `page_token`, anonymously too; a token one replica issued serves at another.
#[sqlx::test(migrations = false)]
async fn forged_or_altered_page_tokens_are_refused_naming_the_field(_p: PgPoolOptions, db: PgConnectOptions) {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use concert_proto::concert::{catalog::v1::ListConcertsRequest, reservation::v1::ListPaymentsRequest};
    let suite = Suite::start(db, SuiteOptions { reservation_replicas: 2, ..Default::default() }).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    suite.seed_schedule(chrono::Duration::days(2)).await;
    for seat in 1..=2 {
        let token = suite.active_token("pager", &concert_id).await;
        suite.hold(&token, &schedule_id, seat).await;
    }
    let old_far = URL_SAFE_NO_PAD.encode(format!("-9223372036854775:{}", uuid::Uuid::nil()));
    let old_in_range = URL_SAFE_NO_PAD.encode(format!("1800000000000000:{}", uuid::Uuid::nil()));

    let mut catalog = suite.catalog();
    let issued = catalog
        .list_concerts(ListConcertsRequest { page_size: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!issued.is_empty());
    let mut altered = URL_SAFE_NO_PAD.decode(&issued).unwrap();
    altered[0] ^= 0x40;
    let altered = URL_SAFE_NO_PAD.encode(altered);
    for bad in [&old_far, &old_in_range, &altered] {
        // Anonymous: ListConcerts needs no access token.
        let err =
            catalog.list_concerts(ListConcertsRequest { page_size: 1, page_token: bad.clone() }).await.unwrap_err();
        assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("page_token")), "{bad}");
    }

    let list = |page_token: String| ListReservationsRequest { user_id: "pager".into(), page_size: 1, page_token };
    let first = suite.reservation(0).list_reservations(as_user("pager", list(String::new()))).await.unwrap();
    let next = first.into_inner().next_page_token;
    let second = suite.reservation(1).list_reservations(as_user("pager", list(next.clone()))).await.unwrap();
    assert_eq!(second.into_inner().reservations.len(), 1, "a token from one replica serves at another");
    for bad in [old_far.clone(), old_in_range.clone(), issued.clone()] {
        let err = suite.reservation(1).list_reservations(as_user("pager", list(bad))).await.unwrap_err();
        assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("page_token")));
    }
    let err = suite
        .reservation(0)
        .list_payments(as_user("pager", ListPaymentsRequest { page_token: next, ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), violated_field(&err).as_deref()),
        (Code::InvalidArgument, Some("page_token")),
        "ListReservations' token is refused by ListPayments"
    );
}
