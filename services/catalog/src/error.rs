//! Catalog errors and their one mapping to gRPC statuses.
use platform::{error::SystemError, status::with_reason, validate::FieldViolation};
use tonic::{Code, Status};

/// Everything a catalog request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    InvalidArgument(#[from] FieldViolation),
    #[error("unknown concert")]
    ConcertNotFound,
    #[error("unknown schedule")]
    ScheduleNotFound,
    /// A peer (queue, reservation) refused or failed; its status is already the right answer.
    #[error("{0}")]
    Peer(Status),
    /// The database is unreachable, or something unexpected: the platform's answer.
    #[error(transparent)]
    System(#[from] SystemError),
}

impl From<sqlx::Error> for CatalogError {
    fn from(e: sqlx::Error) -> Self {
        Self::System(e.into())
    }
}

impl From<anyhow::Error> for CatalogError {
    fn from(e: anyhow::Error) -> Self {
        Self::System(e.into())
    }
}

impl CatalogError {
    /// What each caller gets when a load shared through a cache (moka's `try_get_with`)
    /// failed: every waiter holds the same `Arc` of one error, which cannot be moved out.
    /// Plain answers are rebuilt, a peer's status is cloned (details kept), an unreachable
    /// database stays UNAVAILABLE, and anything else is unexpected, with `loading` saying
    /// what was being loaded.
    #[must_use]
    pub fn shared(error: &Self, loading: &str) -> Self {
        match error {
            Self::ConcertNotFound => Self::ConcertNotFound,
            Self::ScheduleNotFound => Self::ScheduleNotFound,
            Self::Peer(status) => Self::Peer(status.clone()),
            Self::System(system) => Self::System(system.shared(loading)),
            other => Self::from(anyhow::anyhow!("{loading}: {other}")),
        }
    }
}

impl From<CatalogError> for Status {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::InvalidArgument(v) => v.into(),
            CatalogError::ConcertNotFound => with_reason(Code::NotFound, "CONCERT_NOT_FOUND", e.to_string()),
            CatalogError::ScheduleNotFound => with_reason(Code::NotFound, "SCHEDULE_NOT_FOUND", e.to_string()),
            CatalogError::Peer(status) => status,
            CatalogError::System(system) => system.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::status::{reason, violated_field};

    #[test]
    fn every_error_maps_to_its_code() {
        let s = Status::from(CatalogError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(
            (s.code(), platform::status::reason(&s).as_deref()),
            (Code::Unavailable, Some("DATABASE_UNAVAILABLE"))
        );
        let s = Status::from(CatalogError::InvalidArgument(FieldViolation::new("grades", "x")));
        assert_eq!((s.code(), violated_field(&s).as_deref()), (Code::InvalidArgument, Some("grades")));
        let s = Status::from(CatalogError::ConcertNotFound);
        assert_eq!((s.code(), reason(&s).as_deref()), (Code::NotFound, Some("CONCERT_NOT_FOUND")));
        let s = Status::from(CatalogError::ScheduleNotFound);
        assert_eq!((s.code(), reason(&s).as_deref()), (Code::NotFound, Some("SCHEDULE_NOT_FOUND")));
        let s = Status::from(CatalogError::Peer(Status::unavailable("down")));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(Status::from(CatalogError::from(anyhow::anyhow!("x"))).code(), Code::Internal);
    }
}
