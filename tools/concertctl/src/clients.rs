//! Where the services are, and typed clients for them.
use std::time::{Duration, Instant};

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use clap::Args;
use concert_proto::concert::{
    catalog::v1::{
        catalog_admin_service_client::CatalogAdminServiceClient, catalog_service_client::CatalogServiceClient,
    },
    queue::v1::{
        GetQueueStatusRequest, IssueTokenRequest, TokenState, queue_admin_service_client::QueueAdminServiceClient,
        queue_internal_service_client::QueueInternalServiceClient, queue_service_client::QueueServiceClient,
    },
    reservation::v1::{
        reservation_internal_service_client::ReservationInternalServiceClient,
        reservation_service_client::ReservationServiceClient,
    },
    wallet::v1::{
        wallet_internal_service_client::WalletInternalServiceClient, wallet_service_client::WalletServiceClient,
    },
};
use platform::grpc_client::PeerChannel;
use platform::{auth::QUEUE_TOKEN_HEADER, grpc_client::lazy_channel_with_timeout, identity::signer::Signer};
use tonic::Request;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Service addresses (same variables the services themselves use): the public ports for
/// what a user does, the internal ports for operator and peer calls. A public address may
/// list replicas, `URL[,URL…]`: each call then goes to the next of them (round-robin per
/// call, as Envoy's `ROUND_ROBIN` sends the booking page's calls), so no user is pinned to a
/// replica.
#[derive(Debug, Clone, Args)]
pub struct Endpoints {
    #[arg(long, env = "QUEUE_URL", default_value = "http://127.0.0.1:50051")]
    pub queue_url: String,
    #[arg(long, env = "CATALOG_URL", default_value = "http://127.0.0.1:50052")]
    pub catalog_url: String,
    #[arg(long, env = "RESERVATION_URL", default_value = "http://127.0.0.1:50053")]
    pub reservation_url: String,
    #[arg(long, env = "WALLET_URL", default_value = "http://127.0.0.1:50054")]
    pub wallet_url: String,
    #[arg(long, env = "QUEUE_INTERNAL_URL", default_value = "http://127.0.0.1:50061")]
    pub queue_internal_url: String,
    #[arg(long, env = "CATALOG_INTERNAL_URL", default_value = "http://127.0.0.1:50062")]
    pub catalog_internal_url: String,
    #[arg(long, env = "RESERVATION_INTERNAL_URL", default_value = "http://127.0.0.1:50063")]
    pub reservation_internal_url: String,
    #[arg(long, env = "WALLET_INTERNAL_URL", default_value = "http://127.0.0.1:50064")]
    pub wallet_internal_url: String,
    #[command(flatten)]
    pub signing: Signing,
}

/// The dev-only issuer of `deploy/dev-auth/` (what `scripts/run-suite.sh` configures).
pub const DEV_ISSUER: &str = "https://dev-auth.concert.invalid/";
/// The dev-only audience of `deploy/dev-auth/`.
pub const DEV_AUDIENCE: &str = "concert-api";

/// How demo and benchmark users get access tokens: signed here with a private key the
/// services trust. The default is the DEV-ONLY key committed under `deploy/dev-auth/`.
#[derive(Debug, Clone, Args)]
pub struct Signing {
    /// PKCS#8 PEM private key (ES256) that signs access tokens. A relative path is looked up
    /// in the working directory, then in the repository this concertctl was built in (found
    /// from the binary, e.g. `target/release/`, and from the build), so the dev default
    /// works from any directory.
    #[arg(long, env = "AUTH_DEV_SIGNING_KEY", default_value = "deploy/dev-auth/dev-signing-key.pem")]
    pub signing_key: PathBuf,
    /// The key's `kid` in the services' JWKS.
    #[arg(long, env = "AUTH_DEV_SIGNING_KID", default_value = "dev-1")]
    pub signing_kid: String,
    /// The `iss` of signed tokens.
    #[arg(long, env = "AUTH_ISSUER", default_value = DEV_ISSUER)]
    pub issuer: String,
    /// The `aud` of signed tokens.
    #[arg(long, env = "AUTH_AUDIENCE", default_value = DEV_AUDIENCE)]
    pub audience: String,
}

