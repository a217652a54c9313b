//! Builds and runs the wallet server.
use std::{
    future::Future,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
};

use concert_proto::concert::wallet::v1::{
    wallet_internal_service_server::WalletInternalServiceServer, wallet_service_server::WalletServiceServer,
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::{server::NamedService, service::Routes};

use crate::{config::Settings, grpc::WalletApi, store::WalletRepo};

/// Default listen address: 127.0.0.1:50054.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50054));
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
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let pool = platform::db::connect_and_migrate(settings.db.0, SCHEMA, settings.max_connections, &MIGRATOR).await?;
    let api = WalletApi::new(WalletRepo::new(pool));
    let routes = Routes::new(WalletServiceServer::new(api.clone())).add_service(WalletInternalServiceServer::new(api));
    platform::server::serve(
        listener,
        routes,
        &[WalletServiceServer::<WalletApi>::NAME, WalletInternalServiceServer::<WalletApi>::NAME],
        settings.limits,
        shutdown,
    )
    .await
}
