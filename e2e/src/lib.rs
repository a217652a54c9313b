//! Starts the whole suite in-process for tests: queue, catalog, one or more reservation
//! replicas and wallet, each on an ephemeral port, all against one fresh PostgreSQL database
//! (each service in its own schema), sharing one injectable clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod pgbouncer;

use std::time::Duration;

use concert_proto::concert::{
    catalog::v1::{
        AddScheduleRequest, CreateConcertRequest, GradePricing,
        catalog_admin_service_client::CatalogAdminServiceClient, catalog_service_client::CatalogServiceClient,
    },
    queue::v1::{
        GetQueueStatusRequest, IssueTokenRequest, TokenState, queue_admin_service_client::QueueAdminServiceClient,
        queue_service_client::QueueServiceClient,
    },
    reservation::v1::{
        CancelReservationRequest, GetReservationRequest, HoldSeatRequest, PayReservationRequest,
        PayReservationResponse, Reservation, reservation_service_client::ReservationServiceClient,
    },
    wallet::v1::{
        ChargeRequest, GetBalanceRequest, ListTransactionsRequest, wallet_service_client::WalletServiceClient,
    },
};
use platform::{
    auth::QUEUE_TOKEN_HEADER,
    clock::SharedClock,
    config::{DbOptions, Pooler},
    grpc_client::PeerChannel,
    identity::AuthSettings,
    outbound::CallPolicy,
    server::{Limits, Listeners},
    testing::{RunningServer, listeners, rebind},
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tonic::{Request, Status};

/// Token-check cache of catalog and reservation: the production default.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_millis(1_000);

/// ListSeats seat-status cache of catalog: the production default.
pub const SEAT_STATUS_CACHE: Duration = Duration::from_millis(100);

/// How to start the suite.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub max_active: u64,
    pub hold_ttl: chrono::Duration,
    /// Most live holds per user and concert.
    /// How long before a show a bought seat can still be given back (REFUND_DEADLINE_HOURS).
    pub refund_deadline: chrono::Duration,
    pub max_holds_per_user: u32,
    pub reservation_replicas: usize,
    pub clock: SharedClock,
    pub recovery_interval: Duration,
    pub payment_lease: chrono::Duration,
    /// Recovery tries before a payment is left to a person.
    pub payment_max_attempts: i32,
    /// Deadlines and retries of reservation's calls to wallet and queue.
    pub peer_policy: CallPolicy,
    /// How every service's public port authenticates users (the test keys by default).
    pub auth: AuthSettings,
    /// Services reach PostgreSQL through a real PgBouncer in transaction pooling
    /// (migrations directly), as in the prod overlay.
    pub pgbouncer: bool,
    /// The queue's admission-pass key (catalog and reservation verify with its public half);
    /// `None`: no passes, only bare queue tokens.
    pub passes: Option<platform::admission::PassSigner>,
    /// The queue's total join rate per second (`QUEUE_JOIN_RATE_TOTAL`); `None`: no limit.
    pub join_rate_total: Option<std::num::NonZeroU32>,
    /// Catalog's `SEAT_MAP_MAX_STREAMS`.
    pub seat_map_max_streams: usize,
    /// Catalog's `SEAT_MAP_STREAM_SECS`.
    pub seat_map_stream_lifetime: Duration,
    /// Reservation's `SEAT_TAKEN_CACHE_MS`.
    pub seat_taken_ttl: Duration,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        Self {
            max_active: 1_000,
            hold_ttl: chrono::Duration::seconds(300),
            max_holds_per_user: 4,
            refund_deadline: chrono::Duration::hours(24),
            reservation_replicas: 1,
            clock: platform::clock::system(),
            recovery_interval: Duration::from_secs(3_600),
            payment_lease: chrono::Duration::seconds(30),
            payment_max_attempts: 100,
            peer_policy: CallPolicy::default(),
            auth: platform::testing::identity::settings(),
            pgbouncer: false,
            passes: Some(platform::testing::admission::signer()),
            join_rate_total: None,
            seat_map_max_streams: 20_000,
            seat_map_stream_lifetime: Duration::from_secs(600),
            seat_taken_ttl: Duration::from_millis(500),
        }
    }
}

