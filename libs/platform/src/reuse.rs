//! Answers reused for a short while: a read whose result may be a little old (seat status,
//! dates on sale) is made once per key and time-to-live, and callers that miss together
//! share the one read rather than each make it. [`Refreshed`] also serves an answer a little
//! past its time-to-live while one caller reads it again, so that a hot key's callers do not
//! all wait on each read.
use std::{
    future::Future,
    hash::Hash,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

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

/// Answers by key, each fresh for `ttl` and served for at most twice that: a caller that
/// finds the kept answer older than `ttl` reads it again itself, and the callers that come
/// while it reads are given the kept answer rather than wait. Without this, a key asked for
/// more often than its read takes (a date's seat map in a rush: the read is a call to
/// another service, slower than the 100 ms time-to-live under load) made most callers wait
/// on a read, every time-to-live. With a zero `ttl` nothing is kept and every call reads.
#[derive(Clone)]
pub struct Refreshed<K, V> {
    cache: Option<Cache<K, Arc<Kept<V>>>>,
    ttl: Duration,
}

/// A kept answer: when its read began, and whether a caller is reading it again.
struct Kept<V> {
    value: V,
    read_at: Instant,
    reading: AtomicBool,
}

impl<K, V> std::fmt::Debug for Refreshed<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshed").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl<K, V> Refreshed<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `capacity` keys, each answer fresh for `ttl` and served for at most `2 × ttl`
    /// (zero: nothing kept).
    #[must_use]
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| Cache::builder().max_capacity(capacity).time_to_live(ttl * 2).build());
        Self { cache, ttl }
    }

    /// `key`'s answer, at most `2 × ttl` old (measured from when its read began): the kept
    /// one while younger than `ttl`; past that, the kept one while another caller reads it
    /// again, else what `read` returns (kept when it succeeds). With nothing kept, callers
    /// share one read, as [`Reused::get`].
    ///
    /// # Errors
    /// `read`'s error (when several callers shared it, through `shared`). A failed re-read
    /// keeps the old answer for the others until it is `2 × ttl` old.
    pub async fn get<E, F>(&self, key: K, read: F, shared: impl FnOnce(&E) -> E) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        let Some(cache) = &self.cache else { return read.await };
        let kept = cache.get(&key).await.map(|kept| (kept.read_at.elapsed(), kept));
        let kept = match kept {
            Some((age, kept)) if age < self.ttl => return Ok(kept.value.clone()),
            // Too old to serve (the cache's own expiry counts from when it was kept, after
            // its read): read, shared with whoever misses too.
            Some((age, _)) if age >= self.ttl * 2 => {
                cache.invalidate(&key).await;
                None
            }
            // Someone reads it again: theirs is the wait, this caller takes the kept answer.
            // (Should that caller give up, the answer serves until it is too old.)
            Some((_, kept)) if kept.reading.swap(true, Ordering::AcqRel) => return Ok(kept.value.clone()),
            Some((_, kept)) => Some(kept),
            None => None,
        };
        let started = Instant::now();
        let first = || async {
            read.await.map(|value| Arc::new(Kept { value, read_at: started, reading: AtomicBool::new(false) }))
        };
        match kept {
            None => cache.try_get_with(key, first()).await.map(|k| k.value.clone()).map_err(|e| shared(&e)),
            Some(kept) => match first().await {
                Ok(fresh) => {
                    let value = fresh.value.clone();
                    cache.insert(key, fresh).await;
                    Ok(value)
                }
                Err(e) => {
                    kept.reading.store(false, Ordering::Release);
                    Err(e)
                }
            },
        }
    }

    /// `key`'s kept answer, if one at most `2 × ttl` old is kept; never reads.
    pub async fn peek(&self, key: &K) -> Option<V> {
        let kept = self.cache.as_ref()?.get(key).await?;
        (kept.read_at.elapsed() < self.ttl * 2).then(|| kept.value.clone())
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

    #[tokio::test]
    async fn a_stale_answer_is_served_while_one_caller_reads_it_again() {
        // Long enough that a loaded machine does not push the calls past twice it.
        let ttl = Duration::from_millis(250);
        let reused = Refreshed::new(10, ttl);
        let reads = AtomicU32::new(0);
        assert_eq!(reused.get(1, count(&reads), String::clone).await.unwrap(), 1);
        assert_eq!(reused.get(1, count(&reads), String::clone).await.unwrap(), 1, "fresh: reused");
        tokio::time::sleep(ttl + Duration::from_millis(10)).await;

        // Past the time-to-live: the first caller reads again (slowly); a caller meanwhile
        // gets the kept answer at once, without a read of its own.
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let slow = async {
            wait.await.unwrap();
            count(&reads).await
        };
        let refresher = reused.get(1, slow, String::clone);
        let other = async {
            tokio::task::yield_now().await;
            let got = reused.get(1, count(&reads), String::clone).await.unwrap();
            go.send(()).unwrap();
            got
        };
        let (refreshed, other) = tokio::join!(refresher, other);
        assert_eq!(other, 1, "the kept answer while another caller reads");
        assert_eq!(refreshed.unwrap(), 2, "the refreshing caller waits for its own read");
        assert_eq!(reused.get(1, count(&reads), String::clone).await.unwrap(), 2, "the new answer is kept");
        assert_eq!(reads.load(Ordering::SeqCst), 2, "one read per time-to-live");
    }

    #[tokio::test]
    async fn an_answer_is_never_served_past_twice_its_time_to_live() {
        let ttl = Duration::from_millis(30);
        let reused = Refreshed::new(10, ttl);
        let reads = AtomicU32::new(0);
        assert_eq!(reused.get(1, count(&reads), String::clone).await.unwrap(), 1);
        tokio::time::sleep(ttl * 2 + Duration::from_millis(10)).await;
        assert_eq!(reused.get(1, count(&reads), String::clone).await.unwrap(), 2, "too old to serve: read");

        let never = Refreshed::new(10, Duration::ZERO);
        assert_eq!(never.get(1, count(&reads), String::clone).await.unwrap(), 3);
        assert_eq!(never.get(1, count(&reads), String::clone).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_failed_re_read_is_made_again_by_the_next_caller() {
        let ttl = Duration::from_millis(30);
        let reused: Refreshed<u8, u32> = Refreshed::new(10, ttl);
        assert_eq!(reused.get(1, async { Ok::<_, String>(7) }, String::clone).await.unwrap(), 7);
        tokio::time::sleep(ttl + Duration::from_millis(5)).await;
        let err = reused.get(1, async { Err("down".to_owned()) }, String::clone).await;
        assert_eq!(err.unwrap_err(), "down", "the re-reading caller sees its error");
        assert_eq!(
            reused.get(1, async { Ok::<_, String>(8) }, String::clone).await.unwrap(),
            8,
            "the next caller past the time-to-live reads again"
        );
    }
}
