//! Issue #26: the waiting room under a flood. A join refused for load is refused before its
//! access token is looked at; a sold-out sale tells the line.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use concert_proto::concert::{
    catalog::v1::ListSeatsRequest,
    queue::v1::{GetRoomStatsRequest, IssueTokenRequest, SetAdmissionPolicyRequest, TokenState},
    reservation::v1::HoldSeatRequest,
};
use e2e::{Suite, SuiteOptions, as_user, register_token};
use platform::status::reason;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::{Code, Request};

/// Issue #26: a join refused for load is refused before its access token is looked at. Joins
/// with a forged access token past the total rate are answered RATE_LIMITED, not
/// UNAUTHENTICATED: the refusal never reached the token check.
#[sqlx::test(migrations = false)]
async fn a_join_refused_for_load_never_reaches_the_token_check(_p: PgPoolOptions, db: PgConnectOptions) {
    let options = SuiteOptions { join_rate_total: std::num::NonZeroU32::new(3), ..SuiteOptions::default() };
    let suite = Suite::start(db, options).await;
    let (concert_id, _schedule) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let (mut unauthenticated, mut limited) = (0, 0);
    for _ in 0..30 {
        let mut join = Request::new(IssueTokenRequest { user_id: String::new(), concert_id: concert_id.clone() });
        join.metadata_mut().insert("authorization", "Bearer not.a.token".parse().unwrap());
        let err = suite.queue().issue_token(join).await.expect_err("a forged access token never joins");
        match (err.code(), reason(&err).as_deref()) {
            (Code::Unauthenticated, _) => unauthenticated += 1,
            (Code::ResourceExhausted, Some("RATE_LIMITED")) => {
                assert!(platform::status::retry_after(&err).is_some(), "RetryInfo says when to come back");
                limited += 1;
            }
            other => panic!("unexpected refusal {other:?}: {err:?}"),
        }
    }
    assert!(unauthenticated <= 6, "only the rate's worth reached the token check: {unauthenticated}");
    assert_eq!(unauthenticated + limited, 30);
    assert!(limited >= 24, "the rest was refused before it: {limited}");
}