// Pool sizes are small on purpose: tests run two suites at once against one PostgreSQL
// whose default max_connections is 100.

/// The running suite.
pub struct Suite {
    /// The queue (`None` once a test stopped it: [`Suite::stop_queue`]).
    queue: Option<RunningServer>,
    pub catalog: RunningServer,
    pub reservations: Vec<RunningServer>,
    pub wallet: Option<RunningServer>,
    /// The wallet's (public, internal) addresses, kept across restarts.
    wallet_addrs: (std::net::SocketAddr, std::net::SocketAddr),
    /// The ports of a stopped wallet, kept from other tests until it restarts.
    held_wallet_ports: Option<platform::testing::HeldPorts>,
    /// The ports of a stopped queue, kept from other tests until the suite ends.
    held_queue_ports: Option<platform::testing::HeldPorts>,
    wallet_auth: AuthSettings,
    reservation_settings: reservation_service::config::Settings,
    db: PgConnectOptions,
    /// How the services reach the database: directly, or through this PgBouncer.
    pgbouncer: Option<std::sync::Arc<pgbouncer::PgBouncer>>,
    pub clock: SharedClock,
}

/// How the service owning `schema` reaches the test's database `db`.
fn db_options(db: &PgConnectOptions, pgbouncer: Option<&pgbouncer::PgBouncer>, schema: &str) -> DbOptions {
    match pgbouncer {
        None => db.clone().into(),
        Some(bouncer) => DbOptions {
            connect: bouncer.options(db, schema),
            pooler: Pooler::PgBouncerTransaction,
            migrate_with: Some(db.clone()),
        },
    }
}

/// The internal port's URL: peers call each other there.
fn internal_url(l: &Listeners) -> String {
    format!("http://{}", l.internal.local_addr().unwrap())
}

