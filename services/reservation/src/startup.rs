//! Builds and runs the reservation server and its background workers.
use std::{
    future::Future,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
};

use concert_proto::concert::reservation::v1::{
    reservation_internal_service_server::ReservationInternalServiceServer,
    reservation_service_server::ReservationServiceServer,
};
use platform::server::{Listeners, Port};
use platform::{auth::TokenValidator, grpc_client::lazy_channel};
use sqlx::migrate::Migrator;
use tokio::task::JoinSet;
use tonic::{server::NamedService, service::Routes};

use crate::{
    completer::Completer,
    config::Settings,
    grpc::ReservationApi,
    peers::{Catalog, Queue, Wallet},
    saga::Saga,
    store::ReservationRepo,
    taken_seats::TakenSeats,
    workers,
};

/// Default public listen address (`LISTEN_ADDR`): 127.0.0.1:50053.
pub const DEFAULT_PUBLIC_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50053));
/// Default internal listen address (`INTERNAL_LISTEN_ADDR`): 127.0.0.1:50063.
pub const DEFAULT_INTERNAL_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50063));
/// The PostgreSQL schema this service owns.
pub const SCHEMA: &str = "reservation";
/// The reservation migrations (`migrations/reservation`).
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/reservation");

/// Connects to PostgreSQL, applies migrations, starts the hold sweeper and the saga
/// recovery worker, and serves until `shutdown` resolves.
///
/// # Errors
/// When the database is unreachable, a migration fails or the server cannot start.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let auth = settings.auth.build().await?;
    let pool = platform::db::connect_and_migrate(&settings.db, SCHEMA, settings.max_connections, &MIGRATOR).await?;
    let repo = ReservationRepo::new(pool.clone());
    let queue_channel = lazy_channel(&settings.queue_url)?;
    let queue = Queue::new(queue_channel.clone(), settings.peer_policy.with_own_budget());
    let saga = Saga::new(
        repo.clone(),
        Wallet::new(lazy_channel(&settings.wallet_url)?, settings.peer_policy.with_own_budget()),
        queue.clone(),
        settings.clock.clone(),
    );
    // Every background task of this replica lives here; dropping the set (when the server
    // has stopped) aborts them all. Batch workers stop on their own when the handles that
    // feed them are dropped with the API.
    let mut tasks = JoinSet::new();
    tasks.spawn(platform::metrics::sample_pool(pool.clone()));
    tasks.spawn(workers::sweep_expired_holds(repo.clone(), settings.clock.clone(), settings.sweep_interval));
    tasks.spawn(workers::export_gauges(
        repo.clone(),
        settings.clock.clone(),
        settings.payment_max_attempts,
        workers::GAUGE_INTERVAL,
    ));
    tasks.spawn(workers::recover_payments(
        repo.clone(),
        saga.clone(),
        settings.clock.clone(),
        workers::RecoveryPolicy {
            interval: settings.recovery_interval,
            lease: settings.payment_lease,
            max_attempts: settings.payment_max_attempts,
        },
    ));

    let (completer, completion_worker) = Completer::new(repo.clone(), queue);
    tasks.spawn(completion_worker);
    let api = ReservationApi::new(
        repo,
        TokenValidator::new(queue_channel, settings.token_cache_ttl, settings.clock.clone()),
        Catalog::new(lazy_channel(&settings.catalog_url)?, settings.layout_cache_ttl),
        saga.with_completer(completer),
        settings.clock,
        TakenSeats::new(settings.seat_taken_ttl),
        (settings.hold_ttl, settings.max_holds_per_user),
        settings.payment_lease,
        settings.payment_max_attempts,
    );
    let ports = vec![
        Port::public(
            listeners.public,
            Routes::new(ReservationServiceServer::new(api.clone())),
            vec![ReservationServiceServer::<ReservationApi>::NAME],
            auth,
            vec![],
        ),
        Port::internal(
            listeners.internal,
            Routes::new(ReservationInternalServiceServer::new(api)),
            vec![ReservationInternalServiceServer::<ReservationApi>::NAME],
        ),
    ];
    let served = platform::server::serve(ports, settings.limits, shutdown).await;
    drop(tasks);
    served
}