impl Signing {
    /// Loads the signing key.
    ///
    /// # Errors
    /// When the key file cannot be read or is not an ES256 private key.
    pub fn minter(&self) -> anyhow::Result<Minter> {
        let bases = key_bases();
        let path = locate(&self.signing_key, &bases).ok_or_else(|| {
            let tried: Vec<String> = bases.iter().map(|b| b.join(&self.signing_key).display().to_string()).collect();
            anyhow::anyhow!(
                "cannot find the signing key {} (tried {}); set AUTH_DEV_SIGNING_KEY or --signing-key to its path",
                self.signing_key.display(),
                tried.join(", ")
            )
        })?;
        let pem =
            std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read the signing key {}: {e}", path.display()))?;
        let signer = Signer::from_pem(&pem, &self.signing_kid, jsonwebtoken::Algorithm::ES256)?;
        Ok(Minter { signer, issuer: self.issuer.clone(), audience: self.audience.clone() })
    }
}

/// Where a relative signing key path is looked up, in order: the working directory, the
/// directories above the running binary (a repository's `target/<profile>/concertctl`), and
/// the repository concertctl was built from.
fn key_bases() -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        bases.extend(exe.ancestors().skip(1).take(4).map(std::path::Path::to_path_buf));
    }
    bases.push(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")));
    bases
}

/// `path` itself when absolute, else the first of `bases` joined with it that exists.
fn locate(path: &std::path::Path, bases: &[PathBuf]) -> Option<PathBuf> {
    if path.is_absolute() {
        return Some(path.to_path_buf());
    }
    bases.iter().map(|base| base.join(path)).find(|candidate| candidate.is_file())
}

/// Signs access tokens for users.
#[derive(Debug, Clone)]
pub struct Minter {
    signer: Signer,
    issuer: String,
    audience: String,
}

impl Minter {
    /// An access token naming `user`, valid for `ttl`.
    ///
    /// # Errors
    /// When signing fails.
    pub fn access_token(&self, user: &str, ttl: Duration) -> anyhow::Result<String> {
        let claims = platform::identity::signer::Claims::new(user, &self.issuer, &self.audience, ttl);
        Ok(self.signer.sign(&claims)?)
    }

    /// The JWKS with the public half of the signing key.
    ///
    /// # Errors
    /// When the public key cannot be derived.
    pub fn jwks(&self) -> anyhow::Result<String> {
        Ok(platform::identity::signer::jwks_json(&[&self.signer])?)
    }
}

/// How long demo and benchmark access tokens stay valid.
const USER_TOKEN_TTL: Duration = Duration::from_secs(3_600);

/// A user signed in (an access token) and, once admitted, holding a queue token.
#[derive(Debug, Clone)]
pub struct Session {
    /// The access token (JWT) naming `user`.
    pub access_token: String,
    /// The queue token, once joined.
    pub token: String,
    /// The admission pass, once admitted (sent instead of the token on protected calls).
    pub pass: String,
}

impl Session {
    /// A request as this user: `authorization: Bearer <access token>` and, when the session
    /// holds one, `x-queue-token` (the admission pass if it has one, else the queue token).
    ///
    /// # Errors
    /// When a token is not valid metadata (never for tokens this tool made).
    pub fn request<T>(&self, message: T) -> anyhow::Result<Request<T>> {
        let mut r = Request::new(message);
        r.metadata_mut().insert("authorization", format!("Bearer {}", self.access_token).parse()?);
        let credential = if self.pass.is_empty() { &self.token } else { &self.pass };
        if !credential.is_empty() {
            r.metadata_mut().insert(QUEUE_TOKEN_HEADER, credential.parse()?);
        }
        Ok(r)
    }
}

/// One service's replicas, each call to the next one.
#[derive(Debug, Clone)]
struct Replicas {
    channels: Arc<[PeerChannel]>,
    next: Arc<AtomicUsize>,
}

impl Replicas {
    /// Channels to each URL of `urls` (`URL[,URL…]`).
    fn connect(urls: &str, timeout: Duration) -> anyhow::Result<Self> {
        let channels = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| lazy_channel_with_timeout(u, timeout))
            .collect::<anyhow::Result<Arc<[_]>>>()?;
        anyhow::ensure!(!channels.is_empty(), "no URL in {urls:?}");
        Ok(Self { channels, next: Arc::default() })
    }

    /// The channel of the next call.
    fn pick(&self) -> PeerChannel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }
}

