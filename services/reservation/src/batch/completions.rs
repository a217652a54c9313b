//! The last saga step, batched: expire the paid tokens in the queue and mark their payments
//! COMPLETED.
//!
//! By the time a payment reaches CONFIRMED the money is taken and the seat is sold; what is
//! left only frees the user's active slot. Doing it inline cost every payment a queue call
//! and two more commits. Instead the request answers at CONFIRMED and hands the payment to
//! one worker per replica, which takes every payment waiting (up to [`MAX_BATCH`]) and
//! finishes them with ONE `ExpireTokens` call and ONE `UPDATE`.
//!
//! Nothing is lost if this fails or the replica dies: the payments stay CONFIRMED, and the
//! recovery worker finishes them one by one after their lease. A token whose payment is
//! CONFIRMED is already refused by HoldSeat and PayReservation (they read `payments`), so
//! the gap cannot be used for a second booking.
use platform::{app::Tasks, outbound::Deadline};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{clients::Queue, store::ReservationRepo};

/// Most payments finished by one batch (the queue accepts up to 1,000 tokens a call).
pub const MAX_BATCH: usize = 512;
/// Payments waiting for the worker before new ones are left to the recovery worker.
const BACKLOG: usize = 8_192;

/// Hands CONFIRMED payments to the completion worker.
#[derive(Debug, Clone)]
pub struct CompletionBatcher {
    tx: mpsc::Sender<(Uuid, Uuid)>,
}

impl CompletionBatcher {
    /// Starts the worker in `tasks`; it stops when every clone is dropped.
    #[must_use]
    pub fn start(repo: ReservationRepo, queue: Queue, tasks: &mut Tasks) -> Self {
        let (tx, rx) = mpsc::channel(BACKLOG);
        tasks.spawn(worker(repo, queue, rx));
        Self { tx }
    }

    /// Queues payment `payment_id` (made with `token`) for completion. When the backlog is
    /// full the payment is left CONFIRMED for the recovery worker.
    pub fn submit(&self, payment_id: Uuid, token: Uuid) {
        if self.tx.try_send((payment_id, token)).is_err() {
            tracing::warn!(%payment_id, "completion backlog full; the recovery worker will finish this payment");
        }
    }
}

async fn worker(repo: ReservationRepo, queue: Queue, mut rx: mpsc::Receiver<(Uuid, Uuid)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (payments, tokens): (Vec<Uuid>, Vec<Uuid>) = batch.drain(..).unzip();
        if let Err(e) = queue.expire_tokens(&tokens, Deadline::NONE).await {
            tracing::warn!(error = %e, payments = payments.len(), "token expiry failed; left to the recovery worker");
            continue;
        }
        match repo.complete_payments(&payments, chrono::Utc::now()).await {
            Ok(n) => tracing::debug!(completed = n, "payments completed"),
            Err(e) => tracing::warn!(error = %e, "completing payments failed; left to the recovery worker"),
        }
    }
}
