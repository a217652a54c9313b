//! Issue #14: who is calling. Every public port verifies the caller's access token (JWT)
//! itself; the user is the token's subject; a queue token works only for its own user; public
//! ports never answer internal RPCs; the journey works over grpc-web; and a key the identity
//! provider adds to its JWKS is accepted without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The deprecated single ValidateToken and Debit are still served, so still tested here.
#![allow(deprecated)]
use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use concert_proto::concert::{
    catalog::v1::{
        CreateConcertRequest, GetScheduleSeatsRequest, ListAvailableDatesRequest, ListConcertsRequest,
        ListSeatsRequest, catalog_admin_service_client::CatalogAdminServiceClient,
        catalog_internal_service_client::CatalogInternalServiceClient, catalog_service_client::CatalogServiceClient,
    },
    queue::v1::{
        GetQueueStatsRequest, GetQueueStatusRequest, IssueTokenRequest, LeaveQueueRequest, SetAdmissionPolicyRequest,
        TokenState, ValidateTokenRequest, queue_admin_service_client::QueueAdminServiceClient,
        queue_internal_service_client::QueueInternalServiceClient, queue_service_client::QueueServiceClient,
    },
    reservation::v1::{
        CancelReservationRequest, GetOccupancyRequest, GetReservationRequest, HoldSeatRequest, ListReservationsRequest,
        PayReservationRequest, ReservationStatus,
        reservation_internal_service_client::ReservationInternalServiceClient,
        reservation_service_client::ReservationServiceClient,
    },
    wallet::v1::{
        ChargeRequest, DebitRequest, GetBalanceRequest, wallet_internal_service_client::WalletInternalServiceClient,
        wallet_service_client::WalletServiceClient,
    },
};
use e2e::{Suite, SuiteOptions, as_user, authed};
use platform::{
    identity::{
        AuthSettings, JwksSource, JwtSettings,
        signer::{Claims, jwks_json},
    },
    status::reason,
    testing::{
        RunningServer,
        identity::{AUDIENCE, ISSUER, eddsa, es256, intruder, rotated, rs256},
    },
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::{Code, Request, Status, metadata::MetadataValue};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(sub: &str) -> Claims {
    Claims::new(sub, ISSUER, AUDIENCE, Duration::from_secs(3_600))
}

fn b64(json: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
}

/// `message` with `authorization: <value>` (or none).
fn with_authorization<T>(value: Option<&str>, message: T) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(value) = value {
        r.metadata_mut().insert("authorization", MetadataValue::try_from(value).unwrap());
    }
    r
}

