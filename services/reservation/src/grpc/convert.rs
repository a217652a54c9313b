//! proto ⇄ domain conversions for reservations.
use chrono::{DateTime, Utc};
use concert_proto::concert::reservation::v1::{self as pb};
use platform::{convert::timestamp, validate::FieldViolation};

use crate::domain::{
    OccupiedSeat, Payment, PaymentBook, PaymentStatus, Reservation, ReservationStatus, SEATS_PER_SCHEDULE,
};

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
    pb::PaymentRecord {
        payment_id: p.payment_id.to_string(),
        reservation_id: p.reservation_id.to_string(),
        user_id: p.user_id.clone(),
        amount: p.amount.get(),
        state: state.into(),
        reservation_status: status(b.reservation_status).into(),
        schedule_id: b.schedule_id.to_string(),
        seat_number: b.seat_number,
        attempts: b.attempts,
        needs_attention: unfinished && i64::from(b.attempts) >= i64::from(max_attempts),
        debit_key: p.debit_key(),
        refund_key: p.refund_key(),
    }
}

fn status(s: ReservationStatus) -> pb::ReservationStatus {
    match s {
        ReservationStatus::Held => pb::ReservationStatus::Held,
        ReservationStatus::Confirmed => pb::ReservationStatus::Confirmed,
        ReservationStatus::Cancelled => pb::ReservationStatus::Cancelled,
        ReservationStatus::Expired => pb::ReservationStatus::Expired,
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
    }
}

pub(super) fn payment(p: &Payment) -> pb::Payment {
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
    }
}

pub(super) fn occupied(s: &OccupiedSeat) -> pb::OccupiedSeat {
    pb::OccupiedSeat {
        schedule_id: s.schedule_id.to_string(),
        seat_number: s.seat_number,
        status: status(s.status).into(),
    }
}