impl Suite {
    /// Starts every service against the database `db`.
    pub async fn start(db: PgConnectOptions, opts: SuiteOptions) -> Self {
        let queue_l = listeners().await;
        let catalog_l = listeners().await;
        let wallet_l = listeners().await;
        let mut reservation_ls = Vec::new();
        for _ in 0..opts.reservation_replicas.max(1) {
            reservation_ls.push(listeners().await);
        }
        let (queue_url, catalog_url, wallet_url) =
            (internal_url(&queue_l), internal_url(&catalog_l), internal_url(&wallet_l));
        let reservation_url = internal_url(&reservation_ls[0]);
        let wallet_addrs = (wallet_l.public.local_addr().unwrap(), wallet_l.internal.local_addr().unwrap());

        let pgbouncer = opts.pgbouncer.then(|| std::sync::Arc::new(pgbouncer::PgBouncer::start(&db)));
        let bouncer = pgbouncer.as_deref();
        // Migrations of one service at a time keep start-up deterministic.
        let wallet = start_wallet(db_options(&db, bouncer, "wallet"), opts.auth.clone(), wallet_l).await;
        let queue_settings = queue_service::config::Settings {
            db: db_options(&db, bouncer, "queue"),
            max_connections: 4,
            internal_connections: 2,
            limits: Limits::default(),
            auth: opts.auth.clone(),
            passes: opts.passes.clone(),
            pacing: queue_service::domain::Pacing::for_idle_timeout(600),
            catalog_url: catalog_url.clone(),
            policy: queue_service::domain::AdmissionPolicy {
                max_active: opts.max_active,
                active_ttl: chrono::Duration::seconds(600),
                admit_per_sec: 0,
                idle_timeout: chrono::Duration::seconds(600),
            },
            seen_flush: Duration::from_millis(200),
            seen_rewrite_after: Duration::from_millis(400),
            admission_interval: Duration::from_millis(20),
            line_refresh: Duration::from_millis(20),
            join_rates: queue_service::service::rate_limit::JoinRates {
                per_user: std::num::NonZeroU32::new(10).unwrap(),
                per_user_burst: std::num::NonZeroU32::new(20).unwrap(),
                total: opts.join_rate_total,
            },
            max_watch_streams: 1_000,
            retention: platform::retention::Retention::days(30, 1),
            clock: opts.clock.clone(),
        };
        let queue = RunningServer::start_on(queue_l, |l, s| queue_service::app::run(queue_settings, l, s)).await;
        let catalog_settings = catalog_service::config::Settings {
            db: db_options(&db, bouncer, "catalog"),
            max_connections: 4,
            limits: Limits::default(),
            auth: opts.auth.clone(),
            queue_url: queue_url.clone(),
            reservation_url,
            token_cache_ttl: TOKEN_CACHE_TTL,
            passes: opts.passes.as_ref().map(platform::admission::PassSigner::verifier),
            layout_cache_ttl: Duration::from_secs(300),
            seat_status_ttl: SEAT_STATUS_CACHE,
            seat_map_max_streams: opts.seat_map_max_streams,
            seat_map_stream_lifetime: opts.seat_map_stream_lifetime,
            clock: opts.clock.clone(),
        };
        let catalog =
            RunningServer::start_on(catalog_l, |l, s| catalog_service::app::run(catalog_settings, l, s)).await;
        let reservation_settings = reservation_service::config::Settings {
            db: db_options(&db, bouncer, "reservation"),
            max_connections: 8,
            limits: Limits::default(),
            auth: opts.auth.clone(),
            queue_url: queue_url.clone(),
            catalog_url: catalog_url.clone(),
            wallet_url: wallet_url.clone(),
            peer_policy: opts.peer_policy,
            hold_ttl: opts.hold_ttl,
            max_holds_per_user: opts.max_holds_per_user,
            refund_deadline: opts.refund_deadline,
            sweep_interval: Duration::from_millis(100),
            recovery_interval: opts.recovery_interval,
            payment_lease: opts.payment_lease,
            payment_max_attempts: opts.payment_max_attempts,
            token_cache_ttl: TOKEN_CACHE_TTL,
            passes: opts.passes.as_ref().map(platform::admission::PassSigner::verifier),
            layout_cache_ttl: Duration::from_secs(300),
            seat_taken_ttl: opts.seat_taken_ttl,
            seat_occupancy_reuse: Duration::from_millis(100),
            // Purged every second: the retention test moves a manual clock past it.
            retention: platform::retention::Retention::days(30, 1),
            clock: opts.clock.clone(),
        };
        let mut reservations = Vec::new();
        for l in reservation_ls {
            reservations.push(start_reservation(reservation_settings.clone(), l).await);
        }
        Self {
            queue: Some(queue),
            catalog,
            reservations,
            wallet: Some(wallet),
            wallet_addrs,
            held_wallet_ports: None,
            held_queue_ports: None,
            wallet_auth: opts.auth,
            reservation_settings,
            db,
            pgbouncer,
            clock: opts.clock,
        }
    }

    /// The queue's server.
    ///
    /// # Panics
    /// After [`Suite::stop_queue`].
    pub fn queue_server(&self) -> &RunningServer {
        self.queue.as_ref().expect("the queue was stopped")
    }

    /// Stops the queue (both its ports), as an outage of the waiting room would.
    pub async fn stop_queue(&mut self) {
        if let Some(queue) = self.queue.take() {
            self.held_queue_ports = Some(queue.stop_holding_ports().await.unwrap());
        }
    }

    pub fn queue(&self) -> QueueServiceClient<PeerChannel> {
        QueueServiceClient::new(self.queue_server().channel())
    }

    /// The queue's operator API (on its internal port).
    pub fn queue_admin(&self) -> QueueAdminServiceClient<PeerChannel> {
        QueueAdminServiceClient::new(self.queue_server().internal_channel())
    }

    pub fn catalog(&self) -> CatalogServiceClient<PeerChannel> {
        CatalogServiceClient::new(self.catalog.channel())
    }

    pub fn admin(&self) -> CatalogAdminServiceClient<PeerChannel> {
        CatalogAdminServiceClient::new(self.catalog.internal_channel())
    }

