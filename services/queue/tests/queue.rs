//! Queue RPCs against real servers (one or two replicas) on a fresh database per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The deprecated single ValidateToken is still served, so still tested here.
#![allow(deprecated)]
use std::time::Duration;

use concert_proto::concert::{
    catalog::v1::{
        CreateConcertRequest, ListConcertsRequest, catalog_admin_service_client::CatalogAdminServiceClient,
        catalog_service_client::CatalogServiceClient,
    },
    queue::v1::{
        ExpireTokenRequest, ExportTokensRequest, GetQueueStatsRequest, GetQueueStatsResponse, GetQueueStatusRequest,
        IssueTokenRequest, LeaveQueueRequest, QueueStatus, SetAdmissionPolicyRequest, TokenRecord, TokenState,
        ValidateTokenRequest, ValidateTokensRequest, queue_admin_service_client::QueueAdminServiceClient,
        queue_internal_service_client::QueueInternalServiceClient, queue_service_client::QueueServiceClient,
    },
};
use platform::grpc_client::PeerChannel;
use platform::{
    clock::{Clock, ManualClock, SharedClock},
    status::violated_field,
    testing::RunningServer,
};
use queue_service::{app, config::Settings, domain::AdmissionPolicy};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::Code;

/// A queue replica with the catalog it asks about concerts (both real servers on port 0,
/// against the test's own database).
struct Replica {
    _servers: (RunningServer, RunningServer),
    public: QueueServiceClient<PeerChannel>,
    internal: QueueInternalServiceClient<PeerChannel>,
    admin: QueueAdminServiceClient<PeerChannel>,
    catalog_admin: CatalogAdminServiceClient<PeerChannel>,
    /// The concert tests join unless they say otherwise (on sale at once).
    concert: String,
}

/// Title of the concert every replica of one test database shares.
const TEST_CONCERT: &str = "Queue Test";

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
    let catalog_settings = catalog_service::config::Settings {
        db: db.clone().into(),
        max_connections: 2,
        limits: platform::server::Limits::default(),
        auth: platform::identity::AuthSettings::Disabled,
        // Only the admin and internal APIs are used here: no token checks, no seat maps.
        queue_url: "http://127.0.0.1:9".into(),
        reservation_url: "http://127.0.0.1:9".into(),
        token_cache_ttl: Duration::from_secs(1),
        passes: None,
        layout_cache_ttl: Duration::from_secs(60),
        seat_status_ttl: Duration::ZERO,
        seat_map_max_streams: 100,
        seat_map_stream_lifetime: std::time::Duration::from_secs(600),
        clock: clock.clone(),
    };
    let catalog = RunningServer::start(|l, s| catalog_service::app::run(catalog_settings, l, s)).await;
    let catalog_admin = CatalogAdminServiceClient::new(catalog.internal_channel());
    let concerts = CatalogServiceClient::new(catalog.channel())
        .list_concerts(ListConcertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let concert = match concerts.concerts.iter().find(|c| c.title == TEST_CONCERT) {
        Some(c) => c.concert_id.clone(),
        None => create_concert(&catalog_admin, TEST_CONCERT, None).await,
    };
    let settings = Settings {
        db: db.into(),
        max_connections: 10,
        internal_connections: 2,
        limits: platform::server::Limits::default(),
        // Authentication is tested end to end (e2e): here `user_id` names the user.
        auth: platform::identity::AuthSettings::Disabled,
        passes: Some(platform::testing::admission::signer()),
        pacing: queue_service::domain::Pacing::for_idle_timeout(u32::try_from(idle_timeout_secs).unwrap()),
        catalog_url: catalog.internal_url(),
        policy: AdmissionPolicy {
            max_active,
            active_ttl: chrono::Duration::seconds(600),
            admit_per_sec,
            idle_timeout: chrono::Duration::seconds(idle_timeout_secs),
        },
        seen_flush: Duration::from_millis(50),
        seen_rewrite_after: Duration::from_millis(100),
        admission_interval: Duration::from_millis(20),
        line_refresh: Duration::from_millis(20),
        join_rates: queue_service::service::rate_limit::JoinRates {
            per_user: std::num::NonZeroU32::new(10).unwrap(),
            per_user_burst: std::num::NonZeroU32::new(burst).unwrap(),
            total: None,
        },
        max_watch_streams: 100,
        // Purged every second, so the retention test need not wait long.
        retention: platform::retention::Retention::days(30, 1),
        clock,
    };
    let server = RunningServer::start(|l, s| app::run(settings, l, s)).await;
    Replica {
        public: QueueServiceClient::new(server.channel()),
        internal: QueueInternalServiceClient::new(server.internal_channel()),
        admin: QueueAdminServiceClient::new(server.internal_channel()),
        catalog_admin,
        concert,
        _servers: (catalog, server),
    }
}

