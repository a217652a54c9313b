//! PostgreSQL access for the queue schema.
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    domain::{AdmissionPolicy, RateWindow, Token, TokenState},
    error::QueueError,
};

/// Key of the advisory lock that makes one replica at a time run an admission round.
const ADMISSION_LOCK: i64 = 0x0051_5545_5545; // "QUEUE"

/// Key of the join fence. Every join holds it *shared* from before it draws its `seq`
/// until it commits; an admission round takes it *exclusively*, which waits for the joins
/// in flight. So when a round picks the head of the line, no lower `seq` is still
/// uncommitted: admission order is exactly join order, across any number of replicas.
/// Joins never wait for each other, only (for a few milliseconds) for a round.
const JOIN_FENCE: i64 = 0x0051_4A4F_494E; // "QJOIN"

const TOKEN_COLUMNS: &str = "token, user_id, seq, state, issued_at, expires_at";

/// What one admission round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundOutcome {
    /// False when another replica held the admission lock, so this one did nothing.
    pub ran: bool,
    pub expired: u64,
    pub admitted: u64,
}

/// Counts behind `GetQueueStats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub waiting: u64,
    pub active: u64,
    pub admitted_last_minute: u64,
    pub serving_seq: u64,
}

/// Queue storage.
#[derive(Debug, Clone)]
pub struct QueueRepo {
    pool: PgPool,
}

