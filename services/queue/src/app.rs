//! Builds the queue service and owns what it runs: the server, the join batcher, the
//! admission loop, the line refresher and the idle sweeps, all in one task set.
//!
//! The internal port (token checks and expiry for catalog and reservation) runs in a lane
//! of its own ([`platform::app::run_apart`]): its own thread, runtime and connection pool, so
//! the checks behind admitted people's HoldSeat and PayReservation never wait behind the
//! joins and polls of the line, nor share their shed budget or connections.
use std::future::Future;

use futures::FutureExt;

use concert_proto::concert::queue::v1::{
    queue_admin_service_server::QueueAdminServiceServer, queue_internal_service_server::QueueInternalServiceServer,
    queue_service_server::QueueServiceServer,
};
use platform::app::Service;
use platform::server::{Listeners, Port};
use sqlx::migrate::Migrator;
use tonic::{server::NamedService, service::Routes};

use crate::{
    batch::joins::JoinBatcher,
    clients::catalog::Catalog,
    config::Settings,
    grpc::QueueApi,
    service::{
        admission::Admission,
        line::Line,
        rate_limit::JoinLimiter,
        rooms::Rooms,
        seen::Seen,
        sold_out::{SOLD_OUT_INTERVAL, SoldOut},
        stats::Stats,
        tokens::Tokens,
        watchers::Watchers,
    },
    store::QueueRepo,
};

/// The binary's name and default ports: public 127.0.0.1:50051 (`LISTEN_ADDR`), internal
/// 127.0.0.1:50061 (`INTERNAL_LISTEN_ADDR`).
pub const SERVICE: Service = Service::local("queue", 50051, 50061);
/// The PostgreSQL schema this service owns.
pub const SCHEMA: &str = "queue";
/// The queue's migrations (`migrations/queue`).
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/queue");

/// Connects to PostgreSQL, applies migrations, starts the admission loop and serves until
/// `shutdown` resolves.
///
/// # Errors
/// When the database is unreachable, a migration fails or the server cannot start.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let auth = settings.auth.build().await?;
    // Every background task of this replica lives in `tasks` and ends with `run`. (A
    // WatchQueue stream owns the task that feeds it: it ends with its client or the server.)
    let (pool, mut tasks) = platform::app::start(&settings.db, SCHEMA, settings.max_connections, &MIGRATOR).await?;
    let repo = QueueRepo::new(pool, settings.clock.clone());
    let catalog = Catalog::new(platform::grpc_client::lazy_channel(&settings.catalog_url)?);
    let rooms = Rooms::new(repo.clone(), catalog.clone(), settings.clock.clone());
    let admission = Admission::new(repo.clone(), settings.policy, settings.clock.clone());
    tasks.spawn(admission.clone().run(settings.admission_interval));

    let (line, refresher) = Line::new(repo.clone(), settings.clock.clone(), settings.line_refresh);
    tasks.spawn(refresher);
    let sold_out = SoldOut::default();
    tasks.spawn(sold_out.clone().watch_forever(line.clone(), catalog, SOLD_OUT_INTERVAL));
    let joins = JoinLimiter::new(settings.join_rates);
    tasks.spawn(joins.clone().forget_idle_users_forever());
    let seen = Seen::default();
    tasks.spawn(seen.clone().flush_forever(
        repo.clone(),
        settings.clock.clone(),
        settings.seen_flush,
        settings.seen_rewrite_after,
    ));
    tasks.spawn(platform::retention::purge_forever(
        "queue.tokens",
        settings.retention,
        settings.clock.clone(),
        repo.clone(),
    ));
    let api = QueueApi {
        tokens: std::sync::Arc::new(Tokens::new(
            repo.clone(),
            JoinBatcher::start(repo.clone(), &mut tasks),
            rooms.clone(),
            admission,
            line,
            joins,
            seen,
            settings.clock.clone(),
            settings.policy.idle_timeout.to_std().unwrap_or_default(),
            settings.pacing,
            sold_out,
        )),
        stats: Stats::new(repo, rooms.clone(), settings.policy, settings.clock.clone(), settings.line_refresh),
        rooms,
        clock: settings.clock.clone(),
        watchers: Watchers::new(settings.max_watch_streams),
        passes: settings.passes.clone().map(std::sync::Arc::new),
    };
    let shutdown = (Box::pin(shutdown) as platform::app::Shutdown).shared();
    let lane = serve_internal_lane(listeners.internal, api.clone(), &settings, shutdown.clone())?;
    let mut public_port = Port::public(
        listeners.public,
        Routes::new(QueueServiceServer::new(api.clone())),
        vec![QueueServiceServer::<QueueApi>::NAME],
        auth,
        // Line length and admission rate are shown before anyone signs in.
        vec!["/concert.queue.v1.QueueService/GetQueueStats"],
    );
    // The total join rate is refused before the access token is checked (platform::gate).
    if let Some(total) = settings.join_rates.total {
        public_port = public_port.with_rate_limit("/concert.queue.v1.QueueService/IssueToken", total);
    }
    let public = platform::app::serve(vec![public_port], settings.limits, shutdown, tasks);
    futures::try_join!(public, lane)?;
    Ok(())
}

/// The internal port (token checks and expiry for peers, admission policies) in a lane of its
/// own: its own thread and runtime, its listener and its own pool (`QUEUE_INTERNAL_CONNECTIONS`),
/// created inside the lane so the lane's reactor drives them. Resolves when it has stopped.
fn serve_internal_lane(
    listener: tokio::net::TcpListener,
    api: QueueApi,
    settings: &Settings,
    shutdown: futures::future::Shared<platform::app::Shutdown>,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>>> {
    let internal = listener.into_std()?;
    let (db, clock, limits) = (settings.db.clone(), settings.clock.clone(), settings.limits);
    let connections = settings.internal_connections;
    Ok(platform::app::run_apart("queue-internal", move || async move {
        let pool = platform::db::connect(&db, SCHEMA, connections).await?;
        let pool_for_health = pool.clone();
        let repo = QueueRepo::new(pool, clock);
        let api = api.with_use_cases(api.tokens.on(repo.clone()), api.stats.on(repo.clone()), api.rooms.on(repo));
        let port = Port::internal(
            tokio::net::TcpListener::from_std(internal)?,
            Routes::new(QueueAdminServiceServer::new(api.clone())).add_service(QueueInternalServiceServer::new(api)),
            vec![QueueAdminServiceServer::<QueueApi>::NAME, QueueInternalServiceServer::<QueueApi>::NAME],
        );
        // The lane's own database watcher, on the lane's runtime (which ends with it).
        let (reachable, watcher) = platform::db::watch_reachable(pool_for_health);
        tokio::spawn(watcher);
        platform::server::serve(vec![port], limits, shutdown, Some(reachable)).await
    }))
}