/// Creates a concert in the catalog; returns its id.
async fn create_concert(
    admin: &CatalogAdminServiceClient<PeerChannel>,
    title: &str,
    sale_opens_at: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    let request = CreateConcertRequest {
        title: title.into(),
        venue: "Hall".into(),
        sale_opens_at: sale_opens_at.map(platform::convert::timestamp),
    };
    admin.clone().create_concert(request).await.unwrap().into_inner().concert.unwrap().concert_id
}

/// Joins the replica's default concert.
async fn join(r: &Replica, user: &str) -> QueueStatus {
    join_concert(r, user, &r.concert).await
}

async fn join_concert(r: &Replica, user: &str, concert: &str) -> QueueStatus {
    let request = IssueTokenRequest { user_id: user.into(), concert_id: concert.into() };
    r.public.clone().issue_token(request).await.unwrap().into_inner().status.unwrap()
}

fn issue(r: &Replica, user: &str) -> IssueTokenRequest {
    IssueTokenRequest { user_id: user.into(), concert_id: r.concert.clone() }
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

/// The replica's default room's figures (GetQueueStats).
async fn room_stats(r: &Replica) -> GetQueueStatsResponse {
    let request = GetQueueStatsRequest { concert_id: r.concert.clone() };
    r.public.clone().get_queue_stats(request).await.unwrap().into_inner()
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
    // Positions come from the line as last read (every 20 ms here). A read taken while the
    // last joins were still being written ranks tokens[2] first already but counts only the
    // joins it saw, so wait until it counts all three waiting.
    wait_for(&q, &tokens[2], |s| s.position == 1 && s.waiting_count == 3).await;
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
async fn validate_tokens_answers_each_token_in_order_as_validate_token_does(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    let q = replica(db, 1, std::sync::Arc::new(clock.clone())).await;
    let a = join(&q, "a").await.token;
    let b = join(&q, "b").await.token;
    wait_for(&q, &a, |s| s.state == TokenState::Active as i32).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let validate = |tokens: Vec<String>| {
        let mut internal = q.internal.clone();
        async move { internal.validate_tokens(ValidateTokensRequest { tokens }).await }
    };

    let results = validate(vec![b.clone(), a.clone(), unknown.clone(), a.clone()]).await.unwrap().into_inner().results;
    let states: Vec<Option<(String, String, i32)>> =
        results.into_iter().map(|r| r.status.map(|s| (s.token, s.user_id, s.state))).collect();
    assert_eq!(
        states,
        vec![
            Some((b.clone(), "b".into(), TokenState::Waiting as i32)),
            Some((a.clone(), "a".into(), TokenState::Active as i32)),
            None,
            Some((a.clone(), "a".into(), TokenState::Active as i32)),
        ]
    );
    // The same answer as ValidateToken, field for field.
    let one = q.internal.clone().validate_token(ValidateTokenRequest { token: a.clone() }).await.unwrap().into_inner();
    let many = validate(vec![a.clone()]).await.unwrap().into_inner();
    assert_eq!(many.results[0].status, one.status);

    // Expired on read at once, as ValidateToken.
    clock.advance(chrono::Duration::seconds(601));
    let results = validate(vec![a.clone()]).await.unwrap().into_inner().results;
    assert_eq!(results[0].status.as_ref().unwrap().state, TokenState::Expired as i32);
    assert!(validate(vec![]).await.unwrap().into_inner().results.is_empty());

    let err = validate(vec![a.clone(), "nope".into()]).await.unwrap_err();
    assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("tokens")));
    let err = validate(vec![unknown; 1_001]).await.unwrap_err();
    assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("tokens")));
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

    // The export lists every token in line order, each admitted in a numbered round; the
    // rounds never go back along the line (FIFO across both replicas), and there were
    // several (at most LIMIT admitted per round here).
    let records = export_tokens(&r2, &r1.concert).await;
    assert_eq!(records.len(), JOINS);
    assert!(records.windows(2).all(|w| w[0].place < w[1].place), "export is in line order");
    assert!(records.iter().all(|r| r.admission_round > 0 && r.activated_at.is_some() && r.expired_at.is_some()));
    assert!(records.windows(2).all(|w| w[0].admission_round <= w[1].admission_round), "admitted out of line order");
    let rounds: std::collections::BTreeSet<u64> = records.iter().map(|r| r.admission_round).collect();
    assert!(rounds.len() >= JOINS / LIMIT as usize, "{} rounds for {JOINS} admissions", rounds.len());
    // One number per round, not per token: some round admitted several.
    assert!(rounds.len() < JOINS, "every admission got a round of its own");
    for round in &rounds {
        let n = records.iter().filter(|r| r.admission_round == *round).count();
        assert!(n as i64 <= LIMIT, "round {round} admitted {n}");
    }
    let err = r1.internal.clone().export_tokens(ExportTokensRequest { concert_id: "x".into() }).await.unwrap_err();
    assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("concert_id")));
}

