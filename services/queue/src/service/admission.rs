//! The admission loop: every replica runs one, and the advisory lock inside
//! [`QueueRepo::admission_round`] lets exactly one of them admit at a time.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use platform::clock::SharedClock;
use tokio::sync::Notify;

use crate::{
    domain::AdmissionPolicy,
    store::{QueueRepo, Sweep},
};

/// Least time between two rounds of one replica.
pub const MIN_ROUND_GAP: Duration = Duration::from_millis(50);

/// Least time, by the service's clock, between two sweeps of abandoned places by one
/// replica ([`Sweep::Abandoned`]): a place is abandoned after the idle timeout (a minute by
/// default), so sweeping once a second leaves it at most a second longer, where sweeping in
/// every round (up to twenty a second) cost the database ~9 ms a round in a flood.
pub const ABANDONED_SWEEP_GAP: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

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
        let mut last_sweep = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {},
                () = self.wake.notified() => {},
            }
            let now = self.clock.now();
            let sweep = sweep_at(last_sweep, now);
            let round = self.repo.admission_round(&self.policy, now, sweep).await;
            if sweep == Sweep::Abandoned && matches!(round, Ok(outcome) if outcome.ran) {
                last_sweep = Some(now);
            }
            match round {
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

/// What the round at `now` expires, given when this replica last swept abandoned places.
fn sweep_at(last_sweep: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Sweep {
    match last_sweep {
        // A clock set back (a test clock, NTP) sweeps at once rather than waiting to catch up.
        Some(at) if at <= now && now - at < ABANDONED_SWEEP_GAP => Sweep::Active,
        _ => Sweep::Abandoned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_places_are_swept_at_the_first_round_then_once_a_gap() {
        let t = Utc::now();
        assert_eq!(sweep_at(None, t), Sweep::Abandoned, "a replica's first round sweeps");
        let ms = chrono::TimeDelta::milliseconds;
        assert_eq!(sweep_at(Some(t), t + ms(50)), Sweep::Active);
        assert_eq!(sweep_at(Some(t), t + ms(999)), Sweep::Active);
        assert_eq!(sweep_at(Some(t), t + ms(1_000)), Sweep::Abandoned);
        assert_eq!(sweep_at(Some(t), t - ms(3_600_000)), Sweep::Abandoned, "a clock set back an hour");
    }
}
