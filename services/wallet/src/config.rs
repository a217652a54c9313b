//! Wallet settings, from environment variables.
use clap::Parser;
use platform::config::{AuthConfig, DatabaseConfig, ListenConfig};

/// Command line / environment of `wallet-service`.
#[derive(Debug, Parser)]
#[command(name = "wallet-service", version, about = "Concert wallet: balances and ledger", after_help = platform::config::ENVIRONMENT_HELP)]
pub struct Config {
    #[command(flatten)]
    pub db: DatabaseConfig,
    #[command(flatten)]
    pub listen: ListenConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
}

/// Validated settings the service runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub db: platform::config::DbOptions,
    pub max_connections: u32,
    pub limits: platform::server::Limits,
    /// How callers of the public port prove who they are.
    pub auth: platform::identity::AuthSettings,
}

impl platform::app::ServiceConfig for Config {
    type Settings = Settings;

    fn listen(&self) -> &ListenConfig {
        &self.listen
    }

    /// Validates the configuration.
    ///
    /// # Errors
    /// When `DATABASE_URL` does not parse or the authentication settings are incomplete.
    fn into_settings(self) -> anyhow::Result<Settings> {
        Ok(Settings {
            db: self.db.connect_options()?,
            max_connections: self.db.database_max_connections,
            limits: self.listen.limits(),
            auth: self.auth.settings()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_and_help_name_every_variable() {
        use clap::CommandFactory;
        assert_eq!(platform::config::help_problems(super::Config::command()), Vec::<String>::new());
    }
}