/// Every token of `concert` as ExportTokens streams it.
async fn export_tokens(r: &Replica, concert: &str) -> Vec<TokenRecord> {
    use futures::StreamExt;
    let mut stream = r
        .internal
        .clone()
        .export_tokens(ExportTokensRequest { concert_id: concert.into() })
        .await
        .unwrap()
        .into_inner();
    let mut records = Vec::new();
    while let Some(chunk) = stream.next().await {
        records.extend(chunk.unwrap().tokens);
    }
    records
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
    let err = q.public.clone().issue_token(issue(&q, "")).await.unwrap_err();
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

    let stats = room_stats(&q).await;
    assert_eq!((stats.waiting_count, stats.active_count, stats.admitted_last_minute), (1, 1, 2));
    let policy = stats.policy.unwrap();
    assert_eq!((policy.max_active, policy.active_ttl_seconds, policy.admit_per_sec), (1, 600, 0));
    assert_eq!((stats.pre_queue_count, stats.sale_opens_at), (0, None));
    assert!(stats.serving_seq > 0);
    let err = q.public.clone().leave_queue(LeaveQueueRequest { token: "x".into() }).await.unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("token"));

    // The export tells who left unadmitted and orders the two admissions by round.
    let records = export_tokens(&q, &q.concert).await;
    let by_token = |t: &str| records.iter().find(|r| r.token == t).unwrap().clone();
    let (first, left, third, last) =
        (by_token(&tokens[0]), by_token(&tokens[1]), by_token(&tokens[2]), by_token(&tokens[3]));
    assert_eq!((left.admission_round, left.activated_at, left.state), (0, None, TokenState::Expired as i32));
    assert!(left.expired_at.is_some());
    assert!(0 < first.admission_round && first.admission_round < third.admission_round);
    assert_eq!((last.state, last.admission_round, last.expired_at), (TokenState::Waiting as i32, 0, None));
    assert!(records.iter().all(|r| !r.pre_queue && r.user_id.starts_with('u')));
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
    let started = std::time::Instant::now();
    for _ in 0..30 {
        results.push(q.public.clone().issue_token(issue(&q, "eager")).await);
    }
    // The burst, plus what refilled while the loop ran (slow on a loaded machine), plus one
    // for a refill landing between two calls.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let refilled = (started.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    let passed = results.iter().filter(|r| r.is_ok()).count();
    assert!((20..=21 + refilled).contains(&passed), "{passed} joins passed, {refilled} could have refilled");
    let refused = results.iter().find_map(|r| r.as_ref().err()).expect("some joins are refused");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(platform::status::reason(refused).as_deref(), Some("RATE_LIMITED"));
    let retry = refused.get_details_retry_info().and_then(|r| r.retry_delay).expect("a retry hint");
    assert!(retry > Duration::ZERO && retry <= Duration::from_millis(100), "{retry:?}");
    // Other users are not affected, and the user may come back after the hint. (On a busy
    // machine a cell may have refilled and been used during the loop above, so take the
    // hint of a refusal with no later join of this user.)
    assert!(q.public.clone().issue_token(issue(&q, "calm")).await.is_ok());
    let last = loop {
        if let Err(e) = q.public.clone().issue_token(issue(&q, "eager")).await {
            break e;
        }
    };
    let retry = last.get_details_retry_info().and_then(|r| r.retry_delay).expect("a retry hint");
    tokio::time::sleep(retry).await;
    assert!(q.public.clone().issue_token(issue(&q, "eager")).await.is_ok());
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

