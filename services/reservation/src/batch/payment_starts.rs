//! The saga's first write, batched (see `platform::batch`).
//!
//! Starting a payment locks its reservation, checks the payment rules and inserts the
//! STARTED payment: on its own that is a transaction of four round trips and one durable
//! commit per payment. Here every request already waiting (up to [`MAX_BATCH`]) shares them
//! ([`ReservationRepo::start_payments`]). Nothing waits to fill a batch, so a lone request is
//! written at once.
//!
//! Only the common case is batched: a first payment of a live hold. Whatever else a request
//! meets (a payment already there, a hold to release on expiry, a second request for the
//! same reservation in one batch) goes through [`ReservationRepo::start_payment`] after the
//! batch committed, so every request is answered exactly as if it had been alone.
use platform::{
    app::Tasks,
    batch::{BatchError, BatchHandler, Batcher},
};

use crate::{
    error::ReservationError,
    store::{PaymentRequest, PaymentStart, ReservationRepo},
};

/// Most payments one batch starts.
pub const MAX_BATCH: usize = 64;
/// Batches in flight at once (each uses one pooled connection). Two: fuller batches halve
/// the per-batch costs per payment, and one worker would let a slow batch stall the stage
/// (measurements in docs/BENCHMARKS.md).
const WORKERS: usize = 2;

/// Starts batches of payments; `None` leaves a request to the single path.
#[derive(Debug)]
pub struct StartWriter(ReservationRepo);

impl BatchHandler for StartWriter {
    type Item = PaymentRequest;
    type Output = Option<Result<PaymentStart, ReservationError>>;
    type Error = ReservationError;

    async fn run(&self, requests: &[PaymentRequest]) -> Result<Vec<Self::Output>, ReservationError> {
        self.0.start_payments(requests).await
    }
}

/// Hands payment starts to the batch workers.
#[derive(Debug, Clone)]
pub struct PaymentStartBatcher {
    batches: Batcher<StartWriter>,
    repo: ReservationRepo,
}

impl PaymentStartBatcher {
    /// Starts the workers in `tasks`; they stop when every clone is dropped.
    #[must_use]
    pub fn start(repo: ReservationRepo, tasks: &mut Tasks) -> Self {
        Self { batches: Batcher::start(StartWriter(repo.clone()), WORKERS, MAX_BATCH, tasks), repo }
    }

    /// Records the start of a payment saga, or finds the one this request already started;
    /// the same answers and errors as [`ReservationRepo::start_payment`].
    ///
    /// # Errors
    /// See [`ReservationRepo::start_payment`].
    pub async fn start_payment(&self, request: PaymentRequest) -> Result<PaymentStart, ReservationError> {
        let batched = self.batches.submit(request.clone()).await.map_err(BatchError::into_error)?;
        match batched {
            Some(decided) => decided,
            None => {
                let PaymentRequest { reservation_ids, payer, key, now, lease } = request;
                self.repo.start_payment(&reservation_ids, &payer, &key, now, lease).await
            }
        }
    }
}
