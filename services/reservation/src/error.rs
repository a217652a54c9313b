//! Reservation errors and their one mapping to gRPC statuses.
use platform::{
    error::SystemError,
    status::{invalid_argument, with_reason},
    validate::FieldViolation,
};
use tonic::{Code, Status};

/// Everything a reservation request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    #[error(transparent)]
    InvalidArgument(#[from] FieldViolation),
    #[error("unknown reservation")]
    NotFound,
    #[error("unknown schedule or seat")]
    ScheduleNotFound,
    #[error("the reservation belongs to another user")]
    NotOwner,
    /// The caller's queue token was admitted for another concert than the schedule's.
    #[error("this queue token was admitted for another concert; join that concert's waiting room")]
    WrongConcert,
    #[error("the seat is already held or sold")]
    SeatUnavailable,
    /// The user already holds the most seats of this concert one person may hold at once.
    #[error("you already hold {max} seats of this concert; pay for or cancel one first")]
    HoldLimit { max: u32 },
    #[error("the concert date has already started")]
    ScheduleStarted,
    #[error("the hold has expired")]
    HoldExpired,
    #[error("the reservation is not an unpaid hold")]
    NotHeld,
    /// A bought seat can no longer be given back: its show starts within
    /// `REFUND_DEADLINE_HOURS`.
    #[error("this ticket can no longer be given back: the refund window closed before the show")]
    RefundWindowClosed,
    #[error("the wallet balance is too low for this seat")]
    InsufficientBalance,
    #[error("another payment of this reservation is in flight; retry shortly")]
    PaymentInProgress,
    #[error("idempotency key was already used for another reservation")]
    IdempotencyKeyReused,
    #[error("this queue token was already used to pay")]
    TokenUsed,
    /// One admission buys one seat: the token already pays for another reservation.
    #[error("this admission is already paying for another seat; one admission buys one seat")]
    AdmissionInUse,
    /// The seat feed could not read a watched schedule's occupancy: its streams end rather
    /// than show a map that may be stale.
    #[error("the live occupancy could not be read; watch again or poll GetOccupancy")]
    SeatFeedLost,
    /// A peer refused or failed; its status is already the right answer for the caller.
    #[error("{0}")]
    Peer(Status),
    /// The caller's queue token was refused by the token check (platform::auth), whose
    /// status is passed on as it is.
    #[error("{}", .0.message())]
    TokenRefused(Status),
    /// The database is unreachable, or something unexpected: the platform's answer.
    #[error(transparent)]
    System(#[from] SystemError),
}

impl From<sqlx::Error> for ReservationError {
    fn from(e: sqlx::Error) -> Self {
        Self::System(e.into())
    }
}

impl From<anyhow::Error> for ReservationError {
    fn from(e: anyhow::Error) -> Self {
        Self::System(e.into())
    }
}

impl ReservationError {
    /// What each caller gets when a load shared through a cache (moka's `try_get_with`)
    /// failed: every waiter holds the same `Arc` of one error, which cannot be moved out.
    /// Plain answers are rebuilt, a peer's status is cloned (details kept), an unreachable
    /// database stays UNAVAILABLE, and anything else is unexpected, with `loading` saying
    /// what was being loaded.
    #[must_use]
    pub fn shared(error: &Self, loading: &str) -> Self {
        match error {
            Self::ScheduleNotFound => Self::ScheduleNotFound,
            Self::NotFound => Self::NotFound,
            Self::Peer(status) => Self::Peer(status.clone()),
            Self::System(system) => Self::System(system.shared(loading)),
            other => Self::from(anyhow::anyhow!("{loading}: {other}")),
        }
    }
}

impl From<ReservationError> for Status {
    fn from(e: ReservationError) -> Self {
        use ReservationError as E;
        let message = e.to_string();
        match e {
            E::InvalidArgument(v) => v.into(),
            E::NotFound => with_reason(Code::NotFound, "RESERVATION_NOT_FOUND", message),
            E::ScheduleNotFound => with_reason(Code::NotFound, "SCHEDULE_NOT_FOUND", message),
            E::NotOwner => with_reason(Code::PermissionDenied, "NOT_OWNER", message),
            E::WrongConcert => with_reason(Code::PermissionDenied, "TOKEN_WRONG_CONCERT", message),
            E::SeatUnavailable => with_reason(Code::AlreadyExists, "SEAT_UNAVAILABLE", message),
            E::HoldLimit { .. } => with_reason(Code::FailedPrecondition, "HOLD_LIMIT", message),
            E::ScheduleStarted => with_reason(Code::FailedPrecondition, "SCHEDULE_STARTED", message),
            E::HoldExpired => with_reason(Code::FailedPrecondition, "HOLD_EXPIRED", message),
            E::NotHeld => with_reason(Code::FailedPrecondition, "RESERVATION_NOT_HELD", message),
            E::RefundWindowClosed => with_reason(Code::FailedPrecondition, "REFUND_WINDOW_CLOSED", message),
            E::InsufficientBalance => with_reason(Code::FailedPrecondition, "INSUFFICIENT_BALANCE", message),
            E::PaymentInProgress => with_reason(Code::Aborted, "PAYMENT_IN_PROGRESS", message),
            E::IdempotencyKeyReused => invalid_argument("idempotency_key", &message),
            E::TokenUsed => with_reason(Code::Unauthenticated, "TOKEN_USED", message),
            E::AdmissionInUse => with_reason(Code::FailedPrecondition, "ADMISSION_IN_USE", message),
            E::SeatFeedLost => with_reason(Code::Unavailable, "SEAT_FEED_LOST", message),
            E::Peer(status) | E::TokenRefused(status) => status,
            E::System(system) => system.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::status::{reason, violated_field};

    #[test]
    fn every_error_maps_to_its_code_and_reason() {
        let s = Status::from(ReservationError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(
            (s.code(), platform::status::reason(&s).as_deref()),
            (Code::Unavailable, Some("DATABASE_UNAVAILABLE"))
        );
        use ReservationError as E;
        let cases: Vec<(E, Code, Option<&str>)> = vec![
            (E::NotFound, Code::NotFound, Some("RESERVATION_NOT_FOUND")),
            (E::ScheduleNotFound, Code::NotFound, Some("SCHEDULE_NOT_FOUND")),
            (E::NotOwner, Code::PermissionDenied, Some("NOT_OWNER")),
            (E::WrongConcert, Code::PermissionDenied, Some("TOKEN_WRONG_CONCERT")),
            (E::SeatUnavailable, Code::AlreadyExists, Some("SEAT_UNAVAILABLE")),
            (E::HoldLimit { max: 4 }, Code::FailedPrecondition, Some("HOLD_LIMIT")),
            (E::ScheduleStarted, Code::FailedPrecondition, Some("SCHEDULE_STARTED")),
            (E::HoldExpired, Code::FailedPrecondition, Some("HOLD_EXPIRED")),
            (E::NotHeld, Code::FailedPrecondition, Some("RESERVATION_NOT_HELD")),
            (E::RefundWindowClosed, Code::FailedPrecondition, Some("REFUND_WINDOW_CLOSED")),
            (E::InsufficientBalance, Code::FailedPrecondition, Some("INSUFFICIENT_BALANCE")),
            (E::PaymentInProgress, Code::Aborted, Some("PAYMENT_IN_PROGRESS")),
            (E::TokenUsed, Code::Unauthenticated, Some("TOKEN_USED")),
            (E::AdmissionInUse, Code::FailedPrecondition, Some("ADMISSION_IN_USE")),
            (E::SeatFeedLost, Code::Unavailable, Some("SEAT_FEED_LOST")),
            (E::Peer(Status::unavailable("x")), Code::Unavailable, None),
            (E::from(anyhow::anyhow!("x")), Code::Internal, None),
        ];
        for (error, code, want) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(reason(&status).as_deref(), want);
        }
        let s = Status::from(E::IdempotencyKeyReused);
        assert_eq!((s.code(), violated_field(&s).as_deref()), (Code::InvalidArgument, Some("idempotency_key")));
        let s = Status::from(E::InvalidArgument(FieldViolation::new("seat_number", "x")));
        assert_eq!(violated_field(&s).as_deref(), Some("seat_number"));
    }
}