/// Issue #26: when every seat is sold (not merely held), people still in line are told so.
#[sqlx::test(migrations = false)]
async fn a_sold_out_sale_tells_the_people_in_line(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    // 49 of the 50 seats are bought, one by one.
    for seat in 1..=49 {
        let user = format!("buyer-{seat}");
        let token = suite.active_token(&user, &concert_id).await;
        let held = suite.hold(&token, &schedule_id, seat).await;
        suite.charge(&user, 150_000).await;
        suite.pay(&token, &held, "k").await.unwrap();
    }
    // The last seat is held, and two admitted people fill a room now limited to one.
    let holder = suite.active_token("holder", &concert_id).await;
    let last = suite.hold(&holder, &schedule_id, 50).await;
    let _blocker = suite.active_token("blocker", &concert_id).await;
    let policy =
        SetAdmissionPolicyRequest { concert_id: concert_id.clone(), max_active: Some(1), ..Default::default() };
    suite.queue_admin().set_admission_policy(policy).await.unwrap();
    let join = IssueTokenRequest { user_id: String::new(), concert_id: concert_id.clone() };
    let late = suite.queue().issue_token(as_user("late", join)).await.unwrap().into_inner().status.unwrap();
    register_token(&late.token, "late");

    // A held seat may come back: not sold out, however long the late person waits.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let waiting = suite.queue_status(&late.token).await;
    assert_eq!((waiting.state, waiting.sold_out), (TokenState::Waiting as i32, false), "{waiting:?}");

    // The hold is paid: now every seat is sold, and the line hears it within a few seconds.
    suite.charge("holder", 150_000).await;
    suite.pay(&holder, &last, "k").await.unwrap();
    let mut told = suite.queue_status(&late.token).await;
    for _ in 0..60 {
        if told.sold_out {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        told = suite.queue_status(&late.token).await;
    }
    assert_eq!((told.state, told.sold_out), (TokenState::Waiting as i32, true), "{told:?}");
    suite.assert_books_settle(Duration::from_secs(10)).await;
}

/// Issue #26, part 1: the admitted path never waits behind the line. The test stalls the
/// line's work in the database — it holds the join fence, so every join worker of the queue
/// and its admission round wait on PostgreSQL, holding every connection of the public side's
/// pool — and while forty joins hang there, an admitted person reads the seat map, holds,
/// pays, and is told the token is spent: the token checks and the expiry go through the
/// queue's internal lane (its own runtime and pool). The joins sent before are still
/// unanswered afterwards, so the line was stalled all along; released, they all join.
#[sqlx::test(migrations = false)]
async fn the_admitted_path_goes_on_while_the_line_is_stalled(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let alice = suite.active_token("alice", &concert_id).await;
    suite.charge("alice", 150_000).await;

    let queue_db = suite.pool("queue").await;
    let mut fence = queue_db.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(queue_service::store::JOIN_FENCE)
        .execute(&mut *fence)
        .await
        .unwrap();
    // Spaced out, so that each join worker (four) finds the others stuck and takes its own
    // batch, and a connection of its own, rather than one batch taking all forty.
    let mut joins = Vec::new();
    for i in 0..40 {
        let mut queue = suite.queue();
        let join = IssueTokenRequest { user_id: String::new(), concert_id: concert_id.clone() };
        joins.push(tokio::spawn(async move { queue.issue_token(as_user(&format!("crowd-{i}"), join)).await }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every connection of the queue's public pool (four in the suite) is waiting on the fence:
    // the join workers' and the admission round's.
    let mut stuck = 0;
    for _ in 0..300 {
        stuck = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        )
        .fetch_one(&queue_db)
        .await
        .unwrap();
        if stuck >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stuck >= 4, "the line's connections are stuck on the fence: {stuck}");

    // The admitted path, with the line stalled.
    let seats = suite
        .catalog()
        .list_seats(e2e::authed(&alice, ListSeatsRequest { schedule_id: schedule_id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .seats;
    assert_eq!(seats.len(), 50);
    let held = suite.hold(&alice, &schedule_id, 1).await;
    suite.pay(&alice, &held, "stalled-line").await.unwrap();
    let spent = suite
        .reservation(0)
        .hold_seat(e2e::authed(
            &alice,
            HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 2, ..Default::default() },
        ))
        .await
        .expect_err("a paid token is spent");
    assert_eq!(spent.code(), Code::Unauthenticated, "{spent:?}");
    assert!(joins.iter().all(|j| !j.is_finished()), "the line was stalled while the admitted person paid");
    // The operator sees the room too: GetRoomStats is served on the lane, with its own pool.
    // The paid token is expired in a batch right after the payment's answer (the
    // reservation's completions), also through the lane: within a few seconds the room shows
    // nobody active, while the stalled joins still have written nothing.
    let operator = suite.queue_admin();
    let figures = || {
        let (mut operator, concert_id) = (operator.clone(), concert_id.clone());
        async move {
            let asked = operator.get_room_stats(GetRoomStatsRequest { concert_id });
            tokio::time::timeout(Duration::from_secs(10), asked)
                .await
                .expect("the operator's figures do not wait for the stalled line")
                .expect("the operator's figures while the line is stalled")
                .into_inner()
                .stats
                .expect("figures")
        }
    };
    let counts = e2e::eventually((0, 0), || async {
        let f = figures().await;
        (f.waiting_count, f.active_count)
    })
    .await;
    assert_eq!(counts, (0, 0), "alice paid; the stalled joins wrote nothing");
    let figures = figures().await;
    assert_eq!(figures.concert_id, concert_id);
    assert!(figures.admitted_last_minute >= 1, "alice was admitted: {figures:?}");
    assert!(joins.iter().all(|j| !j.is_finished()), "still stalled when the operator looked");

    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(queue_service::store::JOIN_FENCE)
        .execute(&mut *fence)
        .await
        .unwrap();
    for join in joins {
        let status = join.await.unwrap().expect("released, every join goes through").into_inner().status.unwrap();
        assert_eq!(status.concert_id, concert_id);
    }
    suite.assert_books_settle(Duration::from_secs(10)).await;
}

/// Issue #27, item 7: GetQueueStats (no token needed) for a made-up concert cost two queue
/// reads and a catalog call every time. The catalog's "no such concert" is remembered: asked
/// again, the queue answers NOT_FOUND without asking the catalog, even while it is down.
#[sqlx::test(migrations = false)]
async fn made_up_concerts_are_remembered_as_unknown(_p: PgPoolOptions, db: PgConnectOptions) {
    use concert_proto::concert::queue::v1::GetQueueStatsRequest;
    let mut suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, _) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let stats = |id: &str| GetQueueStatsRequest { concert_id: id.to_owned() };
    suite.queue().get_queue_stats(stats(&concert_id)).await.expect("a real concert's room");
    let made_up = uuid::Uuid::new_v4().to_string();
    let not_found = |err: tonic::Status| (err.code(), reason(&err));
    let first = suite.queue().get_queue_stats(stats(&made_up)).await.unwrap_err();
    assert_eq!(not_found(first), (Code::NotFound, Some("CONCERT_NOT_FOUND".into())));

    suite.catalog.halt().await.unwrap();
    for _ in 0..3 {
        let again = suite.queue().get_queue_stats(stats(&made_up)).await.unwrap_err();
        assert_eq!(not_found(again), (Code::NotFound, Some("CONCERT_NOT_FOUND".into())), "not UNAVAILABLE: cached");
        let join = IssueTokenRequest { user_id: String::new(), concert_id: made_up.clone() };
        let join = suite.queue().issue_token(as_user("mallory", join)).await.unwrap_err();
        assert_eq!(not_found(join), (Code::NotFound, Some("CONCERT_NOT_FOUND".into())));
    }
    // A known concert's room needs no catalog call either.
    suite.queue().get_queue_stats(stats(&concert_id)).await.expect("a real concert's room");
}