/// Every way a caller might present a bad identity, with the reason the refusal must carry.
fn forged_identities() -> Vec<(&'static str, Option<String>, &'static str)> {
    let valid = es256().sign(&claims("alice")).unwrap();
    let mut expired = claims("alice");
    (expired.iat, expired.nbf, expired.exp) = (now() - 7_200, now() - 7_200, now() - 3_600);
    let mut early = claims("alice");
    (early.nbf, early.exp) = (now() + 3_600, now() + 7_200);
    let mut wrong_issuer = claims("alice");
    wrong_issuer.iss = "https://evil.example/".into();
    let mut wrong_audience = claims("alice");
    wrong_audience.aud = "another-api".into();
    let claims_json = serde_json::to_value(claims("alice")).unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": "test-es256"})),
        b64(&claims_json)
    );
    // The classic confusion attack: HMAC "signed" with the published public key.
    let public_key = jwks_json(&[&es256()]).unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some("test-es256".into());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims("alice"),
        &jsonwebtoken::EncodingKey::from_secret(public_key.as_bytes()).unwrap(),
    )
    .unwrap();
    // A valid token whose payload was swapped for another user's.
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(&serde_json::to_value(claims("mallory")).unwrap()), parts[2]);
    let bearer = |t: String| Some(format!("Bearer {t}"));
    vec![
        ("no token", None, "ACCESS_TOKEN_MISSING"),
        ("not a bearer token", Some("Basic YWxpY2U6cHc=".into()), "ACCESS_TOKEN_INVALID"),
        ("not a JWT", bearer("e30.e30".into()), "ACCESS_TOKEN_INVALID"),
        ("expired", bearer(es256().sign(&expired).unwrap()), "ACCESS_TOKEN_EXPIRED"),
        ("not yet valid", bearer(es256().sign(&early).unwrap()), "ACCESS_TOKEN_NOT_YET_VALID"),
        ("wrong issuer", bearer(es256().sign(&wrong_issuer).unwrap()), "ACCESS_TOKEN_INVALID"),
        ("wrong audience", bearer(es256().sign(&wrong_audience).unwrap()), "ACCESS_TOKEN_INVALID"),
        ("bad signature", bearer(intruder().sign_as("test-es256", &claims("alice")).unwrap()), "ACCESS_TOKEN_INVALID"),
        ("alg none", bearer(alg_none), "ACCESS_TOKEN_INVALID"),
        ("HS256 signed with the public key", bearer(hs256), "ACCESS_TOKEN_INVALID"),
        ("unknown kid", bearer(rotated().sign(&claims("alice")).unwrap()), "ACCESS_TOKEN_INVALID"),
        ("tampered payload", bearer(tampered), "ACCESS_TOKEN_INVALID"),
    ]
}

fn assert_refused(case: &str, service: &str, result: Result<(), Status>, want: &str) {
    let err = result.expect_err(&format!("{service} accepted {case}"));
    assert_eq!(
        (err.code(), reason(&err).as_deref()),
        (Code::Unauthenticated, Some(want)),
        "{service}, {case}: {}",
        err.message()
    );
}

#[sqlx::test(migrations = false)]
async fn every_public_port_refuses_forged_or_missing_identity(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    for (case, authorization, want) in forged_identities() {
        let auth = authorization.as_deref();
        let r = suite.wallet().get_balance(with_authorization(auth, GetBalanceRequest::default())).await;
        assert_refused(case, "wallet GetBalance", r.map(drop), want);
        let r =
            suite.reservation(0).list_reservations(with_authorization(auth, ListReservationsRequest::default())).await;
        assert_refused(case, "reservation ListReservations", r.map(drop), want);
        let join = IssueTokenRequest { user_id: String::new(), concert_id: concert_id.clone() };
        let r = suite.queue().issue_token(with_authorization(auth, join)).await;
        assert_refused(case, "queue IssueToken", r.map(drop), want);
        // Even with alice's valid queue token, the access token is checked first.
        let mut seats = with_authorization(auth, ListSeatsRequest { schedule_id: schedule_id.clone() });
        seats.metadata_mut().insert("x-queue-token", token.parse().unwrap());
        let r = suite.catalog().list_seats(seats).await;
        assert_refused(case, "catalog ListSeats", r.map(drop), want);
        let mut hold = with_authorization(
            auth,
            HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 1, ..Default::default() },
        );
        hold.metadata_mut().insert("x-queue-token", token.parse().unwrap());
        let r = suite.reservation(0).hold_seat(hold).await;
        assert_refused(case, "reservation HoldSeat", r.map(drop), want);
        // An anonymous method still checks a token that is sent.
        if auth.is_some() {
            let r = suite.catalog().list_concerts(with_authorization(auth, ListConcertsRequest::default())).await;
            assert_refused(case, "catalog ListConcerts", r.map(drop), want);
        }
    }
    // Nothing was sold or charged by any of it.
    assert_eq!(suite.balance("alice").await, 0);
    assert!(suite.reconcile().await.is_clean());

    // The accepted algorithms: ES256, RS256 and EdDSA keys of the JWKS.
    for signer in [es256(), rs256(), eddsa()] {
        let jwt = signer.sign(&claims("alice")).unwrap();
        let r = suite
            .wallet()
            .get_balance(with_authorization(Some(&format!("Bearer {jwt}")), GetBalanceRequest::default()))
            .await;
        assert_eq!(r.unwrap().into_inner().user_id, "alice", "{signer:?}");
    }
    // Anonymous methods need no token; health neither.
    suite.catalog().list_concerts(ListConcertsRequest::default()).await.unwrap();
    suite.queue().get_queue_stats(GetQueueStatsRequest { concert_id: concert_id.clone() }).await.unwrap();
    let mut health = tonic_health_client(suite.wallet.as_ref().unwrap());
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.unwrap();
}

