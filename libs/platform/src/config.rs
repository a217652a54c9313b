//! Settings shared by every service, read from environment variables (or the same-named
//! command-line flags) with clap; each service flattens these into its own `Config`.
use std::net::SocketAddr;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

/// The variables every service reads besides its flags, for `--help`.
pub const ENVIRONMENT_HELP: &str = "\
Also read from the environment:
  RUST_LOG                     log filter (tracing-subscriber EnvFilter syntax) [default: info]
  LOG_FORMAT                   `json` for one JSON object per line [default: pretty text]
  OTEL_EXPORTER_OTLP_ENDPOINT  export spans over OTLP/gRPC, e.g. http://otel-collector:4317
                               (unset: no export); the other OTEL_EXPORTER_OTLP_* apply
  FAILPOINTS                   fault drills, only in builds with --features failpoints";

/// Checks a service's command line: it has a version, and its `--help` names every
/// variable the service reads (each flag's `[env: …]` and [`ENVIRONMENT_HELP`]). Returns the
/// problems found; each service's tests call it.
#[must_use]
pub fn help_problems(mut command: clap::Command) -> Vec<String> {
    let mut problems = Vec::new();
    if command.get_version().is_none() {
        problems.push("no --version".to_owned());
    }
    let help = command.render_long_help().to_string();
    let flags: Vec<String> =
        command.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
    for variable in flags.iter().map(String::as_str).chain(["RUST_LOG", "LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT"]) {
        if !help.contains(variable) {
            problems.push(format!("--help does not name {variable}"));
        }
    }
    if !flags.iter().any(|f| f == "DATABASE_URL") {
        problems.push("no DATABASE_URL flag".to_owned());
    }
    problems
}

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

    /// `DATABASE_URL` points at PgBouncer (1.21 or later, transaction pooling,
    /// `max_prepared_statements` set): no `search_path` start-up option (the pooler sets it
    /// per database, `deploy/pgbouncer/`, or the service's role carries it,
    /// `k8s/overlays/prod/database.yaml`). Needs `DATABASE_MIGRATION_URL`.
    #[arg(long, env = "DATABASE_PGBOUNCER", default_value_t = false, requires = "database_migration_url")]
    pub database_pgbouncer: bool,

    /// A direct PostgreSQL URL (not through a pooler) for what needs a whole session: the
    /// start-up migrations (their lock) and reservation's `LISTEN` for seat changes (one
    /// connection per replica). Unset: both use `DATABASE_URL`. Kept secret.
    #[arg(long, env = "DATABASE_MIGRATION_URL")]
    pub database_migration_url: Option<SecretString>,
}

impl DatabaseConfig {
    /// Parses the URLs into connect options.
    ///
    /// # Errors
    /// When `DATABASE_URL` or `DATABASE_MIGRATION_URL` is not a valid PostgreSQL URL.
    pub fn connect_options(&self) -> anyhow::Result<DbOptions> {
        let parse = |name: &str, url: &SecretString| {
            url.expose_secret()
                .parse::<PgConnectOptions>()
                .map_err(|_| anyhow::anyhow!("{name} is not a valid PostgreSQL URL"))
        };
        Ok(DbOptions {
            connect: parse("DATABASE_URL", &self.database_url)?,
            pooler: if self.database_pgbouncer { Pooler::PgBouncerTransaction } else { Pooler::None },
            migrate_with: self
                .database_migration_url
                .as_ref()
                .map(|url| parse("DATABASE_MIGRATION_URL", url))
                .transpose()?,
        })
    }
}

/// What sits between a service and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// Direct connections.
    #[default]
    None,
    /// PgBouncer in transaction pooling: each transaction may run on another server
    /// connection, so nothing may outlive a transaction (named prepared statements, session
    /// settings, session advisory locks).
    PgBouncerTransaction,
}

/// How a service reaches PostgreSQL. Its `Debug` output leaves the secrets out: sqlx's own
/// `Debug` prints the password, and settings are logged and printed.
#[derive(Clone)]
pub struct DbOptions {
    /// Where the serving pool connects.
    pub connect: PgConnectOptions,
    /// What is in between.
    pub pooler: Pooler,
    /// Where migrations run, when not over `connect` (a pooler cannot hold their lock).
    pub migrate_with: Option<PgConnectOptions>,
}

