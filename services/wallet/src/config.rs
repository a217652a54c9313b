//! Wallet settings, from environment variables.
use clap::Parser;
use platform::config::{DatabaseConfig, ListenConfig};

/// Command line / environment of `wallet-service`.
#[derive(Debug, Parser)]
#[command(name = "wallet-service", about = "Concert wallet: balances and ledger")]
pub struct Config {
    #[command(flatten)]
    pub db: DatabaseConfig,
    #[command(flatten)]
    pub listen: ListenConfig,
}

/// Validated settings the service runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub db: platform::config::DbOptions,
    pub max_connections: u32,
    pub limits: platform::server::Limits,
}

impl Config {
    /// Validates the configuration.
    ///
    /// # Errors
    /// When `DATABASE_URL` does not parse.
    pub fn into_settings(self) -> anyhow::Result<Settings> {
        Ok(Settings {
            db: self.db.connect_options()?,
            max_connections: self.db.database_max_connections,
            limits: self.listen.limits(),
        })
    }
}