fn tonic_health_client(
    server: &RunningServer,
) -> tonic_health::pb::health_client::HealthClient<platform::grpc_client::PeerChannel> {
    tonic_health::pb::health_client::HealthClient::new(server.channel())
}

#[sqlx::test(migrations = false)]
async fn the_user_is_the_access_tokens_subject(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, _) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let mismatch = |r: Result<(), Status>, what: &str| {
        let err = r.expect_err(what);
        assert_eq!((err.code(), reason(&err).as_deref()), (Code::PermissionDenied, Some("USER_MISMATCH")), "{what}");
    };
    let charge = ChargeRequest { user_id: "bob".into(), amount: 1_000, idempotency_key: "k".into() };
    mismatch(suite.wallet().charge(as_user("alice", charge)).await.map(drop), "Charge naming bob");
    mismatch(
        suite.wallet().get_balance(as_user("alice", GetBalanceRequest { user_id: "bob".into() })).await.map(drop),
        "GetBalance naming bob",
    );
    let join = IssueTokenRequest { user_id: "bob".into(), concert_id: concert_id.clone() };
    mismatch(suite.queue().issue_token(as_user("alice", join)).await.map(drop), "IssueToken naming bob");
    let list = ListReservationsRequest { user_id: "bob".into(), ..Default::default() };
    mismatch(
        suite.reservation(0).list_reservations(as_user("alice", list)).await.map(drop),
        "ListReservations naming bob",
    );

    // An empty field, or the caller's own id, acts for the caller.
    let charge = ChargeRequest { user_id: String::new(), amount: 1_000, idempotency_key: "k".into() };
    suite.wallet().charge(as_user("alice", charge)).await.unwrap();
    let charge = ChargeRequest { user_id: "alice".into(), amount: 500, idempotency_key: "k2".into() };
    suite.wallet().charge(as_user("alice", charge)).await.unwrap();
    assert_eq!((suite.balance("alice").await, suite.balance("bob").await), (1_500, 0));
}

