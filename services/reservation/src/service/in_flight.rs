//! Seats a HoldSeat on this replica is trying to hold right now, so that a crowd asking for
//! "the best available" at the same moment is spread over the free seats by the replica,
//! each caller taking the best seat nobody else here is trying, instead of all of them
//! racing for the first free one and losing to each other one insert (and one diagnosis
//! query) at a time.
//!
//! Like [`super::taken_seats::TakenSeats`] it is only a hint: PostgreSQL's unique index over
//! live reservations decides every hold, so a claim can never cause a seat to be held twice
//! (two replicas' claims do not see each other; their race is decided by the index). What
//! a claim can do is make a best-available call pass over a seat whose attempt then fails:
//! that call may end SEAT_UNAVAILABLE while the seat is free, and the caller tries again.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
};

use uuid::Uuid;

/// The seats (schedule, seat number) with a hold attempt running on this replica.
#[derive(Debug, Clone, Default)]
pub struct InFlightHolds {
    seats: Arc<Mutex<HashSet<(Uuid, u32)>>>,
}

/// A seat claimed by one attempt; dropping it (the attempt ended, or its call was
/// cancelled) frees the claim.
#[derive(Debug)]
pub struct Claim {
    seats: Arc<Mutex<HashSet<(Uuid, u32)>>>,
    seat: (Uuid, u32),
}

impl InFlightHolds {
    /// Claims the seat for one attempt; `None` when another attempt on this replica has it.
    #[must_use]
    pub fn claim(&self, schedule_id: Uuid, seat: u32) -> Option<Claim> {
        // A poisoned set is still a set of hints: go on with it.
        let mut seats = self.seats.lock().unwrap_or_else(PoisonError::into_inner);
        seats.insert((schedule_id, seat)).then(|| Claim { seats: Arc::clone(&self.seats), seat: (schedule_id, seat) })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.seats.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.seat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_is_claimed_by_one_attempt_at_a_time() {
        let holds = InFlightHolds::default();
        let (date, other) = (Uuid::new_v4(), Uuid::new_v4());
        let first = holds.claim(date, 1).expect("a free seat can be claimed");
        assert!(holds.claim(date, 1).is_none(), "claimed by the first attempt");
        assert!(holds.claim(date, 2).is_some(), "another seat");
        assert!(holds.claim(other, 1).is_some(), "the same seat of another date");
        drop(first);
        assert!(holds.claim(date, 1).is_some(), "freed when the attempt ended");
    }
}