/// Channels to each port of each service (the public ones to every replica listed).
#[derive(Debug, Clone)]
pub struct Clients {
    pub endpoints: Endpoints,
    queue: Replicas,
    catalog: Replicas,
    reservation: Replicas,
    wallet: Replicas,
    queue_internal: PeerChannel,
    catalog_internal: PeerChannel,
    reservation_internal: PeerChannel,
    wallet_internal: PeerChannel,
    minter: Arc<std::sync::OnceLock<Minter>>,
}

impl Endpoints {
    /// Clients whose calls wait up to the suite's default peer deadline.
    pub fn connect(&self) -> anyhow::Result<Clients> {
        self.connect_with_timeout(platform::grpc_client::DEFAULT_CALL_TIMEOUT)
    }

    /// Clients whose calls wait up to `timeout`.
    pub fn connect_with_timeout(&self, timeout: Duration) -> anyhow::Result<Clients> {
        let channel = |url: &str| lazy_channel_with_timeout(url, timeout);
        Ok(Clients {
            endpoints: self.clone(),
            queue: Replicas::connect(&self.queue_url, timeout)?,
            catalog: Replicas::connect(&self.catalog_url, timeout)?,
            reservation: Replicas::connect(&self.reservation_url, timeout)?,
            wallet: Replicas::connect(&self.wallet_url, timeout)?,
            queue_internal: channel(&self.queue_internal_url)?,
            catalog_internal: channel(&self.catalog_internal_url)?,
            reservation_internal: channel(&self.reservation_internal_url)?,
            wallet_internal: channel(&self.wallet_internal_url)?,
            minter: Arc::default(),
        })
    }
}

impl Clients {
    /// The signer of user access tokens, loaded on first use (only user-facing commands
    /// need the key).
    ///
    /// # Errors
    /// When the signing key cannot be loaded.
    pub fn minter(&self) -> anyhow::Result<&Minter> {
        if let Some(m) = self.minter.get() {
            return Ok(m);
        }
        let minter = self.endpoints.signing.minter()?;
        Ok(self.minter.get_or_init(|| minter))
    }

    /// `user` signed in, not yet in any line.
    ///
    /// # Errors
    /// When the signing key cannot be loaded or signing fails.
    pub fn sign_in(&self, user: &str) -> anyhow::Result<Session> {
        let access_token = self.minter()?.access_token(user, USER_TOKEN_TTL)?;
        Ok(Session { access_token, token: String::new(), pass: String::new() })
    }
}

impl Clients {
    pub fn queue(&self) -> QueueServiceClient<PeerChannel> {
        QueueServiceClient::new(self.queue.pick())
    }
    pub fn catalog(&self) -> CatalogServiceClient<PeerChannel> {
        CatalogServiceClient::new(self.catalog.pick())
    }
    pub fn admin(&self) -> CatalogAdminServiceClient<PeerChannel> {
        CatalogAdminServiceClient::new(self.catalog_internal.clone())
    }
    pub fn reservation(&self) -> ReservationServiceClient<PeerChannel> {
        ReservationServiceClient::new(self.reservation.pick())
    }
    /// The channel to queue's public port (for the health service).
    pub fn queue_channel(&self) -> PeerChannel {
        self.queue.pick()
    }
    pub fn queue_admin(&self) -> QueueAdminServiceClient<PeerChannel> {
        QueueAdminServiceClient::new(self.queue_internal.clone())
    }
    pub fn queue_internal(&self) -> QueueInternalServiceClient<PeerChannel> {
        QueueInternalServiceClient::new(self.queue_internal.clone())
    }
    pub fn reservation_internal(&self) -> ReservationInternalServiceClient<PeerChannel> {
        ReservationInternalServiceClient::new(self.reservation_internal.clone())
    }
    pub fn wallet_internal(&self) -> WalletInternalServiceClient<PeerChannel> {
        WalletInternalServiceClient::new(self.wallet_internal.clone())
    }
    pub fn wallet(&self) -> WalletServiceClient<PeerChannel> {
        WalletServiceClient::new(self.wallet.pick())
    }

