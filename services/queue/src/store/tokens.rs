//! Tokens: reads by id, expiry, polls, the whole line for snapshots, a room's counts, and
//! a room's export for audits.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{QueueRepo, TOKEN_COLUMNS, token_from_row};
use crate::{
    domain::{Token, TokenHistory},
    error::QueueError,
};

/// Counts behind `GetQueueStats`, for one room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub waiting: u64,
    pub active: u64,
    pub admitted_last_minute: u64,
    pub serving_seq: u64,
}

/// Every room's line as read for a snapshot: per concert, the places of its WAITING
/// tokens (ascending) and its ACTIVE count; and the highest `seq` drawn.
pub type LineRead = (HashMap<Uuid, (Vec<i64>, u64)>, i64);

impl QueueRepo {
    /// One token by id, without its place in line (the cheap read behind ValidateToken).
    ///
    /// # Errors
    /// [`QueueError::TokenNotFound`] for an unknown token.
    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&token.to_string())))]
    pub async fn get(&self, token: Uuid) -> Result<Token, QueueError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token = $1"))
            .bind(token)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(QueueError::TokenNotFound)?;
        token_from_row(&row)
    }

    /// The stored tokens among `tokens` (unknown ones are missing), without places in line:
    /// the read behind ValidateTokens.
    ///
    /// Planned for its array every time ([`platform::db::lone_batch_prepared`]): a plan
    /// cached while `tokens` was small would scan every token of the sale per call.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(tokens = tokens.len()))]
    pub async fn get_many(&self, tokens: &[Uuid]) -> Result<Vec<Token>, QueueError> {
        let rows = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token = ANY($1)"))
            .bind(tokens)
            .persistent(platform::db::lone_batch_prepared())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Expires a token (idempotent) and returns it.
    ///
    /// # Errors
    /// [`QueueError::TokenNotFound`] for an unknown token.
    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&token.to_string())))]
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
        // Planned for its array each time (see `get_many`).
        .persistent(platform::db::lone_batch_prepared())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Every room's line: the `place` of every WAITING token per concert (ascending, an
    /// index-only scan of `tokens_waiting_by_place`), the unexpired ACTIVE tokens per
    /// concert, and the highest `seq` drawn so far.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn line(&self, now: DateTime<Utc>) -> Result<LineRead, QueueError> {
        // One statement, so one snapshot: read separately, a join committing in between
        // was counted in `max(seq)` but missing from the waiting places, and looked gone.
        let rows: Vec<LineRow> = sqlx::query_as(
            "WITH w AS (SELECT concert_id, array_agg(place ORDER BY place) AS places
                        FROM tokens WHERE state = 'WAITING' GROUP BY concert_id),
                  a AS (SELECT concert_id, count(*) AS n
                        FROM tokens WHERE state = 'ACTIVE' AND expires_at > $1 GROUP BY concert_id)
             SELECT m.max_seq, x.concert_id, x.places, x.n
             FROM (SELECT COALESCE(max(seq), 0) AS max_seq FROM tokens) AS m
             LEFT JOIN (SELECT concert_id, w.places, a.n FROM w FULL JOIN a USING (concert_id)) AS x ON true",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let max_seq = rows.first().map_or(0, |r| r.0);
        let mut rooms: HashMap<Uuid, (Vec<i64>, u64)> = HashMap::with_capacity(rows.len());
        for (_, concert, places, active) in rows {
            if let Some(concert) = concert {
                rooms.insert(
                    concert,
                    (places.unwrap_or_default(), platform::db::unsigned(active.unwrap_or(0), "active")?),
                );
            }
        }
        Ok((rooms, max_seq))
    }

    /// Records that the clients of `tokens` were still there at `now` (polls and open
    /// streams since the last flush), so idle expiry spares them. One statement per flush.
    /// Rows seen after `stale_before` are left alone: a client polling every second is
    /// written once per several flushes, not once per flush.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(tokens = tokens.len()))]
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

    /// Counts of one room for operators, at `now` (ACTIVE tokens past their expiry are not
    /// counted). Index scans of that room only.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn counts(&self, concert_id: Uuid, now: DateTime<Utc>) -> Result<QueueCounts, QueueError> {
        let (waiting, active, recent, serving): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM tokens WHERE concert_id = $1 AND state = 'WAITING'),
                    (SELECT count(*) FROM tokens WHERE concert_id = $1 AND state = 'ACTIVE' AND expires_at > $2),
                    (SELECT count(*) FROM tokens
                     WHERE concert_id = $1 AND activated_at > $2 - interval '60 seconds'),
                    (SELECT COALESCE(max(seq), 0) FROM tokens WHERE concert_id = $1 AND activated_at IS NOT NULL)",
        )
        .bind(concert_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueCounts {
            waiting: platform::db::unsigned(waiting, "waiting")?,
            active: platform::db::unsigned(active, "active")?,
            admitted_last_minute: platform::db::unsigned(recent, "admitted_last_minute")?,
            serving_seq: platform::db::unsigned(serving, "serving_seq")?,
        })
    }

    /// Every token of `concert_id`'s room, in line order, with its admission history: the
    /// read behind ExportTokens (an operator's audit, not a hot path).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn export(&self, concert_id: Uuid) -> Result<Vec<TokenHistory>, QueueError> {
        use sqlx::Row;
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS}, activated_at, expired_at, admission_round
             FROM tokens WHERE concert_id = $1 ORDER BY place"
        ))
        .bind(concert_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TokenHistory {
                    token: token_from_row(row)?,
                    activated_at: row.try_get("activated_at")?,
                    expired_at: row.try_get("expired_at")?,
                    admission_round: row.try_get("admission_round")?,
                })
            })
            .collect()
    }
}

/// One row of the line read: `max(seq)`, then a concert with its waiting places and active
/// count (all `None` when nobody is in any line).
type LineRow = (i64, Option<Uuid>, Option<Vec<i64>>, Option<i64>);
