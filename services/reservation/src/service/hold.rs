//! HoldSeat and the reads of one's reservations as use cases. A hold reads top to bottom: price and
//! concert of the seat (cached layout) → the admission's concert → refuse a crowd early →
//! the date has not started → insert (batched), and when the insert did nothing, find out
//! why and act on it (release what expired, refuse, or report the seat taken).
use std::{collections::HashSet, sync::Arc};

use chrono::Duration;
use platform::{auth::Principal, clock::SharedClock, paging::PageRequest};
use uuid::Uuid;

use crate::{
    batch::holds::{HoldBatcher, Inserted},
    clients::{Catalog, TicketDetails},
    domain::{
        OccupiedSeat, Reservation,
        hold::{HoldStep, MAX_HOLD_TRIES, SeatChoice, after_refused_insert},
    },
    error::ReservationError,
    service::{in_flight::InFlightHolds, seen_occupancy::SeenOccupancy, taken_seats::TakenSeats},
    store::{HoldAttempt, NewHold, ReservationRepo},
};

/// Places and cancels holds.
#[derive(Debug, Clone)]
pub struct Holds {
    pub(crate) repo: ReservationRepo,
    pub(crate) batcher: HoldBatcher,
    pub(crate) catalog: Catalog,
    /// Seats this replica saw taken or held lately: a crowd on one seat is refused without a
    /// query.
    pub(crate) taken: TakenSeats,
    /// Dates' held and sold seats, one read shared by the calls of a moment: a crowd on one
    /// date is judged against it rather than reading it (and losing an insert) per call.
    pub(crate) seen: SeenOccupancy,
    /// Seats a hold on this replica is trying: a crowd asking for the best available
    /// spreads over the free seats.
    pub(crate) in_flight: InFlightHolds,
    pub(crate) clock: SharedClock,
    /// How long a hold keeps its seat.
    pub(crate) ttl: Duration,
    /// Most live holds per user and concert.
    pub(crate) max_holds: u32,
    /// How long before a show a bought seat can still be given back.
    pub(crate) refund_deadline: Duration,
}

/// What a replica knows of a seat before any query.
enum Known {
    /// Seen taken lately (a hint: see [`TakenSeats`]).
    Taken,
    /// Not known taken: its price and date, and the time it was judged by.
    Maybe(crate::clients::SeatInfo, chrono::DateTime<chrono::Utc>),
}

