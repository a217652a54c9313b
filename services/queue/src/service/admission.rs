//! The admission loop: every replica runs one, and the advisory lock inside
//! [`QueueRepo::admission_round`] lets exactly one of them admit at a time.
use std::{sync::Arc, time::Duration};

use platform::clock::SharedClock;
use tokio::sync::Notify;

use crate::{domain::AdmissionPolicy, store::QueueRepo};

/// Least time between two rounds of one replica.
pub const MIN_ROUND_GAP: Duration = Duration::from_millis(50);

/// Runs admission rounds on every tick, and at once when [`Admission::wake`] is called
/// (a join or a freed slot on this replica). Waking is only a latency shortcut: the tick
/// alone is enough for correctness, whichever replica a slot was freed on.
#[derive(Debug, Clone)]
pub struct Admission {
    repo: QueueRepo,
    policy: AdmissionPolicy,
    clock: SharedClock,
    wake: Arc<Notify>,
}

impl Admission {
    #[must_use]
    pub fn new(repo: QueueRepo, policy: AdmissionPolicy, clock: SharedClock) -> Self {
        Self { repo, policy, clock, wake: Arc::new(Notify::new()) }
    }

    /// Asks for a round soon (coalesced with any pending request).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Loops until the task is dropped. Errors are logged and retried on the next tick.
    pub async fn run(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {},
                () = self.wake.notified() => {},
            }
            match self.repo.admission_round(&self.policy, self.clock.now()).await {
                Ok(outcome) if outcome.admitted > 0 || outcome.expired > 0 => {
                    metrics::counter!(platform::metrics::QUEUE_ADMISSIONS).increment(outcome.admitted);
                    tracing::info!(admitted = outcome.admitted, expired = outcome.expired, "admission round");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "admission round failed; retrying next tick"),
            }
            // Wakes that arrive meanwhile coalesce into the next round: under a flood of
            // joins or payments a replica runs at most 1 / MIN_ROUND_GAP rounds a second
            // instead of one per call, and admits at most MIN_ROUND_GAP later.
            tokio::time::sleep(MIN_ROUND_GAP).await;
        }
    }
}
