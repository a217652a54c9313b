//! Building `tonic::Status` values the same way in every service: a stable machine-readable
//! reason in `google.rpc.ErrorInfo`, field violations in `google.rpc.BadRequest`, and opaque
//! INTERNAL errors whose cause chain is logged but never sent.
use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every error the suite returns.
pub const ERROR_DOMAIN: &str = "concert.example.com";

/// A status with `google.rpc.ErrorInfo { reason, domain }` attached.
#[must_use]
pub fn with_reason(code: Code, reason: impl Into<String>, message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::<String, String>::new());
    Status::with_error_details(code, message, details)
}

/// INVALID_ARGUMENT naming `field`, with a `google.rpc.BadRequest` field violation.
#[must_use]
pub fn invalid_argument(field: &str, description: &str) -> Status {
    let mut details = ErrorDetails::with_bad_request_violation(field, description);
    details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, HashMap::<String, String>::new());
    Status::with_error_details(Code::InvalidArgument, format!("{field}: {description}"), details)
}

/// RESOURCE_EXHAUSTED with `reason` and a `google.rpc.RetryInfo` telling the caller when
/// trying again may pass.
#[must_use]
pub fn resource_exhausted(
    reason: &'static str,
    message: impl Into<String>,
    retry_after: std::time::Duration,
) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::<String, String>::new());
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// The pause a peer asked for in its `google.rpc.RetryInfo`, if it sent one.
#[must_use]
pub fn retry_after(status: &Status) -> Option<std::time::Duration> {
    status.get_details_retry_info().and_then(|info| info.retry_delay)
}

/// An opaque INTERNAL status. The whole cause chain goes to the log, not to the caller.
#[must_use]
pub fn internal(error: &anyhow::Error) -> Status {
    tracing::error!(error = ?error, "unexpected error");
    Status::internal("internal error")
}

/// UNAVAILABLE for a database that cannot be reached right now (reason DATABASE_UNAVAILABLE).
#[must_use]
pub fn database_unavailable(error: &sqlx::Error) -> Status {
    tracing::warn!(error = %error, "database unavailable");
    with_reason(Code::Unavailable, "DATABASE_UNAVAILABLE", "database temporarily unavailable; retry")
}

/// Maps a failure of a call to a peer service: UNAVAILABLE and DEADLINE_EXCEEDED pass
/// through (the caller may retry), anything else becomes an opaque INTERNAL.
#[must_use]
pub fn from_peer(peer: &'static str, status: &Status) -> Status {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
            tracing::warn!(peer, code = ?status.code(), message = status.message(), "peer call failed");
            Status::new(status.code(), format!("{peer} service: {}", status.message()))
        }
        // A peer cancels a call when our deadline (sent as grpc-timeout) passed.
        Code::Cancelled => {
            tracing::warn!(peer, message = status.message(), "peer call cancelled at its deadline");
            Status::deadline_exceeded(format!("{peer} service: {}", status.message()))
        }
        _ => internal(&anyhow::anyhow!("{peer} service answered {:?}: {}", status.code(), status.message())),
    }
}

/// The `ErrorInfo.reason` of a status, if it carries one.
#[must_use]
pub fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// The first field named in a status's `BadRequest` details.
#[must_use]
pub fn violated_field(status: &Status) -> Option<String> {
    status.get_details_bad_request().and_then(|br| br.field_violations.into_iter().next()).map(|v| v.field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_the_field() {
        let status = invalid_argument("seat_number", "must be within 1..=50");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_field(&status).as_deref(), Some("seat_number"));
        assert!(status.message().contains("seat_number"));
    }

    #[test]
    fn reason_round_trips() {
        let status = with_reason(Code::AlreadyExists, "SEAT_UNAVAILABLE", "taken");
        assert_eq!(reason(&status).as_deref(), Some("SEAT_UNAVAILABLE"));
    }

    #[test]
    fn internal_is_opaque() {
        let status = internal(&anyhow::anyhow!("password=hunter2 leaked"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }
}

/// A replica's bound on the long-lived streams of one RPC (WatchQueue, WatchSeats,
/// WatchOccupancy): a slot per open stream, held until the stream is dropped, and the one
/// refusal beyond it.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    /// The refusal's message: which streams, and what to do instead.
    full: &'static str,
    retry_after: std::time::Duration,
}

impl StreamSlots {
    /// Room for `max` streams; beyond it callers are told `full` and to retry after `retry_after`.
    #[must_use]
    pub fn new(max: usize, full: &'static str, retry_after: std::time::Duration) -> Self {
        Self { slots: std::sync::Arc::new(tokio::sync::Semaphore::new(max)), full, retry_after }
    }

    /// A slot for one more stream.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED (reason TOO_MANY_STREAMS, with RetryInfo) when every slot is taken.
    pub fn take(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        std::sync::Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| resource_exhausted("TOO_MANY_STREAMS", self.full, self.retry_after))
    }
}