/// Issue #26: a rate-limited room admits no more people at once than its pace calls for.
/// Its buyers have been finishing in 0.2 s, so at 10 admissions a second it lets in at most
/// max(⌈10 × 0.2 × 1.5⌉, ⌈10 / 2⌉) = 5 at once, although `max_active` is 1,000 and the
/// rate would allow 10; each one who finishes frees a place for the next in line.
#[sqlx::test(migrations = false)]
async fn a_rate_limited_room_admits_as_many_at_once_as_its_pace_calls_for(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    let q = replica_with(db.clone(), 1_000, std::sync::Arc::new(clock.clone()), 20, 10, 86_400).await;
    let pool = PgPoolOptions::new().connect_with(db.options([("search_path", "queue")])).await.unwrap();
    // The room exists once someone joined; its first buyer is done.
    let first = join(&q, "first").await;
    wait_for(&q, &first.token, |s| s.state == TokenState::Active as i32).await;
    q.internal.clone().expire_token(ExpireTokenRequest { token: first.token }).await.unwrap();
    // Thirty earlier buyers, each done 0.2 s after admission, 5 s ago.
    sqlx::query(
        "INSERT INTO tokens (token, user_id, state, issued_at, activated_at, expires_at, expired_at, last_seen_at,
                             concert_id)
         SELECT gen_random_uuid(), 'earlier-' || n, 'EXPIRED', $1 - interval '9 seconds', $1 - interval '5 seconds',
                $1 + interval '10 minutes', $1 - interval '4.8 seconds', $1 - interval '9 seconds', $2::uuid
         FROM generate_series(1, 30) AS n",
    )
    .bind(clock.now())
    .bind(&q.concert)
    .execute(&pool)
    .await
    .unwrap();
    // The next second's round measures the pace (once a second, with the idle sweep).
    clock.advance(chrono::Duration::seconds(1));
    for _ in 0..200 {
        let pace: Option<i64> = sqlx::query_scalar("SELECT pace_ms FROM rooms WHERE concert_id = $1::uuid")
            .bind(&q.concert)
            .fetch_one(&pool)
            .await
            .unwrap();
        if pace.is_some() {
            assert_eq!(pace, Some(200));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Operators see the limit in force beside the policy (GetQueueStats, GetRoomStats).
    let stats = room_stats(&q).await;
    assert_eq!((stats.active_limit, stats.policy.unwrap().max_active), (5, 1_000));
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(join(&q, &format!("p{i}")).await.token);
    }
    let active = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens WHERE state = 'ACTIVE' AND concert_id = $1::uuid")
            .bind(&q.concert)
            .fetch_one(&pool)
            .await
            .unwrap();
        n
    };
    wait_for(&q, &tokens[4], |s| s.state == TokenState::Active as i32).await;
    // Many rounds in the same (frozen) second: the rate would allow 10, the pace 5.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(active().await, 5);
    assert_eq!(status(&q, &tokens[5]).await.state, TokenState::Waiting as i32, "FIFO: the sixth waits");
    // Two finish: the next two in line take their places.
    for t in &tokens[..2] {
        q.internal.clone().expire_token(ExpireTokenRequest { token: t.clone() }).await.unwrap();
    }
    wait_for(&q, &tokens[6], |s| s.state == TokenState::Active as i32).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(active().await, 5);
    assert_eq!(status(&q, &tokens[7]).await.state, TokenState::Waiting as i32);
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