impl From<PgConnectOptions> for DbOptions {
    fn from(connect: PgConnectOptions) -> Self {
        Self { connect, pooler: Pooler::None, migrate_with: None }
    }
}

impl std::fmt::Debug for DbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = |o: &PgConnectOptions| {
            format!(
                "postgres://{}@{}:{}/{} (password redacted)",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            )
        };
        f.debug_struct("DbOptions")
            .field("connect", &url(&self.connect))
            .field("pooler", &self.pooler)
            .field("migrate_with", &self.migrate_with.as_ref().map(url))
            .finish()
    }
}

/// Where a service listens.
#[derive(Debug, Clone, Args)]
pub struct ListenConfig {
    /// Address of the public port: the services browsers and users may call (gRPC over
    /// HTTP/2 and grpc-web over HTTP/1.1), behind the Envoy edge.
    #[arg(long, env = "LISTEN_ADDR")]
    pub listen_addr: Option<SocketAddr>,

    /// Address of the internal port: peer (`…InternalService`) and admin services, for other
    /// services and operators only (keep it off the edge; see the README's trust boundary).
    #[arg(long, env = "INTERNAL_LISTEN_ADDR")]
    pub internal_listen_addr: Option<SocketAddr>,

    /// Most requests this replica works on at once; beyond it new calls are refused at once
    /// with RESOURCE_EXHAUSTED (reason OVERLOADED) instead of queueing without bound, so a
    /// load balancer or the client's backoff can send them elsewhere or later.
    #[arg(long, env = "MAX_IN_FLIGHT_REQUESTS", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight_requests: u32,

    /// Most concurrent calls (HTTP/2 streams, e.g. WatchQueue) one client connection may
    /// have open at once; more are refused by HTTP/2 flow control, not queued.
    #[arg(long, env = "MAX_STREAMS_PER_CONNECTION", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams_per_connection: u32,

    /// Address of the Prometheus endpoint (`GET /metrics`), e.g. `0.0.0.0:9090`; unset, no
    /// metrics are exported. Keep it off the edge, like the internal port.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl ListenConfig {
    /// Binds the public and internal ports: the configured addresses, or the service's
    /// documented defaults.
    ///
    /// # Errors
    /// When an address cannot be bound.
    pub async fn bind(&self, public: SocketAddr, internal: SocketAddr) -> anyhow::Result<crate::server::Listeners> {
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
        };
        Ok(crate::server::Listeners {
            public: bind(self.listen_addr.unwrap_or(public)).await?,
            internal: bind(self.internal_listen_addr.unwrap_or(internal)).await?,
        })
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

/// How callers of the public port prove who they are.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// A JWKS (JSON Web Key Set) file with the identity provider's public keys.
    #[arg(long, env = "AUTH_JWKS_FILE", conflicts_with = "auth_jwks_url")]
    pub auth_jwks_file: Option<std::path::PathBuf>,

    /// The identity provider's JWKS URL (`jwks_uri` of its OpenID configuration); fetched at
    /// start-up, again when a token names an unknown key, and every 5 minutes.
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,

    /// The `iss` access tokens must carry, exactly as the identity provider writes it.
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// The `aud` access tokens must carry (this API's identifier at the identity provider).
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// Run without user authentication: public RPCs then trust the `user_id` in requests.
    /// Only for a suite no untrusted caller can reach; logged at WARN on start-up.
    #[arg(long, env = "AUTH_DISABLED", default_value_t = false)]
    pub auth_disabled: bool,
}

