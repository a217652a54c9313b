//! Answers reused for a short while: a read whose result may be a little old (seat status,
//! dates on sale) is made once per key and time-to-live, and callers that miss together
//! share the one read rather than each make it.
use std::{future::Future, hash::Hash, time::Duration};

use moka::future::Cache;

/// Answers by key, each reused for `ttl`; with a zero `ttl` nothing is kept and every call
/// reads.
#[derive(Clone)]
pub struct Reused<K, V> {
    cache: Option<Cache<K, V>>,
}

impl<K, V> std::fmt::Debug for Reused<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reused").field("reuses", &self.cache.is_some()).finish_non_exhaustive()
    }
}

impl<K, V> Reused<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `capacity` keys, each answer reused for `ttl` (zero: never).
    #[must_use]
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self { cache: (!ttl.is_zero()).then(|| Cache::builder().max_capacity(capacity).time_to_live(ttl).build()) }
    }

    /// `key`'s answer: the kept one while it is younger than the time-to-live, else what
    /// `read` returns (kept when it succeeds). A failed read shared by several callers reaches
    /// each of them through `shared` (the one error, seen by reference); without reuse the
    /// error is returned as it is.
    ///
    /// # Errors
    /// `read`'s error.
    pub async fn get<E, F>(&self, key: K, read: F, shared: impl FnOnce(&E) -> E) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        match &self.cache {
            None => read.await,
            Some(cache) => cache.try_get_with(key, read).await.map_err(|e| shared(&e)),
        }
    }

    /// `key`'s kept answer, if one younger than the time-to-live is kept; never reads.
    pub async fn peek(&self, key: &K) -> Option<V> {
        match &self.cache {
            None => None,
            Some(cache) => cache.get(key).await,
        }
    }

    /// Drops `key`'s kept answer (it is known to be out of date): the next `get` reads.
    pub async fn forget(&self, key: &K) {
        if let Some(cache) = &self.cache {
            cache.invalidate(key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn count(reads: &AtomicU32) -> Result<u32, String> {
        Ok(reads.fetch_add(1, Ordering::SeqCst) + 1)
    }

    #[tokio::test]
    async fn an_answer_is_reused_within_its_time_to_live_and_never_with_zero() {
        let reads = AtomicU32::new(0);
        let reused = Reused::new(10, Duration::from_secs(60));
        assert_eq!(reused.get(1, count(&reads), String::clone).await.unwrap(), 1);
        assert_eq!(reused.get(1, count(&reads), String::clone).await.unwrap(), 1, "reused");
        assert_eq!(reused.get(2, count(&reads), String::clone).await.unwrap(), 2, "another key reads");

        let never = Reused::new(10, Duration::ZERO);
        assert_eq!(never.get(1, count(&reads), String::clone).await.unwrap(), 3);
        assert_eq!(never.get(1, count(&reads), String::clone).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn peek_never_reads_and_a_forgotten_answer_is_read_again() {
        let reads = AtomicU32::new(0);
        let reused = Reused::new(10, Duration::from_secs(60));
        assert_eq!(reused.peek(&1).await, None, "nothing kept yet");
        assert_eq!(reused.get(1, count(&reads), String::clone).await.unwrap(), 1);
        assert_eq!(reused.peek(&1).await, Some(1));
        reused.forget(&1).await;
        assert_eq!(reused.peek(&1).await, None, "forgotten");
        assert_eq!(reused.get(1, count(&reads), String::clone).await.unwrap(), 2, "read again");
        assert_eq!(reads.load(Ordering::SeqCst), 2, "peek read nothing");

        let never: Reused<u8, u32> = Reused::new(10, Duration::ZERO);
        assert_eq!(never.peek(&1).await, None, "nothing is kept without reuse");
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept() {
        let reused: Reused<u8, u32> = Reused::new(10, Duration::from_secs(60));
        let err = reused.get(1, async { Err("down".to_owned()) }, |e: &String| format!("shared: {e}")).await;
        assert_eq!(err.unwrap_err(), "shared: down");
        assert_eq!(reused.get(1, async { Ok::<_, String>(7) }, String::clone).await.unwrap(), 7);
    }
}