#[sqlx::test(migrations = false)]
async fn each_concert_has_its_own_line_policy_and_stats(_p: PgPoolOptions, db: PgConnectOptions) {
    let q = replica(db, 1, platform::clock::system()).await;
    let (a, b) = (q.concert.clone(), create_concert(&q.catalog_admin, "Second", None).await);
    // Concert B admits two at a time; A keeps the service default of one.
    let set = SetAdmissionPolicyRequest { concert_id: b.clone(), max_active: Some(2), ..Default::default() };
    let policy = q.admin.clone().set_admission_policy(set).await.unwrap().into_inner().policy.unwrap();
    assert_eq!((policy.max_active, policy.admit_per_sec, policy.active_ttl_seconds), (2, 0, 600));

    // One user waits for both concerts at once, with one token each; re-joining either
    // returns the same token.
    let (alice_a, alice_b) = (join_concert(&q, "alice", &a).await, join_concert(&q, "alice", &b).await);
    assert_ne!(alice_a.token, alice_b.token);
    assert_eq!((alice_a.concert_id.as_str(), alice_b.concert_id.as_str()), (a.as_str(), b.as_str()));
    assert_eq!(join_concert(&q, "alice", &b).await.token, alice_b.token);
    let mut in_a = vec![alice_a.token];
    let mut in_b = vec![alice_b.token];
    for i in 0..3 {
        in_a.push(join_concert(&q, &format!("a{i}"), &a).await.token);
        in_b.push(join_concert(&q, &format!("b{i}"), &b).await.token);
    }
    // Positions count only the same concert's line.
    wait_for(&q, &in_a[3], |s| s.position == 3).await;
    let b3 = wait_for(&q, &in_b[3], |s| s.position == 2).await;
    assert_eq!((b3.waiting_count, b3.active_count), (2, 2), "B's own counts");
    for t in &in_b[..2] {
        assert_eq!(status(&q, t).await.state, TokenState::Active as i32);
    }
    assert_eq!(status(&q, &in_a[1]).await.state, TokenState::Waiting as i32, "A admits one at a time");

    let stats = |concert: String| {
        let mut public = q.public.clone();
        async move { public.get_queue_stats(GetQueueStatsRequest { concert_id: concert }).await.unwrap().into_inner() }
    };
    let (sa, sb) = (stats(a.clone()).await, stats(b.clone()).await);
    assert_eq!((sa.waiting_count, sa.active_count, sa.policy.unwrap().max_active), (3, 1, 1));
    assert_eq!((sb.waiting_count, sb.active_count, sb.policy.unwrap().max_active), (2, 2, 2));

    // Raising A's limit takes effect at the next round, without a restart.
    let set = SetAdmissionPolicyRequest { concert_id: a.clone(), max_active: Some(3), ..Default::default() };
    q.admin.clone().set_admission_policy(set).await.unwrap();
    wait_for(&q, &in_a[2], |s| s.state == TokenState::Active as i32).await;
    assert_eq!(status(&q, &in_a[3]).await.state, TokenState::Waiting as i32);
    // Clearing the override returns to the service default.
    let cleared = q
        .admin
        .clone()
        .set_admission_policy(SetAdmissionPolicyRequest { concert_id: a, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.policy.unwrap().max_active, 1);
}

/// The order in which the room admits its tokens, with one active slot: each admitted
/// token is expired in turn, so the next in line is admitted.
async fn admission_order(q: &Replica, pool: &sqlx::PgPool, concert: &str, n: usize) -> Vec<String> {
    let mut order = Vec::new();
    while order.len() < n {
        let active: Option<(String, String)> =
            sqlx::query_as("SELECT token::text, user_id FROM tokens WHERE state = 'ACTIVE' AND concert_id = $1::uuid")
                .bind(concert)
                .fetch_optional(pool)
                .await
                .unwrap();
        match active {
            Some((token, user)) => {
                order.push(user);
                q.internal.clone().expire_token(ExpireTokenRequest { token }).await.unwrap();
            }
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    order
}

#[sqlx::test(migrations = false)]
async fn pre_queue_joins_are_admitted_in_random_order_before_anyone_who_joined_after_opening(
    _p: PgPoolOptions,
    db: PgConnectOptions,
) {
    const EARLY: usize = 20;
    let clock = ManualClock::new();
    let q = replica(db.clone(), 1, std::sync::Arc::new(clock.clone())).await;
    let pool = PgPoolOptions::new().connect_with(db.options([("search_path", "queue")])).await.unwrap();
    let opens = clock.now() + chrono::Duration::minutes(1);
    // Two concerts opening at the same instant, each with its own pre-queue.
    let rooms = [
        create_concert(&q.catalog_admin, "Opening A", Some(opens)).await,
        create_concert(&q.catalog_admin, "Opening B", Some(opens)).await,
    ];
    for room in &rooms {
        for i in 0..EARLY {
            let s = join_concert(&q, &format!("early-{i:02}"), room).await;
            assert!(s.pre_queue, "joined before the sale opened");
            assert_eq!((s.position, s.estimated_wait_seconds), (0, None), "no place is shown in the pre-queue");
            assert_eq!(s.sale_opens_at.map(|t| t.seconds), Some(opens.timestamp()));
        }
    }
    // Nobody is admitted before the opening, however many slots are free.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let active: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tokens WHERE state = 'ACTIVE'").fetch_one(&pool).await.unwrap();
    assert_eq!(active, 0);
    let stats = q.public.clone().get_queue_stats(GetQueueStatsRequest { concert_id: rooms[0].clone() }).await;
    assert_eq!(stats.unwrap().into_inner().pre_queue_count, EARLY as u64);

    // The sale opens; later users join in arrival order behind the whole pre-queue.
    clock.advance(chrono::Duration::minutes(1));
    for room in &rooms {
        for i in 0..3 {
            let s = join_concert(&q, &format!("late-{i}"), room).await;
            assert!(!s.pre_queue);
        }
    }
    let mut orders = Vec::new();
    for room in &rooms {
        let order = admission_order(&q, &pool, room, EARLY + 3).await;
        let (early, late) = order.split_at(EARLY);
        assert!(early.iter().all(|u| u.starts_with("early-")), "the pre-queue goes first: {order:?}");
        assert_eq!(late, ["late-0", "late-1", "late-2"], "then arrival order");
        let mut sorted = early.to_vec();
        sorted.sort();
        assert_ne!(early, sorted.as_slice(), "the pre-queue is not admitted in join order");
        orders.push(early.to_vec());
    }
    // Two independent draws over 20 users: equal with probability 1/20!.
    assert_ne!(orders[0], orders[1], "each opening draws its own order");
}

#[sqlx::test(migrations = false)]
async fn a_pre_queue_token_learns_its_position_when_the_sale_opens(_p: PgPoolOptions, db: PgConnectOptions) {
    let clock = ManualClock::new();
    let q = replica(db, 1, std::sync::Arc::new(clock.clone())).await;
    let opens = clock.now() + chrono::Duration::seconds(30);
    let concert = create_concert(&q.catalog_admin, "Soon", Some(opens)).await;
    let mut tokens = Vec::new();
    for i in 0..3 {
        tokens.push(join_concert(&q, &format!("p{i}"), &concert).await.token);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = status(&q, &tokens[2]).await;
    assert!(s.pre_queue && s.position == 0 && s.state == TokenState::Waiting as i32, "{s:?}");
    clock.advance(chrono::Duration::seconds(30));
    // One is admitted; the other two get places 1 and 2 in some order. The opening is judged
    // by the database's clock as of the replica's line snapshot (issue #28: one clock), so
    // the pre-queue ends for the page at the next line refresh, not at once.
    let (mut places, mut pre_queue) = (Vec::new(), true);
    for _ in 0..200 {
        places.clear();
        pre_queue = false;
        for t in &tokens {
            let s = status(&q, t).await;
            pre_queue |= s.pre_queue;
            places.push(s.position);
        }
        places.sort_unstable();
        if !pre_queue && places == [0, 1, 2] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pre_queue, "the sale is open");
    assert_eq!(places, [0, 1, 2]);
}

#[sqlx::test(migrations = false)]
async fn joining_needs_a_known_concert_and_policies_are_checked(_p: PgPoolOptions, db: PgConnectOptions) {
    let q = replica(db, 1, platform::clock::system()).await;
    let bad = IssueTokenRequest { user_id: "u".into(), concert_id: "nope".into() };
    let err = q.public.clone().issue_token(bad).await.unwrap_err();
    assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("concert_id")));
    let unknown = IssueTokenRequest { user_id: "u".into(), concert_id: uuid::Uuid::new_v4().to_string() };
    let err = q.public.clone().issue_token(unknown).await.unwrap_err();
    assert_eq!((err.code(), platform::status::reason(&err).as_deref()), (Code::NotFound, Some("CONCERT_NOT_FOUND")));
    let stats = GetQueueStatsRequest { concert_id: uuid::Uuid::new_v4().to_string() };
    assert_eq!(q.public.clone().get_queue_stats(stats).await.unwrap_err().code(), Code::NotFound);

    for (request, field) in [
        (SetAdmissionPolicyRequest { max_active: Some(0), ..Default::default() }, "max_active"),
        (SetAdmissionPolicyRequest { admit_per_sec: Some(2_000_000), ..Default::default() }, "admit_per_sec"),
        (SetAdmissionPolicyRequest { active_ttl_seconds: Some(0), ..Default::default() }, "active_ttl_seconds"),
    ] {
        let request = SetAdmissionPolicyRequest { concert_id: q.concert.clone(), ..request };
        let err = q.admin.clone().set_admission_policy(request).await.unwrap_err();
        assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some(field)));
    }
    let request = SetAdmissionPolicyRequest { concert_id: uuid::Uuid::new_v4().to_string(), ..Default::default() };
    assert_eq!(q.admin.clone().set_admission_policy(request).await.unwrap_err().code(), Code::NotFound);
}

