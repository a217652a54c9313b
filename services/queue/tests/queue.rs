//! Queue RPCs against real servers (one or two replicas) on a fresh database per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use concert_proto::concert::queue::v1::{
    ExpireTokenRequest, GetQueueStatsRequest, GetQueueStatusRequest, IssueTokenRequest, LeaveQueueRequest, QueueStatus,
    TokenState, ValidateTokenRequest, queue_internal_service_client::QueueInternalServiceClient,
    queue_service_client::QueueServiceClient,
};
use platform::{
    clock::{ManualClock, SharedClock},
    status::violated_field,
    testing::RunningServer,
};
use queue_service::{config::Settings, domain::AdmissionPolicy, startup};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::{Code, transport::Channel};

struct Replica {
    _server: RunningServer,
    public: QueueServiceClient<Channel>,
    internal: QueueInternalServiceClient<Channel>,
}

async fn replica(db: PgConnectOptions, max_active: u64, clock: SharedClock) -> Replica {
    // Idle expiry is tested on its own; elsewhere manual clocks jump far past it.
    replica_with(db, max_active, clock, 20, 0, 86_400).await
}

/// A replica whose per-user join burst is `burst` (the default is 20) and which admits at
/// most `admit_per_sec` a second (0: no rate limit).
async fn replica_with(
    db: PgConnectOptions,
    max_active: u64,
    clock: SharedClock,
    burst: u32,
    admit_per_sec: u64,
    idle_timeout_secs: i64,
) -> Replica {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let settings = Settings {
        db,
        max_connections: 10,
        limits: platform::server::Limits::default(),
        policy: AdmissionPolicy {
            max_active,
            active_ttl: chrono::Duration::seconds(600),
            admit_per_sec,
            idle_timeout: chrono::Duration::seconds(idle_timeout_secs),
        },
        seen_flush: Duration::from_millis(50),
        admission_interval: Duration::from_millis(20),
        line_refresh: Duration::from_millis(20),
        join_rates: queue_service::rate_limit::JoinRates {
            per_user: std::num::NonZeroU32::new(10).unwrap(),
            per_user_burst: std::num::NonZeroU32::new(burst).unwrap(),
            total: None,
        },
        clock,
    };
    let server = RunningServer::start(|l, s| startup::run(settings, l, s)).await;
    Replica {
        public: QueueServiceClient::new(server.channel()),
        internal: QueueInternalServiceClient::new(server.channel()),
        _server: server,
    }
}

async fn join(r: &Replica, user: &str) -> QueueStatus {
    r.public.clone().issue_token(IssueTokenRequest { user_id: user.into() }).await.unwrap().into_inner().status.unwrap()
}