#[sqlx::test(migrations = false)]
async fn a_queue_token_works_only_for_its_own_user(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let alices = suite.active_token("alice", &concert_id).await;
    let held = suite.hold(&alices, &schedule_id, 3).await;
    suite.charge("bob", 1_000_000).await;
    // Bob, signed in as himself, presents alice's queue token.
    fn as_bob_with<T>(token: &str, message: T) -> Request<T> {
        let mut r = as_user("bob", message);
        r.metadata_mut().insert("x-queue-token", token.parse().unwrap());
        r
    }
    let not_yours = |r: Result<(), Status>, what: &str| {
        let err = r.expect_err(what);
        assert_eq!((err.code(), reason(&err).as_deref()), (Code::PermissionDenied, Some("TOKEN_NOT_YOURS")), "{what}");
    };
    let hold = HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 4, ..Default::default() };
    not_yours(suite.reservation(0).hold_seat(as_bob_with(&alices, hold)).await.map(drop), "HoldSeat");
    let pay = PayReservationRequest { reservation_id: held.clone(), idempotency_key: "k".into(), ..Default::default() };
    not_yours(suite.reservation(0).pay_reservation(as_bob_with(&alices, pay)).await.map(drop), "PayReservation");
    // CancelReservation checks no queue token (issue #29): the reservation is not bob's.
    let cancel = CancelReservationRequest { reservation_id: held.clone() };
    let err = suite.reservation(0).cancel_reservation(as_bob_with(&alices, cancel)).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::PermissionDenied, Some("NOT_OWNER")));
    let seats = ListSeatsRequest { schedule_id: schedule_id.clone() };
    not_yours(suite.catalog().list_seats(as_bob_with(&alices, seats)).await.map(drop), "ListSeats");
    let dates = ListAvailableDatesRequest { concert_id: concert_id.clone() };
    not_yours(suite.catalog().list_available_dates(as_bob_with(&alices, dates)).await.map(drop), "ListAvailableDates");
    let status = GetQueueStatusRequest { token: alices.clone() };
    not_yours(suite.queue().get_queue_status(as_user("bob", status)).await.map(drop), "GetQueueStatus");
    let leave = LeaveQueueRequest { token: alices.clone() };
    not_yours(suite.queue().leave_queue(as_user("bob", leave)).await.map(drop), "LeaveQueue");
    let watch = concert_proto::concert::queue::v1::WatchQueueRequest { token: alices.clone() };
    not_yours(suite.queue().watch_queue(as_user("bob", watch)).await.map(drop), "WatchQueue");

    // A WAITING token the replica remembers from its join (a stream opens from that row, no
    // read): still only its owner may watch it or give its place away.
    let full = SetAdmissionPolicyRequest { concert_id: concert_id.clone(), max_active: Some(1), ..Default::default() };
    suite.queue_admin().set_admission_policy(full).await.unwrap();
    let join = IssueTokenRequest { user_id: String::new(), concert_id: concert_id.clone() };
    let carols = suite.queue().issue_token(as_user("carol", join)).await.unwrap().into_inner().status.unwrap();
    assert_eq!(carols.state, TokenState::Waiting as i32, "the room is full: {carols:?}");
    let watch = concert_proto::concert::queue::v1::WatchQueueRequest { token: carols.token.clone() };
    not_yours(suite.queue().watch_queue(as_user("bob", watch)).await.map(drop), "WatchQueue of a waiting token");
    let leave = LeaveQueueRequest { token: carols.token.clone() };
    not_yours(suite.queue().leave_queue(as_user("bob", leave)).await.map(drop), "LeaveQueue of a waiting token");
    let watch = concert_proto::concert::queue::v1::WatchQueueRequest { token: carols.token.clone() };
    let mut own = suite.queue().watch_queue(as_user("carol", watch)).await.unwrap().into_inner();
    let first = own.message().await.unwrap().unwrap().status.unwrap();
    assert_eq!((first.token.as_str(), first.state), (carols.token.as_str(), TokenState::Waiting as i32), "{first:?}");

    // None of it touched alice: her token is still ACTIVE, her hold HELD, bob charged nothing.
    let status = suite
        .queue()
        .get_queue_status(authed(&alices, GetQueueStatusRequest { token: alices.clone() }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, TokenState::Active as i32);
    let reservation = suite
        .reservation(0)
        .get_reservation(as_user("alice", GetReservationRequest { reservation_id: held, user_id: String::new() }))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(reservation.status, ReservationStatus::Held as i32);
    assert_eq!(suite.balance("bob").await, 1_000_000);
    suite.assert_books_settle(Duration::from_secs(5)).await;
}

