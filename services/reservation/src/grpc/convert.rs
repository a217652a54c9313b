//! proto ⇄ domain conversions for reservations.
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use concert_proto::concert::reservation::v1::{self as pb};
use platform::{convert::timestamp, validate, validate::FieldViolation};
use uuid::Uuid;

use crate::{
    domain::{
        GiveBack, OccupiedSeat, Payment, PaymentBook, PaymentStatus, Reservation, ReservationStatus,
        SEATS_PER_SCHEDULE,
        hold::{MAX_ALTERNATIVE_SEATS, SeatChoice},
    },
    service::hold::Ticket,
};

/// The order a PayReservationRequest names: `reservation_id` alone, or `reservation_ids`
/// (1..=`max` distinct ids, `MAX_HOLDS_PER_USER`).
pub(super) fn order(single: &str, many: &[String], max: u32) -> Result<Vec<Uuid>, FieldViolation> {
    if many.is_empty() {
        return Ok(vec![validate::uuid("reservation_id", single)?]);
    }
    if !single.is_empty() {
        return Err(FieldViolation::new("reservation_ids", "set reservation_id or reservation_ids, not both"));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    if many.len() > limit {
        return Err(FieldViolation::new(
            "reservation_ids",
            format!("at most {max} reservations in one payment (the hold limit, MAX_HOLDS_PER_USER)"),
        ));
    }
    let ids = validate::uuids("reservation_ids", many, limit)?;
    let mut seen = HashSet::with_capacity(ids.len());
    if let Some(twice) = ids.iter().find(|id| !seen.insert(**id)) {
        return Err(FieldViolation::new("reservation_ids", format!("names reservation {twice} twice")));
    }
    Ok(ids)
}

/// The seats a HoldSeatRequest asks for: `seat_number`, then its `alternative_seat_numbers`
/// (at most [`MAX_ALTERNATIVE_SEATS`], each 1..=50, none repeated and none equal to
/// `seat_number`), in the order to try them, and whether the best available may be held.
pub(super) fn seat_choice(seat: u32, alternatives: &[u32], best_available: bool) -> Result<SeatChoice, FieldViolation> {
    const FIELD: &str = "alternative_seat_numbers";
    let mut seats = vec![seat_number(seat)?];
    if alternatives.len() > MAX_ALTERNATIVE_SEATS {
        return Err(FieldViolation::new(FIELD, format!("at most {MAX_ALTERNATIVE_SEATS} alternative seats")));
    }
    for &n in alternatives {
        if !(1..=SEATS_PER_SCHEDULE).contains(&n) {
            return Err(FieldViolation::new(FIELD, format!("seat {n} is not within 1..={SEATS_PER_SCHEDULE}")));
        }
        if seats.contains(&n) {
            return Err(FieldViolation::new(FIELD, format!("names seat {n} twice (seat_number included)")));
        }
        seats.push(n);
    }
    Ok(SeatChoice { named: seats, best_available })
}

pub(super) fn seat_number(n: u32) -> Result<u32, FieldViolation> {
    if (1..=SEATS_PER_SCHEDULE).contains(&n) {
        Ok(n)
    } else {
        Err(FieldViolation::new("seat_number", format!("must be within 1..={SEATS_PER_SCHEDULE}")))
    }
}

/// One payment saga for the reconciliation; `max_attempts` is the recovery worker's limit.
pub(super) fn payment_record(b: &PaymentBook, max_attempts: i32) -> pb::PaymentRecord {
    let p = &b.payment;
    let state = match p.status {
        PaymentStatus::Started => pb::SagaState::Started,
        PaymentStatus::Confirmed => pb::SagaState::Confirmed,
        PaymentStatus::Completed => pb::SagaState::Completed,
        PaymentStatus::Compensating => pb::SagaState::Compensating,
        PaymentStatus::Compensated => pb::SagaState::Compensated,
        PaymentStatus::Failed => pb::SagaState::Failed,
    };
    let unfinished = p.status.next_step() != crate::domain::SagaStep::Done;
    let first = b.first_seat();
    let seats = b
        .seats
        .iter()
        .map(|s| {
            let give_back = match s.give_back {
                None => pb::GiveBackState::None,
                Some(GiveBack::Refunding) => pb::GiveBackState::Refunding,
                Some(GiveBack::Refunded) => pb::GiveBackState::Refunded,
            };
            pb::PaymentSeatRecord {
                reservation_id: s.reservation_id.to_string(),
                schedule_id: s.schedule_id.to_string(),
                seat_number: s.seat_number,
                price: s.price.get(),
                reservation_status: status(s.status).into(),
                give_back: give_back.into(),
                give_back_refund_key: crate::domain::give_back_refund_key(p.payment_id, s.reservation_id),
            }
        })
        .collect();
    pb::PaymentRecord {
        payment_id: p.payment_id.to_string(),
        reservation_id: p.reservation_id.to_string(),
        user_id: p.user_id.clone(),
        amount: p.amount.get(),
        state: state.into(),
        reservation_status: first.map_or(pb::ReservationStatus::Unspecified, |s| status(s.status)).into(),
        schedule_id: first.map(|s| s.schedule_id.to_string()).unwrap_or_default(),
        seat_number: first.map_or(0, |s| s.seat_number),
        attempts: b.attempts,
        needs_attention: unfinished && i64::from(b.attempts) >= i64::from(max_attempts),
        debit_key: p.debit_key(),
        refund_key: p.refund_key(),
        seats,
    }
}

fn status(s: ReservationStatus) -> pb::ReservationStatus {
    match s {
        ReservationStatus::Held => pb::ReservationStatus::Held,
        ReservationStatus::Confirmed => pb::ReservationStatus::Confirmed,
        ReservationStatus::Cancelled => pb::ReservationStatus::Cancelled,
        ReservationStatus::Expired => pb::ReservationStatus::Expired,
        ReservationStatus::Refunded => pb::ReservationStatus::Refunded,
    }
}

/// A reservation as the caller sees it at `now` (an expired hold reads as EXPIRED).
pub(super) fn reservation(r: &Reservation, now: DateTime<Utc>) -> pb::Reservation {
    pb::Reservation {
        reservation_id: r.reservation_id.to_string(),
        user_id: r.user_id.clone(),
        schedule_id: r.schedule_id.to_string(),
        seat_number: r.seat_number,
        price: r.price.get(),
        status: status(r.effective_status(now)).into(),
        held_at: Some(timestamp(r.held_at)),
        expires_at: Some(timestamp(r.expires_at)),
        payment_id: r.payment_id.map(|id| id.to_string()).unwrap_or_default(),
        concert_id: r.concert_id.to_string(),
        ..pb::Reservation::default()
    }
}

/// A reservation with what "my tickets" shows of it, at `now`.
pub(super) fn ticket(t: &Ticket, now: DateTime<Utc>) -> pb::Reservation {
    let mut out = reservation(&t.reservation, now);
    if let Some(d) = &t.details {
        out.concert_title.clone_from(&d.concert_title);
        out.venue.clone_from(&d.venue);
        out.starts_at = Some(timestamp(d.starts_at));
        out.grade.clone_from(&d.grade);
    }
    if t.reservation.status == ReservationStatus::Confirmed {
        out.refundable_until = t.refundable_until.map(timestamp);
    }
    out
}

/// A payment, with the reservations it covers (first one first).
pub(super) fn payment(p: &Payment, reservation_ids: &[Uuid]) -> pb::Payment {
    let status = match p.status {
        PaymentStatus::Started | PaymentStatus::Compensating => pb::PaymentStatus::Pending,
        PaymentStatus::Confirmed | PaymentStatus::Completed => pb::PaymentStatus::Paid,
        PaymentStatus::Failed => pb::PaymentStatus::Failed,
        PaymentStatus::Compensated => pb::PaymentStatus::Refunded,
    };
    pb::Payment {
        payment_id: p.payment_id.to_string(),
        reservation_id: p.reservation_id.to_string(),
        amount: p.amount.get(),
        paid_at: p.paid_at.map(timestamp),
        status: status.into(),
        created_at: Some(timestamp(p.created_at)),
        failure_reason: p.failure_reason.as_ref().map(|r| r.as_str().to_owned()).unwrap_or_default(),
        reservation_ids: reservation_ids.iter().map(Uuid::to_string).collect(),
    }
}

pub(super) fn occupied(s: &OccupiedSeat) -> pb::OccupiedSeat {
    pb::OccupiedSeat {
        schedule_id: s.schedule_id.to_string(),
        seat_number: s.seat_number,
        status: status(s.status).into(),
    }
}
