//! Background work every replica runs; both are safe with any number of replicas because
//! they claim rows with `FOR UPDATE SKIP LOCKED`.
use std::time::Duration;

use platform::{clock::SharedClock, outbound::Deadline};

use crate::{saga::Saga, store::ReservationRepo};

/// Most holds released per sweep.
const SWEEP_BATCH: i64 = 1_000;
/// How often the operator's gauges are read from the database.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// Most sagas resumed per recovery pass.
const RECOVERY_BATCH: i64 = 100;

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

/// Resumes payment sagas left unfinished by a crash, a timeout or an unreachable peer.
pub async fn recover_payments(repo: ReservationRepo, saga: Saga, clock: SharedClock, policy: RecoveryPolicy) {
    let mut ticker = tokio::time::interval(policy.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        recover_once(&repo, &saga, &clock, policy).await;
    }
}

/// How the recovery worker retries unfinished payments.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryPolicy {
    /// Time between passes.
    pub interval: Duration,
    /// How long a claimed (or freshly started) payment is left alone.
    pub lease: chrono::Duration,
    /// Tries before a payment is left to a person (logged at ERROR; listed by
    /// `ReservationRepo::needing_attention` and by the reconciliation).
    pub max_attempts: i32,
}

/// One recovery pass; returns how many sagas it finished.
pub async fn recover_once(repo: &ReservationRepo, saga: &Saga, clock: &SharedClock, policy: RecoveryPolicy) -> usize {
    let claimed = match repo.claim_unfinished(clock.now(), policy.lease, RECOVERY_BATCH, policy.max_attempts).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "claiming unfinished payments failed");
            return 0;
        }
    };
    metrics::counter!(platform::metrics::RESERVATION_RECOVERY_ATTEMPTS).increment(claimed.len() as u64);
    let mut finished = 0;
    for (payment, attempt) in claimed {
        let id = payment.payment_id;
        match saga.drive(payment, Deadline::NONE).await {
            Ok(p) => {
                finished += usize::from(p.status.next_step() == crate::domain::SagaStep::Done);
                tracing::info!(payment_id = %id, status = p.status.as_str(), "payment saga resumed");
            }
            Err(e) if attempt >= policy.max_attempts => tracing::error!(
                payment_id = %id,
                attempts = attempt,
                error = %e,
                "payment needs a person: the recovery worker gave up on it (its hold stays blocked)"
            ),
            Err(e) => tracing::warn!(payment_id = %id, attempts = attempt, error = %e, "payment saga still blocked"),
        }
    }
    finished
}

/// Reads the whole suite's payment and hold counts every `interval` into the gauges
/// `reservation_payments{state}`, `reservation_payments_needing_person`,
/// `reservation_recovery_backlog` and `reservation_holds_live`. Every replica exports the
/// same values (dashboards take `max`).
#[allow(clippy::cast_precision_loss)]
pub async fn export_gauges(repo: ReservationRepo, clock: SharedClock, max_attempts: i32, interval: Duration) {
    use platform::metrics::{
        RESERVATION_HOLDS_LIVE, RESERVATION_PAYMENTS, RESERVATION_PAYMENTS_NEEDING_PERSON, RESERVATION_RECOVERY_BACKLOG,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match repo.gauges(clock.now(), max_attempts).await {
            Ok(g) => {
                for state in crate::domain::PaymentStatus::ALL {
                    let n = g.payments.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
                    metrics::gauge!(RESERVATION_PAYMENTS, "state" => state.as_str()).set(n as f64);
                }
                metrics::gauge!(RESERVATION_PAYMENTS_NEEDING_PERSON).set(g.needing_person as f64);
                metrics::gauge!(RESERVATION_RECOVERY_BACKLOG).set(g.recovery_backlog as f64);
                metrics::gauge!(RESERVATION_HOLDS_LIVE).set(g.live_holds as f64);
            }
            Err(e) => tracing::warn!(error = %e, "reading the gauges failed; retrying next tick"),
        }
    }
}
