//! The failures every service shares: a database that cannot be reached right now, and
//! anything unexpected. Each service's error enum wraps [`SystemError`] (one variant,
//! `#[from]`) instead of repeating these arms, and its one `Status` mapping hands it to
//! `Status::from` here — the split influxdb3's `service_common` makes between what is a
//! service's own answer and what is the platform's.
use std::sync::Arc;

use tonic::Status;

/// A failure that is no answer of the service's own rules.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SystemError {
    /// The database cannot be reached right now (pool exhausted, connection lost): the
    /// caller gets UNAVAILABLE with reason DATABASE_UNAVAILABLE and may retry. An `Arc` so
    /// one failure can answer every caller that waited on it (a shared cache load).
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(Arc<sqlx::Error>),
    /// Anything else: the caller gets an opaque INTERNAL, the cause chain goes to the log.
    #[error(transparent)]
    Unexpected(Arc<anyhow::Error>),
}

impl From<sqlx::Error> for SystemError {
    fn from(e: sqlx::Error) -> Self {
        crate::db::note_connection_failure(&e);
        if crate::db::is_unavailable(&e) {
            Self::DatabaseUnavailable(Arc::new(e))
        } else {
            Self::Unexpected(Arc::new(e.into()))
        }
    }
}

impl From<anyhow::Error> for SystemError {
    fn from(e: anyhow::Error) -> Self {
        Self::Unexpected(Arc::new(e))
    }
}

impl SystemError {
    /// Whether this is the database-unavailable case (a retry may pass).
    #[must_use]
    pub fn is_database_unavailable(&self) -> bool {
        matches!(self, Self::DatabaseUnavailable(_))
    }

    /// The underlying database error, when there is one (the unavailable case, or an
    /// unexpected error caused by the database).
    #[must_use]
    pub fn sqlx(&self) -> Option<&sqlx::Error> {
        match self {
            Self::DatabaseUnavailable(e) => Some(e),
            Self::Unexpected(e) => e.downcast_ref::<sqlx::Error>(),
        }
    }

    /// The same failure for another caller of a shared load: an unreachable database stays
    /// UNAVAILABLE; anything else stays unexpected, with `loading` saying what was loaded.
    #[must_use]
    pub fn shared(&self, loading: &str) -> Self {
        match self {
            Self::DatabaseUnavailable(e) => Self::DatabaseUnavailable(e.clone()),
            Self::Unexpected(e) => Self::Unexpected(Arc::new(anyhow::anyhow!("{loading}: {e:#}"))),
        }
    }
}

impl From<SystemError> for Status {
    fn from(e: SystemError) -> Self {
        match e {
            SystemError::DatabaseUnavailable(err) => crate::status::database_unavailable(&err),
            SystemError::Unexpected(err) => crate::status::internal(&err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn database_outage_is_unavailable_and_the_rest_internal() {
        let s = Status::from(SystemError::from(sqlx::Error::PoolTimedOut));
        assert_eq!((s.code(), crate::status::reason(&s).as_deref()), (Code::Unavailable, Some("DATABASE_UNAVAILABLE")));
        let s = Status::from(SystemError::from(sqlx::Error::RowNotFound));
        assert_eq!((s.code(), s.message()), (Code::Internal, "internal error"));
        let s = Status::from(SystemError::from(anyhow::anyhow!("boom")));
        assert_eq!(s.code(), Code::Internal);
    }

    #[test]
    fn a_shared_failure_keeps_its_kind() {
        let outage = SystemError::from(sqlx::Error::PoolTimedOut);
        assert!(outage.shared("layout").is_database_unavailable());
        let other = SystemError::from(anyhow::anyhow!("bad row")).shared("loading layout");
        assert_eq!(other.to_string(), "loading layout: bad row");
        assert!(matches!(SystemError::from(sqlx::Error::RowNotFound).sqlx(), Some(sqlx::Error::RowNotFound)));
    }
}