impl QueueRepo {
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Joins the line, or returns the user's live token when there is one.
    ///
    /// The unique index over live tokens makes concurrent joins of one user (on any replica)
    /// end with exactly one token.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn join(&self, user_id: &str, now: DateTime<Utc>) -> Result<Token, QueueError> {
        // Two tries: the live token found on conflict may expire before we read it.
        for _ in 0..2 {
            // The fence is taken in the FROM clause, so it is held before `seq`'s default
            // (nextval) is evaluated for the new row, and released at commit.
            let inserted = sqlx::query(&format!(
                "INSERT INTO tokens (token, user_id, state, issued_at, last_seen_at)
                 SELECT $1, $2, 'WAITING', $3, $3 FROM (SELECT pg_advisory_xact_lock_shared($4)) AS fence
                 ON CONFLICT (user_id) WHERE state <> 'EXPIRED' DO NOTHING
                 RETURNING {TOKEN_COLUMNS}"
            ))
            .bind(Uuid::new_v4())
            .bind(user_id)
            .bind(now)
            .bind(JOIN_FENCE)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = inserted {
                return token_from_row(&row);
            }
            let live =
                sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 AND state <> 'EXPIRED'"))
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(row) = live {
                return token_from_row(&row);
            }
        }
        Err(QueueError::Unexpected(anyhow::anyhow!("live token of {user_id} kept changing")))
    }

    /// One token by id, without its place in line (the cheap read behind ValidateToken).
    ///
    /// # Errors
    /// [`QueueError::TokenNotFound`] for an unknown token.
    #[tracing::instrument(skip_all, fields(%token))]
    pub async fn get(&self, token: Uuid) -> Result<Token, QueueError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token = $1"))
            .bind(token)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(QueueError::TokenNotFound)?;
        token_from_row(&row)
    }

    /// Expires a token (idempotent) and returns it.
    ///
    /// # Errors
    /// [`QueueError::TokenNotFound`] for an unknown token.
    #[tracing::instrument(skip_all, fields(%token))]
    pub async fn expire(&self, token: Uuid, now: DateTime<Utc>) -> Result<Token, QueueError> {
        // One round trip: the token as expired now, or as it was if already expired.
        let row = sqlx::query(&format!(
            "WITH expired AS (
                 UPDATE tokens SET state = 'EXPIRED', expired_at = $2 WHERE token = $1 AND state <> 'EXPIRED'
                 RETURNING {TOKEN_COLUMNS}
             )
             SELECT {TOKEN_COLUMNS} FROM expired
             UNION ALL
             SELECT {TOKEN_COLUMNS} FROM tokens WHERE token = $1 AND NOT EXISTS (SELECT 1 FROM expired)"
        ))
        .bind(token)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(QueueError::TokenNotFound)?;
        token_from_row(&row)
    }

    /// Expires many tokens in one statement (idempotent); returns how many changed.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(tokens = tokens.len()))]
    pub async fn expire_many(&self, tokens: &[Uuid], now: DateTime<Utc>) -> Result<u64, QueueError> {
        let done = sqlx::query(
            "UPDATE tokens SET state = 'EXPIRED', expired_at = $2 WHERE token = ANY($1) AND state <> 'EXPIRED'",
        )
        .bind(tokens)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The whole line in one round trip: `seq` of every WAITING token (ascending, an
    /// index-only scan of `tokens_waiting_by_seq`), the number of unexpired ACTIVE tokens,
    /// and the highest `seq` drawn so far.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn line(&self, now: DateTime<Utc>) -> Result<(Vec<i64>, u64, i64), QueueError> {
        let (waiting, active, max_seq): (Vec<i64>, i64, i64) = sqlx::query_as(
            "SELECT COALESCE((SELECT array_agg(seq ORDER BY seq) FROM tokens WHERE state = 'WAITING'), '{}'),
                    (SELECT count(*) FROM tokens WHERE state = 'ACTIVE' AND expires_at > $1),
                    COALESCE((SELECT max(seq) FROM tokens), 0)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok((waiting, to_u64(active), max_seq))
    }

    /// Records that the clients of `tokens` were still there at `now` (polls and open
    /// streams since the last flush), so idle expiry spares them. One statement per flush.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(tokens = tokens.len()))]
    /// Rows seen after `stale_before` are left alone: a client polling every second is
    /// written once per several flushes, not once per flush.
    pub async fn touch(
        &self,
        tokens: &[Uuid],
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<u64, QueueError> {
        let done = sqlx::query(
            "UPDATE tokens SET last_seen_at = $2
             WHERE token = ANY($1) AND state = 'WAITING' AND last_seen_at < $3",
        )
        .bind(tokens)
        .bind(now)
        .bind(stale_before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Counts for operators, at `now` (ACTIVE tokens past their expiry are not counted).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn counts(&self, now: DateTime<Utc>) -> Result<QueueCounts, QueueError> {
        let (waiting, active, recent, serving): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'WAITING'),
                    count(*) FILTER (WHERE state = 'ACTIVE' AND expires_at > $1),
                    count(*) FILTER (WHERE activated_at > $1 - interval '60 seconds'),
                    COALESCE(max(seq) FILTER (WHERE activated_at IS NOT NULL), 0)
             FROM tokens",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueCounts {
            waiting: to_u64(waiting),
            active: to_u64(active),
            admitted_last_minute: to_u64(recent),
            serving_seq: to_u64(serving),
        })
    }

    /// One admission round: expires ACTIVE tokens past their TTL, then admits the oldest
    /// WAITING tokens into the free slots, in `seq` order.
    ///
    /// Runs only while holding a transaction-scoped advisory lock, so with any number of
    /// replicas exactly one round runs at a time: the active limit is never exceeded and no
    /// token is admitted twice. A replica that finds the lock taken skips its round. The
    /// join fence makes the admitted tokens exactly the head of the committed line.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn admission_round(
        &self,
        policy: &AdmissionPolicy,
        now: DateTime<Utc>,
    ) -> Result<RoundOutcome, QueueError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(ADMISSION_LOCK).fetch_one(&mut *tx).await?;
        if !locked {
            return Ok(RoundOutcome::default());
        }
        let expired = sqlx::query(
            "UPDATE tokens SET state = 'EXPIRED', expired_at = $1 WHERE state = 'ACTIVE' AND expires_at <= $1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Abandoned places: WAITING tokens nobody polled for the idle timeout.
        let abandoned = sqlx::query(
            "UPDATE tokens SET state = 'EXPIRED', expired_at = $1 WHERE state = 'WAITING' AND last_seen_at < $2",
        )
        .bind(now)
        .bind(policy.idle_cutoff(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let expired = expired + abandoned;
        // Counting the active tokens costs a scan of them; when nobody waits there is
        // nobody to admit, so skip it (the usual case outside a sale's opening minutes).
        let anyone_waiting: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tokens WHERE state = 'WAITING')")
            .fetch_one(&mut *tx)
            .await?;
        if !anyone_waiting {
            tx.commit().await?;
            return Ok(RoundOutcome { ran: true, expired, admitted: 0 });
        }
        let active: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tokens WHERE state = 'ACTIVE'").fetch_one(&mut *tx).await?;
        let (window_start, window_admitted): (DateTime<Utc>, i64) =
            sqlx::query_as("SELECT window_start, admitted FROM admission_window").fetch_one(&mut *tx).await?;
        let (window, budget) =
            policy.rate_budget(RateWindow { start: window_start, admitted: to_u64(window_admitted) }, now);
        let free = policy.free_slots(to_u64(active)).min(budget);
        let admitted = if free == 0 {
            0
        } else {
            // Only now, with someone to admit, wait for joins in flight to commit (see
            // JOIN_FENCE): a round with no free slot (the usual case in a flood) never
            // holds up joins.
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(JOIN_FENCE).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE tokens SET state = 'ACTIVE', activated_at = $1, expires_at = $2
                 WHERE token IN (SELECT token FROM tokens WHERE state = 'WAITING' ORDER BY seq LIMIT $3)",
            )
            .bind(now)
            .bind(policy.expiry(now))
            .bind(i64::try_from(free).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?
            .rows_affected()
        };
        if policy.admit_per_sec > 0 {
            sqlx::query("UPDATE admission_window SET window_start = $1, admitted = $2")
                .bind(window.start)
                .bind(i64::try_from(window.admitted.saturating_add(admitted)).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(RoundOutcome { ran: true, expired, admitted })
    }
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn token_from_row(row: &PgRow) -> Result<Token, QueueError> {
    let state: String = row.try_get("state")?;
    Ok(Token {
        token: row.try_get("token")?,
        user_id: row.try_get("user_id")?,
        seq: row.try_get("seq")?,
        state: TokenState::parse(&state)
            .ok_or_else(|| QueueError::Unexpected(anyhow::anyhow!("unknown token state {state:?}")))?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}
