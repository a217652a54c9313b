//! HoldSeat's storage part: insert the hold (batched), and when the insert did nothing, find
//! out why and act on it (release what expired, refuse, or report the seat taken).
use crate::{
    batch::holds::HoldBatcher,
    domain::hold::{HoldStep, after_refused_insert},
    error::ReservationError,
    store::{HoldAttempt, NewHold, ReservationRepo},
};

/// Places a hold. The unique index over live reservations decides races: of any number of
/// concurrent attempts on one seat, from any number of replicas, one wins. A loser learns
/// until when the seat is blocked (the blocking hold's expiry, or "indefinitely" for a sold
/// seat or a hold being paid).
///
/// # Errors
/// [`ReservationError::TokenUsed`] when the token already paid for a seat;
/// [`ReservationError::HoldLimit`] when the user already holds `max_holds` seats of the
/// concert; database failures.
#[tracing::instrument(skip_all, fields(schedule_id = %h.schedule_id, seat = h.seat_number))]
pub async fn place_hold(
    repo: &ReservationRepo,
    inserter: &HoldBatcher,
    h: &NewHold,
) -> Result<HoldAttempt, ReservationError> {
    // Another try only after the blocker vanished, a stale hold was released, or a
    // concurrent hold of this user took the hold slot this one wanted.
    let mut released_elsewhere = false;
    for _ in 0..5 {
        if let Some(r) = inserter.insert(h.clone()).await? {
            return Ok(HoldAttempt::Held(r));
        }
        let why = repo.hold_diagnosis(h).await?;
        // Finding nothing stale to release is final only the second time: the sweeper or
        // another replica may have released it between the diagnosis and the release, and
        // then the insert succeeds on the next try.
        match after_refused_insert(&why, h.now, h.max_holds) {
            HoldStep::TokenUsed => return Err(ReservationError::TokenUsed),
            HoldStep::Retry => {}
            HoldStep::ReleaseUsersStaleHolds => {
                if !repo.release_stale_holds_of(&h.user_id, h.concert_id, h.now).await? {
                    if released_elsewhere {
                        return Err(ReservationError::HoldLimit { max: h.max_holds });
                    }
                    released_elsewhere = true;
                }
            }
            HoldStep::ReleaseStaleSeat => {
                if !repo.release_stale_hold(h.schedule_id, h.seat_number, h.now).await? {
                    if released_elsewhere {
                        return Ok(HoldAttempt::Taken { blocked_until: h.now });
                    }
                    released_elsewhere = true;
                }
            }
            HoldStep::Taken { until } => return Ok(HoldAttempt::Taken { blocked_until: until }),
        }
    }
    Ok(HoldAttempt::Taken { blocked_until: h.now })
}