async fn status(r: &Replica, token: &str) -> QueueStatus {
    r.public
        .clone()
        .get_queue_status(GetQueueStatusRequest { token: token.into() })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// Polls `status` until `pred` holds (admission runs in the background).
async fn wait_for(r: &Replica, token: &str, pred: impl Fn(&QueueStatus) -> bool) -> QueueStatus {
    for _ in 0..200 {
        let s = status(r, token).await;
        if pred(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached for {token}: {:?}", status(r, token).await);
}

#[sqlx::test(migrations = false)]
async fn joining_twice_returns_the_same_token(_p: PgPoolOptions, db: PgConnectOptions) {
    let q = replica(db, 100, platform::clock::system()).await;
    let first = join(&q, "alice").await;
    let again = join(&q, "alice").await;
    assert_eq!(first.token, again.token);
    assert_eq!(first.user_id, "alice");
    let other = join(&q, "bob").await;
    assert_ne!(other.token, first.token, "tokens are bound to users");
}

#[sqlx::test(migrations = false)]
async fn admits_in_fifo_order_up_to_the_limit(_p: PgPoolOptions, db: PgConnectOptions) {
    let q = replica(db, 2, platform::clock::system()).await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(join(&q, &format!("user-{i}")).await.token);
    }
    wait_for(&q, &tokens[1], |s| s.state == TokenState::Active as i32).await;
    // Positions come from the line as last read (every 20 ms here).
    wait_for(&q, &tokens[2], |s| s.position == 1).await;
    let s0 = status(&q, &tokens[0]).await;
    assert_eq!((s0.state, s0.position), (TokenState::Active as i32, 0));
    assert!(s0.expires_at.is_some());
    for (i, t) in tokens.iter().enumerate().skip(2) {
        let s = status(&q, t).await;
        assert_eq!(s.state, TokenState::Waiting as i32);
        assert_eq!(s.position, (i - 1) as u64, "1-based place among waiting users");
        assert_eq!(s.waiting_count, 3);
    }

    // Paying expires the first token: the next in line moves up and is admitted.
    q.internal.clone().expire_token(ExpireTokenRequest { token: tokens[0].clone() }).await.unwrap();
    wait_for(&q, &tokens[2], |s| s.state == TokenState::Active as i32).await;
    let s3 = wait_for(&q, &tokens[3], |s| s.position == 1).await;
    assert_eq!((s3.state, s3.position, s3.waiting_count), (TokenState::Waiting as i32, 1, 2));
    assert_eq!(status(&q, &tokens[0]).await.state, TokenState::Expired as i32);

    // A user whose token expired may join again and gets a new place at the back.
    let rejoined = join(&q, "user-0").await;
    assert_ne!(rejoined.token, tokens[0]);
    assert_eq!(wait_for(&q, &rejoined.token, |s| s.position == 3).await.waiting_count, 3);
}

#[sqlx::test(migrations = false)]
async fn active_token_expires_after_its_ttl(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    let q = replica(db, 1, std::sync::Arc::new(clock.clone())).await;
    let a = join(&q, "a").await.token;
    let b = join(&q, "b").await.token;
    wait_for(&q, &a, |s| s.state == TokenState::Active as i32).await;
    let v = q.internal.clone().validate_token(ValidateTokenRequest { token: a.clone() }).await.unwrap().into_inner();
    assert_eq!(v.status.unwrap().state, TokenState::Active as i32);

    clock.advance(chrono::Duration::seconds(601));
    // Expired on read at once, even before the admission round marks it.
    let v = q.internal.clone().validate_token(ValidateTokenRequest { token: a.clone() }).await.unwrap().into_inner();
    assert_eq!(v.status.unwrap().state, TokenState::Expired as i32);
    // And its slot goes to the next user.
    wait_for(&q, &b, |s| s.state == TokenState::Active as i32).await;
}

#[sqlx::test(migrations = false)]
async fn two_replicas_admit_in_order_and_never_exceed_the_limit(_p: PgPoolOptions, db: PgConnectOptions) {
    const LIMIT: i64 = 50;
    const JOINS: usize = 1_000;
    let r1 = replica(db.clone(), LIMIT as u64, platform::clock::system()).await;
    let r2 = replica(db.clone(), LIMIT as u64, platform::clock::system()).await;
    let pool = PgPoolOptions::new().connect_with(db.options([("search_path", "queue")])).await.unwrap();

    // 1,000 users join concurrently through both replicas.
    let joins = (0..JOINS).map(|i| {
        let r = if i % 2 == 0 { &r1 } else { &r2 };
        async move { join(r, &format!("u{i}")).await.token }
    });
    let tokens = futures::future::join_all(joins).await;

    // Expire admitted tokens in rounds through alternating replicas, checking after each
    // step that the limit holds and that the admitted set is always the head of the line.
    let mut expired = 0;
    while expired < JOINS {
        let active: Vec<(String, i64)> =
            sqlx::query_as("SELECT token::text, seq FROM tokens WHERE state = 'ACTIVE' ORDER BY seq")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(active.len() as i64 <= LIMIT, "active limit exceeded: {}", active.len());
        let max_active_seq = active.iter().map(|(_, s)| *s).max().unwrap_or(0);
        let waiting_before: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tokens WHERE state = 'WAITING' AND seq < $1")
                .bind(max_active_seq)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(waiting_before, 0, "someone was admitted ahead of an earlier joiner");
        if active.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        for (i, (token, _)) in active.iter().enumerate() {
            let r = if i % 2 == 0 { &r1 } else { &r2 };
            r.internal.clone().expire_token(ExpireTokenRequest { token: token.clone() }).await.unwrap();
            expired += 1;
        }
    }
    let admitted: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens WHERE activated_at IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(admitted, JOINS as i64, "every token admitted exactly once");
    assert_eq!(tokens.len(), JOINS);
}

#[sqlx::test(migrations = false)]
async fn concurrent_joins_of_one_user_yield_one_token(_p: PgPoolOptions, db: PgConnectOptions) {
    // A generous per-user burst: this test is about the race, not the rate limit.
    let r1 = replica_with(db.clone(), 100, platform::clock::system(), 1_000, 0, 86_400).await;
    let r2 = replica_with(db, 100, platform::clock::system(), 1_000, 0, 86_400).await;
    let joins = (0..50).map(|i| {
        let r = if i % 2 == 0 { &r1 } else { &r2 };
        async move { join(r, "same-user").await.token }
    });
    let tokens = futures::future::join_all(joins).await;
    assert!(tokens.iter().all(|t| *t == tokens[0]), "one live token per user");
}

#[sqlx::test(migrations = false)]
async fn bad_input_and_unknown_tokens(_p: PgPoolOptions, db: PgConnectOptions) {
    let q = replica(db, 100, platform::clock::system()).await;
    let err = q.public.clone().issue_token(IssueTokenRequest { user_id: String::new() }).await.unwrap_err();
    assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("user_id")));
    let err = q.public.clone().get_queue_status(GetQueueStatusRequest { token: "nope".into() }).await.unwrap_err();
    assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("token")));
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = q.public.clone().get_queue_status(GetQueueStatusRequest { token: unknown.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = q.internal.clone().validate_token(ValidateTokenRequest { token: unknown.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = q.internal.clone().expire_token(ExpireTokenRequest { token: unknown }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[sqlx::test(migrations = false)]
async fn leaving_moves_everyone_behind_up_and_stats_add_up(_p: PgPoolOptions, db: PgConnectOptions) {
    let q = replica(db, 1, platform::clock::system()).await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(join(&q, &format!("u{i}")).await.token);
    }
    wait_for(&q, &tokens[0], |s| s.state == TokenState::Active as i32).await;
    // Positions come from the line as last read (every 20 ms here): wait for the read.
    wait_for(&q, &tokens[3], |s| s.position == 3).await;

    // A waiting user leaves: the ones behind move up.
    let left = q.public.clone().leave_queue(LeaveQueueRequest { token: tokens[1].clone() }).await.unwrap();
    assert_eq!(left.into_inner().status.unwrap().state, TokenState::Expired as i32);
    wait_for(&q, &tokens[2], |s| s.position == 1).await;
    wait_for(&q, &tokens[3], |s| s.position == 2).await;

    // The active user leaves: the slot goes to the next in line at once.
    q.public.clone().leave_queue(LeaveQueueRequest { token: tokens[0].clone() }).await.unwrap();
    wait_for(&q, &tokens[2], |s| s.state == TokenState::Active as i32).await;
    let last = wait_for(&q, &tokens[3], |s| s.position == 1).await;
    assert_eq!((last.waiting_count, last.active_count), (1, 1));
    // Leaving twice is fine.
    q.public.clone().leave_queue(LeaveQueueRequest { token: tokens[0].clone() }).await.unwrap();

    let stats = q.public.clone().get_queue_stats(GetQueueStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.waiting_count, stats.active_count, stats.admitted_last_minute), (1, 1, 2));
    assert_eq!((stats.max_active, stats.active_ttl_seconds), (1, 600));
    assert!(stats.serving_seq > 0);
    let err = q.public.clone().leave_queue(LeaveQueueRequest { token: "x".into() }).await.unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("token"));
}

#[sqlx::test(migrations = false)]
async fn watch_queue_streams_a_falling_position_and_ends_on_active(_p: PgPoolOptions, db: PgConnectOptions) {
    use concert_proto::concert::queue::v1::WatchQueueRequest;
    let q = replica(db, 1, platform::clock::system()).await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(join(&q, &format!("w{i}")).await.token);
    }
    wait_for(&q, &tokens[3], |s| s.position == 3).await;
    let mut stream =
        q.public.clone().watch_queue(WatchQueueRequest { token: tokens[3].clone() }).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap().status.unwrap();
    assert_eq!((first.state, first.position), (TokenState::Waiting as i32, 3));

    // Everyone ahead leaves (or is admitted and leaves): the stream follows, then ends.
    let mut seen = vec![first.position];
    let mut trace = vec![format!("{first:?}")];
    let leaver = q.public.clone();
    let ahead = tokens[..3].to_vec();
    tokio::spawn(async move {
        for t in ahead {
            tokio::time::sleep(Duration::from_millis(100)).await;
            leaver.clone().leave_queue(LeaveQueueRequest { token: t }).await.unwrap();
        }
    });
    let mut last_state = first.state;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap() {
        let s = msg.status.unwrap();
        last_state = s.state;
        trace.push(format!("{s:?}"));
        if s.state == TokenState::Waiting as i32 {
            seen.push(s.position);
        }
    }
    assert_eq!(last_state, TokenState::Active as i32, "the stream ends with the admission");
    assert!(seen.windows(2).all(|w| w[1] <= w[0]), "positions never go up: {seen:?}\n{}", trace.join("\n"));
    assert!(seen.contains(&1), "it showed the front of the line: {seen:?}");
}

#[sqlx::test(migrations = false)]
async fn status_carries_active_count_and_a_wait_estimate_once_the_line_moves(_p: PgPoolOptions, db: PgConnectOptions) {
    let q = replica(db, 2, platform::clock::system()).await;
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(join(&q, &format!("e{i}")).await.token);
    }
    // Both from one read of the line taken after the admissions.
    wait_for(&q, &tokens[11], |s| s.position == 10 && s.active_count == 2).await;
    // Admitted users leave one after another: the line moves, so an estimate appears.
    for t in &tokens[..6] {
        q.public.clone().leave_queue(LeaveQueueRequest { token: t.clone() }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = wait_for(&q, &tokens[11], |s| s.position == 4 && s.estimated_wait_seconds.is_some()).await;
    assert!(s.estimated_wait_seconds.unwrap() >= 1);
    let active = wait_for(&q, &tokens[6], |s| s.state == TokenState::Active as i32).await;
    assert_eq!(active.estimated_wait_seconds, None, "no estimate once admitted");
}

#[sqlx::test(migrations = false)]
async fn joining_too_often_is_refused_with_a_retry_hint(_p: PgPoolOptions, db: PgConnectOptions) {
    use tonic_types::StatusExt;
    let q = replica(db, 1, platform::clock::system()).await;
    // The default allowance: a burst of 20, then 10 per second.
    let mut results = Vec::new();
    for _ in 0..30 {
        results.push(q.public.clone().issue_token(IssueTokenRequest { user_id: "eager".into() }).await);
    }
    let passed = results.iter().filter(|r| r.is_ok()).count();
    assert!((20..=22).contains(&passed), "{passed} joins passed");
    let refused = results.iter().find_map(|r| r.as_ref().err()).expect("some joins are refused");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(platform::status::reason(refused).as_deref(), Some("RATE_LIMITED"));
    let retry = refused.get_details_retry_info().and_then(|r| r.retry_delay).expect("a retry hint");
    assert!(retry > Duration::ZERO && retry <= Duration::from_millis(100), "{retry:?}");
    // Other users are not affected, and the user may come back after the hint.
    assert!(q.public.clone().issue_token(IssueTokenRequest { user_id: "calm".into() }).await.is_ok());
    tokio::time::sleep(retry).await;
    assert!(q.public.clone().issue_token(IssueTokenRequest { user_id: "eager".into() }).await.is_ok());
}

#[sqlx::test(migrations = false)]
async fn the_rate_policy_admits_no_more_than_m_per_second(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    // Room for everyone, but at most 5 admissions per (manual) second.
    let q = replica_with(db, 1_000, std::sync::Arc::new(clock.clone()), 20, 5, 86_400).await;
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(join(&q, &format!("r{i}")).await.token);
    }
    let active = |n: usize| {
        let tokens = tokens.clone();
        let q = &q;
        async move {
            let mut count = 0;
            for t in &tokens[..n] {
                count += usize::from(status(q, t).await.state == TokenState::Active as i32);
            }
            count
        }
    };
    wait_for(&q, &tokens[4], |s| s.state == TokenState::Active as i32).await;
    // Many rounds run in the same (frozen) second: none admits a sixth.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(active(12).await, 5);
    assert_eq!(status(&q, &tokens[5]).await.state, TokenState::Waiting as i32, "FIFO: the sixth waits");
    // The next second admits the next five, in order.
    clock.advance(chrono::Duration::seconds(1));
    wait_for(&q, &tokens[9], |s| s.state == TokenState::Active as i32).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(active(12).await, 10);
    assert_eq!(status(&q, &tokens[10]).await.state, TokenState::Waiting as i32);
}

#[sqlx::test(migrations = false)]
async fn an_abandoned_place_expires_and_later_users_move_up(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    let q = replica_with(db, 1, std::sync::Arc::new(clock.clone()), 20, 0, 60).await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(join(&q, &format!("i{i}")).await.token);
    }
    wait_for(&q, &tokens[0], |s| s.state == TokenState::Active as i32).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // the joins are recorded as seen at T
    // i1 closes the tab; i2 and i3 keep polling while 61 (manual) seconds pass.
    clock.advance(chrono::Duration::seconds(30));
    status(&q, &tokens[2]).await;
    status(&q, &tokens[3]).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the replica record the polls
    clock.advance(chrono::Duration::seconds(31));
    // Looked at through ValidateToken: a GetQueueStatus poll would itself count as activity.
    let mut state = TokenState::Waiting as i32;
    for _ in 0..100 {
        let v = q.internal.clone().validate_token(ValidateTokenRequest { token: tokens[1].clone() }).await.unwrap();
        state = v.into_inner().status.unwrap().state;
        if state == TokenState::Expired as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, TokenState::Expired as i32, "the abandoned place expired");
    let s2 = wait_for(&q, &tokens[2], |s| s.position == 1).await;
    assert_eq!(s2.state, TokenState::Waiting as i32, "a polling user keeps the place");
    assert_eq!(wait_for(&q, &tokens[3], |s| s.position == 2).await.state, TokenState::Waiting as i32);
    // The active user is not subject to idle expiry.
    assert_eq!(status(&q, &tokens[0]).await.state, TokenState::Active as i32);
}
