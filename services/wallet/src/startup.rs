//! Builds and runs the wallet server.
use std::{
    future::Future,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
};

use concert_proto::concert::wallet::v1::{
    wallet_internal_service_server::WalletInternalServiceServer, wallet_service_server::WalletServiceServer,
};
use platform::server::{Listeners, Port};
use sqlx::migrate::Migrator;
use tonic::{server::NamedService, service::Routes};

use crate::{config::Settings, grpc::WalletApi, store::WalletRepo};

/// Default public listen address (`LISTEN_ADDR`): 127.0.0.1:50054.
pub const DEFAULT_PUBLIC_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50054));
/// Default internal listen address (`INTERNAL_LISTEN_ADDR`): 127.0.0.1:50064.
pub const DEFAULT_INTERNAL_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50064));
/// The PostgreSQL schema this service owns.
pub const SCHEMA: &str = "wallet";
/// The wallet's migrations (`migrations/wallet`).
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/wallet");

/// Connects to PostgreSQL, applies migrations, and serves until `shutdown` resolves.
///
/// # Errors
/// When the database is unreachable, a migration fails or the server cannot start.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = platform::db::connect_and_migrate(&settings.db, SCHEMA, settings.max_connections, &MIGRATOR).await?;
    // Background tasks end with `run` (dropping the set aborts them).
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(platform::metrics::sample_pool(pool.clone()));
    let api = WalletApi::new(WalletRepo::new(pool));
    let auth = settings.auth.build().await?;
    let ports = vec![
        Port::public(
            listeners.public,
            Routes::new(WalletServiceServer::new(api.clone())),
            vec![WalletServiceServer::<WalletApi>::NAME],
            auth,
            vec![],
        ),
        Port::internal(
            listeners.internal,
            Routes::new(WalletInternalServiceServer::new(api)),
            vec![WalletInternalServiceServer::<WalletApi>::NAME],
        ),
    ];
    platform::server::serve(ports, settings.limits, shutdown).await
}
