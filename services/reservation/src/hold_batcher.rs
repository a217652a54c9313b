//! Opportunistic batching of hold inserts.
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
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::{
    domain::{Reservation, ReservationStatus},
    error::ReservationError,
    repo::{NewHold, ReservationRepo},
};

/// Most holds one statement inserts.
pub const MAX_BATCH: usize = 64;
/// Batches in flight at once (each uses one pooled connection).
const WORKERS: usize = 4;

type Reply = oneshot::Sender<Result<Option<Reservation>, ReservationError>>;

/// Hands hold inserts to the batch workers.
#[derive(Debug, Clone)]
pub struct HoldBatcher {
    tx: mpsc::Sender<(NewHold, Reply)>,
}

impl HoldBatcher {
    /// Starts the workers; they stop when every `HoldBatcher` clone is dropped.
    #[must_use]
    pub fn start(repo: ReservationRepo) -> Self {
        let (tx, rx) = mpsc::channel::<(NewHold, Reply)>(MAX_BATCH * WORKERS * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            tokio::spawn(worker(repo.clone(), rx.clone()));
        }
        Self { tx }
    }

    /// Inserts one hold; `None` when the insert did nothing (seat taken, or token used).
    ///
    /// # Errors
    /// Database failures of this hold.
    pub async fn insert(&self, hold: NewHold) -> Result<Option<Reservation>, ReservationError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((hold, reply))
            .await
            .map_err(|_| ReservationError::Unexpected(anyhow::anyhow!("hold batcher stopped")))?;
        answer.await.map_err(|_| ReservationError::Unexpected(anyhow::anyhow!("hold batch dropped")))?
    }
}

async fn worker(repo: ReservationRepo, rx: Arc<Mutex<mpsc::Receiver<(NewHold, Reply)>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return; // every sender is gone
            }
        }
        let holds: Vec<NewHold> = batch.iter().map(|(h, _)| h.clone()).collect();
        let ids: Vec<Uuid> = holds.iter().map(|_| Uuid::now_v7()).collect();
        match repo.insert_holds(&ids, &holds).await {
            Ok(inserted) => {
                for ((hold, reply), id) in batch.drain(..).zip(ids) {
                    let result = inserted.contains(&id).then(|| reservation(id, &hold));
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "hold batch failed; retrying one by one");
                for (hold, reply) in batch.drain(..) {
                    let id = Uuid::now_v7();
                    let result = repo
                        .insert_holds(&[id], std::slice::from_ref(&hold))
                        .await
                        .map(|inserted| inserted.contains(&id).then(|| reservation(id, &hold)));
                    let _ = reply.send(result);
                }
            }
        }
    }
}

fn reservation(id: Uuid, h: &NewHold) -> Reservation {
    Reservation {
        reservation_id: id,
        user_id: h.user_id.clone(),
        token: h.token,
        concert_id: Some(h.concert_id),
        schedule_id: h.schedule_id,
        seat_number: h.seat_number,
        price: h.price,
        status: ReservationStatus::Held,
        held_at: h.now,
        expires_at: h.now + h.ttl,
        payment_started: false,
    }
}
