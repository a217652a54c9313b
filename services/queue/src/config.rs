//! Queue settings, from environment variables.
use std::{num::NonZeroU32, time::Duration};

use clap::Parser;
use platform::{
    clock::SharedClock,
    config::{AuthConfig, DatabaseConfig, ListenConfig, PassSigningConfig},
};

use crate::{
    domain::{AdmissionPolicy, Pacing},
    service::rate_limit::JoinRates,
};

/// Command line / environment of `queue-service`.
#[derive(Debug, Parser)]
#[command(name = "queue-service", version, about = "Concert waiting room", after_help = platform::config::ENVIRONMENT_HELP)]
pub struct Config {
    #[command(flatten)]
    pub db: DatabaseConfig,
    #[command(flatten)]
    pub listen: ListenConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub passes: PassSigningConfig,

    /// Catalog service's internal port, asked once per concert whether it exists and when
    /// its sale opens.
    #[arg(long, env = "CATALOG_INTERNAL_URL", default_value = "http://127.0.0.1:50062")]
    pub catalog_url: String,

    /// Most tokens ACTIVE at once per concert (default admission policy; overridable per
    /// concert with QueueAdminService.SetAdmissionPolicy).
    #[arg(long, env = "QUEUE_MAX_ACTIVE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_active: u32,

    /// Seconds an admitted token stays ACTIVE.
    #[arg(long, env = "QUEUE_ACTIVE_TTL_SECS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub active_ttl_secs: u32,

    /// Milliseconds between admission rounds of this replica (a freed slot is also refilled
    /// at once when this replica frees it).
    #[arg(long, env = "QUEUE_ADMISSION_INTERVAL_MS", default_value_t = 250, value_parser = clap::value_parser!(u32).range(10..=60_000))]
    pub admission_interval_ms: u32,

    /// Milliseconds between two reads of what changed in the line (joins and departures
    /// since the previous read) by this replica; positions, wait estimates and WatchQueue
    /// updates are at most this old.
    #[arg(long, env = "QUEUE_LINE_REFRESH_MS", default_value_t = 250, value_parser = clap::value_parser!(u32).range(10..=10_000))]
    pub line_refresh_ms: u32,

    /// Most admissions per second across all replicas (0 = no rate limit; only
    /// QUEUE_MAX_ACTIVE applies).
    #[arg(long, env = "QUEUE_ADMIT_PER_SEC", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub admit_per_sec: u32,

    /// Seconds a WAITING token may go without a poll (or an open WatchQueue stream) before
    /// it expires and the people behind it move up. The server's poll interval
    /// (`poll_after_seconds`) is at most a quarter of it (and at most 30 s).
    #[arg(long, env = "QUEUE_IDLE_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u32).range(10..=86_400))]
    pub idle_timeout_secs: u32,

    /// Sustained IssueToken calls per second one user may make on one replica.
    #[arg(long, env = "QUEUE_JOIN_RATE_PER_USER", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub join_rate_per_user: u32,

    /// IssueToken calls one user may make at once before the per-user rate applies.
    #[arg(long, env = "QUEUE_JOIN_BURST_PER_USER", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub join_burst_per_user: u32,

    /// IssueToken calls per second one replica accepts in total (0 = no total limit).
    #[arg(long, env = "QUEUE_JOIN_RATE_TOTAL", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub join_rate_total: u32,

    /// Days a token is kept after it ended (EXPIRED: admitted and done, left, paid or
    /// abandoned) before it is deleted (platform::retention); 0 deletes it at the next purge.
    #[arg(long, env = "QUEUE_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=3_650))]
    pub retention_days: u32,

    /// Seconds between purges of rows past their retention.
    #[arg(long, env = "PURGE_INTERVAL_SECS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub purge_interval_secs: u32,

    /// Connections of the internal port's own pool (ValidateTokens, ExpireTokens): apart from
    /// DATABASE_MAX_CONNECTIONS, so the token checks of admitted people never wait for a
    /// connection the line's joins and polls hold.
    #[arg(long, env = "QUEUE_INTERNAL_CONNECTIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub internal_connections: u32,

    /// Most WatchQueue streams one replica serves at once; more are refused with
    /// RESOURCE_EXHAUSTED (reason TOO_MANY_STREAMS) and the client polls instead. A token has
    /// at most one live stream per replica: a newer one ends the older (ABORTED). An open
    /// stream costs the replica ~2.3 KiB more than a person polling (docs/BENCHMARKS.md,
    /// "Memory per waiting person"), so the default's 100,000 streams take ~230 MiB.
    #[arg(long, env = "QUEUE_MAX_WATCH_STREAMS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_watch_streams: u32,
}

