//! Reservation settings, from environment variables.
use std::time::Duration;

use clap::Parser;
use platform::{
    clock::SharedClock,
    config::{AuthConfig, CacheConfig, DatabaseConfig, ListenConfig, PassVerifyingConfig, PeerConfig},
    outbound::CallPolicy,
};

/// Command line / environment of `reservation-service`.
#[derive(Debug, Parser)]
#[command(name = "reservation-service", version, about = "Concert seat holds and payments", after_help = platform::config::ENVIRONMENT_HELP)]
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
    #[command(flatten)]
    pub peers: PeerConfig,

    /// Queue service's internal port, for token checks and expiring the token after payment.
    #[arg(long, env = "QUEUE_INTERNAL_URL", default_value = "http://127.0.0.1:50061")]
    pub queue_url: String,
    /// Catalog service's internal port, for seat prices.
    #[arg(long, env = "CATALOG_INTERNAL_URL", default_value = "http://127.0.0.1:50062")]
    pub catalog_url: String,
    /// Wallet service's internal port, for debits and refunds.
    #[arg(long, env = "WALLET_INTERNAL_URL", default_value = "http://127.0.0.1:50064")]
    pub wallet_url: String,

    /// Seconds an unpaid hold keeps its seat.
    #[arg(long, env = "HOLD_TTL_SECS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub hold_ttl_secs: u32,

    /// Most live holds one user may have on one concert at a time (anti-hoarding, as ticket
    /// sites limit tickets per person); more are refused with FAILED_PRECONDITION HOLD_LIMIT.
    #[arg(long, env = "MAX_HOLDS_PER_USER", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_holds_per_user: u32,

    /// Hours before a show after which a bought seat can no longer be given back
    /// (CancelReservation answers FAILED_PRECONDITION REFUND_WINDOW_CLOSED).
    #[arg(long, env = "REFUND_DEADLINE_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(0..=8_760))]
    pub refund_deadline_hours: u32,

    /// Milliseconds a seat seen taken is refused without asking the database (0 disables).
    /// Never longer than the blocking hold's expiry; see `taken_seats`.
    #[arg(long, env = "SEAT_TAKEN_CACHE_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub seat_taken_cache_ms: u64,

    /// Milliseconds one read of a date's held and sold seats is shared by the HoldSeat calls
    /// of this replica (0: every call that needs it reads): a crowd on one date is judged
    /// against one read, not one per call; past this, one call reads again while the others
    /// use the kept read, for at most twice this. A seat released meanwhile on another
    /// replica may be refused for at most twice this long; see `seen_occupancy`.
    #[arg(long, env = "SEAT_OCCUPANCY_REUSE_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=5_000))]
    pub seat_occupancy_reuse_ms: u64,

    /// Milliseconds between sweeps that mark expired holds EXPIRED.
    #[arg(long, env = "HOLD_SWEEP_INTERVAL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(10..=600_000))]
    pub hold_sweep_interval_ms: u32,

    /// Milliseconds between passes of the payment recovery worker.
    #[arg(long, env = "PAYMENT_RECOVERY_INTERVAL_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(10..=600_000))]
    pub payment_recovery_interval_ms: u32,

    /// Seconds an unfinished payment is left to the call that started it before the
    /// recovery worker takes it over.
    #[arg(long, env = "PAYMENT_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub payment_lease_secs: u32,

    /// Days a hold that ended without a payment (ran out or released) is kept before it is
    /// deleted (platform::retention); 0 deletes it at the next purge. Paid seats and every
    /// hold a payment names are never deleted.
    #[arg(long, env = "RESERVATION_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=3_650))]
    pub retention_days: u32,

    /// Seconds between purges of rows past their retention.
    #[arg(long, env = "PURGE_INTERVAL_SECS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub purge_interval_secs: u32,

    /// Tries the recovery worker makes at an unfinished payment before it leaves it to a
    /// person (logged at ERROR as "payment needs a person", reported by `concertctl reconcile`).
    #[arg(long, env = "PAYMENT_MAX_ATTEMPTS", default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=1_000_000))]
    pub payment_max_attempts: i32,
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
    pub catalog_url: String,
    pub wallet_url: String,
    pub peer_policy: CallPolicy,
    pub hold_ttl: chrono::Duration,
    pub max_holds_per_user: u32,
    /// How long before a show a bought seat can still be given back.
    pub refund_deadline: chrono::Duration,
    pub sweep_interval: Duration,
    pub recovery_interval: Duration,
    pub payment_lease: chrono::Duration,
    pub payment_max_attempts: i32,
    pub token_cache_ttl: Duration,
    /// Verifies admission passes (`None`: only bare queue tokens are accepted).
    pub passes: Option<platform::admission::PassVerifier>,
    pub layout_cache_ttl: Duration,
    pub seat_taken_ttl: Duration,
    /// How long one read of a date's occupancy is shared by HoldSeat calls.
    pub seat_occupancy_reuse: Duration,
    /// How long holds that ended without a payment are kept.
    pub retention: platform::retention::Retention,
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
            catalog_url: self.catalog_url,
            wallet_url: self.wallet_url,
            peer_policy: self.peers.policy(),
            hold_ttl: chrono::Duration::seconds(i64::from(self.hold_ttl_secs)),
            max_holds_per_user: self.max_holds_per_user,
            refund_deadline: chrono::Duration::hours(i64::from(self.refund_deadline_hours)),
            sweep_interval: Duration::from_millis(u64::from(self.hold_sweep_interval_ms)),
            recovery_interval: Duration::from_millis(u64::from(self.payment_recovery_interval_ms)),
            payment_lease: chrono::Duration::seconds(i64::from(self.payment_lease_secs)),
            payment_max_attempts: self.payment_max_attempts,
            token_cache_ttl: self.cache.token_ttl(),
            passes: self.passes.verifier()?,
            layout_cache_ttl: self.cache.layout_ttl(),
            seat_taken_ttl: Duration::from_millis(self.seat_taken_cache_ms),
            seat_occupancy_reuse: Duration::from_millis(self.seat_occupancy_reuse_ms),
            retention: platform::retention::Retention::days(self.retention_days, self.purge_interval_secs),
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
