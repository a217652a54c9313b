//! What the operator's gauges read: payments by saga state, the recovery backlog, payments
//! needing a person and live holds, whole suite.
use chrono::{DateTime, Utc};

use super::ReservationRepo;
use crate::error::ReservationError;

/// Counts read in one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Payments per saga state (`STARTED`, `CONFIRMED`, `COMPLETED`, …, as stored);
    /// states without payments are absent.
    pub payments: Vec<(String, i64)>,
    /// Unfinished payments tried `max_attempts` times: recovery stopped on them.
    pub needing_person: i64,
    /// Unfinished payments due for recovery now (their lease ran out) and not given up on.
    pub recovery_backlog: i64,
    /// HELD reservations that have not expired.
    pub live_holds: i64,
}

impl ReservationRepo {
    /// Reads the [`Gauges`] at `now`. Scans the payments table (a sale's worth of rows is
    /// read in milliseconds), so callers read it every few seconds, not per request.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn gauges(&self, now: DateTime<Utc>, max_attempts: i32) -> Result<Gauges, ReservationError> {
        let row = sqlx::query!(
            r#"SELECT by_state.states AS "states!", by_state.counts AS "counts!",
                 (SELECT count(*) FROM payments
                   WHERE status IN ('STARTED', 'CONFIRMED', 'COMPENSATING') AND attempts >= $2) AS "needing_person!",
                 (SELECT count(*) FROM payments
                   WHERE status IN ('STARTED', 'CONFIRMED', 'COMPENSATING') AND attempts < $2
                     AND next_attempt_at <= $1) AS "recovery_backlog!",
                 (SELECT count(*) FROM reservations WHERE status = 'HELD' AND expires_at > $1) AS "live_holds!"
             FROM (SELECT COALESCE(array_agg(status), '{}') AS states, COALESCE(array_agg(n), '{}') AS counts
                   FROM (SELECT status, count(*) AS n FROM payments GROUP BY status) g) by_state"#,
            now,
            max_attempts
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Gauges {
            payments: row.states.into_iter().zip(row.counts).collect(),
            needing_person: row.needing_person,
            recovery_backlog: row.recovery_backlog,
            live_holds: row.live_holds,
        })
    }
}
