//! Which concerts have a waiting room, and when their sales open.
//!
//! A room is created the first time anyone joins a concert's queue (or an operator sets its
//! policy): the queue asks the catalog (`CatalogInternalService.GetConcert`) whether the
//! concert exists and when its sale opens, and stores the room. The sale time never changes
//! after the concert is created, so each replica keeps rooms in memory for joins and polls;
//! the admission round and `GetQueueStats` read policies from the database, so a policy
//! change on one replica takes effect everywhere at the next round.
use std::{sync::Arc, time::Duration};

use moka::future::Cache;
use platform::clock::SharedClock;
use uuid::Uuid;

use crate::{
    clients::catalog::Catalog,
    domain::{PolicyOverrides, Room},
    error::QueueError,
    store::QueueRepo,
};

/// Most rooms one replica keeps in memory.
const CAPACITY: u64 = 100_000;
/// How long a replica keeps a room in memory (only its immutable sale time is used from it).
const TTL: Duration = Duration::from_secs(600);
/// How long a replica remembers that the catalog does not know a concert: calls naming
/// made-up concerts (GetQueueStats needs no token) cost two reads and a catalog call once
/// per id and interval, not each time. A concert created meanwhile gets its room at most this
/// late.
const UNKNOWN_TTL: Duration = Duration::from_secs(5);

/// Read-through registry of waiting rooms.
#[derive(Debug, Clone)]
pub struct Rooms {
    repo: QueueRepo,
    catalog: Catalog,
    cache: Cache<Uuid, Arc<Room>>,
    /// Concerts the catalog said it does not know (the negative cache).
    unknown: Cache<Uuid, ()>,
    clock: SharedClock,
}

impl Rooms {
    #[must_use]
    pub fn new(repo: QueueRepo, catalog: Catalog, clock: SharedClock) -> Self {
        Self {
            repo,
            catalog,
            cache: Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).build(),
            unknown: Cache::builder().max_capacity(CAPACITY).time_to_live(UNKNOWN_TTL).build(),
            clock,
        }
    }

    /// The same registry (the same caches) reading and writing through `repo` (another pool).
    #[must_use]
    pub fn on(&self, repo: QueueRepo) -> Self {
        Self { repo, ..self.clone() }
    }

    /// The room of `concert_id`, created on first use; concurrent misses share one load.
    ///
    /// # Errors
    /// [`QueueError::ConcertNotFound`] when the catalog does not know the concert;
    /// [`QueueError::Peer`] when the catalog cannot be asked; database failures.
    pub async fn get(&self, concert_id: Uuid) -> Result<Arc<Room>, QueueError> {
        if self.unknown.contains_key(&concert_id) {
            return Err(QueueError::ConcertNotFound);
        }
        let load = async {
            if let Some(room) = self.repo.room(concert_id).await? {
                return Ok(Arc::new(room));
            }
            let sale_opens_at = self.catalog.sale_opens_at(concert_id).await?;
            Ok(Arc::new(self.repo.create_room(concert_id, sale_opens_at, self.clock.now()).await?))
        };
        let loaded = self.cache.try_get_with(concert_id, load).await;
        let error = match loaded {
            Ok(room) => return Ok(room),
            Err(e) => QueueError::shared(&e, "loading waiting room"),
        };
        if matches!(error, QueueError::ConcertNotFound) {
            self.unknown.insert(concert_id, ()).await;
        }
        Err(error)
    }
    /// The room as stored now (policy included), for operators.
    ///
    /// # Errors
    /// As [`Rooms::get`].
    pub async fn fresh(&self, concert_id: Uuid) -> Result<Room, QueueError> {
        if self.unknown.contains_key(&concert_id) {
            return Err(QueueError::ConcertNotFound);
        }
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
