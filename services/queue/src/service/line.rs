//! Keeps this replica's [`LineSnapshot`] fresh: one task reads the whole line once, then on
//! every tick only what changed since its last read, and publishes each new snapshot on a
//! `watch` channel that every poll and every `WatchQueue` stream reads.
use std::{collections::HashSet, sync::Arc, time::Duration};

use platform::clock::SharedClock;
use tokio::sync::watch;

use crate::{domain::LineSnapshot, store::QueueRepo};

/// The latest snapshot of the line, shared by every handler of this replica.
#[derive(Debug, Clone)]
pub struct Line {
    rx: watch::Receiver<Arc<LineSnapshot>>,
}

impl Line {
    /// The line and its refresher, which the caller runs (and so owns); the refresher also
    /// stops when every `Line` is dropped.
    pub fn new(
        repo: QueueRepo,
        clock: SharedClock,
        every: Duration,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = watch::channel(Arc::new(LineSnapshot::empty(clock.now())));
        (Self { rx }, refresh(repo, clock, every, tx))
    }

    /// The latest snapshot.
    #[must_use]
    pub fn current(&self) -> Arc<LineSnapshot> {
        self.rx.borrow().clone()
    }

    /// A receiver that is told of every new snapshot.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Arc<LineSnapshot>> {
        self.rx.clone()
    }
}

async fn refresh(repo: QueueRepo, clock: SharedClock, every: Duration, tx: watch::Sender<Arc<LineSnapshot>>) {
    let mut exported = HashSet::new();
    let mut watermark = None;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if tx.is_closed() {
            return;
        }
        let now = clock.now();
        // A failed read keeps the last snapshot and watermark: the next read then covers
        // both intervals, so nothing is missed.
        match repo.line_changes(watermark.as_ref(), now).await {
            Ok((delta, read_at)) => {
                let next = tx.borrow().apply(delta, now);
                export(&next, &mut exported);
                tx.send_replace(Arc::new(next));
                watermark = Some(read_at);
            }
            Err(e) => tracing::warn!(error = %e, "reading the line failed; keeping the last snapshot"),
        }
    }
}

/// Publishes each room's waiting and active counts as gauges; a room that emptied since the
/// last read is set to zero once (and then forgotten), so its series does not freeze.
#[allow(clippy::cast_precision_loss)]
fn export(line: &LineSnapshot, exported: &mut HashSet<uuid::Uuid>) {
    use platform::metrics::{QUEUE_ACTIVE, QUEUE_WAITING};
    for (concert, room) in &line.rooms {
        let concert_id = concert.to_string();
        metrics::gauge!(QUEUE_WAITING, "concert_id" => concert_id.clone()).set(room.waiting.len() as f64);
        metrics::gauge!(QUEUE_ACTIVE, "concert_id" => concert_id).set(room.active as f64);
    }
    exported.retain(|concert| {
        let gone = !line.rooms.contains_key(concert);
        if gone {
            metrics::gauge!(QUEUE_WAITING, "concert_id" => concert.to_string()).set(0.0);
            metrics::gauge!(QUEUE_ACTIVE, "concert_id" => concert.to_string()).set(0.0);
        }
        !gone
    });
    exported.extend(line.rooms.keys().copied());
}