impl AuthConfig {
    /// The authentication these settings ask for.
    ///
    /// # Errors
    /// When nothing is configured and authentication is not explicitly disabled, when it is
    /// both configured and disabled, or when a key source, issuer or audience is missing.
    pub fn settings(&self) -> anyhow::Result<crate::identity::AuthSettings> {
        use crate::identity::{AuthSettings, JwksSource, JwtSettings};
        let source = match (&self.auth_jwks_file, &self.auth_jwks_url) {
            (Some(path), None) => Some(JwksSource::File(path.clone())),
            (None, Some(url)) => Some(JwksSource::Url(url.clone())),
            (None, None) => None,
            (Some(_), Some(_)) => anyhow::bail!("set AUTH_JWKS_FILE or AUTH_JWKS_URL, not both"),
        };
        let configured = source.is_some() || self.auth_issuer.is_some() || self.auth_audience.is_some();
        match (configured, self.auth_disabled) {
            (true, true) => {
                anyhow::bail!("AUTH_DISABLED=true contradicts the AUTH_JWKS_*/AUTH_ISSUER/AUTH_AUDIENCE settings")
            }
            (false, true) => Ok(AuthSettings::Disabled),
            (false, false) => anyhow::bail!(
                "no user authentication configured: set AUTH_JWKS_FILE or AUTH_JWKS_URL, AUTH_ISSUER and \
                 AUTH_AUDIENCE (or AUTH_DISABLED=true for a suite no untrusted caller can reach)"
            ),
            (true, false) => {
                let source = source.ok_or_else(|| anyhow::anyhow!("set AUTH_JWKS_FILE or AUTH_JWKS_URL"))?;
                let issuer = self.auth_issuer.clone().filter(|s| !s.is_empty());
                let audience = self.auth_audience.clone().filter(|s| !s.is_empty());
                let issuer = issuer.ok_or_else(|| anyhow::anyhow!("AUTH_ISSUER is required with a JWKS"))?;
                let audience = audience.ok_or_else(|| anyhow::anyhow!("AUTH_AUDIENCE is required with a JWKS"))?;
                Ok(AuthSettings::Jwt(JwtSettings::new(source, issuer, audience)))
            }
        }
    }
}

/// The waiting room's key for signing admission passes (queue only; see [`crate::admission`]).
#[derive(Debug, Clone, Args)]
pub struct PassSigningConfig {
    /// Ed25519 private key (PKCS#8 PEM, `openssl genpkey -algorithm ed25519`) this replica
    /// signs admission passes with; every queue replica needs the same key. Unset: ACTIVE
    /// tokens get no pass, and admitted people's calls are checked with the queue.
    #[arg(long, env = "ADMISSION_PASS_SIGNING_KEY_FILE")]
    pub admission_pass_signing_key_file: Option<std::path::PathBuf>,
}

impl PassSigningConfig {
    /// The signer, when a key is configured.
    ///
    /// # Errors
    /// When the file cannot be read or holds no Ed25519 private key.
    pub fn signer(&self) -> anyhow::Result<Option<crate::admission::PassSigner>> {
        self.admission_pass_signing_key_file
            .as_deref()
            .map(|path| key_file("ADMISSION_PASS_SIGNING_KEY_FILE", path, crate::admission::PassSigner::from_pem))
            .transpose()
    }
}

/// The waiting room's public key for verifying admission passes (catalog and reservation).
#[derive(Debug, Clone, Args)]
pub struct PassVerifyingConfig {
    /// The public half of the queue's ADMISSION_PASS_SIGNING_KEY_FILE (SPKI PEM, `openssl
    /// pkey -pubout`). Unset: `x-queue-token` must be a bare queue token, checked with the
    /// queue on every call past the token cache.
    #[arg(long, env = "ADMISSION_PASS_PUBLIC_KEY_FILE")]
    pub admission_pass_public_key_file: Option<std::path::PathBuf>,
}

impl PassVerifyingConfig {
    /// The verifier, when a key is configured.
    ///
    /// # Errors
    /// When the file cannot be read or holds no Ed25519 public key.
    pub fn verifier(&self) -> anyhow::Result<Option<crate::admission::PassVerifier>> {
        self.admission_pass_public_key_file
            .as_deref()
            .map(|path| {
                key_file("ADMISSION_PASS_PUBLIC_KEY_FILE", path, crate::admission::PassVerifier::from_public_pem)
            })
            .transpose()
    }
}

