//! Builds the wallet service and owns what it runs: the server and its background tasks.
use std::future::Future;

use concert_proto::concert::wallet::v1::{
    wallet_internal_service_server::WalletInternalServiceServer, wallet_service_server::WalletServiceServer,
};
use platform::app::Service;
use platform::server::{Listeners, Port};
use sqlx::migrate::Migrator;
use tonic::{server::NamedService, service::Routes};

use crate::{batch::ledger::LedgerBatcher, config::Settings, grpc::WalletApi, service::Wallet, store::WalletRepo};

/// The binary's name and default ports: public 127.0.0.1:50054 (`LISTEN_ADDR`), internal
/// 127.0.0.1:50064 (`INTERNAL_LISTEN_ADDR`).
pub const SERVICE: Service = Service::local("wallet", 50054, 50064);
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
    // Every background task of this replica lives in `tasks` and ends with `run`.
    let (pool, mut tasks) = platform::app::start(&settings.db, SCHEMA, settings.max_connections, &MIGRATOR).await?;
    let repo = WalletRepo::new(pool);
    let api = WalletApi::new(Wallet::new(repo.clone(), LedgerBatcher::start(repo, &mut tasks)));
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
    platform::app::serve(ports, settings.limits, shutdown, tasks).await
}