/// A reservation as "my tickets" shows it.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub reservation: Reservation,
    /// Concert, date and grade; `None` when the catalog could not be asked.
    pub details: Option<TicketDetails>,
    /// Until when a bought seat may be given back (with the details).
    pub refundable_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Holds {
    /// Holds the first free seat of `choice` (the seat wanted, then its alternatives in the
    /// caller's order, then, best available, the seats of its grade in seat order) of
    /// `schedule_id` for `holder` until now + the hold TTL.
    ///
    /// The seats are tried one after the other, each exactly as a hold of that seat alone: a
    /// seat seen taken lately is skipped without a query, any other is decided by the unique
    /// index, and a loss moves on to the next seat, skipping those the date's occupancy shows
    /// held or sold (this replica's snapshot, at most twice `SEAT_OCCUPANCY_REUSE_MS` old,
    /// when one is kept, else read at the first loss or before the first best-available
    /// seat).
    /// A best-available seat another call on this replica is trying is skipped too, so a
    /// crowd spreads over the free seats. At most [`MAX_HOLD_TRIES`] inserts are made. A
    /// refusal that is about the holder, not the seat (the hold limit, a spent token, a
    /// started date), ends the call at once.
    ///
    /// # Errors
    /// [`ReservationError::ScheduleNotFound`] for an unknown schedule or seat;
    /// [`ReservationError::WrongConcert`] for a token of another concert;
    /// [`ReservationError::SeatUnavailable`] when no seat could be held;
    /// [`ReservationError::ScheduleStarted`] once the date has begun; as [`place_hold`].
    pub async fn hold(
        &self,
        holder: &Principal,
        schedule_id: Uuid,
        choice: &SeatChoice,
    ) -> Result<Reservation, ReservationError> {
        let seats = self.candidates(schedule_id, choice).await?;
        // The date's held and sold seats: the snapshot the replica's calls of this moment
        // share, or read once after the first seat is lost (or before the best available is
        // looked for): the rest of the list is judged against it rather than lost one insert
        // at a time while a crowd takes the same front rows. Only a reason to skip a seat,
        // never to hold one.
        let mut occupied: Option<Arc<HashSet<u32>>> = self.seen.peek(schedule_id, self.clock.now()).await;
        let mut tries = 0;
        for (i, &seat) in seats.iter().enumerate() {
            let best_available = i >= choice.named.len();
            if best_available && occupied.is_none() {
                occupied = Some(self.seen.get(schedule_id, self.clock.now()).await?);
            }
            if occupied.as_ref().is_some_and(|o| o.contains(&seat)) {
                continue;
            }
            let (info, now) = match self.known(holder, schedule_id, seat).await? {
                Known::Taken => continue,
                Known::Maybe(info, now) => (info, now),
            };
            if info.starts_at <= now {
                return Err(ReservationError::ScheduleStarted);
            }
            // A named seat is tried even while another call here tries it (the caller asked
            // for that seat); a best-available one is left to the call trying it.
            let claim = self.in_flight.claim(schedule_id, seat);
            if best_available && claim.is_none() {
                continue;
            }
            if tries == MAX_HOLD_TRIES {
                break;
            }
            tries += 1;
            let new = NewHold {
                user_id: holder.user_id.clone(),
                token: holder.token,
                concert_id: info.concert_id,
                schedule_id,
                seat_number: seat,
                price: info.price,
                now,
                ttl: self.ttl,
                max_holds: self.max_holds,
            };
            match place_hold(&self.repo, &self.batcher, &new).await? {
                HoldAttempt::Held(held) => {
                    // Taken now, by this call: the replica's next calls skip it without an
                    // insert, rather than lose it one by one while their snapshot is older.
                    self.taken.mark(schedule_id, seat, held.expires_at);
                    return Ok(held);
                }
                HoldAttempt::Taken { blocked_until } => {
                    self.taken.mark(schedule_id, seat, blocked_until);
                    if occupied.is_none() && i + 1 < seats.len() {
                        occupied = Some(self.seen.get(schedule_id, self.clock.now()).await?);
                    }
                }
            }
        }
        Err(ReservationError::SeatUnavailable)
    }

    /// Refuses a hold from what this replica knows before the queue is asked whether the
    /// admission stands: seats of another concert than the admission's, or every seat
    /// `choice` may hold seen taken lately or held or sold in the date's occupancy snapshot
    /// (read now for a best-available call, which needs it anyway; only a kept one
    /// otherwise).
    ///
    /// # Errors
    /// [`ReservationError::ScheduleNotFound`], [`ReservationError::WrongConcert`],
    /// [`ReservationError::SeatUnavailable`].
    pub async fn refuse_early(
        &self,
        holder: &Principal,
        schedule_id: Uuid,
        choice: &SeatChoice,
    ) -> Result<(), ReservationError> {
        // The seats first: an unknown date is refused from the cached layout before any read.
        let seats = self.candidates(schedule_id, choice).await?;
        let now = self.clock.now();
        let occupied = if choice.best_available {
            Some(self.seen.get(schedule_id, now).await?)
        } else {
            self.seen.peek(schedule_id, now).await
        };
        for seat in seats {
            match self.known(holder, schedule_id, seat).await? {
                Known::Maybe(..) if !occupied.as_ref().is_some_and(|o| o.contains(&seat)) => return Ok(()),
                Known::Maybe(..) | Known::Taken => {}
            }
        }
        Err(ReservationError::SeatUnavailable)
    }

    /// The seats `choice` may hold, in the order to try them (the grade from the cached
    /// layout: no round trip).
    async fn candidates(&self, schedule_id: Uuid, choice: &SeatChoice) -> Result<Vec<u32>, ReservationError> {
        let same_grade = match (choice.best_available, choice.named.first()) {
            (true, Some(&wanted)) => self.catalog.same_grade(schedule_id, wanted).await?,
            _ => Vec::new(),
        };
        Ok(choice.order(&same_grade))
    }

    /// What this replica knows of `seat` without a query: its price and date (the layout is
    /// cached, so the concert check costs no round trip), and whether it was seen taken.
    async fn known(&self, holder: &Principal, schedule_id: Uuid, seat: u32) -> Result<Known, ReservationError> {
        let info = self.catalog.seat(schedule_id, seat).await?;
        if info.concert_id != holder.concert_id {
            return Err(ReservationError::WrongConcert);
        }
        let now = self.clock.now();
        if self.taken.is_taken(schedule_id, seat, now) {
            return Ok(Known::Taken);
        }
        Ok(Known::Maybe(info, now))
    }

    /// `user_id`'s reservation `reservation_id`, with its ticket details.
    ///
    /// # Errors
    /// [`ReservationError::NotFound`]; [`ReservationError::NotOwner`] for another user's.
    pub async fn reservation_of(&self, user_id: &str, reservation_id: Uuid) -> Result<Ticket, ReservationError> {
        let found = self.repo.get(reservation_id).await?;
        found.check_owner(user_id)?;
        Ok(self.tickets(vec![found]).await.remove(0))
    }

    /// One page of `user_id`'s reservations, newest first, with their ticket details.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list(&self, user_id: &str, page: &PageRequest) -> Result<Vec<Ticket>, ReservationError> {
        Ok(self.tickets(self.repo.list_for_user(user_id, page).await?).await)
    }

    /// Adds to each reservation its concert, date and grade, from the catalog (cached per
    /// date and concert, so a page costs at most one call per date and concert not cached). A
    /// date the catalog cannot describe now is left without details: the reservation itself
    /// is still shown.
    async fn tickets(&self, reservations: Vec<Reservation>) -> Vec<Ticket> {
        let mut tickets = Vec::with_capacity(reservations.len());
        for r in reservations {
            let details = match self.catalog.ticket_details(r.schedule_id, r.seat_number).await {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, schedule_id = %r.schedule_id, "ticket details unavailable");
                    None
                }
            };
            let refundable_until = details.as_ref().map(|d| d.starts_at - self.refund_deadline);
            tickets.push(Ticket { reservation: r, details, refundable_until });
        }
        tickets
    }

    /// The held and sold seats of `schedules` now (what the seat maps show).
    ///
    /// # Errors
    /// Database failures.
    pub async fn occupancy(&self, schedules: &[Uuid]) -> Result<Vec<OccupiedSeat>, ReservationError> {
        self.repo.occupancy(schedules, self.clock.now()).await
    }
}

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
async fn place_hold(
    repo: &ReservationRepo,
    inserter: &HoldBatcher,
    h: &NewHold,
) -> Result<HoldAttempt, ReservationError> {
    // Another try only after the blocker vanished, a stale hold was released, or a
    // concurrent hold of this user took the hold slot this one wanted.
    let mut released_elsewhere = false;
    for _ in 0..5 {
        let seen = match inserter.insert(h.clone()).await? {
            Inserted::Held(r) => return Ok(HoldAttempt::Held(r)),
            Inserted::Refused(seen) => seen,
        };
        // The batch statement's own read settles the usual refusal (a seat someone else
        // holds or bought, a spent token) without another round trip: a crowd losing the
        // same seats costs one statement per batch, not one more per loser. What it cannot
        // settle (no blocker in its snapshot, a stale hold, a full set of hold slots) is read
        // again now.
        let step = match after_refused_insert(&seen, h.now, h.max_holds) {
            settled @ (HoldStep::TokenUsed | HoldStep::Taken { .. }) => settled,
            _ => after_refused_insert(&repo.hold_diagnosis(h).await?, h.now, h.max_holds),
        };
        // Finding nothing stale to release is final only the second time: the sweeper or
        // another replica may have released it between the diagnosis and the release, and
        // then the insert succeeds on the next try.
        match step {
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
