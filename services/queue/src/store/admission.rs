//! One admission round: expire what timed out, then admit the heads of the lines that have
//! room, for every room at once, under one advisory lock.
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{JOIN_FENCE, QueueRepo, room, to_i64};
use crate::{
    domain::{AdmissionPolicy, PACE_MEMORY_SECS, Pace, RateWindow},
    error::QueueError,
};

/// Journeys that must have ended within a 10-second window before its median counts as a
/// room's pace: fewer say little about the crowd.
const PACE_MIN_JOURNEYS: i64 = 20;

/// Key of the advisory lock that makes one replica at a time run an admission round (for
/// every room at once).
const ADMISSION_LOCK: i64 = 0x0051_5545_5545; // "QUEUE"

/// What one admission round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundOutcome {
    /// False when another replica held the admission lock, so this one did nothing.
    pub ran: bool,
    pub expired: u64,
    pub admitted: u64,
}

impl QueueRepo {
    /// One admission round for every room: expires ACTIVE tokens past their TTL and, with
    /// `sweep_abandoned`, abandoned WAITING tokens (see [`Sweep`]), then admits, in each room whose sale is open, the head of
    /// its line (lowest `place` first) into its free slots, within its rate budget.
    ///
    /// Runs only while holding a transaction-scoped advisory lock, so with any number of
    /// replicas exactly one round runs at a time: no room's active limit is exceeded and
    /// no token is admitted twice. A replica that finds the lock taken skips its round. The
    /// join fence makes the admitted tokens exactly the head of each committed line.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn admission_round(
        &self,
        defaults: &AdmissionPolicy,
        now: DateTime<Utc>,
        sweep: Sweep,
    ) -> Result<RoundOutcome, QueueError> {
        // Every statement of a round is built on a partial index (ACTIVE by expiry, WAITING by
        // last seen, WAITING by place) and touches what changed, not the line. Without
        // statistics for the line's present size (a table that grew from nothing in minutes
        // of a rush, or a server without autovacuum) the planner can pick a sequential scan or
        // a hash over every WAITING token instead; at a million waiting that made each round
        // (up to 20 a second) cost a scan of the line. So sequential scans are off here.
        let mut tx = self.pool.begin_with(super::BEGIN_WITHOUT_SEQSCAN).await?;
        let locked = sqlx::query_scalar!(r#"SELECT pg_try_advisory_xact_lock($1) AS "locked!""#, ADMISSION_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(RoundOutcome::default());
        }
        let expired = expire_timed_out(&mut tx, defaults, now, sweep).await?;
        if sweep == Sweep::Abandoned {
            refresh_paces(&mut tx, now).await?;
        }
        let quota = self.quota(&mut tx, defaults, now).await?;
        if quota.concerts.is_empty() {
            tx.commit().await?;
            return Ok(RoundOutcome { ran: true, expired, admitted: 0 });
        }
        // Only now, with someone to admit, wait for joins in flight to commit (see
        // JOIN_FENCE): a round with no free slot (the usual case in a flood) never holds up
        // joins.
        sqlx::query!("SELECT pg_advisory_xact_lock($1)", JOIN_FENCE).execute(&mut *tx).await?;
        let admitted = admit(&mut tx, &quota, now).await?;
        tx.commit().await?;
        Ok(RoundOutcome { ran: true, expired, admitted })
    }

    /// What the round will admit in each room whose sale is open and where someone waits:
    /// each one's policy, rate window and active count (an index probe per room; the active
    /// sets are small). Someone waiting is a scalar probe for the head of the room's line
    /// (ORDER BY place LIMIT 1), which only `tokens_waiting_by_place` answers without a sort,
    /// so it stays one index probe whatever the statistics say. As `EXISTS`, a cached plan
    /// made while the table was small hashed every WAITING token; without the ORDER BY, a
    /// plan made after the purge had emptied the table walked every WAITING token of every
    /// room by `last_seen_at` for each room, past sales' rooms included (1 s a round with
    /// 100,000 waiting and 39 rooms: `scripts/bench-stability.sh`, issue #31).
    async fn quota(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        defaults: &AdmissionPolicy,
        now: DateTime<Utc>,
    ) -> Result<Quota, QueueError> {
        let rooms = sqlx::query!(
            r#"SELECT concert_id, sale_opens_at, max_active, admit_per_sec, active_ttl_secs, window_start,
                      window_admitted, pace_ms, pace_seen_at,
                      (SELECT count(*) FROM tokens t WHERE t.concert_id = r.concert_id AND t.state = 'ACTIVE')
                          AS "active!"
               FROM rooms r
               WHERE (r.sale_opens_at IS NULL OR r.sale_opens_at <= COALESCE($1::timestamptz, statement_timestamp()))
                 AND (SELECT true FROM tokens t WHERE t.concert_id = r.concert_id AND t.state = 'WAITING'
                      ORDER BY t.place LIMIT 1)"#,
            // The sale's opening is judged by the database's clock, like joins (see insert_joins).
            self.clock.instead_of_database_time()
        )
        .fetch_all(&mut **tx)
        .await?;
        let mut quota = Quota::default();
        for row in rooms {
            let room = room(row.concert_id, row.sale_opens_at, row.max_active, row.admit_per_sec, row.active_ttl_secs)?;
            let policy = defaults.with_overrides(&room.overrides);
            let window = RateWindow {
                start: row.window_start,
                admitted: platform::db::unsigned(row.window_admitted, "window_admitted")?,
            };
            let pace = Pace::stored(row.pace_ms, row.pace_seen_at);
            let (window, n) = policy.admissions(platform::db::unsigned(row.active, "active")?, pace, window, now);
            if n > 0 {
                quota.push(room.concert_id, n, &policy, window);
            }
        }
        Ok(quota)
    }
}