#[sqlx::test(migrations = false)]
async fn public_ports_never_answer_internal_rpcs(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let unimplemented = |r: Result<(), Status>, what: &str| {
        assert_eq!(r.expect_err(what).code(), Code::Unimplemented, "{what}");
    };
    // A caller with a valid access token reaches the public port, and still no internal RPC.
    let wallet = suite.wallet.as_ref().unwrap().channel();
    let debit = DebitRequest { user_id: "alice".into(), amount: 1, idempotency_key: "k".into() };
    unimplemented(WalletInternalServiceClient::new(wallet).debit(as_user("alice", debit)).await.map(drop), "Debit");
    let queue = suite.queue_server().channel();
    let validate = ValidateTokenRequest { token: uuid::Uuid::new_v4().to_string() };
    unimplemented(
        QueueInternalServiceClient::new(queue.clone()).validate_token(as_user("alice", validate)).await.map(drop),
        "ValidateToken",
    );
    unimplemented(
        QueueAdminServiceClient::new(queue)
            .set_admission_policy(as_user("alice", SetAdmissionPolicyRequest::default()))
            .await
            .map(drop),
        "SetAdmissionPolicy",
    );
    let catalog = suite.catalog.channel();
    let concert = CreateConcertRequest { title: "x".into(), venue: "y".into(), sale_opens_at: None };
    unimplemented(
        CatalogAdminServiceClient::new(catalog.clone()).create_concert(as_user("alice", concert)).await.map(drop),
        "CreateConcert",
    );
    let seats = GetScheduleSeatsRequest { schedule_id: uuid::Uuid::new_v4().to_string() };
    unimplemented(
        CatalogInternalServiceClient::new(catalog).get_schedule_seats(as_user("alice", seats)).await.map(drop),
        "GetScheduleSeats",
    );
    let occupancy = GetOccupancyRequest { schedule_ids: vec![] };
    unimplemented(
        ReservationInternalServiceClient::new(suite.reservations[0].channel())
            .get_occupancy(as_user("alice", occupancy))
            .await
            .map(drop),
        "GetOccupancy",
    );
    // And the internal ports serve no public service.
    let r = WalletServiceClient::new(suite.wallet_internal_channel())
        .get_balance(as_user("alice", GetBalanceRequest::default()))
        .await;
    unimplemented(r.map(drop), "GetBalance on the internal port");
    let r = QueueServiceClient::new(suite.queue_server().internal_channel())
        .issue_token(as_user("alice", IssueTokenRequest::default()))
        .await;
    unimplemented(r.map(drop), "IssueToken on the internal port");
    // Without any access token, an internal RPC on a public port is still "not here"
    // (issue #27 item 10: it answered UNAUTHENTICATED), and so is a made-up service.
    let validate = ValidateTokenRequest { token: uuid::Uuid::new_v4().to_string() };
    let r = QueueInternalServiceClient::new(suite.queue_server().channel()).validate_token(validate).await;
    unimplemented(r.map(drop), "ValidateToken without an access token");
    let debit = DebitRequest { user_id: "alice".into(), amount: 1, idempotency_key: "k".into() };
    let r = WalletInternalServiceClient::new(suite.wallet.as_ref().unwrap().channel()).debit(debit).await;
    unimplemented(r.map(drop), "Debit without an access token");
    // A public RPC without a token is still refused for the token.
    let r = QueueServiceClient::new(suite.queue_server().channel()).issue_token(IssueTokenRequest::default()).await;
    assert_eq!(r.unwrap_err().code(), Code::Unauthenticated);
}

/// A grpc-web client over HTTP/1.1 of `server`'s public port, as a browser's (tonic-web's
/// client layer on hyper's HTTP/1.1 client).
macro_rules! grpc_web {
    ($client:ident, $server:expr) => {{
        let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let svc = tower::ServiceBuilder::new().layer(tonic_web::GrpcWebClientLayer::new()).service(http1);
        $client::with_origin(svc, $server.url().parse::<http::Uri>().unwrap())
    }};
}