    /// Where the suite listens, as `concertctl` takes it (reservation: replica 0), signing
    /// user tokens with the test key the suite trusts.
    ///
    /// # Panics
    /// When the wallet is stopped.
    pub fn endpoints(&self) -> concertctl::clients::Endpoints {
        let wallet = self.wallet.as_ref().expect("the wallet is running");
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/../libs/platform/src/identity/test_keys/es256.pem");
        concertctl::clients::Endpoints {
            queue_url: self.queue_server().url(),
            catalog_url: self.catalog.url(),
            reservation_url: self.reservations[0].url(),
            wallet_url: wallet.url(),
            queue_internal_url: self.queue_server().internal_url(),
            catalog_internal_url: self.catalog.internal_url(),
            reservation_internal_url: self.reservations[0].internal_url(),
            wallet_internal_url: wallet.internal_url(),
            signing: concertctl::clients::Signing {
                signing_key: key.into(),
                signing_kid: "test-es256".into(),
                issuer: platform::testing::identity::ISSUER.into(),
                audience: platform::testing::identity::AUDIENCE.into(),
            },
        }
    }

    /// A client of reservation replica `i`.
    pub fn reservation(&self, i: usize) -> ReservationServiceClient<PeerChannel> {
        ReservationServiceClient::new(self.reservations[i].channel())
    }

    pub fn wallet(&self) -> WalletServiceClient<PeerChannel> {
        let url = format!("http://{}", self.wallet_addrs.0);
        WalletServiceClient::new(platform::testing::test_channel(&url))
    }

    /// A channel to the wallet's internal port (it survives wallet restarts).
    pub fn wallet_internal_channel(&self) -> PeerChannel {
        platform::testing::test_channel(&format!("http://{}", self.wallet_addrs.1))
    }

    /// Stops the wallet (calls to it then fail with UNAVAILABLE).
    pub async fn stop_wallet(&mut self) {
        if let Some(w) = self.wallet.take() {
            self.held_wallet_ports = Some(w.stop_holding_ports().await.unwrap());
        }
    }

    /// Kills reservation replica `i` as a crash would (every task it started ends at once)
    /// and starts a fresh replica on the same port, as a restarted pod.
    pub async fn crash_and_restart_reservation(&mut self, i: usize) {
        let (addr, internal) = (self.reservations[i].addr, self.reservations[i].internal_addr);
        self.crash_reservation(i);
        let listeners = Listeners { public: rebind(addr).await, internal: rebind(internal).await };
        let replacement = start_reservation(self.reservation_settings.clone(), listeners).await;
        self.reservations.insert(i, replacement);
    }

    /// Kills reservation replica `i` as a crash would; later indexes shift down by one.
    pub fn crash_reservation(&mut self, i: usize) {
        self.reservations.remove(i).kill();
    }

    /// Starts the wallet again on its old port.
    pub async fn restart_wallet(&mut self) {
        self.held_wallet_ports = None;
        let listeners =
            Listeners { public: rebind(self.wallet_addrs.0).await, internal: rebind(self.wallet_addrs.1).await };
        let db = db_options(&self.db, self.pgbouncer.as_deref(), "wallet");
        self.wallet = Some(start_wallet(db, self.wallet_auth.clone(), listeners).await);
    }

