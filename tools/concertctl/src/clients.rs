//! Where the services are, and typed clients for them.
use std::time::{Duration, Instant};

use clap::Args;
use concert_proto::concert::{
    catalog::v1::{
        catalog_admin_service_client::CatalogAdminServiceClient, catalog_service_client::CatalogServiceClient,
    },
    queue::v1::{
        GetQueueStatusRequest, IssueTokenRequest, TokenState,
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
use platform::grpc_client::lazy_channel;
use tonic::{Request, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Service addresses (same variables the services themselves use).
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
}

/// One channel per service.
#[derive(Debug, Clone)]
pub struct Clients {
    pub endpoints: Endpoints,
    queue: Channel,
    catalog: Channel,
    reservation: Channel,
    wallet: Channel,
}

impl Endpoints {
    pub fn connect(&self) -> anyhow::Result<Clients> {
        Ok(Clients {
            endpoints: self.clone(),
            queue: lazy_channel(&self.queue_url)?,
            catalog: lazy_channel(&self.catalog_url)?,
            reservation: lazy_channel(&self.reservation_url)?,
            wallet: lazy_channel(&self.wallet_url)?,
        })
    }
}

impl Clients {
    pub fn queue(&self) -> QueueServiceClient<Channel> {
        QueueServiceClient::new(self.queue.clone())
    }
    pub fn catalog(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.catalog.clone())
    }
    pub fn admin(&self) -> CatalogAdminServiceClient<Channel> {
        CatalogAdminServiceClient::new(self.catalog.clone())
    }
    pub fn reservation(&self) -> ReservationServiceClient<Channel> {
        ReservationServiceClient::new(self.reservation.clone())
    }
    pub fn queue_internal(&self) -> QueueInternalServiceClient<Channel> {
        QueueInternalServiceClient::new(self.queue.clone())
    }
    pub fn reservation_internal(&self) -> ReservationInternalServiceClient<Channel> {
        ReservationInternalServiceClient::new(self.reservation.clone())
    }
    pub fn wallet_internal(&self) -> WalletInternalServiceClient<Channel> {
        WalletInternalServiceClient::new(self.wallet.clone())
    }
    pub fn wallet(&self) -> WalletServiceClient<Channel> {
        WalletServiceClient::new(self.wallet.clone())
    }

    /// Fresh connections (one HTTP/2 connection per channel), so load spreads over
    /// several connections the way many real clients would.
    pub fn reconnect(&self) -> anyhow::Result<Clients> {
        self.endpoints.connect()
    }

    /// Waits until every service answers SERVING.
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for (name, channel) in [
            ("queue", &self.queue),
            ("catalog", &self.catalog),
            ("reservation", &self.reservation),
            ("wallet", &self.wallet),
        ] {
            let mut health = HealthClient::new(channel.clone());
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
        Ok(())
    }

    /// [`Clients::active_token`] with owned ids and a 120 s timeout.
    pub async fn active_token_owned(&self, user: String, concert_id: String) -> anyhow::Result<String> {
        self.active_token(&user, &concert_id, Duration::from_secs(120)).await
    }

    /// Joins `concert_id`'s waiting room as `user` and waits (polling every 100 ms) until
    /// ACTIVE.
    pub async fn active_token(&self, user: &str, concert_id: &str, timeout: Duration) -> anyhow::Result<String> {
        let mut queue = self.queue();
        let status = queue
            .issue_token(IssueTokenRequest { user_id: user.into(), concert_id: concert_id.into() })
            .await?
            .into_inner()
            .status
            .ok_or_else(|| anyhow::anyhow!("IssueToken returned no status"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let s = queue
                .get_queue_status(GetQueueStatusRequest { token: status.token.clone() })
                .await?
                .into_inner()
                .status
                .ok_or_else(|| anyhow::anyhow!("GetQueueStatus returned no status"))?;
            if s.state == TokenState::Active as i32 {
                return Ok(s.token);
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

/// A request carrying `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, message: T) -> anyhow::Result<Request<T>> {
    let mut r = Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    Ok(r)
}
