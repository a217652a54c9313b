//! The admitted part of a person's journey: dates → seat map → hold (one seat, or several
//! on one date) → charge → pay them in one order.
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use backon::{ConstantBuilder, Retryable};
use concert_proto::concert::{
    catalog::v1::{ListAvailableDatesRequest, ListSeatsRequest, SeatStatus},
    reservation::v1::{HoldSeatRequest, PayReservationRequest},
    wallet::v1::{ChargeRequest, GetBalanceRequest},
};
use rand::{Rng, rngs::StdRng};
use tonic::{Code, Status};

use super::{
    acks::Ack,
    person::{Abandon, Ctx, End, Person, Trace, rec, transient},
    stats::Rpc,
};
use crate::clients::{Clients, Session};

/// Looks at the dates this many times (a second apart) while every seat is taken, waiting
/// for holds to run out or payments to fail, before giving up.
const SEAT_PATIENCE: u32 = 20;
/// Tries of one call that failed transiently (same idempotency key each time).
const TRIES: usize = 5;
/// The seat a person aims for is among the first this many free ones (front rows first):
/// people collide on the popular seats.
const POPULAR: usize = 3;
/// Oldest a seat map may be when a person picks from it after losing a race: the booking
/// page's live map redraws within a second of a change (web/src/live-seats.ts).
const MAP_FRESH: Duration = Duration::from_secs(1);

/// What ended a call the journey cannot go on from.
fn end_of(s: &Status) -> End {
    if s.code() == Code::Unauthenticated { End::TokenExpired } else { End::Failed }
}

/// A held seat.
struct Held {
    reservation_id: String,
    schedule_id: String,
    seat: u32,
    price: i64,
}

impl Person {
    pub(super) async fn shop(
        &self,
        ctx: &Ctx,
        c: &Clients,
        rng: &mut StdRng,
        session: &Session,
        trace: &mut Trace,
    ) -> End {
        let first = match self.hold(ctx, c, rng, session).await {
            Ok(held) => held,
            Err(end) => return end,
        };
        // People buying together want their seats on one date: the rest from the same map.
        let wanted = rng.random_range(1..=ctx.seats_per_person.max(1));
        let mut held = vec![first];
        while held.len() < wanted as usize {
            match self.hold_on(ctx, c, rng, session, &held[0].schedule_id.clone()).await {
                Ok(Some(more)) => held.push(more),
                // Nothing left there (or the hold limit): buy what is held.
                Ok(None) | Err(End::Failed) => break,
                Err(end) => return end,
            }
        }
        ctx.gauges.holding.fetch_add(1, Ordering::Relaxed);
        let end = self.buy(ctx, c, rng, session, trace, &held).await;
        ctx.gauges.holding.fetch_sub(1, Ordering::Relaxed);
        end
    }

