//! The payment saga: debit the wallet → confirm the reservation → expire the queue token;
//! or, when the debit is refused or the seat cannot be confirmed after a debit, release the
//! hold and compensate: refund the debit, or void its key when nothing was taken.
//!
//! Every state is written to `payments` before the side effect that follows it, and every
//! side effect is idempotent under a key derived from the saga id, so [`Saga::drive`] may be
//! run any number of times, concurrently, by the request and by the recovery worker of any
//! replica: the money moves once.
use platform::{clock::SharedClock, outbound::Deadline};

use crate::{
    batch::completions::CompletionBatcher,
    batch::debits::DebitBatcher,
    clients::{DebitOutcome, Queue, RefundOutcome, Wallet},
    domain::{Payment, PaymentStatus, SagaStep, SeatRefund},
    error::ReservationError,
    store::{RecordedDebit, ReservationRepo},
};

/// Drives payment sagas.
#[derive(Debug, Clone)]
pub struct Saga {
    repo: ReservationRepo,
    wallet: Wallet,
    queue: Queue,
    clock: SharedClock,
    /// Records debits in batches shared with every concurrent saga of this replica.
    debits: DebitBatcher,
    /// When set, the last step is handed to it instead of run inline.
    completions: Option<CompletionBatcher>,
}

impl Saga {
    /// A saga driver recording debits through `debits`.
    #[must_use]
    pub fn new(repo: ReservationRepo, wallet: Wallet, queue: Queue, debits: DebitBatcher, clock: SharedClock) -> Self {
        Self { repo, wallet, queue, clock, debits, completions: None }
    }

    /// This saga, handing the last step (token expiry, COMPLETED) to `completions`: the
    /// request path answers once the seat is confirmed, and the batcher finishes paid
    /// payments in batches. The recovery worker keeps an inline saga.
    #[must_use]
    pub fn with_completions(mut self, completions: CompletionBatcher) -> Self {
        self.completions = Some(completions);
        self
    }

    /// Runs the saga from its stored state until it finishes or a peer is unreachable.
    /// Peer calls end by `deadline` (the caller's, or none for the recovery worker) and
    /// by the per-call timeout, whichever is first.
    ///
    /// Returns the payment in a final state, or in CONFIRMED when only the token expiry is
    /// left (the seat is sold; the recovery worker expires the token later).
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the wallet is unreachable; the payment stays in its
    /// state and a retry (same key) or the recovery worker continues it.
    #[tracing::instrument(skip_all, fields(payment_id = %payment.payment_id))]
    pub async fn drive(&self, mut payment: Payment, deadline: Deadline) -> Result<Payment, ReservationError> {
        loop {
            let now = self.clock.now();
            payment = match payment.status.next_step() {
                SagaStep::Debit => match self.wallet.debit(&payment, deadline).await? {
                    DebitOutcome::Debited { balance_after } => {
                        crate::faults::crash_point_after_debit().await;
                        let debit = RecordedDebit {
                            payment_id: payment.payment_id,
                            reservation_id: payment.reservation_id,
                            seats: payment.seats,
                            balance_after,
                            at: now,
                        };
                        self.debits.record(debit).await?
                    }
                    // Not FAILED yet: another driver of this saga may have had its debit taken
                    // (a retry on its way, a balance charged meanwhile). The refund step gives
                    // such money back, or voids the key so it can never be taken; only then
                    // is the payment FAILED.
                    DebitOutcome::Refused { refusal } => {
                        self.repo.record_debit_refused(&payment, &refusal, now).await?
                    }
                },
                SagaStep::ExpireToken => {
                    if let Some(completions) = &self.completions {
                        // Finished in a batch right after the answer (see `batch::completions`).
                        completions.submit(payment.payment_id, payment.token);
                        return Ok(payment);
                    }
                    // The admission has paid: its other holds go back on sale.
                    self.repo.release_admissions_other_holds(&[payment.payment_id], now).await?;
                    match self.queue.expire_token(payment.token, deadline).await {
                        Ok(()) => {
                            self.repo
                                .advance_payment(&payment, PaymentStatus::Confirmed, PaymentStatus::Completed, now)
                                .await?
                        }
                        Err(e) => {
                            // The seat is sold and paid; only the token is left. Reservation
                            // refuses tokens that paid, so no second booking can slip through.
                            tracing::warn!(error = %e, "token expiry deferred to the recovery worker");
                            return Ok(payment);
                        }
                    }
                }
                SagaStep::Refund => {
                    let end = match self.wallet.refund(&payment, deadline).await? {
                        RefundOutcome::Refunded => PaymentStatus::Compensated,
                        RefundOutcome::NothingTaken => PaymentStatus::Failed,
                    };
                    self.repo.advance_payment(&payment, PaymentStatus::Compensating, end, now).await?
                }
                SagaStep::Done => return Ok(payment),
            };
            tracing::debug!(status = payment.status.as_str(), "saga advanced");
        }
    }

    /// The refund step of a give-back: refunds the seat's price (recorded as owed when the
    /// seat was given back) and marks it refunded. Safe to run any number of times, by the
    /// request and by the recovery worker: the wallet applies the seat's refund key once.
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the wallet cannot be reached; the refund stays owed.
    #[tracing::instrument(skip_all, fields(payment_id = %refund.payment_id, reservation_id = %refund.reservation_id))]
    pub async fn give_back(&self, refund: &SeatRefund, deadline: Deadline) -> Result<(), ReservationError> {
        crate::faults::crash_point_after_give_back().await;
        self.wallet.refund_seat(refund, deadline).await?;
        self.repo.finish_give_back(refund.reservation_id, self.clock.now()).await
    }
}
