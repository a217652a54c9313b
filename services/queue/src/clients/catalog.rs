//! The catalog's internal API: whether a concert exists, when its sale opens, and whether
//! everything is sold.
use chrono::{DateTime, Utc};
use concert_proto::concert::catalog::v1::{
    GetConcertRequest, GetConcertSalesRequest, catalog_internal_service_client::CatalogInternalServiceClient,
};
use platform::{
    grpc_client::PeerChannel,
    outbound::{CallPolicy, Deadline, Idempotency, Peer},
    status::from_peer,
};
use tonic::Code;
use uuid::Uuid;

use crate::error::QueueError;

/// Asks the catalog about concerts (an idempotent read, retried under the default policy).
#[derive(Debug, Clone)]
pub struct Catalog(Peer<CatalogInternalServiceClient<PeerChannel>>);

impl Catalog {
    #[must_use]
    pub fn new(channel: PeerChannel) -> Self {
        Self(Peer::new("catalog", CatalogInternalServiceClient::new(channel), CallPolicy::default()))
    }

    /// When the sale of `concert_id` opens (`None`: no set time, open now).
    ///
    /// # Errors
    /// [`QueueError::ConcertNotFound`] when the catalog does not know the concert;
    /// [`QueueError::Peer`] when the catalog cannot be asked.
    pub async fn sale_opens_at(&self, concert_id: Uuid) -> Result<Option<DateTime<Utc>>, QueueError> {
        let request = GetConcertRequest { concert_id: concert_id.to_string() };
        let concert = self
            .0
            .unary(Deadline::NONE, Idempotency::Idempotent, &request, async |mut c, r| c.get_concert(r).await)
            .await
            .map_err(|s| match s.code() {
                Code::NotFound => QueueError::ConcertNotFound,
                _ => QueueError::Peer(from_peer("catalog", &s)),
            })?
            .concert
            .unwrap_or_default();
        concert
            .sale_opens_at
            .as_ref()
            .map(|t| platform::convert::datetime("sale_opens_at", Some(t)))
            .transpose()
            .map_err(|e| QueueError::from(anyhow::anyhow!("catalog sent a bad sale_opens_at: {e}")))
    }

    /// Whether every seat of `concert_id`'s dates that have not started is sold (paid for;
    /// held seats may come back, so they do not count). A concert without such dates is not
    /// sold out.
    ///
    /// # Errors
    /// [`QueueError::Peer`] when the catalog cannot be asked.
    pub async fn sold_out(&self, concert_id: Uuid) -> Result<bool, QueueError> {
        let request = GetConcertSalesRequest { concert_id: concert_id.to_string() };
        let sales = self
            .0
            .unary(Deadline::NONE, Idempotency::Idempotent, &request, async |mut c, r| c.get_concert_sales(r).await)
            .await
            .map_err(|s| QueueError::Peer(from_peer("catalog", &s)))?;
        Ok(sales.seats > 0 && sales.sold >= sales.seats)
    }
}
