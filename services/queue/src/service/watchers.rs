//! Bounds on `WatchQueue` streams: one live stream per token (the newest wins: a reloaded
//! page replaces its old stream, which ends with ABORTED), and at most a configured number of
//! streams per replica (more are refused with RESOURCE_EXHAUSTED, reason TOO_MANY_STREAMS, so
//! the page falls back to polling). Each stream's state and HTTP/2 stream live on this
//! replica, so the bound is per replica; HTTP/2 `max_concurrent_streams` bounds streams per
//! connection.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use uuid::Uuid;

/// token → its live stream: (generation, the signal that ends it, its slot). The slot lives
/// here, not with the stream, so a stream replaced by a newer one gives its slot up at once,
/// even while its client has stopped reading and nothing polls it any more.
type Live = Arc<Mutex<Streams>>;

/// The live streams by token: (generation, the signal that ends it, its slot).
type Streams = HashMap<Uuid, (u64, oneshot::Sender<()>, OwnedSemaphorePermit)>;

/// How long a refused watcher is told to wait before trying again (or polling).
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The live streams of this replica.
#[derive(Debug, Clone)]
pub struct Watchers {
    slots: platform::status::StreamSlots,
    live: Live,
    generation: Arc<AtomicU64>,
}

/// A registered stream; dropping it unregisters it and frees its place.
#[derive(Debug)]
pub struct WatchGuard {
    token: Uuid,
    generation: u64,
    live: Live,
    /// Resolves when a newer stream of the same token replaces this one.
    pub replaced: oneshot::Receiver<()>,
}

impl Watchers {
    /// Room for `max_streams` streams at once.
    #[must_use]
    pub fn new(max_streams: usize) -> Self {
        Self {
            slots: platform::status::StreamSlots::new(
                max_streams,
                "this replica serves its maximum of WatchQueue streams; poll GetQueueStatus instead",
                RETRY_AFTER,
            ),
            live: Arc::new(Mutex::new(HashMap::new())),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Registers a stream of `token`, ending any older stream of it on this replica.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED (reason TOO_MANY_STREAMS, with RetryInfo) when the replica already
    /// serves its maximum of streams.
    pub fn register(&self, token: Uuid) -> Result<WatchGuard, tonic::Status> {
        let permit = self.slots.take()?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let (stop, replaced) = oneshot::channel();
        let older = self.lock().insert(token, (generation, stop, permit));
        // The older stream's slot is dropped with its entry, here and now.
        if let Some((_, stop_older, _slot)) = older {
            let _ = stop_older.send(());
        }
        Ok(WatchGuard { token, generation, live: Arc::clone(&self.live), replaced })
    }

    /// Streams open now.
    #[must_use]
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only this stream's own entry: a newer stream of the token may have replaced it.
        if live.get(&self.token).is_some_and(|(generation, _, _)| *generation == self.generation) {
            live.remove(&self.token);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_newer_stream_replaces_the_older_and_the_cap_holds() {
        let watchers = Watchers::new(2);
        let token = Uuid::new_v4();
        let mut first = watchers.register(token).unwrap();
        let second = watchers.register(token).unwrap();
        assert!(first.replaced.try_recv().is_ok(), "the older stream is told to end");
        // The replaced stream gave its slot up at once, though it has not ended (its client
        // may have stopped reading): another token's stream fits, and then the cap holds.
        let third = watchers.register(Uuid::new_v4()).unwrap();
        let err = watchers.register(Uuid::new_v4()).unwrap_err();
        assert_eq!(platform::status::reason(&err).as_deref(), Some("TOO_MANY_STREAMS"));
        drop(first);
        assert_eq!(watchers.open(), 2, "dropping the replaced stream keeps the newer one");
        drop(second);
        drop(third);
        assert_eq!(watchers.open(), 0);
        assert!(watchers.register(Uuid::new_v4()).is_ok(), "slots come back");
    }
}
