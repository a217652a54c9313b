//! Which concerts have a waiting room, and when their sales open.
//!
//! A room is created the first time anyone joins a concert's queue (or an operator sets its
//! policy): the queue asks the catalog (`CatalogInternalService.GetConcert`) whether the
//! concert exists and when its sale opens, and stores the room. The sale time never changes
//! after the concert is created, so each replica keeps rooms in memory for joins and polls;
//! the admission round and `GetQueueStats` read policies from the database, so a policy
//! change on one replica takes effect everywhere at the next round.
use std::{sync::Arc, time::Duration};

use concert_proto::concert::catalog::v1::{
    GetConcertRequest, catalog_internal_service_client::CatalogInternalServiceClient,
};
use moka::future::Cache;
use platform::{clock::SharedClock, status::from_peer};
use platform::{
    grpc_client::PeerChannel,
    outbound::{self, CallPolicy, Deadline, Idempotency},
};
use tonic::Code;
use uuid::Uuid;

use crate::{
    domain::{PolicyOverrides, Room},
    error::QueueError,
    store::QueueRepo,
};

/// Most rooms one replica keeps in memory.
const CAPACITY: u64 = 100_000;
/// How long a replica keeps a room in memory (only its immutable sale time is used from it).
const TTL: Duration = Duration::from_secs(600);

/// Read-through registry of waiting rooms.
#[derive(Debug, Clone)]
pub struct Rooms {
    repo: QueueRepo,
    catalog: CatalogInternalServiceClient<PeerChannel>,
    /// Deadline and retries of GetConcert (an idempotent read).
    policy: CallPolicy,
    cache: Cache<Uuid, Arc<Room>>,
    clock: SharedClock,
}

impl Rooms {
    #[must_use]
    pub fn new(repo: QueueRepo, catalog: PeerChannel, clock: SharedClock) -> Self {
        Self {
            repo,
            catalog: CatalogInternalServiceClient::new(catalog),
            policy: CallPolicy::default(),
            cache: Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).build(),
            clock,
        }
    }

    /// The room of `concert_id`, created on first use; concurrent misses share one load.
    ///
    /// # Errors
    /// [`QueueError::ConcertNotFound`] when the catalog does not know the concert;
    /// [`QueueError::Peer`] when the catalog cannot be asked; database failures.
    pub async fn get(&self, concert_id: Uuid) -> Result<Arc<Room>, QueueError> {
        let load = load(self.repo.clone(), self.catalog.clone(), self.policy.clone(), concert_id, self.clock.clone());
        self.cache.try_get_with(concert_id, load).await.map_err(|e| QueueError::shared(&e, "loading waiting room"))
    }

    /// The room as stored now (policy included), for operators.
    ///
    /// # Errors
    /// As [`Rooms::get`].
    pub async fn fresh(&self, concert_id: Uuid) -> Result<Room, QueueError> {
        match self.repo.room(concert_id).await? {
            Some(room) => Ok(room),
            None => Ok((*self.get(concert_id).await?).clone()),
        }
    }

    /// Replaces the room's policy overrides (creating the room first if needed).
    ///
    /// # Errors
    /// As [`Rooms::get`].
    pub async fn set_policy(&self, concert_id: Uuid, overrides: &PolicyOverrides) -> Result<Room, QueueError> {
        self.get(concert_id).await?;
        let room = self.repo.set_policy(concert_id, overrides).await?.ok_or(QueueError::ConcertNotFound)?;
        self.cache.insert(concert_id, Arc::new(room.clone())).await;
        Ok(room)
    }
}

async fn load(
    repo: QueueRepo,
    catalog: CatalogInternalServiceClient<PeerChannel>,
    policy: CallPolicy,
    concert_id: Uuid,
    clock: SharedClock,
) -> Result<Arc<Room>, QueueError> {
    if let Some(room) = repo.room(concert_id).await? {
        return Ok(Arc::new(room));
    }
    let request = GetConcertRequest { concert_id: concert_id.to_string() };
    let concert = outbound::call("catalog", &policy, Deadline::NONE, Idempotency::Idempotent, |budget| {
        let mut catalog = catalog.clone();
        let request = outbound::with_timeout(request.clone(), budget);
        async move { catalog.get_concert(request).await }
    })
    .await
    .map_err(|s| match s.code() {
        Code::NotFound => QueueError::ConcertNotFound,
        _ => QueueError::Peer(from_peer("catalog", &s)),
    })?
    .into_inner()
    .concert
    .unwrap_or_default();
    let sale_opens_at = concert
        .sale_opens_at
        .as_ref()
        .map(|t| platform::convert::datetime("sale_opens_at", Some(t)))
        .transpose()
        .map_err(|e| QueueError::from(anyhow::anyhow!("catalog sent a bad sale_opens_at: {e}")))?;
    Ok(Arc::new(repo.create_room(concert_id, sale_opens_at, clock.now()).await?))
}