/// Issue #12, item 8: one live WatchQueue stream per token (a newer one ends the older with
/// ABORTED), and at most QUEUE_MAX_WATCH_STREAMS (100 in these tests) per replica.
#[sqlx::test(migrations = false)]
async fn watch_streams_are_one_per_token_and_capped_per_replica(_p: PgPoolOptions, db: PgConnectOptions) {
    use concert_proto::concert::queue::v1::WatchQueueRequest;
    let q = replica(db, 0, platform::clock::system()).await;
    let watch = |token: String| {
        let mut public = q.public.clone();
        async move { public.watch_queue(WatchQueueRequest { token }).await }
    };
    let first_token = join(&q, "reloader").await.token;
    let mut old = watch(first_token.clone()).await.unwrap().into_inner();
    assert!(old.message().await.unwrap().is_some(), "the first stream speaks");
    let mut new = watch(first_token.clone()).await.unwrap().into_inner();
    assert!(new.message().await.unwrap().is_some());
    let ended = old.message().await.unwrap_err();
    assert_eq!(ended.code(), Code::Aborted, "the older stream ends: {ended:?}");

    // 99 more tokens fill the replica's 100 streams; the 101st is refused, polling still works.
    let mut open = vec![new];
    for i in 0..99 {
        let token = join(&q, &format!("watcher-{i}")).await.token;
        open.push(watch(token).await.unwrap().into_inner());
    }
    let extra = join(&q, "one-too-many").await.token;
    let err = watch(extra.clone()).await.unwrap_err();
    assert_eq!(
        (err.code(), platform::status::reason(&err).as_deref()),
        (Code::ResourceExhausted, Some("TOO_MANY_STREAMS"))
    );
    assert_eq!(status(&q, &extra).await.state, TokenState::Waiting as i32);
    // A stream that closes frees its place.
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..50 {
        match watch(extra.clone()).await {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(reopened.is_some(), "the freed place is given to the next stream");
}

/// Issue #12, item 11: the queue token (the credential of protected calls) never reaches
/// logs or exported spans; a short tag of it does.
#[sqlx::test(migrations = false)]
async fn queue_tokens_are_not_recorded_in_spans_or_logs(_p: PgPoolOptions, db: PgConnectOptions) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .finish();
    // sqlx::test runs on a current-thread runtime, so the servers' tasks log here too.
    let _default = tracing::subscriber::set_default(subscriber);

    let q = replica(db, 0, platform::clock::system()).await;
    let token = join(&q, "secretive").await.token;
    status(&q, &token).await;
    let mut stream = q
        .public
        .clone()
        .watch_queue(concert_proto::concert::queue::v1::WatchQueueRequest { token: token.clone() })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap();
    q.public.clone().leave_queue(LeaveQueueRequest { token: token.clone() }).await.unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("get_queue_status"), "the calls were traced: {logs}");
    assert!(!logs.contains(&token), "the token leaked into the logs");
    assert!(logs.contains(&platform::telemetry::redacted(&token)), "a tag follows the token instead");
}