/// Validated settings the service runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub db: platform::config::DbOptions,
    pub max_connections: u32,
    /// Connections of the internal port's own pool.
    pub internal_connections: u32,
    pub limits: platform::server::Limits,
    /// How callers of the public port prove who they are.
    pub auth: platform::identity::AuthSettings,
    /// Signs admission passes (`None`: ACTIVE tokens get none).
    pub passes: Option<platform::admission::PassSigner>,
    /// How often waiting clients are told to poll.
    pub pacing: Pacing,
    pub catalog_url: String,
    /// The service-wide admission policy; rooms may override parts of it.
    pub policy: AdmissionPolicy,
    pub admission_interval: Duration,
    pub line_refresh: Duration,
    /// How often polls are written to `last_seen_at` (well below the idle timeout).
    pub seen_flush: Duration,
    /// Age below which a `last_seen_at` is not written again (see `Seen`).
    pub seen_rewrite_after: Duration,
    pub join_rates: JoinRates,
    /// Most WatchQueue streams at once on this replica.
    pub max_watch_streams: usize,
    /// How long ended tokens are kept.
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
            internal_connections: self.internal_connections,
            limits: self.listen.limits(),
            auth: self.auth.settings()?,
            passes: self.passes.signer()?,
            pacing: Pacing::for_idle_timeout(self.idle_timeout_secs),
            catalog_url: self.catalog_url,
            policy: AdmissionPolicy {
                max_active: u64::from(self.max_active),
                active_ttl: chrono::Duration::seconds(i64::from(self.active_ttl_secs)),
                admit_per_sec: u64::from(self.admit_per_sec),
                idle_timeout: chrono::Duration::seconds(i64::from(self.idle_timeout_secs)),
            },
            // Polls are written in batches well within the idle timeout.
            seen_flush: seen_flush(self.idle_timeout_secs),
            seen_rewrite_after: seen_rewrite_after(self.idle_timeout_secs),
            admission_interval: Duration::from_millis(u64::from(self.admission_interval_ms)),
            line_refresh: Duration::from_millis(u64::from(self.line_refresh_ms)),
            join_rates: JoinRates {
                per_user: NonZeroU32::new(self.join_rate_per_user).unwrap_or(NonZeroU32::MIN),
                per_user_burst: NonZeroU32::new(self.join_burst_per_user).unwrap_or(NonZeroU32::MIN),
                total: NonZeroU32::new(self.join_rate_total),
            },
            max_watch_streams: self.max_watch_streams as usize,
            retention: platform::retention::Retention::days(self.retention_days, self.purge_interval_secs),
            clock: platform::clock::system(),
        })
    }
}

/// How often a replica writes its poll marks: at most a quarter of the idle timeout apart,
/// and at least every 5 s.
fn seen_flush(idle_timeout_secs: u32) -> Duration {
    Duration::from_secs(u64::from(idle_timeout_secs / 4).clamp(1, 5))
}

/// A poll rewrites `last_seen_at` only once it is this old: half the idle timeout (two
/// flush periods for short timeouts). A live client's `last_seen_at` is then never older
/// than this plus one flush period, under three quarters of the timeout, so it is never
/// expired; and a person polling every few seconds costs one row write per 30–35 s at
/// the default timeout, not one per 10–15 s. Each write is a new row version and an entry
/// in every index of `tokens`.
fn seen_rewrite_after(idle_timeout_secs: u32) -> Duration {
    (seen_flush(idle_timeout_secs) * 2).max(Duration::from_secs(u64::from(idle_timeout_secs / 2)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_and_help_name_every_variable() {
        use clap::CommandFactory;
        assert_eq!(platform::config::help_problems(super::Config::command()), Vec::<String>::new());
    }

    /// Every accepted idle timeout leaves a polling client's `last_seen_at` at most three
    /// quarters of the timeout old: never expired while it polls.
    #[test]
    fn a_polling_client_is_written_well_within_the_idle_timeout() {
        for secs in 10..=86_400 {
            let oldest = super::seen_rewrite_after(secs) + super::seen_flush(secs);
            assert!(oldest.as_secs_f64() <= f64::from(secs) * 0.75, "timeout {secs} s: {oldest:?}");
        }
        assert_eq!(super::seen_rewrite_after(60).as_secs(), 30);
    }
}
