//! The hold sweepers every replica runs; safe with any number of replicas because they
//! claim rows with `FOR UPDATE SKIP LOCKED`.
use std::time::Duration;

use platform::{clock::SharedClock, outbound::Deadline};

use crate::{clients::Queue, store::ReservationRepo};

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

/// Most tokens of live holds asked about per round.
const ADMISSION_CHECK_BATCH: i64 = 5_000;
/// How long one round's question to the queue may take.
const ADMISSION_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Releases the unpaid holds whose admission ended, each `interval`. A hold lasts at most as
/// long as the admission that placed it: once its token left the line, ran out or paid
/// (EXPIRED in the queue, or unknown to it) nobody can pay for it without queueing again,
/// which in a rush takes longer than the hold, so the seat goes back on sale. A buyer who
/// walks away from a hold and leaves the waiting room gives the seat back within about
/// `interval` instead of `HOLD_TTL_SECS` (in an on-sale rush, the last seats otherwise come
/// back only a whole TTL after the crowd took them). The queue is asked once per round
/// for all the tokens (ValidateTokens, on its internal lane); when it cannot be reached,
/// nothing is released and the holds run out as before.
pub async fn release_holds_of_ended_admissions(
    repo: ReservationRepo,
    queue: Queue,
    clock: SharedClock,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match release_round(&repo, &queue, &clock).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "holds of ended admissions released"),
            Err(e) => tracing::warn!(error = %e, "admission check of holds failed; retrying next tick"),
        }
    }
}

async fn release_round(
    repo: &ReservationRepo,
    queue: &Queue,
    clock: &SharedClock,
) -> Result<u64, crate::error::ReservationError> {
    let tokens = repo.tokens_of_live_holds(clock.now(), ADMISSION_CHECK_BATCH).await?;
    if tokens.is_empty() {
        return Ok(0);
    }
    let ended = queue.ended_admissions(&tokens, Deadline::after(ADMISSION_CHECK_TIMEOUT)).await?;
    if ended.is_empty() {
        return Ok(0);
    }
    repo.release_holds_of_tokens(&ended, clock.now()).await
}
