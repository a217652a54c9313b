//! An injectable source of "now", so TTL rules are testable without sleeping.
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// Where a service reads the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// The time to use where one clock must decide for every replica (e.g. "has the sale
    /// opened?"): `None` for the real clock, so the database's `statement_timestamp()`
    /// decides and a replica whose clock is off cannot decide differently; a test clock
    /// returns its own time, so tests can move it.
    fn instead_of_database_time(&self) -> Option<DateTime<Utc>> {
        None
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock stopped at the current system time.
    #[must_use]
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Utc::now())))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn instead_of_database_time(&self) -> Option<DateTime<Utc>> {
        Some(self.now())
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock as a shared handle.
#[must_use]
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}