/// Which timed-out tokens a round expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// ACTIVE tokens past their TTL only: each frees a slot the round may fill at once.
    Active,
    /// Also WAITING tokens nobody polled for the idle timeout (abandoned places). With the
    /// line at 80,000 each sweep costs the database ~9 ms whatever it finds: 6.7 s of a
    /// flood run when every round swept (785 rounds), 1.2 s once a second
    /// (docs/BENCHMARKS.md). An abandoned place costs only a wasted admission, so the loop
    /// sweeps once a second (see `service::admission`), against an idle timeout of a minute.
    Abandoned,
}

/// Expires ACTIVE tokens past their TTL and, with [`Sweep::Abandoned`], WAITING tokens
/// nobody polled for the idle timeout; how many.
async fn expire_timed_out(
    tx: &mut Transaction<'_, Postgres>,
    defaults: &AdmissionPolicy,
    now: DateTime<Utc>,
    sweep: Sweep,
) -> Result<u64, QueueError> {
    let expired = sqlx::query!(
        "UPDATE tokens SET state = 'EXPIRED', expired_at = $1 WHERE state = 'ACTIVE' AND expires_at <= $1",
        now
    )
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if sweep == Sweep::Active {
        return Ok(expired);
    }
    let abandoned = sqlx::query!(
        "UPDATE tokens SET state = 'EXPIRED', expired_at = $1 WHERE state = 'WAITING' AND last_seen_at < $2",
        now,
        defaults.idle_cutoff(now)
    )
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(expired + abandoned)
}

