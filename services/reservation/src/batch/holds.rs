//! Opportunistic batching of hold inserts (see `platform::batch`).
//!
//! On opening day thousands of holds arrive at once, and PostgreSQL's fixed cost per
//! statement and per commit dwarfs the cost of one row. A few worker tasks each take every
//! hold already waiting (up to [`MAX_BATCH`]) and insert them with ONE multi-row
//! `INSERT … ON CONFLICT DO NOTHING`. Nothing waits to fill a batch: under light load a batch
//! is a single hold, so latency does not grow.
//!
//! Correctness is unchanged: the unique index over live reservations still decides every
//! seat, including two requests for the same seat inside one batch (the second finds the
//! first's row and inserts nothing). If a batch statement fails, each hold is retried alone
//! so every caller gets its own answer.
use platform::{
    app::Tasks,
    batch::{BatchError, BatchHandler, Batcher},
};
use uuid::Uuid;

use crate::{
    domain::{HoldDiagnosis, Reservation, ReservationStatus},
    error::ReservationError,
    store::{HoldInsert, NewHold, ReservationRepo},
};

/// Most holds one statement inserts.
pub const MAX_BATCH: usize = 64;
/// Batches in flight at once (each uses one pooled connection).
const WORKERS: usize = 4;

/// What became of one hold of a batch.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// The seat is held by the caller.
    Held(Reservation),
    /// Nothing was inserted; why, as the batch statement saw it (see
    /// [`ReservationRepo::insert_holds`]).
    Refused(HoldDiagnosis),
}

/// Inserts batches of holds.
#[derive(Debug)]
pub struct HoldWriter(ReservationRepo);

impl BatchHandler for HoldWriter {
    type Item = NewHold;
    type Output = Inserted;
    type Error = ReservationError;

    async fn run(&self, holds: &[NewHold]) -> Result<Vec<Inserted>, ReservationError> {
        let ids: Vec<Uuid> = holds.iter().map(|_| Uuid::now_v7()).collect();
        let outcomes = self.0.insert_holds(&ids, holds).await?;
        Ok(ids
            .into_iter()
            .zip(holds)
            .zip(outcomes)
            .map(|((id, h), outcome)| match outcome {
                HoldInsert::Inserted => Inserted::Held(reservation(id, h)),
                HoldInsert::Refused(why) => Inserted::Refused(why),
            })
            .collect())
    }
}

/// Hands hold inserts to the batch workers.
#[derive(Debug, Clone)]
pub struct HoldBatcher(Batcher<HoldWriter>);

impl HoldBatcher {
    /// Starts the workers in `tasks`; they stop when every `HoldBatcher` clone is dropped.
    #[must_use]
    pub fn start(repo: ReservationRepo, tasks: &mut Tasks) -> Self {
        Self(Batcher::start(HoldWriter(repo), WORKERS, MAX_BATCH, tasks))
    }

    /// Inserts one hold: held, or refused with the batch statement's reason.
    ///
    /// # Errors
    /// Database failures of this hold.
    pub async fn insert(&self, hold: NewHold) -> Result<Inserted, ReservationError> {
        self.0.submit(hold).await.map_err(BatchError::into_error)
    }
}

fn reservation(id: Uuid, h: &NewHold) -> Reservation {
    Reservation {
        reservation_id: id,
        user_id: h.user_id.clone(),
        token: h.token,
        concert_id: h.concert_id,
        schedule_id: h.schedule_id,
        seat_number: h.seat_number,
        price: h.price,
        status: ReservationStatus::Held,
        held_at: h.now,
        expires_at: h.now + h.ttl,
        payment_id: None,
    }
}
