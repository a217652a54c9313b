//! Issue #30: the live seat map. CatalogService.WatchSeats sends the whole map, then the map
//! again within a second of every change, fed by reservation's NOTIFY through one upstream
//! stream per date and catalog replica; it ends with UNAVAILABLE rather than go stale.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::{Duration, Instant};

use concert_proto::concert::catalog::v1::{SeatStatus, WatchSeatsRequest, WatchSeatsResponse};
use e2e::{Suite, SuiteOptions, authed};
use platform::status::{reason, violated_field};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::{Code, Streaming};

/// How late a change may reach an open map (the bound).
const LIVE: Duration = Duration::from_secs(1);

async fn watch(suite: &Suite, token: &str, schedule_id: &str) -> Result<Streaming<WatchSeatsResponse>, tonic::Status> {
    let request = authed(token, WatchSeatsRequest { schedule_id: schedule_id.into() });
    suite.catalog().watch_seats(request).await.map(tonic::Response::into_inner)
}

fn status_of(map: &WatchSeatsResponse, seat: u32) -> SeatStatus {
    let s = map.seats.iter().find(|s| s.seat_number == seat).expect("every seat is on the map");
    SeatStatus::try_from(s.status).unwrap()
}

/// Reads maps until `seat` shows `want`; how long that took (panics after `within`).
async fn until(maps: &mut Streaming<WatchSeatsResponse>, seat: u32, want: SeatStatus, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let left = within.saturating_sub(started.elapsed());
        let map = tokio::time::timeout(left, maps.message())
            .await
            .unwrap_or_else(|_| panic!("seat {seat} did not become {want:?} within {within:?}"))
            .unwrap()
            .expect("the stream stays open");
        assert_eq!(map.seats.len(), 50, "every message is the whole map");
        if status_of(&map, seat) == want {
            return started.elapsed();
        }
    }
}

#[sqlx::test(migrations = false)]
async fn an_open_map_sees_every_hold_sale_release_and_expiry_within_a_second(_p: PgPoolOptions, db: PgConnectOptions) {
    // Two reservation replicas: catalog watches replica 0, the buyer goes through replica 1,
    // so the change crosses replicas through PostgreSQL, not through memory.
    let opts =
        SuiteOptions { reservation_replicas: 2, hold_ttl: chrono::Duration::seconds(4), ..SuiteOptions::default() };
    let suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let watcher = suite.active_token("ann", &concert_id).await;
    let buyer = suite.active_token("bob", &concert_id).await;
    suite.charge("bob", 1_000_000).await;

    let mut maps = watch(&suite, &watcher, &schedule_id).await.unwrap();
    let first = maps.message().await.unwrap().unwrap();
    assert_eq!(first.seats.len(), 50);
    assert!(first.seats.iter().all(|s| s.status == SeatStatus::Available as i32), "a fresh date is all free");
    // A second watcher of the same date shares the upstream and gets the same map at once.
    let mut second = watch(&suite, &watcher, &schedule_id).await.unwrap();
    assert_eq!(second.message().await.unwrap().unwrap(), first);

    let hold = |seat: u32| {
        let mut client = suite.reservation(1);
        let buyer = buyer.clone();
        let schedule_id = schedule_id.clone();
        async move {
            let request = concert_proto::concert::reservation::v1::HoldSeatRequest {
                schedule_id,
                seat_number: seat,
                ..Default::default()
            };
            client.hold_seat(authed(&buyer, request)).await.unwrap().into_inner().reservation.unwrap().reservation_id
        }
    };
    let seven = hold(7).await;
    let held_after = until(&mut maps, 7, SeatStatus::Held, LIVE).await;
    until(&mut second, 7, SeatStatus::Held, LIVE).await;

    let eight = hold(8).await;
    until(&mut maps, 8, SeatStatus::Held, LIVE).await;
    suite.cancel_as(&e2e::token_owner(&buyer), &eight).await.unwrap();
    let released_after = until(&mut maps, 8, SeatStatus::Available, LIVE).await;

    let paid = suite.pay_order(1, &buyer, &[seven], "pay-seven").await.unwrap();
    assert_eq!(paid.reservations.len(), 1);
    let sold_after = until(&mut maps, 7, SeatStatus::Sold, LIVE).await;

    // A hold that runs out by time changes no row: the feed's rescan shows it free within a
    // second of its expiry (4 s hold).
    let buyer2 = suite.active_token("cy", &concert_id).await;
    let request = concert_proto::concert::reservation::v1::HoldSeatRequest {
        schedule_id: schedule_id.clone(),
        seat_number: 9,
        ..Default::default()
    };
    suite.reservation(1).hold_seat(authed(&buyer2, request)).await.unwrap();
    until(&mut maps, 9, SeatStatus::Held, LIVE).await;
    let expired_after = until(&mut maps, 9, SeatStatus::Available, Duration::from_secs(4) + LIVE + LIVE).await;
    println!(
        "live map: held after {held_after:?}, released after {released_after:?}, sold after {sold_after:?}, \
         free {expired_after:?} after the hold was seen (4 s hold)"
    );
    let report = suite.reconcile().await;
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}

