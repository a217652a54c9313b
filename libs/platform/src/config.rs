//! Settings shared by every service, read from environment variables (or the same-named
//! command-line flags) with clap; each service flattens these into its own `Config`.
use std::net::SocketAddr;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

/// PostgreSQL connection settings.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL, e.g. `postgres://postgres@127.0.0.1:5432/concert`. Kept secret: it
    /// may carry a password, so it never appears in logs or `Debug` output.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: SecretString,

    /// Connections in this replica's pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
}

impl DatabaseConfig {
    /// Parses the URL into connect options.
    ///
    /// # Errors
    /// When `DATABASE_URL` is not a valid PostgreSQL URL.
    pub fn connect_options(&self) -> anyhow::Result<DbOptions> {
        self.database_url
            .expose_secret()
            .parse::<PgConnectOptions>()
            .map(DbOptions)
            .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL"))
    }
}

/// PostgreSQL connect options whose `Debug` output leaves the secrets out: sqlx's own
/// `Debug` prints the password, and settings are logged and printed.
#[derive(Clone)]
pub struct DbOptions(pub PgConnectOptions);

impl From<PgConnectOptions> for DbOptions {
    fn from(options: PgConnectOptions) -> Self {
        Self(options)
    }
}

impl std::fmt::Debug for DbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{} (password redacted)",
            self.0.get_username(),
            self.0.get_host(),
            self.0.get_port(),
            self.0.get_database().unwrap_or("")
        )
    }
}

/// Where a service listens.
#[derive(Debug, Clone, Args)]
pub struct ListenConfig {
    /// Address the gRPC server binds (gRPC over HTTP/2 and grpc-web over HTTP/1.1).
    #[arg(long, env = "LISTEN_ADDR")]
    pub listen_addr: Option<SocketAddr>,

    /// Most requests this replica works on at once; beyond it new calls are refused at once
    /// with RESOURCE_EXHAUSTED (reason OVERLOADED) instead of queueing without bound, so a
    /// load balancer or the client's backoff can send them elsewhere or later.
    #[arg(long, env = "MAX_IN_FLIGHT_REQUESTS", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight_requests: u32,

    /// Most concurrent calls (HTTP/2 streams, e.g. WatchQueue) one client connection may
    /// have open at once; more are refused by HTTP/2 flow control, not queued.
    #[arg(long, env = "MAX_STREAMS_PER_CONNECTION", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams_per_connection: u32,
}

impl ListenConfig {
    /// The configured address, or the service's documented default.
    #[must_use]
    pub fn addr_or(&self, default: SocketAddr) -> SocketAddr {
        self.listen_addr.unwrap_or(default)
    }

    /// The server's load limits.
    #[must_use]
    pub fn limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            max_in_flight: self.max_in_flight_requests as usize,
            max_streams_per_connection: self.max_streams_per_connection,
        }
    }
}

/// Deadlines and retries of calls to peer services.
#[derive(Debug, Clone, Args)]
pub struct PeerConfig {
    /// Milliseconds one call to a peer may take; a caller's shorter deadline wins.
    #[arg(long, env = "PEER_CALL_TIMEOUT_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub peer_call_timeout_ms: u64,

    /// Retries of an idempotent peer call that failed with UNAVAILABLE, DEADLINE_EXCEEDED
    /// or RESOURCE_EXHAUSTED (jittered exponential backoff from 20 ms, at most 1 s apart).
    #[arg(long, env = "PEER_CALL_RETRIES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub peer_call_retries: u32,
}

impl PeerConfig {
    /// The call policy these settings describe.
    #[must_use]
    pub fn policy(&self) -> crate::outbound::CallPolicy {
        crate::outbound::CallPolicy {
            timeout: std::time::Duration::from_millis(self.peer_call_timeout_ms),
            retries: self.peer_call_retries as usize,
            ..crate::outbound::CallPolicy::default()
        }
    }
}

/// Caching of immutable or briefly cacheable answers from peer services.
#[derive(Debug, Clone, Args)]
pub struct CacheConfig {
    /// Milliseconds an ACTIVE queue-token check is reused in this replica (0 disables).
    /// Time-based expiry is still checked on every call, and reservation refuses tokens
    /// that paid from its own data, so the cache never lets a second booking through.
    #[arg(long, env = "TOKEN_CACHE_TTL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub token_cache_ttl_ms: u64,

    /// Seconds a schedule's seat layout (grades, prices, start time) is kept in memory.
    /// Layouts never change after AddSchedule; the TTL only bounds memory.
    #[arg(long, env = "SEAT_LAYOUT_CACHE_TTL_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub seat_layout_cache_ttl_secs: u64,
}

impl CacheConfig {
    /// Token cache TTL.
    #[must_use]
    pub fn token_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.token_cache_ttl_ms)
    }

    /// Seat layout cache TTL.
    #[must_use]
    pub fn layout_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seat_layout_cache_ttl_secs)
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { token_cache_ttl_ms: 1_000, seat_layout_cache_ttl_secs: 300 }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn connect_options_never_print_the_password() {
        let db = DatabaseConfig {
            database_url: "postgres://app:hunter2@db.internal:6432/concert".into(),
            database_max_connections: 4,
        };
        let printed = format!("{:?} {:?}", db, db.connect_options().unwrap());
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("db.internal:6432/concert"), "{printed}");
        let bad = DatabaseConfig { database_url: "postgres://app:hunter2@[bad".into(), database_max_connections: 4 };
        assert!(!bad.connect_options().unwrap_err().to_string().contains("hunter2"));
    }
}