/// The key in the PEM file `path` names, read with `parse`; errors name `variable` and the file.
fn key_file<T, E: std::fmt::Display>(
    variable: &str,
    path: &std::path::Path,
    parse: impl FnOnce(&[u8]) -> Result<T, E>,
) -> anyhow::Result<T> {
    let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("{variable} {}: {e}", path.display()))?;
    parse(&pem).map_err(|e| anyhow::anyhow!("{variable} {}: {e}", path.display()))
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
    use crate::identity::{AuthSettings, JwksSource};

    fn auth(
        file: Option<&str>,
        url: Option<&str>,
        issuer: Option<&str>,
        audience: Option<&str>,
        disabled: bool,
    ) -> AuthConfig {
        AuthConfig {
            auth_jwks_file: file.map(Into::into),
            auth_jwks_url: url.map(Into::into),
            auth_issuer: issuer.map(Into::into),
            auth_audience: audience.map(Into::into),
            auth_disabled: disabled,
        }
    }

    #[test]
    fn a_service_without_authentication_settings_refuses_to_start_unless_told() {
        assert!(auth(None, None, None, None, false).settings().is_err());
        assert_eq!(auth(None, None, None, None, true).settings().unwrap(), AuthSettings::Disabled);
        assert!(auth(Some("/k.json"), None, Some("iss"), Some("aud"), true).settings().is_err());
        assert!(auth(Some("/k.json"), None, None, Some("aud"), false).settings().is_err());
        assert!(auth(None, Some("https://idp/jwks"), Some("iss"), None, false).settings().is_err());
        assert!(auth(None, None, Some("iss"), Some("aud"), false).settings().is_err());
        let AuthSettings::Jwt(jwt) =
            auth(None, Some("https://idp/jwks"), Some("iss"), Some("aud"), false).settings().unwrap()
        else {
            panic!("JWT settings expected")
        };
        assert_eq!(jwt.jwks, JwksSource::Url("https://idp/jwks".into()));
        assert_eq!((jwt.issuer.as_str(), jwt.audience.as_str()), ("iss", "aud"));
    }

    #[test]
    fn admission_pass_keys_load_from_files_and_errors_name_the_variable() {
        let dev = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/dev-auth/");
        let signing =
            |file: &str| PassSigningConfig { admission_pass_signing_key_file: Some(format!("{dev}{file}").into()) };
        let verifying =
            |file: &str| PassVerifyingConfig { admission_pass_public_key_file: Some(format!("{dev}{file}").into()) };
        // The dev pair is a pair: what the dev queue signs, dev catalog and reservation accept.
        let signer = signing("admission-pass-key.pem").signer().unwrap().unwrap();
        let verifier = verifying("admission-pass-public.pem").verifier().unwrap().unwrap();
        let now = chrono::Utc::now();
        let pass = crate::admission::Pass {
            token: uuid::Uuid::new_v4(),
            user_id: "u".into(),
            concert_id: uuid::Uuid::new_v4(),
            expires_at: now + chrono::Duration::minutes(1),
        };
        assert!(verifier.verify(&signer.sign(&pass).unwrap(), now).is_ok());
        let missing = signing("nope.pem").signer().unwrap_err().to_string();
        assert!(missing.contains("ADMISSION_PASS_SIGNING_KEY_FILE") && missing.contains("nope.pem"), "{missing}");
        let wrong = verifying("admission-pass-key.pem").verifier().unwrap_err().to_string();
        assert!(wrong.contains("ADMISSION_PASS_PUBLIC_KEY_FILE"), "{wrong}");
        assert!(PassSigningConfig { admission_pass_signing_key_file: None }.signer().unwrap().is_none());
    }

    #[test]
    fn connect_options_never_print_the_password() {
        let db = DatabaseConfig {
            database_url: "postgres://app:hunter2@db.internal:6432/concert".into(),
            database_max_connections: 4,
            database_pgbouncer: true,
            database_migration_url: Some("postgres://owner:s3cret@db.direct:5432/concert".into()),
        };
        let options = db.connect_options().unwrap();
        assert_eq!(options.pooler, Pooler::PgBouncerTransaction);
        let printed = format!("{db:?} {options:?}");
        for secret in ["hunter2", "s3cret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("db.internal:6432/concert"), "{printed}");
        assert!(printed.contains("db.direct:5432/concert"), "{printed}");
        let bad = DatabaseConfig {
            database_url: "postgres://app:hunter2@[bad".into(),
            database_max_connections: 4,
            database_pgbouncer: false,
            database_migration_url: None,
        };
        assert!(!bad.connect_options().unwrap_err().to_string().contains("hunter2"));
    }
}
