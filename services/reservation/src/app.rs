//! Builds the reservation service and owns what it runs: the server, the batch workers, the
//! hold sweeper, the saga recovery worker and the gauges, all in one task set.
use std::future::Future;

use concert_proto::concert::reservation::v1::{
    reservation_internal_service_server::ReservationInternalServiceServer,
    reservation_service_server::ReservationServiceServer,
};
use platform::{
    app::Service,
    auth::TokenValidator,
    grpc_client::lazy_channel,
    server::{Listeners, Port},
};
use sqlx::migrate::Migrator;
use tonic::{server::NamedService, service::Routes};

use crate::{
    batch::{
        completions::CompletionBatcher, debits::DebitBatcher, holds::HoldBatcher, payment_starts::PaymentStartBatcher,
    },
    clients::{Catalog, Queue, Wallet},
    config::Settings,
    grpc::ReservationApi,
    service::{
        cancel::Cancels, gauges, hold::Holds, in_flight::InFlightHolds, pay::Payments, recovery, saga::Saga,
        seat_feed::SeatFeed, seen_occupancy::SeenOccupancy, sweeper, taken_seats::TakenSeats,
    },
    store::ReservationRepo,
};

/// The binary's name and default ports: public 127.0.0.1:50053 (`LISTEN_ADDR`), internal
/// 127.0.0.1:50063 (`INTERNAL_LISTEN_ADDR`).
pub const SERVICE: Service = Service::local("reservation", 50053, 50063);
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
    // Every background task of this replica lives in `tasks` and ends with `run`.
    let (pool, mut tasks) = platform::app::start(&settings.db, SCHEMA, settings.max_connections, &MIGRATOR).await?;
    let repo = ReservationRepo::new(pool);
    let pages = repo.page_key().await?;

    let queue_channel = lazy_channel(&settings.queue_url)?;
    let queue = Queue::new(queue_channel.clone(), settings.peer_policy.with_own_budget());
    let wallet = Wallet::new(lazy_channel(&settings.wallet_url)?, settings.peer_policy.with_own_budget(), &mut tasks);
    let debits = DebitBatcher::start(repo.clone(), &mut tasks);
    let saga = Saga::new(repo.clone(), wallet, queue.clone(), debits, settings.clock.clone());

    let seat_feed = spawn_background_work(&mut tasks, &repo, &saga, &settings);
    tasks.spawn(sweeper::release_holds_of_ended_admissions(
        repo.clone(),
        queue.clone(),
        settings.clock.clone(),
        settings.sweep_interval,
    ));
    let completions = CompletionBatcher::start(repo.clone(), queue, settings.clock.clone(), &mut tasks);
    let catalog = Catalog::new(lazy_channel(&settings.catalog_url)?, settings.layout_cache_ttl);
    let taken = TakenSeats::new(settings.seat_taken_ttl);
    let seen = SeenOccupancy::new(repo.clone(), settings.seat_occupancy_reuse);
    let cancels = cancels(&repo, &catalog, &saga, (&taken, &seen), &settings);

    let api = ReservationApi {
        auth: TokenValidator::new(
            queue_channel,
            settings.token_cache_ttl,
            settings.passes.clone(),
            settings.clock.clone(),
            &mut tasks,
        ),
        holds: Holds {
            repo: repo.clone(),
            batcher: HoldBatcher::start(repo.clone(), &mut tasks),
            catalog,
            taken,
            seen,
            in_flight: InFlightHolds::default(),
            clock: settings.clock.clone(),
            ttl: settings.hold_ttl,
            max_holds: settings.max_holds_per_user,
            refund_deadline: settings.refund_deadline,
        },
        cancels,
        seat_feed,
        payments: Payments {
            repo: repo.clone(),
            starts: PaymentStartBatcher::start(repo.clone(), &mut tasks),
            saga: saga.with_completions(completions),
            clock: settings.clock.clone(),
            lease: settings.payment_lease,
        },
        clock: settings.clock,
        payment_max_attempts: settings.payment_max_attempts,
        reservation_pages: pages.tokens("ListReservations"),
        payment_pages: pages.tokens("ListPayments"),
    };
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
    platform::app::serve(ports, settings.limits, shutdown, tasks).await
}

/// Cancels and give-backs, sharing the seat hints (`taken`, `seen`) with the holds, whose
/// entries a release here drops.
fn cancels(
    repo: &ReservationRepo,
    catalog: &Catalog,
    saga: &Saga,
    (taken, seen): (&TakenSeats, &SeenOccupancy),
    settings: &Settings,
) -> Cancels {
    Cancels {
        repo: repo.clone(),
        catalog: catalog.clone(),
        saga: saga.clone(),
        taken: taken.clone(),
        seen: seen.clone(),
        clock: settings.clock.clone(),
        refund_deadline: settings.refund_deadline,
        lease: settings.payment_lease,
    }
}

/// The replica's background work: the hold sweeper, the gauges, the recovery worker (which
/// drives sagas inline, with no completion batcher: it finishes what it resumes), the purge
/// of holds past their retention, and the
/// seat feed with its LISTEN session, which it returns for `WatchOccupancy`.
fn spawn_background_work(
    tasks: &mut platform::app::Tasks,
    repo: &ReservationRepo,
    saga: &Saga,
    settings: &Settings,
) -> SeatFeed {
    tasks.spawn(sweeper::sweep_expired_holds(repo.clone(), settings.clock.clone(), settings.sweep_interval));
    tasks.spawn(gauges::export_gauges(
        repo.clone(),
        settings.clock.clone(),
        settings.payment_max_attempts,
        gauges::GAUGE_INTERVAL,
    ));
    tasks.spawn(recovery::recover_payments(
        repo.clone(),
        saga.clone(),
        settings.clock.clone(),
        recovery::RecoveryPolicy {
            interval: settings.recovery_interval,
            lease: settings.payment_lease,
            max_attempts: settings.payment_max_attempts,
        },
    ));
    tasks.spawn(platform::retention::purge_forever(
        "reservation.reservations",
        settings.retention,
        settings.clock.clone(),
        repo.clone(),
    ));
    let seat_changes = crate::store::listen_for_seat_changes(&settings.db, SCHEMA, tasks);
    SeatFeed::start(repo.clone(), settings.clock.clone(), seat_changes, tasks)
}
