//! The saga recovery worker every replica runs; safe with any number of replicas because it
//! claims payments and owed give-back refunds with `FOR UPDATE SKIP LOCKED` under a lease.
use std::time::Duration;

use platform::{clock::SharedClock, outbound::Deadline};

use crate::{service::saga::Saga, store::ReservationRepo};

/// Most sagas resumed per recovery pass.
const RECOVERY_BATCH: i64 = 100;

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

/// One recovery pass; returns how many sagas and give-back refunds it finished.
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
    finished + recover_give_backs(repo, saga, clock, policy).await
}

/// Finishes give-back refunds left owed by a crash or an unreachable wallet; how many.
async fn recover_give_backs(repo: &ReservationRepo, saga: &Saga, clock: &SharedClock, policy: RecoveryPolicy) -> usize {
    let claimed = match repo.claim_give_backs(clock.now(), policy.lease, RECOVERY_BATCH).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "claiming owed give-back refunds failed");
            return 0;
        }
    };
    let mut finished = 0;
    for (refund, attempt) in claimed {
        match saga.give_back(&refund, Deadline::NONE).await {
            Ok(()) => {
                finished += 1;
                tracing::info!(reservation_id = %refund.reservation_id, "give-back refund finished");
            }
            // Retried every pass, without a limit: the money is owed and the seat already
            // resold, so nothing is blocked meanwhile, but a person should know.
            Err(e) => tracing::warn!(
                reservation_id = %refund.reservation_id,
                attempts = attempt,
                error = %e,
                "give-back refund still owed"
            ),
        }
    }
    finished
}