    /// Finds and holds a seat.
    async fn hold(&self, ctx: &Ctx, c: &Clients, rng: &mut StdRng, session: &Session) -> Result<Held, End> {
        let mut looked = 0;
        loop {
            if Instant::now() >= ctx.deadline {
                return Err(End::OutOfTime);
            }
            self.think(ctx, rng).await;
            let t = Instant::now();
            let request = ListAvailableDatesRequest { concert_id: ctx.concert_id.clone() };
            let dates = match rec(
                ctx,
                Rpc::ListAvailableDates,
                t,
                c.catalog().list_available_dates(session.request(request).map_err(|_| End::Failed)?).await,
            ) {
                Ok(r) => r.into_inner().schedules,
                Err(s) if transient(s.code()) => continue,
                Err(s) => return Err(end_of(&s)),
            };
            let mut open: Vec<String> =
                dates.into_iter().filter(|d| d.available_seats > 0).map(|d| d.schedule_id).collect();
            if open.is_empty() {
                looked += 1;
                if looked >= SEAT_PATIENCE || *ctx.sold_out.borrow() {
                    return Err(End::SoldOut);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Most people want the earliest date; one in five picks another.
            if open.len() > 1 && rng.random_bool(0.2) {
                let i = rng.random_range(1..open.len());
                open.swap(0, i);
            }
            for schedule_id in open {
                if let Some(held) = self.hold_on(ctx, c, rng, session, &schedule_id).await? {
                    return Ok(held);
                }
            }
        }
    }

    /// Loads one date's seat map and holds one of its free seats; `None` when they are all
    /// taken by the time this person tries.
    ///
    /// The map a person picks from is at most [`MAP_FRESH`] old, as on the booking page,
    /// whose live map (WatchSeats) redraws within a second of any change: a seat lost to
    /// someone quicker is struck off at once, and a map older than that is read again
    /// before the next try, rather than walked seat by seat long after it went stale.
    async fn hold_on(
        &self,
        ctx: &Ctx,
        c: &Clients,
        rng: &mut StdRng,
        session: &Session,
        schedule_id: &str,
    ) -> Result<Option<Held>, End> {
        self.think(ctx, rng).await;
        let Some((mut free, mut read_at)) = self.seat_map(ctx, c, session, schedule_id).await? else {
            return Ok(None);
        };
        if self.abandon == Some(Abandon::AtSeatMap) {
            return Err(End::Abandoned);
        }
        self.think(ctx, rng).await;
        while !free.is_empty() {
            // The seat wanted, then (with --seat-alternatives) the next picks in the same
            // popular-first way, named in the same call as "or the next best".
            let mut picks = Vec::with_capacity(1 + ctx.seat_alternatives);
            while picks.len() <= ctx.seat_alternatives && !free.is_empty() {
                picks.push(free.remove(rng.random_range(0..free.len().min(POPULAR))));
            }
            let (seat, _) = picks[0];
            let t = Instant::now();
            let request = session
                .request(HoldSeatRequest {
                    schedule_id: schedule_id.into(),
                    seat_number: seat,
                    alternative_seat_numbers: picks[1..].iter().map(|&(n, _)| n).collect(),
                    best_available: ctx.best_available,
                })
                .map_err(|_| End::Failed)?;
            let answer = rec(ctx, Rpc::HoldSeat, t, c.reservation().hold_seat(request).await);
            let code = answer.as_ref().map_or_else(Status::code, |_| Code::Ok);
            let reservation = answer.as_ref().ok().and_then(|r| r.get_ref().reservation.as_ref());
            let held_seat = reservation.map_or(seat, |r| r.seat_number);
            ctx.ack(Rpc::HoldSeat, code, || Ack {
                user: &self.user,
                reservation_id: reservation.map(|r| r.reservation_id.as_str()),
                seats: vec![(schedule_id, held_seat)],
                ..Ack::default()
            });
            match answer {
                Ok(r) => {
                    let reservation = r.into_inner().reservation.ok_or(End::Failed)?;
                    let seat = reservation.seat_number;
                    let shown = picks.iter().find(|&&(n, _)| n == seat).map_or(0, |&(_, p)| p);
                    return Ok(Some(Held {
                        reservation_id: reservation.reservation_id,
                        schedule_id: schedule_id.into(),
                        seat,
                        price: if reservation.price > 0 { reservation.price } else { shown },
                    }));
                }
                // Asked for the best available: the server found no seat of that grade free,
                // which is fresher than any map, so the next grade from the same map. (The
                // rush's layout prices each grade apart, so a price stands for its grade.)
                Err(s) if s.code() == Code::AlreadyExists && ctx.best_available => {
                    let (_, price) = picks[0];
                    free.retain(|&(_, p)| p != price);
                }
                // Someone else was quicker: another seat, from a map no older than the page's.
                Err(s) if s.code() == Code::AlreadyExists || transient(s.code()) => {
                    if !free.is_empty() && read_at.elapsed() >= MAP_FRESH {
                        match self.seat_map(ctx, c, session, schedule_id).await? {
                            Some((now_free, now)) => (free, read_at) = (now_free, now),
                            None => return Ok(None),
                        }
                    }
                }
                Err(s) => return Err(end_of(&s)),
            }
        }
        Ok(None)
    }

    /// One date's free seats (seat order, with prices) and when they were read; `None` when
    /// the map could not be had for now.
    async fn seat_map(
        &self,
        ctx: &Ctx,
        c: &Clients,
        session: &Session,
        schedule_id: &str,
    ) -> Result<Option<(Vec<(u32, i64)>, Instant)>, End> {
        let t = Instant::now();
        let request = session.request(ListSeatsRequest { schedule_id: schedule_id.into() }).map_err(|_| End::Failed)?;
        let mut free: Vec<(u32, i64)> = match rec(ctx, Rpc::ListSeats, t, c.catalog().list_seats(request).await) {
            Ok(r) => r
                .into_inner()
                .seats
                .into_iter()
                .filter(|s| s.status == SeatStatus::Available as i32)
                .map(|s| (s.seat_number, s.price))
                .collect(),
            Err(s) if transient(s.code()) => return Ok(None),
            Err(s) => return Err(end_of(&s)),
        };
        free.sort_unstable();
        Ok(Some((free, Instant::now())))
    }

    /// Charges what is missing and pays the holds, in one order.
    async fn buy(
        &self,
        ctx: &Ctx,
        c: &Clients,
        rng: &mut StdRng,
        session: &Session,
        trace: &mut Trace,
        held: &[Held],
    ) -> End {
        if self.abandon == Some(Abandon::WithHold) {
            return End::Abandoned;
        }
        self.think(ctx, rng).await;
        let first = &held[0].reservation_id;
        if let Err(end) = self.top_up(ctx, c, session, trace, held.iter().map(|h| h.price).sum(), first).await {
            return end;
        }
        self.think(ctx, rng).await;
        let key = format!("rush-pay-{first}");
        let ids: Vec<String> = held.iter().map(|h| h.reservation_id.clone()).collect();
        let paid = self
            .retried(ctx, Rpc::PayReservation, || async {
                let pay = match ids.as_slice() {
                    [one] => PayReservationRequest {
                        reservation_id: one.clone(),
                        idempotency_key: key.clone(),
                        ..Default::default()
                    },
                    _ => PayReservationRequest {
                        reservation_ids: ids.clone(),
                        idempotency_key: key.clone(),
                        ..Default::default()
                    },
                };
                c.reservation().pay_reservation(session.request(pay).map_err(|_| Status::internal("metadata"))?).await
            })
            .await;
        match paid {
            Ok(r) => {
                let payment_id = r.into_inner().payment.map(|p| p.payment_id).unwrap_or_default();
                ctx.ack(Rpc::PayReservation, Code::Ok, || Ack {
                    user: &self.user,
                    payment_id: Some(&payment_id),
                    idempotency_key: Some(&key),
                    amount: Some(held.iter().map(|h| h.price).sum()),
                    seats: held.iter().map(|h| (h.schedule_id.as_str(), h.seat)).collect(),
                    ..Ack::default()
                });
                trace.payment_id = Some(payment_id);
                trace.bought = held.iter().map(|h| (h.schedule_id.clone(), h.seat, h.price)).collect();
                ctx.gauges.paid.fetch_add(held.len() as u64, Ordering::Relaxed);
                for _ in held {
                    ctx.recorder.paid();
                }
                End::Paid
            }
            Err(s) => {
                if transient(s.code()) {
                    trace.pay_unknown = held.iter().map(|h| (h.schedule_id.clone(), h.seat, h.price)).collect();
                }
                end_of(&s)
            }
        }
    }

    /// Charges what the balance lacks for `total` won (under a key derived from the order's
    /// first reservation, so a retried top-up charges once).
    async fn top_up(
        &self,
        ctx: &Ctx,
        c: &Clients,
        session: &Session,
        trace: &mut Trace,
        total: i64,
        first: &str,
    ) -> Result<(), End> {
        let balance = self
            .retried(ctx, Rpc::GetBalance, || async {
                let request = session
                    .request(GetBalanceRequest { user_id: String::new() })
                    .map_err(|_| Status::internal("metadata"))?;
                c.wallet().get_balance(request).await
            })
            .await
            .map_err(|s| end_of(&s))?
            .into_inner()
            .balance;
        if balance >= total {
            return Ok(());
        }
        let amount = total - balance;
        let key = format!("rush-charge-{first}");
        let charged = self
            .retried(ctx, Rpc::Charge, || async {
                let charge = ChargeRequest { user_id: String::new(), amount, idempotency_key: key.clone() };
                c.wallet().charge(session.request(charge).map_err(|_| Status::internal("metadata"))?).await
            })
            .await;
        match charged {
            Ok(_) => {
                ctx.ack(Rpc::Charge, Code::Ok, || Ack {
                    user: &self.user,
                    idempotency_key: Some(&key),
                    amount: Some(amount),
                    ..Ack::default()
                });
                trace.charged += amount;
                Ok(())
            }
            Err(s) => {
                if transient(s.code()) {
                    trace.charge_unknown += amount;
                }
                Err(end_of(&s))
            }
        }
    }

    /// A call retried (up to [`TRIES`] tries, 200 ms apart, same idempotency key) while it
    /// fails transiently; each try is recorded, and a failed try of a write (Charge,
    /// PayReservation) is logged (its success is logged by the caller, with what was done).
    async fn retried<T, F, Fut>(&self, ctx: &Ctx, rpc: Rpc, call: F) -> Result<T, Status>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let pace = ConstantBuilder::default().with_delay(Duration::from_millis(200)).with_max_times(TRIES - 1);
        (|| async {
            let answer = rec(ctx, rpc, Instant::now(), call().await);
            if let (Err(s), Rpc::Charge | Rpc::PayReservation) = (&answer, rpc) {
                ctx.ack(rpc, s.code(), || Ack { user: &self.user, ..Ack::default() });
            }
            answer
        })
        .retry(pace)
        .when(|s| transient(s.code()))
        .await
    }
}
