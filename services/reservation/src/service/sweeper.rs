//! The hold-expiry sweeper every replica runs; safe with any number of replicas because it
//! claims rows with `FOR UPDATE SKIP LOCKED`.
use std::time::Duration;

use platform::clock::SharedClock;

use crate::store::ReservationRepo;

/// Most holds released per sweep.
const SWEEP_BATCH: i64 = 1_000;

/// Marks expired, unpaid holds EXPIRED so their seats show AVAILABLE everywhere.
/// (Reads already treat them as expired; the sweep keeps the table honest.)
pub async fn sweep_expired_holds(repo: ReservationRepo, clock: SharedClock, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match repo.expire_holds(clock.now(), SWEEP_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "expired holds released"),
            Err(e) => tracing::warn!(error = %e, "hold sweep failed; retrying next tick"),
        }
    }
}