    /// A pool on one service's schema, for assertions on stored state.
    pub async fn pool(&self, schema: &str) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(self.db.clone().options([("search_path", schema)]))
            .await
            .unwrap()
    }

    /// A concert with one date starting in `starts_in`: seats 1-10 VIP 150,000 won,
    /// 11-30 R 120,000 won, 31-50 S 90,000 won. Returns (concert_id, schedule_id).
    pub async fn seed_schedule(&self, starts_in: chrono::Duration) -> (String, String) {
        let mut admin = self.admin();
        let concert = admin
            .create_concert(CreateConcertRequest {
                title: "Test Concert".into(),
                venue: "Hall".into(),
                sale_opens_at: None,
            })
            .await
            .unwrap()
            .into_inner()
            .concert
            .unwrap();
        let schedule = self.add_schedule(&concert.concert_id, starts_in).await;
        (concert.concert_id, schedule)
    }

    /// Adds a date to a concert; returns its schedule id.
    pub async fn add_schedule(&self, concert_id: &str, starts_in: chrono::Duration) -> String {
        let starts_at = self.clock.now() + starts_in;
        self.admin()
            .add_schedule(AddScheduleRequest {
                concert_id: concert_id.into(),
                starts_at: Some(platform::convert::timestamp(starts_at)),
                grades: standard_grades(),
            })
            .await
            .unwrap()
            .into_inner()
            .schedule
            .unwrap()
            .schedule_id
    }

    /// Joins `concert_id`'s waiting room as `user` and waits until the token is ACTIVE.
    pub async fn active_token(&self, user: &str, concert_id: &str) -> String {
        active_token(self.queue(), user, concert_id).await
    }

    /// Where `token` stands, as its owner's GetQueueStatus says.
    pub async fn queue_status(&self, token: &str) -> concert_proto::concert::queue::v1::QueueStatus {
        let request = authed(token, GetQueueStatusRequest { token: token.into() });
        self.queue().get_queue_status(request).await.unwrap().into_inner().status.unwrap()
    }

    /// The admission pass of ACTIVE `token`, as its owner's GetQueueStatus hands it out;
    /// registered as the owner's, so [`authed`] sends it with their access token.
    pub async fn admission_pass(&self, token: &str) -> String {
        let status = self.queue_status(token).await;
        assert_eq!(status.state, TokenState::Active as i32, "a pass comes with admission");
        assert!(!status.admission_pass.is_empty(), "an ACTIVE token's owner gets its pass");
        register_token(&status.admission_pass, &token_owner(token));
        status.admission_pass
    }

    /// Charges `amount` won to `user`'s wallet.
    pub async fn charge(&self, user: &str, amount: i64) {
        let charge =
            ChargeRequest { user_id: String::new(), amount, idempotency_key: format!("charge-{}", uuid_like()) };
        self.wallet().charge(as_user(user, charge)).await.unwrap();
    }

    /// Seat `seat`'s status as ListSeats shows it once it equals `want`, or the last status
    /// seen after waiting several seat-status cache periods.
    pub async fn seat_status_eventually(&self, token: &str, schedule_id: &str, seat: u32, want: i32) -> i32 {
        use concert_proto::concert::catalog::v1::ListSeatsRequest;
        let mut last = -1;
        for _ in 0..20 {
            let seats = self
                .catalog()
                .list_seats(authed(token, ListSeatsRequest { schedule_id: schedule_id.into() }))
                .await
                .unwrap()
                .into_inner()
                .seats;
            last = seats[(seat - 1) as usize].status;
            if last == want {
                break;
            }
            tokio::time::sleep(SEAT_STATUS_CACHE / 4).await;
        }
        last
    }

    /// Holds `seat` through replica 0 with an ACTIVE `token`; returns the reservation id.
    pub async fn hold(&self, token: &str, schedule_id: &str, seat: u32) -> String {
        self.reservation(0)
            .hold_seat(authed(
                token,
                HoldSeatRequest { schedule_id: schedule_id.into(), seat_number: seat, ..Default::default() },
            ))
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap()
            .reservation_id
    }

    /// PayReservation through replica 0.
    pub async fn pay(&self, token: &str, reservation_id: &str, key: &str) -> Result<PayReservationResponse, Status> {
        self.reservation(0)
            .pay_reservation(authed(
                token,
                PayReservationRequest {
                    reservation_id: reservation_id.into(),
                    idempotency_key: key.into(),
                    ..Default::default()
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// PayReservation of an order (`reservation_ids`) through replica `replica`.
    pub async fn pay_order(
        &self,
        replica: usize,
        token: &str,
        reservation_ids: &[String],
        key: &str,
    ) -> Result<PayReservationResponse, Status> {
        let pay = PayReservationRequest {
            reservation_ids: reservation_ids.to_vec(),
            idempotency_key: key.into(),
            ..Default::default()
        };
        self.reservation(replica).pay_reservation(authed(token, pay)).await.map(tonic::Response::into_inner)
    }

    /// CancelReservation as `user` with the access token alone (no queue token): how a
    /// buyer releases a hold or gives a ticket back.
    pub async fn cancel_as(&self, user: &str, reservation_id: &str) -> Result<Reservation, Status> {
        let cancel = CancelReservationRequest { reservation_id: reservation_id.into() };
        let answer = self.reservation(0).cancel_reservation(as_user(user, cancel)).await?;
        Ok(answer.into_inner().reservation.unwrap_or_default())
    }

    /// `user`'s reservation `reservation_id` as GetReservation shows it.
    pub async fn reservation_of(&self, user: &str, reservation_id: &str) -> Reservation {
        let get = GetReservationRequest { reservation_id: reservation_id.into(), user_id: String::new() };
        self.reservation(0).get_reservation(as_user(user, get)).await.unwrap().into_inner().reservation.unwrap()
    }

    /// `user`'s ledger, newest first, as (kind, amount).
    pub async fn ledger_kinds(&self, user: &str) -> Vec<(i32, i64)> {
        self.wallet()
            .list_transactions(as_user(user, ListTransactionsRequest { user_id: String::new(), limit: 100 }))
            .await
            .unwrap()
            .into_inner()
            .transactions
            .iter()
            .map(|t| (t.kind, t.amount))
            .collect()
    }

    /// The cross-service reconciliation of the suite's books, as `concertctl reconcile`
    /// reads them.
    pub async fn reconcile(&self) -> concertctl::reconcile::Report {
        use concert_proto::concert::{
            reservation::v1::reservation_internal_service_client::ReservationInternalServiceClient,
            wallet::v1::wallet_internal_service_client::WalletInternalServiceClient,
        };
        let wallet = WalletInternalServiceClient::new(self.wallet_internal_channel());
        let reservation = ReservationInternalServiceClient::new(self.reservations[0].internal_channel());
        concertctl::reconcile::fetch_and_reconcile(wallet, reservation).await.unwrap()
    }

    /// Waits (up to `within`) until every payment has finished, then asserts that the books
    /// reconcile: every won and every seat accounted for. Returns the report.
    pub async fn assert_books_settle(&self, within: Duration) -> concertctl::reconcile::Report {
        let until = std::time::Instant::now() + within;
        loop {
            let report = self.reconcile().await;
            assert!(report.is_clean(), "{report}");
            if report.is_settled() {
                return report;
            }
            assert!(std::time::Instant::now() < until, "payments did not settle in {within:?}:\n{report}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stored saga state of the payment of `reservation_id`.
    pub async fn payment_status(&self, reservation_id: &str) -> String {
        sqlx::query_scalar("SELECT status FROM payments WHERE reservation_id = $1::uuid")
            .bind(reservation_id)
            .fetch_one(&self.pool("reservation").await)
            .await
            .unwrap()
    }

    /// Waits (up to 5 s) until the queue shows `token` EXPIRED: a payment expires its token
    /// right after answering (batched), so a user re-joining at once may still get it back.
    pub async fn token_expired_eventually(&self, token: &str) -> bool {
        let state = || async { self.queue_status(token).await.state };
        eventually(TokenState::Expired as i32, state).await == TokenState::Expired as i32
    }

    /// Polls the payment of `reservation_id` for up to 5 s until its state is `want`;
    /// returns the last state seen.
    pub async fn payment_status_eventually(&self, reservation_id: &str, want: &str) -> String {
        eventually(want.to_owned(), || self.payment_status(reservation_id)).await
    }

    pub async fn balance(&self, user: &str) -> i64 {
        let request = as_user(user, GetBalanceRequest { user_id: String::new() });
        self.wallet().get_balance(request).await.unwrap().into_inner().balance
    }
}

/// A reservation replica on a runtime of its own, so that it can be killed like a process.
async fn start_reservation(settings: reservation_service::config::Settings, listeners: Listeners) -> RunningServer {
    RunningServer::start_isolated(listeners, |l, s| reservation_service::app::run(settings, l, s)).await
}

async fn start_wallet(db: DbOptions, auth: AuthSettings, listeners: Listeners) -> RunningServer {
    let settings = wallet_service::config::Settings { db, max_connections: 6, limits: Limits::default(), auth };
    RunningServer::start_on(listeners, |l, s| wallet_service::app::run(settings, l, s)).await
}

/// The seat layout used by tests and the demo.
pub fn standard_grades() -> Vec<GradePricing> {
    vec![
        GradePricing { grade: "VIP".into(), first_seat: 1, last_seat: 10, price: 150_000 },
        GradePricing { grade: "R".into(), first_seat: 11, last_seat: 30, price: 120_000 },
        GradePricing { grade: "S".into(), first_seat: 31, last_seat: 50, price: 90_000 },
    ]
}

/// The user each queue token was issued to (filled by [`active_token`] and
/// [`register_token`]), so that [`authed`] can send the owner's access token with it.
static TOKEN_OWNERS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
    std::sync::LazyLock::new(Default::default);

/// Access tokens minted so far, by user: signing costs milliseconds in a debug build.
static ACCESS_TOKENS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
    std::sync::LazyLock::new(Default::default);

/// Remembers that `token` was issued to `user`.
pub fn register_token(token: &str, user: &str) {
    TOKEN_OWNERS.lock().unwrap().insert(token.to_owned(), user.to_owned());
}

/// The user owning `token`, or `stranger` for a token this process never saw issued (a
/// made-up one).
pub fn token_owner(token: &str) -> String {
    TOKEN_OWNERS.lock().unwrap().get(token).cloned().unwrap_or_else(|| "stranger".into())
}

/// A valid test access token naming `user` (see `platform::testing::identity`).
pub fn access_token(user: &str) -> String {
    let mut tokens = ACCESS_TOKENS.lock().unwrap();
    tokens.entry(user.to_owned()).or_insert_with(|| platform::testing::identity::token(user)).clone()
}

/// A request as `user`: `authorization: Bearer <access token naming user>`.
pub fn as_user<T>(user: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {}", access_token(user)).parse().unwrap());
    r
}

/// A protected request: the queue token in `x-queue-token`, sent by the user it was issued
/// to (their access token in `authorization`).
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut r = as_user(&token_owner(token), message);
    if let Ok(value) = token.parse() {
        r.metadata_mut().insert(QUEUE_TOKEN_HEADER, value);
    }
    r
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Joins `concert_id`'s waiting room as `user` through `queue` and waits until the token
/// is ACTIVE.
pub async fn active_token(mut queue: QueueServiceClient<PeerChannel>, user: &str, concert_id: &str) -> String {
    let issue = IssueTokenRequest { user_id: String::new(), concert_id: concert_id.into() };
    let mut token = queue.issue_token(as_user(user, issue.clone())).await.unwrap().into_inner().status.unwrap().token;
    register_token(&token, user);
    for _ in 0..250 {
        let s = queue
            .get_queue_status(as_user(user, GetQueueStatusRequest { token: token.clone() }))
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if s.state == TokenState::Active as i32 {
            return s.token;
        }
        if s.state == TokenState::Expired as i32 {
            // Re-joining returned the user's live token just before a payment made with it
            // expired it: join again.
            token = queue.issue_token(as_user(user, issue.clone())).await.unwrap().into_inner().status.unwrap().token;
            register_token(&token, user);
            continue;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{user} was never admitted");
}

/// Calls `read` every 50 ms for up to 5 s until it returns `want`; returns the last value
/// read (so a failed assertion shows what was there instead).
pub async fn eventually<T, Fut>(want: T, mut read: impl FnMut() -> Fut) -> T
where
    T: PartialEq,
    Fut: std::future::Future<Output = T>,
{
    let mut last = read().await;
    for _ in 0..100 {
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = read().await;
    }
    last
}