#[sqlx::test(migrations = false)]
async fn watch_seats_checks_the_caller_and_bounds_its_streams(_p: PgPoolOptions, db: PgConnectOptions) {
    let opts = SuiteOptions { seat_map_max_streams: 1, ..SuiteOptions::default() };
    let suite = Suite::start(db, opts).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let (other_concert, _) = suite.seed_schedule(chrono::Duration::days(4)).await;
    let token = suite.active_token("ann", &concert_id).await;
    let stranger = suite.active_token("ann", &other_concert).await;

    let err = watch(&suite, &token, "not-a-uuid").await.unwrap_err();
    assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("schedule_id")));
    let err = watch(&suite, &stranger, &schedule_id).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::PermissionDenied, Some("TOKEN_WRONG_CONCERT")));
    let err = watch(&suite, &token, &uuid::Uuid::new_v4().to_string()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let no_token = e2e::as_user("ann", WatchSeatsRequest { schedule_id: schedule_id.clone() });
    assert_eq!(suite.catalog().watch_seats(no_token).await.unwrap_err().code(), Code::Unauthenticated);

    // One stream allowed: the second is refused, and the slot comes back when the first closes.
    let mut open = watch(&suite, &token, &schedule_id).await.unwrap();
    open.message().await.unwrap().unwrap();
    let err = watch(&suite, &token, &schedule_id).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::ResourceExhausted, Some("TOO_MANY_STREAMS")));
    drop(open);
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(s) = watch(&suite, &token, &schedule_id).await {
            reopened = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut reopened = reopened.expect("a closed stream gives its slot back");
    assert_eq!(reopened.message().await.unwrap().unwrap().seats.len(), 50);
}

#[sqlx::test(migrations = false)]
async fn a_map_whose_feed_is_lost_ends_unavailable_and_a_new_one_is_live_again(
    _p: PgPoolOptions,
    db: PgConnectOptions,
) {
    let mut suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(3)).await;
    let token = suite.active_token("ann", &concert_id).await;
    let mut maps = watch(&suite, &token, &schedule_id).await.unwrap();
    maps.message().await.unwrap().unwrap();

    // The reservation replica catalog watches crashes: the open map is not left to go stale.
    suite.crash_and_restart_reservation(0).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match maps.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the stream ends");
    let status = ended.expect("it ends with a status, not silently");
    assert_eq!((status.code(), reason(&status).as_deref()), (Code::Unavailable, Some("SEAT_FEED_LOST")));

    // Watching again reaches the restarted replica, whose feed is live.
    let mut again = None;
    for _ in 0..50 {
        if let Ok(mut s) = watch(&suite, &token, &schedule_id).await
            && s.message().await.ok().flatten().is_some()
        {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut again = again.expect("a new stream is served once reservation is back");
    let buyer = suite.active_token("bob", &concert_id).await;
    suite.hold(&buyer, &schedule_id, 3).await;
    until(&mut again, 3, SeatStatus::Held, LIVE).await;
}