#[sqlx::test(migrations = false)]
async fn the_whole_journey_over_grpc_web_with_an_access_token(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let mut queue = grpc_web!(QueueServiceClient, suite.queue_server());
    let mut catalog = grpc_web!(CatalogServiceClient, suite.catalog);
    let mut reservation = grpc_web!(ReservationServiceClient, suite.reservations[0]);
    let mut wallet = grpc_web!(WalletServiceClient, suite.wallet.as_ref().unwrap());

    // Refusals are readable over grpc-web too.
    let err = wallet.get_balance(GetBalanceRequest::default()).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::Unauthenticated, Some("ACCESS_TOKEN_MISSING")));

    let join = IssueTokenRequest { user_id: String::new(), concert_id: concert_id.clone() };
    let token = queue.issue_token(as_user("wendy", join)).await.unwrap().into_inner().status.unwrap().token;
    e2e::register_token(&token, "wendy");
    let active = e2e::eventually(TokenState::Active as i32, || {
        let mut queue = queue.clone();
        let token = token.clone();
        async move {
            queue
                .get_queue_status(authed(&token, GetQueueStatusRequest { token: token.clone() }))
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap()
                .state
        }
    })
    .await;
    assert_eq!(active, TokenState::Active as i32);
    let dates = catalog
        .list_available_dates(authed(&token, ListAvailableDatesRequest { concert_id: concert_id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .schedules;
    assert_eq!(dates[0].available_seats, 50);
    let seats =
        catalog.list_seats(authed(&token, ListSeatsRequest { schedule_id: schedule_id.clone() })).await.unwrap();
    assert_eq!(seats.into_inner().seats.len(), 50);
    let held = reservation
        .hold_seat(authed(
            &token,
            HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 12, ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(held.user_id, "wendy");
    let charge = ChargeRequest { user_id: String::new(), amount: 200_000, idempotency_key: "top-up".into() };
    wallet.charge(as_user("wendy", charge)).await.unwrap();
    let pay = PayReservationRequest {
        reservation_id: held.reservation_id.clone(),
        idempotency_key: "pay".into(),
        ..Default::default()
    };
    let paid = reservation.pay_reservation(authed(&token, pay)).await.unwrap().into_inner();
    assert_eq!(paid.balance_after, 200_000 - 120_000);
    let got = reservation
        .get_reservation(as_user(
            "wendy",
            GetReservationRequest { reservation_id: held.reservation_id, user_id: String::new() },
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(got.status, ReservationStatus::Confirmed as i32);
    suite.assert_books_settle(Duration::from_secs(10)).await;
}

/// A JWKS endpoint whose key set the test can change, counting fetches.
struct Jwks {
    url: String,
    keys: Arc<RwLock<String>>,
    fetches: Arc<AtomicUsize>,
    /// Milliseconds each answer waits (a slow identity provider).
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    _server: tokio::task::JoinHandle<()>,
}

async fn serve_jwks(initial: String) -> Jwks {
    let keys = Arc::new(RwLock::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get({
            let (keys, fetches, delay_ms) = (keys.clone(), fetches.clone(), delay_ms.clone());
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst))).await;
                keys.read().unwrap().clone()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks { url, keys, fetches, delay_ms, _server: server }
}

#[sqlx::test(migrations = false)]
async fn a_rotated_signing_key_is_accepted_without_restart_from_a_jwks_url(_p: PgPoolOptions, db: PgConnectOptions) {
    let jwks = serve_jwks(jwks_json(&[&es256()]).unwrap()).await;
    let mut settings = JwtSettings::new(JwksSource::Url(jwks.url.clone()), ISSUER, AUDIENCE);
    settings.min_refresh_interval = Duration::ZERO;
    settings.max_age = Duration::from_millis(300);
    // Verified tokens are remembered for the default hour: a retired key must still end
    // them (the remembered key is checked on every call).
    let wallet_settings = wallet_service::config::Settings {
        db: db.into(),
        max_connections: 4,
        limits: platform::server::Limits::default(),
        auth: AuthSettings::Jwt(settings),
    };
    let server = RunningServer::start(|l, s| wallet_service::app::run(wallet_settings, l, s)).await;
    let mut wallet = WalletServiceClient::new(server.channel());
    let balance = |jwt: &str| with_authorization(Some(&format!("Bearer {jwt}")), GetBalanceRequest::default());
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "fetched once at start-up");

    let old = es256().sign(&claims("alice")).unwrap();
    let new = rotated().sign(&claims("alice")).unwrap();
    wallet.get_balance(balance(&old)).await.unwrap();
    let err = wallet.get_balance(balance(&new)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "a key the provider has not published yet");

    // The identity provider publishes the new key: the next token naming it makes the
    // service fetch the set again, no restart.
    *jwks.keys.write().unwrap() = jwks_json(&[&es256(), &rotated()]).unwrap();
    let fetched = jwks.fetches.load(Ordering::SeqCst);
    assert_eq!(wallet.get_balance(balance(&new)).await.unwrap().into_inner().user_id, "alice");
    assert!(jwks.fetches.load(Ordering::SeqCst) > fetched, "an unknown kid fetches the JWKS again");

    // Then it retires the old key: once the set is older than its max age, tokens of the old
    // key stop being accepted.
    *jwks.keys.write().unwrap() = jwks_json(&[&rotated()]).unwrap();
    let refused = e2e::eventually(Code::Unauthenticated, || {
        let mut wallet = wallet.clone();
        let request = balance(&old);
        async move { wallet.get_balance(request).await.err().map_or(Code::Ok, |e| e.code()) }
    })
    .await;
    assert_eq!(refused, Code::Unauthenticated, "a retired key is refused after the set's max age");
    assert_eq!(wallet.get_balance(balance(&new)).await.unwrap().into_inner().user_id, "alice");
}

/// One anonymous reflection question to `server`'s public (or internal) port: the answer.
async fn reflect(
    channel: platform::grpc_client::PeerChannel,
    request: tonic_reflection::pb::v1::server_reflection_request::MessageRequest,
) -> Result<tonic_reflection::pb::v1::server_reflection_response::MessageResponse, Status> {
    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_client::ServerReflectionClient};
    let question = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([question]))
        .await
        .unwrap()
        .into_inner();
    Ok(answers.message().await?.unwrap().message_response.unwrap())
}

/// Issue #27, item 4: reflection on a public port lists and describes only that port's
/// services: the internal ones' descriptors (served anonymously before) are NOT_FOUND there,
/// and still served on the internal port.
#[sqlx::test(migrations = false)]
async fn a_public_ports_reflection_describes_only_what_it_routes(_p: PgPoolOptions, db: PgConnectOptions) {
    use tonic_reflection::pb::v1::{
        server_reflection_request::MessageRequest::{FileContainingSymbol, ListServices},
        server_reflection_response::MessageResponse,
    };
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let wallet = suite.wallet.as_ref().unwrap();
    let MessageResponse::ListServicesResponse(listed) =
        reflect(wallet.channel(), ListServices(String::new())).await.unwrap()
    else {
        panic!("not a service list")
    };
    let mut names: Vec<_> = listed.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["concert.wallet.v1.WalletService", "grpc.health.v1.Health"]);

    for symbol in ["concert.wallet.v1.WalletInternalService", "concert.wallet.v1.DebitRequest"] {
        let answer = reflect(wallet.channel(), FileContainingSymbol(symbol.into())).await;
        let code = match answer {
            Err(status) => status.code() as i32,
            Ok(MessageResponse::ErrorResponse(error)) => error.error_code,
            Ok(described) => panic!("{symbol} was described: {described:?}"),
        };
        assert_eq!(code, Code::NotFound as i32, "{symbol}");
    }
    let answer = reflect(wallet.channel(), FileContainingSymbol("concert.wallet.v1.WalletService".into())).await;
    assert!(matches!(answer, Ok(MessageResponse::FileDescriptorResponse(_))), "{answer:?}");
    let answer =
        reflect(wallet.internal_channel(), FileContainingSymbol("concert.wallet.v1.WalletInternalService".into()))
            .await;
    assert!(matches!(answer, Ok(MessageResponse::FileDescriptorResponse(_))), "{answer:?}");
}

/// Issue #27, item 5: anonymous streams are capped. Health `Watch` streams needed no token and
/// were never shed, so one connection could hold any number open; now the fifth on one
/// connection is refused (RESOURCE_EXHAUSTED TOO_MANY_STREAMS) while probes' unary `Check`
/// still answers, and a closed stream frees its slot.
#[sqlx::test(migrations = false)]
async fn anonymous_streams_are_capped_per_connection(_p: PgPoolOptions, db: PgConnectOptions) {
    use tonic_health::pb::HealthCheckRequest;
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let wallet = suite.wallet.as_ref().unwrap();
    let mut health = tonic_health_client(wallet); // one connection
    let mut open = Vec::new();
    for _ in 0..platform::anonymous::PER_CONNECTION {
        open.push(health.watch(HealthCheckRequest::default()).await.unwrap().into_inner());
    }
    for stream in &mut open {
        assert!(stream.message().await.unwrap().is_some(), "each watch reports the status");
    }
    let refused = health.watch(HealthCheckRequest::default()).await.unwrap_err();
    assert_eq!(
        (refused.code(), reason(&refused).as_deref()),
        (Code::ResourceExhausted, Some("TOO_MANY_STREAMS")),
        "{refused:?}"
    );
    health.check(HealthCheckRequest::default()).await.expect("probes still answer");
    // Another connection has slots of its own.
    let mut other = tonic_health_client(wallet);
    other.watch(HealthCheckRequest::default()).await.unwrap();

    drop(open.pop());
    let mut reopened = None;
    for _ in 0..50 {
        // The server learns of the reset stream a moment later.
        if let Ok(stream) = health.watch(HealthCheckRequest::default()).await {
            reopened = Some(stream);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "a closed stream frees its slot");
}

/// Issue #27, item 6: calls naming unknown key ids while the identity provider is slow waited
/// for its JWKS (up to the 5 s HTTP timeout) holding in-flight slots, so a flood of made-up
/// kids filled the replica. Now they wait briefly in front of the shedder and are refused
/// UNAVAILABLE while the fetch goes on; a good call is served meanwhile.
#[sqlx::test(migrations = false)]
async fn a_slow_identity_provider_holds_no_in_flight_slot(_p: PgPoolOptions, db: PgConnectOptions) {
    let jwks = serve_jwks(jwks_json(&[&es256()]).unwrap()).await;
    let mut settings = JwtSettings::new(JwksSource::Url(jwks.url.clone()), ISSUER, AUDIENCE);
    settings.min_refresh_interval = Duration::ZERO;
    let wallet_settings = wallet_service::config::Settings {
        db: db.into(),
        max_connections: 4,
        limits: platform::server::Limits { max_in_flight: 4, ..Default::default() },
        auth: AuthSettings::Jwt(settings),
    };
    let server = RunningServer::start(|l, s| wallet_service::app::run(wallet_settings, l, s)).await;
    let wallet = WalletServiceClient::new(server.channel());
    let balance = |jwt: &str| with_authorization(Some(&format!("Bearer {jwt}")), GetBalanceRequest::default());
    jwks.delay_ms.store(3_000, Ordering::SeqCst);

    let made_up: Vec<_> = (0..16)
        .map(|i| {
            let (mut wallet, jwt) =
                (wallet.clone(), es256().sign_as(&format!("made-up-{i}"), &claims("mallory")).unwrap());
            tokio::spawn(async move { wallet.get_balance(balance(&jwt)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let good = es256().sign(&claims("alice")).unwrap();
    let served = wallet.clone().get_balance(balance(&good)).await;
    assert_eq!(served.unwrap().into_inner().user_id, "alice", "four slots, sixteen waiting, and still served");
    for call in made_up {
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(
            (err.code(), reason(&err).as_deref()),
            (Code::Unavailable, Some("ACCESS_TOKEN_KEYS_UNAVAILABLE")),
            "{err:?}"
        );
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2, "start-up, then one fetch for all sixteen");
}