/// A replica clock that runs `skew` ahead of the real time (a badly synchronised node).
#[derive(Debug)]
struct SkewedClock(chrono::Duration);

impl platform::clock::Clock for SkewedClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.0
    }
}

/// Issue #12, item 12: whether a join is early (pre-queue) and whether admission may start
/// is decided by the database's clock, so a replica whose clock runs ahead neither lets late
/// joins in ahead of the pre-queue nor admits anyone before the sale opens.
#[sqlx::test(migrations = false)]
async fn a_replica_with_a_fast_clock_cannot_open_the_sale_early(_p: PgPoolOptions, db: PgConnectOptions) {
    let fast: SharedClock = std::sync::Arc::new(SkewedClock(chrono::Duration::minutes(10)));
    let q = replica(db.clone(), 5, fast).await;
    let pool = PgPoolOptions::new().connect_with(db.options([("search_path", "queue")])).await.unwrap();
    // Opens in 5 minutes of real time: already open by the replica's clock.
    let concert =
        create_concert(&q.catalog_admin, "Skewed", Some(chrono::Utc::now() + chrono::Duration::minutes(5))).await;
    for i in 0..5 {
        join_concert(&q, &format!("skew-{i}"), &concert).await;
    }
    let early: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tokens WHERE concert_id = $1::uuid AND pre_queue_key IS NOT NULL")
            .bind(&concert)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(early, 5, "every join before the real opening is in the pre-queue");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let active: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tokens WHERE concert_id = $1::uuid AND state = 'ACTIVE'")
            .bind(&concert)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(active, 0, "nobody is admitted before the real opening");
}

