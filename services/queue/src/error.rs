//! Queue errors and their one mapping to gRPC statuses.
use platform::{error::SystemError, status::with_reason, validate::FieldViolation};
use tonic::{Code, Status};

/// Everything a queue request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    InvalidArgument(#[from] FieldViolation),
    #[error("unknown queue token")]
    TokenNotFound,
    /// The catalog does not know the concert named in the request.
    #[error("unknown concert")]
    ConcertNotFound,
    /// The catalog could not be asked about a concert; the status already says why.
    #[error("{0}")]
    Peer(Status),
    /// A newer WatchQueue stream of the same token replaced this one.
    #[error("a newer WatchQueue stream of this token replaced this one")]
    WatchReplaced,
    /// Too many joins from this user, or in total, for now.
    #[error("too many IssueToken calls; retry in {} ms", retry_after.as_millis())]
    RateLimited { retry_after: std::time::Duration },
    /// The database is unreachable, or something unexpected: the platform's answer.
    #[error(transparent)]
    System(#[from] SystemError),
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        Self::System(e.into())
    }
}

impl From<anyhow::Error> for QueueError {
    fn from(e: anyhow::Error) -> Self {
        Self::System(e.into())
    }
}

impl QueueError {
    /// What each caller gets when a load shared through a cache (moka's `try_get_with`)
    /// failed: every waiter holds the same `Arc` of one error, which cannot be moved out.
    /// Plain answers are rebuilt, a peer's status is cloned (details kept), an unreachable
    /// database stays UNAVAILABLE, and anything else is unexpected, with `loading` saying
    /// what was being loaded.
    #[must_use]
    pub fn shared(error: &Self, loading: &str) -> Self {
        match error {
            Self::ConcertNotFound => Self::ConcertNotFound,
            Self::TokenNotFound => Self::TokenNotFound,
            Self::Peer(status) => Self::Peer(status.clone()),
            Self::System(system) => Self::System(system.shared(loading)),
            other => Self::from(anyhow::anyhow!("{loading}: {other}")),
        }
    }
}

impl From<QueueError> for Status {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::InvalidArgument(v) => v.into(),
            QueueError::TokenNotFound => with_reason(Code::NotFound, "TOKEN_UNKNOWN", e.to_string()),
            QueueError::ConcertNotFound => with_reason(Code::NotFound, "CONCERT_NOT_FOUND", e.to_string()),
            QueueError::Peer(status) => status,
            QueueError::WatchReplaced => Status::aborted(e.to_string()),
            QueueError::RateLimited { retry_after } => {
                platform::status::resource_exhausted("RATE_LIMITED", e.to_string(), retry_after)
            }
            QueueError::System(system) => system.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::status::{reason, violated_field};

    #[test]
    fn every_error_maps_to_its_code() {
        let s = Status::from(QueueError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(
            (s.code(), platform::status::reason(&s).as_deref()),
            (Code::Unavailable, Some("DATABASE_UNAVAILABLE"))
        );
        let s = Status::from(QueueError::InvalidArgument(FieldViolation::new("token", "must be a UUID")));
        assert_eq!((s.code(), violated_field(&s).as_deref()), (Code::InvalidArgument, Some("token")));
        let s = Status::from(QueueError::TokenNotFound);
        assert_eq!((s.code(), reason(&s).as_deref()), (Code::NotFound, Some("TOKEN_UNKNOWN")));
        let s = Status::from(QueueError::RateLimited { retry_after: std::time::Duration::from_millis(100) });
        assert_eq!((s.code(), reason(&s).as_deref()), (Code::ResourceExhausted, Some("RATE_LIMITED")));
        let s = Status::from(QueueError::ConcertNotFound);
        assert_eq!((s.code(), reason(&s).as_deref()), (Code::NotFound, Some("CONCERT_NOT_FOUND")));
        let s = Status::from(QueueError::Peer(Status::unavailable("catalog service: down")));
        assert_eq!(s.code(), Code::Unavailable);
        let s = Status::from(QueueError::from(anyhow::anyhow!("db down")));
        assert_eq!(s.code(), Code::Internal);
    }
}