/// Measures each room's pace ([`Pace`]) from the journeys that ended in the last ten
/// seconds (admission to the token's end, paid or left: the `tokens_ended` index), and keeps
/// the quicker of it and the room's stored pace unless that one is older than
/// [`PACE_MEMORY_SECS`]. Run once a second, with the sweep of abandoned places.
async fn refresh_paces(tx: &mut Transaction<'_, Postgres>, now: DateTime<Utc>) -> Result<(), QueueError> {
    sqlx::query!(
        "WITH recent AS (
             SELECT concert_id, count(*) AS n,
                    GREATEST(0, (extract(epoch FROM percentile_disc(0.5) WITHIN GROUP (ORDER BY expired_at - activated_at))
                                 * 1000)::bigint) AS ms
             FROM tokens
             WHERE state = 'EXPIRED' AND expired_at > $1::timestamptz - interval '10 seconds' AND expired_at <= $1::timestamptz
               AND activated_at IS NOT NULL
             GROUP BY concert_id)
         UPDATE rooms r SET pace_ms = recent.ms, pace_seen_at = $1::timestamptz
         FROM recent
         WHERE r.concert_id = recent.concert_id AND recent.n >= $2
           AND (r.pace_ms IS NULL OR r.pace_seen_at < $3::timestamptz OR recent.ms <= r.pace_ms)",
        now,
        PACE_MIN_JOURNEYS,
        now - chrono::Duration::seconds(PACE_MEMORY_SECS)
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Admits the head of each room's line into its quota and records the rooms' rate
/// windows; how many were admitted. `t.state = 'WAITING'` is checked again on the row being
/// updated, so a token that left meanwhile is not brought back. The round's number is drawn
/// once per statement (an uncorrelated subquery is an InitPlan), so one round admits under
/// one number.
async fn admit(tx: &mut Transaction<'_, Postgres>, quota: &Quota, now: DateTime<Utc>) -> Result<u64, QueueError> {
    let admitted: Vec<Uuid> = sqlx::query_scalar!(
        "WITH quota AS (SELECT * FROM unnest($2::uuid[], $3::bigint[], $4::bigint[]) AS q (concert_id, n, ttl)),
              picked AS (
                  SELECT w.token, q.ttl FROM quota q
                  CROSS JOIN LATERAL (SELECT token FROM tokens
                                      WHERE concert_id = q.concert_id AND state = 'WAITING'
                                      ORDER BY place LIMIT q.n) AS w)
         UPDATE tokens t SET state = 'ACTIVE', activated_at = $1::timestamptz,
                          expires_at = $1::timestamptz + picked.ttl * interval '1 second',
                          admission_round = (SELECT nextval('admission_rounds'))
         FROM picked WHERE t.token = picked.token AND t.state = 'WAITING'
         RETURNING t.concert_id",
        now,
        &quota.concerts,
        &quota.counts,
        &quota.ttls
    )
    .fetch_all(&mut **tx)
    .await?;
    // Rate windows of the rate-limited rooms, with what this round admitted in each.
    let mut windows = Windows::default();
    for (concert, window) in &quota.windows {
        let n = admitted.iter().filter(|c| *c == concert).count() as u64;
        windows.push(*concert, window.start, window.admitted.saturating_add(n));
    }
    if !windows.concerts.is_empty() {
        sqlx::query!(
            "UPDATE rooms r SET window_start = w.start, window_admitted = w.admitted
             FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[]) AS w (concert_id, start, admitted)
             WHERE r.concert_id = w.concert_id",
            &windows.concerts,
            &windows.starts,
            &windows.admitted
        )
        .execute(&mut **tx)
        .await?;
    }
    Ok(admitted.len() as u64)
}

/// What a round will admit, per room, as parallel arrays for `unnest`.
#[derive(Debug, Default)]
struct Quota {
    concerts: Vec<Uuid>,
    counts: Vec<i64>,
    ttls: Vec<i64>,
    /// Rate windows of the rooms that have a rate limit.
    windows: Vec<(Uuid, RateWindow)>,
}

impl Quota {
    fn push(&mut self, concert: Uuid, n: u64, policy: &AdmissionPolicy, window: RateWindow) {
        self.concerts.push(concert);
        self.counts.push(to_i64(n));
        self.ttls.push(policy.active_ttl.num_seconds());
        if policy.admit_per_sec > 0 {
            self.windows.push((concert, window));
        }
    }
}

#[derive(Debug, Default)]
struct Windows {
    concerts: Vec<Uuid>,
    starts: Vec<DateTime<Utc>>,
    admitted: Vec<i64>,
}

impl Windows {
    fn push(&mut self, concert: Uuid, start: DateTime<Utc>, admitted: u64) {
        self.concerts.push(concert);
        self.starts.push(start);
        self.admitted.push(to_i64(admitted));
    }
}
