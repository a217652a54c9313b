//! Retention: a past sale leaves the hot tables once it is old enough.
//!
//! Every token of every sale, every hold that ran out or was released, stays in its table
//! (and in every index of it) unless something deletes it, so each new sale would pay for
//! all the earlier ones. Each service deletes what has ended longer than its retention
//! period ago (`QUEUE_RETENTION_DAYS`, `RESERVATION_RETENTION_DAYS`; 30 days by default)
//! with [`purge_forever`]; the books — the wallet's ledger, payments and the seats they
//! bought — are never deleted. The statement is the service's own (its store knows what
//! "ended" means); this module is the loop around it: every `PURGE_INTERVAL_SECS`, batches
//! of [`PURGE_BATCH`] rows until a batch comes back short, so no statement holds many locks
//! or a long transaction, and replicas purging at once skip each other's rows
//! (`FOR UPDATE SKIP LOCKED` in the statements).
use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};

use crate::clock::SharedClock;

/// Rows one purge statement deletes at most.
pub const PURGE_BATCH: i64 = 5_000;

/// How long ended rows are kept, and how often the purge looks.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Rows that ended longer ago than this are deleted; zero deletes them at the next
    /// purge (benchmarks and tests).
    pub keep: chrono::Duration,
    pub every: Duration,
}

impl Retention {
    /// `days` of retention, purged every `every_secs` seconds.
    #[must_use]
    pub fn days(days: u32, every_secs: u32) -> Self {
        Self { keep: chrono::Duration::days(i64::from(days)), every: Duration::from_secs(u64::from(every_secs.max(1))) }
    }
}

/// A store that can delete its ended rows: at most `limit` rows that ended before `cutoff`,
/// answering how many.
pub trait Purge: Send + Sync + 'static {
    type Error: std::fmt::Display;
    fn purge_ended(&self, cutoff: DateTime<Utc>, limit: i64) -> impl Future<Output = Result<u64, Self::Error>> + Send;
}

/// Deletes `what`'s ended rows past `retention` through `store`, forever. A failure (the
/// database away) is logged and retried at the next interval. Returns never; run it among
/// the replica's tasks.
pub async fn purge_forever<P: Purge>(what: &'static str, retention: Retention, clock: SharedClock, store: P) {
    let mut every = tokio::time::interval(retention.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let cutoff = clock.now() - retention.keep;
        let mut purged = 0;
        loop {
            match store.purge_ended(cutoff, PURGE_BATCH).await {
                Ok(n) => {
                    purged += n;
                    if n < PURGE_BATCH.unsigned_abs() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(what, error = %e, "purge failed; trying again at the next interval");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::info!(what, rows = purged, %cutoff, "purged rows that ended before the retention cutoff");
        }
    }
}
