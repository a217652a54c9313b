//! Builds the catalog service and owns what it runs: the server and its background tasks.
use std::future::Future;

use concert_proto::concert::catalog::v1::{
    catalog_admin_service_server::CatalogAdminServiceServer,
    catalog_internal_service_server::CatalogInternalServiceServer, catalog_service_server::CatalogServiceServer,
};
use platform::app::Service;
use platform::server::{Listeners, Port};
use platform::{auth::TokenValidator, grpc_client::lazy_channel};
use sqlx::migrate::Migrator;
use tonic::{server::NamedService, service::Routes};

use crate::{
    clients::reservation::OccupancyClient,
    config::Settings,
    grpc::CatalogApi,
    service::{concerts::Concerts, layouts::Layouts, seat_maps::SeatMaps},
    store::CatalogRepo,
};

/// The binary's name and default ports: public 127.0.0.1:50052 (`LISTEN_ADDR`), internal
/// 127.0.0.1:50062 (`INTERNAL_LISTEN_ADDR`).
pub const SERVICE: Service = Service::local("catalog", 50052, 50062);
/// The PostgreSQL schema this service owns.
pub const SCHEMA: &str = "catalog";
/// The catalog's migrations (`migrations/catalog`).
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/catalog");

/// Connects to PostgreSQL, applies migrations, and serves until `shutdown` resolves.
///
/// # Errors
/// When the database is unreachable, a migration fails or the server cannot start.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Every background task of this replica lives in `tasks` and ends with `run`.
    let (pool, mut tasks) = platform::app::start(&settings.db, SCHEMA, settings.max_connections, &MIGRATOR).await?;
    let repo = CatalogRepo::new(pool);
    let pages = repo.page_key().await?;
    let occupancy = OccupancyClient::new(lazy_channel(&settings.reservation_url)?, settings.seat_status_ttl);
    let seat_maps = SeatMaps::new(occupancy.clone(), settings.seat_map_max_streams);
    let concerts = Concerts::new(
        repo.clone(),
        Layouts::new(repo, settings.layout_cache_ttl),
        occupancy,
        settings.clock.clone(),
        settings.seat_status_ttl,
    );
    let auth_checks = TokenValidator::new(
        lazy_channel(&settings.queue_url)?,
        settings.token_cache_ttl,
        settings.passes.clone(),
        settings.clock,
        &mut tasks,
    );
    let api = CatalogApi::new(concerts, auth_checks, &pages, seat_maps, settings.seat_map_stream_lifetime);
    let auth = settings.auth.build().await?;
    let ports = vec![
        Port::public(
            listeners.public,
            Routes::new(CatalogServiceServer::new(api.clone())),
            vec![CatalogServiceServer::<CatalogApi>::NAME],
            auth,
            // The concert list is the shop window: anyone may look before signing in.
            vec!["/concert.catalog.v1.CatalogService/ListConcerts"],
        ),
        Port::internal(
            listeners.internal,
            Routes::new(CatalogAdminServiceServer::new(api.clone()))
                .add_service(CatalogInternalServiceServer::new(api)),
            vec![CatalogAdminServiceServer::<CatalogApi>::NAME, CatalogInternalServiceServer::<CatalogApi>::NAME],
        ),
    ];
    platform::app::serve(ports, settings.limits, shutdown, tasks).await
}
