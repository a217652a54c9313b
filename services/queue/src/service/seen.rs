//! Which waiting clients are still there. Every poll and every open `WatchQueue` stream
//! marks its token here, in memory; one task per replica writes the marks to
//! `tokens.last_seen_at` in one statement per flush. The admission round expires WAITING
//! tokens not seen for `QUEUE_IDLE_TIMEOUT_SECS`, so a closed browser tab does not hold up
//! the line. Flushes run several times per timeout, so a live client is never expired.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use platform::clock::SharedClock;
use uuid::Uuid;

use crate::store::QueueRepo;

/// Tokens seen since the last flush.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    marks: Arc<Mutex<HashSet<Uuid>>>,
}

impl Seen {
    /// Writes the marks every `every` until the task is dropped (the server aborts it on
    /// shutdown); a token whose `last_seen_at` is younger than `rewrite_after` is not
    /// written again. `rewrite_after` plus `every` must stay well under the idle timeout.
    pub async fn flush_forever(self, repo: QueueRepo, clock: SharedClock, every: Duration, rewrite_after: Duration) {
        flush(self, repo, clock, every, rewrite_after).await;
    }

    /// Records that `token`'s client is still there.
    pub fn mark(&self, token: Uuid) {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner).insert(token);
    }

    fn take(&self) -> Vec<Uuid> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner).drain().collect()
    }
}

async fn flush(seen: Seen, repo: QueueRepo, clock: SharedClock, every: Duration, rewrite_after: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let tokens = seen.take();
        if tokens.is_empty() {
            continue;
        }
        let now = clock.now();
        // A mark younger than `rewrite_after` still protects the token for the rest of the
        // timeout, and the next flush rewrites it in time.
        let stale_before = now - chrono::Duration::from_std(rewrite_after).unwrap_or(chrono::Duration::zero());
        if let Err(e) = repo.touch(&tokens, now, stale_before).await {
            tracing::warn!(error = %e, tokens = tokens.len(), "recording polls failed; retrying next flush");
            for t in tokens {
                seen.mark(t);
            }
        }
    }
}
