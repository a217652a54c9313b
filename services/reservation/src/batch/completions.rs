//! The last saga step, batched: release the paid admissions' other holds, expire the paid
//! tokens in the queue and mark their payments COMPLETED.
//!
//! By the time a payment reaches CONFIRMED the money is taken and the seat is sold; what is
//! left only frees the user's active slot. Doing it inline cost every payment a queue call
//! and two more commits. Instead the request answers at CONFIRMED and hands the payment to
//! one worker per replica (a `platform::batch` handler, like every batcher of the suite),
//! which takes every payment waiting (up to [`MAX_BATCH`]) and finishes them with ONE
//! `ExpireTokens` call and ONE `UPDATE`.
//!
//! Nothing is lost if this fails or the replica dies: the payments stay CONFIRMED, and the
//! recovery worker finishes them one by one after their lease. A token whose payment is
//! CONFIRMED is already refused by HoldSeat and PayReservation (they read `payments`), so
//! the gap cannot be used for a second booking.
use platform::{
    app::Tasks,
    batch::{BatchHandler, Batcher},
    clock::SharedClock,
    outbound::Deadline,
};
use uuid::Uuid;

use crate::{clients::Queue, error::ReservationError, store::ReservationRepo};

/// Most payments finished by one batch (the queue accepts up to 1,000 tokens a call).
pub const MAX_BATCH: usize = 512;

/// Finishes a batch of CONFIRMED payments: `(payment_id, token)` each. It never fails as a
/// whole: what it cannot finish stays CONFIRMED for the recovery worker (so no item is
/// retried alone against a queue that is down).
#[derive(Debug)]
pub struct Completer {
    repo: ReservationRepo,
    queue: Queue,
    clock: SharedClock,
}

impl BatchHandler for Completer {
    type Item = (Uuid, Uuid);
    type Output = ();
    type Error = ReservationError;

    async fn run(&self, items: &[(Uuid, Uuid)]) -> Result<Vec<()>, ReservationError> {
        let (payments, tokens): (Vec<Uuid>, Vec<Uuid>) = items.iter().copied().unzip();
        // The admissions have paid: their other holds go back on sale now, whatever the
        // queue says (the recovery worker does it again for what fails here).
        if let Err(e) = self.repo.release_admissions_other_holds(&payments, self.clock.now()).await {
            tracing::warn!(error = %e, "releasing the paid admissions' other holds failed; left to the recovery worker");
        }
        if let Err(e) = self.queue.expire_tokens(&tokens, Deadline::NONE).await {
            tracing::warn!(error = %e, payments = payments.len(), "token expiry failed; left to the recovery worker");
        } else {
            match self.repo.complete_payments(&payments, self.clock.now()).await {
                Ok(n) => tracing::debug!(completed = n, "payments completed"),
                Err(e) => tracing::warn!(error = %e, "completing payments failed; left to the recovery worker"),
            }
        }
        Ok(vec![(); items.len()])
    }
}

/// Hands CONFIRMED payments to the completion worker.
#[derive(Debug, Clone)]
pub struct CompletionBatcher(Batcher<Completer>);

impl CompletionBatcher {
    /// Starts the worker in `tasks`; it stops when every clone is dropped.
    #[must_use]
    pub fn start(repo: ReservationRepo, queue: Queue, clock: SharedClock, tasks: &mut Tasks) -> Self {
        Self(Batcher::start(Completer { repo, queue, clock }, 1, MAX_BATCH, tasks))
    }

    /// Queues payment `payment_id` (made with `token`) for completion, without waiting. When
    /// the backlog is full the payment is left CONFIRMED for the recovery worker.
    pub fn submit(&self, payment_id: Uuid, token: Uuid) {
        if !self.0.offer((payment_id, token)) {
            tracing::warn!(%payment_id, "completion backlog full; the recovery worker will finish this payment");
        }
    }
}