#[sqlx::test(migrations = false)]
async fn tokens_that_ended_longer_ago_than_the_retention_are_deleted_and_no_others(
    _p: PgPoolOptions,
    db: PgConnectOptions,
) {
    let clock = ManualClock::new();
    let q = replica(db.clone(), 1, std::sync::Arc::new(clock.clone())).await;
    let pool = PgPoolOptions::new().connect_with(db.options([("search_path", "queue")])).await.unwrap();
    let old = join(&q, "old").await.token;
    q.public.clone().leave_queue(LeaveQueueRequest { token: old.clone() }).await.unwrap();
    // 31 days later: one more ended a moment ago, and one is in line (admitted: the room has one slot).
    clock.advance(chrono::Duration::days(31));
    let recent = join(&q, "recent").await.token;
    q.public.clone().leave_queue(LeaveQueueRequest { token: recent.clone() }).await.unwrap();
    let live = join(&q, "live").await.token;

    let count = |token: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tokens WHERE token = $1::uuid")
                .bind(token)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(old.clone()).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the token that ended 31 days ago was not purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(recent.clone()).await, 1, "a token that ended within the retention is kept");
    assert_eq!(count(live.clone()).await, 1, "a live token is never purged");
    // A purged token is unknown (or ended, where this replica remembers it), never INTERNAL.
    match q.public.clone().get_queue_status(GetQueueStatusRequest { token: old }).await {
        Err(gone) => assert_eq!(gone.code(), Code::NotFound, "{gone:?}"),
        Ok(s) => assert_eq!(s.into_inner().status.map(|s| s.state), Some(TokenState::Expired as i32)),
    }
}
