//! The saga's "debit recorded" write, batched (see `platform::batch`).
//!
//! After the wallet took the money, each payment is moved to CONFIRMED and its seat sold
//! (or, when the hold is gone, to COMPENSATING) by [`ReservationRepo::record_debits`]. At
//! opening-day rates that is one statement and one durable commit per payment on the request
//! path; here every payment already waiting (up to [`MAX_BATCH`]) shares one statement and
//! one commit. Nothing waits to fill a batch, so a lone payment is written at once.
//!
//! Correctness is the statement's, not the batching's: the reservation rows are locked in
//! key order, a payment moves only from STARTED, and a batch that fails (a deadlock, say) is
//! retried one payment at a time, so each saga gets the stored state of its own payment.
use platform::{
    app::Tasks,
    batch::{BatchError, BatchHandler, Batcher},
};

use crate::{
    domain::Payment,
    error::ReservationError,
    store::{RecordedDebit, ReservationRepo},
};

/// Most payments one statement records.
pub const MAX_BATCH: usize = 64;
/// Batches in flight at once (each uses one pooled connection); two, as every stage of the
/// payment path (see `batch::payment_starts::WORKERS`).
const WORKERS: usize = 2;

/// Writes batches of recorded debits.
#[derive(Debug)]
pub struct DebitWriter(ReservationRepo);

impl BatchHandler for DebitWriter {
    type Item = RecordedDebit;
    type Output = Payment;
    type Error = ReservationError;

    async fn run(&self, debits: &[RecordedDebit]) -> Result<Vec<Payment>, ReservationError> {
        self.0.record_debits(debits).await
    }
}

/// Hands recorded debits to the batch workers.
#[derive(Debug, Clone)]
pub struct DebitBatcher(Batcher<DebitWriter>);

impl DebitBatcher {
    /// Starts the workers in `tasks`; they stop when every clone is dropped.
    #[must_use]
    pub fn start(repo: ReservationRepo, tasks: &mut Tasks) -> Self {
        Self(Batcher::start(DebitWriter(repo), WORKERS, MAX_BATCH, tasks))
    }

    /// Records one debit and returns the payment as stored afterwards (CONFIRMED,
    /// COMPENSATING, or unchanged when it had already moved on).
    ///
    /// # Errors
    /// Database failures of this payment.
    pub async fn record(&self, debit: RecordedDebit) -> Result<Payment, ReservationError> {
        self.0.submit(debit).await.map_err(BatchError::into_error)
    }
}