    /// Fresh connections (one HTTP/2 connection per channel), so load spreads over
    /// several connections the way many real clients would.
    pub fn reconnect(&self) -> anyhow::Result<Clients> {
        self.endpoints.connect()
    }

    /// Waits until every service (or only `only`: `queue`, `catalog`, `reservation` or
    /// `wallet`) answers SERVING on both its ports.
    pub async fn wait_healthy(&self, timeout: Duration, only: Option<&str>) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let one = |c: &PeerChannel| vec![c.clone()];
        for (name, channels) in [
            ("queue", self.queue.channels.to_vec()),
            ("queue (internal)", one(&self.queue_internal)),
            ("catalog", self.catalog.channels.to_vec()),
            ("catalog (internal)", one(&self.catalog_internal)),
            ("reservation", self.reservation.channels.to_vec()),
            ("reservation (internal)", one(&self.reservation_internal)),
            ("wallet", self.wallet.channels.to_vec()),
            ("wallet (internal)", one(&self.wallet_internal)),
        ]
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|only| name.split(' ').next() == Some(only)))
        {
            for channel in channels {
                let mut health = HealthClient::new(channel);
                loop {
                    let ok = health
                        .check(HealthCheckRequest { service: String::new() })
                        .await
                        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
                    if ok {
                        println!("{name}: SERVING");
                        break;
                    }
                    anyhow::ensure!(Instant::now() < deadline, "{name} did not become healthy within {timeout:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Ok(())
    }

    /// [`Clients::active_token`] with owned ids and a 120 s timeout.
    pub async fn active_token_owned(&self, user: String, concert_id: String) -> anyhow::Result<Session> {
        self.active_token(&user, &concert_id, Duration::from_secs(120)).await
    }

    /// Signs `user` in, joins `concert_id`'s waiting room and waits (polling every 100 ms)
    /// until the queue token is ACTIVE.
    pub async fn active_token(&self, user: &str, concert_id: &str, timeout: Duration) -> anyhow::Result<Session> {
        let mut session = self.sign_in(user)?;
        let mut queue = self.queue();
        let status = queue
            .issue_token(session.request(IssueTokenRequest { user_id: String::new(), concert_id: concert_id.into() })?)
            .await?
            .into_inner()
            .status
            .ok_or_else(|| anyhow::anyhow!("IssueToken returned no status"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let s = queue
                .get_queue_status(session.request(GetQueueStatusRequest { token: status.token.clone() })?)
                .await?
                .into_inner()
                .status
                .ok_or_else(|| anyhow::anyhow!("GetQueueStatus returned no status"))?;
            if s.state == TokenState::Active as i32 {
                session.token = s.token;
                return Ok(session);
            }
            anyhow::ensure!(s.state == TokenState::Waiting as i32, "token of {user} expired while waiting");
            anyhow::ensure!(
                Instant::now() < deadline,
                "{user} not admitted within {timeout:?} (position {})",
                s.position
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Clients {
    /// Every concert, paging through ListConcerts.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn all_concerts(&self) -> anyhow::Result<Vec<concert_proto::concert::catalog::v1::Concert>> {
        use concert_proto::concert::catalog::v1::ListConcertsRequest;
        let (mut concerts, mut page_token) = (Vec::new(), String::new());
        loop {
            let request = ListConcertsRequest { page_size: 1_000, page_token };
            let page = self.catalog().list_concerts(request).await?.into_inner();
            concerts.extend(page.concerts);
            if page.next_page_token.is_empty() {
                return Ok(concerts);
            }
            page_token = page.next_page_token;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Issue #27, item 11: the dev key is found from outside the repository root.
    #[test]
    fn the_dev_key_is_found_from_any_directory() {
        let default = Path::new("deploy/dev-auth/dev-signing-key.pem");
        let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let elsewhere = std::env::temp_dir();
        assert_eq!(super::locate(default, std::slice::from_ref(&elsewhere)), None, "not in the temporary directory");
        let found = super::locate(default, &[elsewhere, repo]).expect("found in the repository");
        assert!(found.is_file());
        assert!(super::key_bases().iter().any(|b| b.join(default).is_file()));
    }
}
