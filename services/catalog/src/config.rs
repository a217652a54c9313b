//! Catalog settings, from environment variables.
use std::time::Duration;

use clap::Parser;
use platform::{
    clock::SharedClock,
    config::{AuthConfig, CacheConfig, DatabaseConfig, ListenConfig, PassVerifyingConfig},
};

/// Command line / environment of `catalog-service`.
#[derive(Debug, Parser)]
#[command(name = "catalog-service", version, about = "Concert catalog", after_help = platform::config::ENVIRONMENT_HELP)]
pub struct Config {
    #[command(flatten)]
    pub db: DatabaseConfig,
    #[command(flatten)]
    pub listen: ListenConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub cache: CacheConfig,
    #[command(flatten)]
    pub passes: PassVerifyingConfig,

    /// Queue service's internal port, for token checks.
    #[arg(long, env = "QUEUE_INTERNAL_URL", default_value = "http://127.0.0.1:50061")]
    pub queue_url: String,

    /// Milliseconds ListSeats may reuse one schedule's seat status (0: ask reservation on
    /// every call); past that it is asked again while other calls are given the kept one, so
    /// seat maps lag by at most twice this. Holds are always decided live.
    #[arg(long, env = "SEAT_STATUS_CACHE_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=5_000))]
    pub seat_status_cache_ms: u64,

    /// Most WatchSeats streams (live seat maps) one replica serves at once; more are refused
    /// with RESOURCE_EXHAUSTED (TOO_MANY_STREAMS) and the page polls ListSeats instead.
    #[arg(long, env = "SEAT_MAP_MAX_STREAMS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub seat_map_max_streams: u32,

    /// Seconds one WatchSeats stream lives before it ends OK (the page opens a new one, with
    /// a current credential): a credential checked at the stream's start is not trusted forever.
    #[arg(long, env = "SEAT_MAP_STREAM_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub seat_map_stream_secs: u64,

    /// Reservation service's internal port, for live seat status.
    #[arg(long, env = "RESERVATION_INTERNAL_URL", default_value = "http://127.0.0.1:50063")]
    pub reservation_url: String,
}

/// Validated settings the service runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub db: platform::config::DbOptions,
    pub max_connections: u32,
    pub limits: platform::server::Limits,
    /// How callers of the public port prove who they are.
    pub auth: platform::identity::AuthSettings,
    pub queue_url: String,
    pub reservation_url: String,
    pub token_cache_ttl: Duration,
    /// Verifies admission passes (`None`: only bare queue tokens are accepted).
    pub passes: Option<platform::admission::PassVerifier>,
    pub layout_cache_ttl: Duration,
    pub seat_status_ttl: Duration,
    pub seat_map_max_streams: usize,
    pub seat_map_stream_lifetime: Duration,
    pub clock: SharedClock,
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
            queue_url: self.queue_url,
            reservation_url: self.reservation_url,
            token_cache_ttl: self.cache.token_ttl(),
            passes: self.passes.verifier()?,
            layout_cache_ttl: self.cache.layout_ttl(),
            seat_status_ttl: Duration::from_millis(self.seat_status_cache_ms),
            seat_map_max_streams: usize::try_from(self.seat_map_max_streams)?,
            seat_map_stream_lifetime: Duration::from_secs(self.seat_map_stream_secs),
            clock: platform::clock::system(),
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
