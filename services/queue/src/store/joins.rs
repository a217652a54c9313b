//! Joining lines: one statement and one commit for a batch of joins.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{JOIN_FENCE, QueueRepo, token_from_row};
use crate::{
    domain::{Token, TokenState},
    error::QueueError,
};

/// One request to join a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub user_id: String,
    pub concert_id: Uuid,
    /// A random place key (see `domain::pre_queue_key`), kept only when the join is made
    /// before the concert's sale opens by the database's clock.
    pub pre_queue_key: i64,
    pub now: DateTime<Utc>,
}

impl QueueRepo {
    /// Joins lines: for each request, a new WAITING token in its concert's line, or the
    /// user's live token for that concert when there is one. One statement and one commit
    /// for the whole batch; `seq`s are drawn in the order of `joins`. Returns one token
    /// per request, in order.
    ///
    /// The unique index over live tokens makes concurrent joins of one user (in one batch,
    /// on any replica) end with exactly one token per concert. The join fence is taken in
    /// the FROM clause, so it is held before any `seq` default (nextval) is evaluated, and
    /// released at commit.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(joins = joins.len()))]
    pub async fn join_many(&self, joins: &[Join]) -> Result<Vec<Token>, QueueError> {
        let mut found: HashMap<(&str, Uuid), Token> = HashMap::with_capacity(joins.len());
        let mut pending: Vec<&Join> = joins.iter().collect();
        // Up to three tries: a live token that made an insert do nothing may expire
        // before it is read; then that join is inserted again.
        for _ in 0..3 {
            let inserted = self.insert_joins(&pending).await?;
            if settle(&mut found, &mut pending, inserted) {
                break;
            }
            // The others already had a live token (or repeat a join of this batch).
            let live = self.live_tokens(&pending).await?;
            if settle(&mut found, &mut pending, live) {
                break;
            }
        }
        joins
            .iter()
            .map(|j| {
                found
                    .get(&(j.user_id.as_str(), j.concert_id))
                    .cloned()
                    .ok_or_else(|| QueueError::from(anyhow::anyhow!("live token of {} kept changing", j.user_id)))
            })
            .collect()
    }

    /// The INSERT of [`QueueRepo::join_many`]: the tokens it created (joins whose user
    /// already has a live token for the concert insert nothing).
    async fn insert_joins(&self, joins: &[&Join]) -> Result<Vec<Token>, QueueError> {
        let ids: Vec<Uuid> = joins.iter().map(|_| Uuid::new_v4()).collect();
        let users: Vec<&str> = joins.iter().map(|j| j.user_id.as_str()).collect();
        let concerts: Vec<Uuid> = joins.iter().map(|j| j.concert_id).collect();
        let keys: Vec<i64> = joins.iter().map(|j| j.pre_queue_key).collect();
        let nows: Vec<DateTime<Utc>> = joins.iter().map(|j| j.now).collect();
        // Pre-queue or line is decided here, by the database's clock ($7 only for test
        // clocks): every replica decides the same, whatever its own clock says.
        let tokens = sqlx::query_as!(
            Token,
            r#"INSERT INTO tokens (token, user_id, concert_id, pre_queue_key, state, issued_at, last_seen_at)
             SELECT u.token, u.user_id, u.concert_id,
                    CASE WHEN r.sale_opens_at > COALESCE($7::timestamptz, statement_timestamp())
                         THEN u.pre_queue_key END,
                    'WAITING', u.now, u.now
             FROM (SELECT pg_advisory_xact_lock_shared($6)) AS fence,
                  UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::bigint[], $5::timestamptz[])
                  WITH ORDINALITY AS u (token, user_id, concert_id, pre_queue_key, now, n)
                  LEFT JOIN rooms r ON r.concert_id = u.concert_id
             ORDER BY u.n
             ON CONFLICT (user_id, concert_id) WHERE state <> 'EXPIRED' DO NOTHING
             RETURNING token, user_id, concert_id, seq, place AS "place!", state AS "state: TokenState", issued_at, expires_at"#,
            &ids,
            &users as &[&str],
            &concerts,
            &keys,
            &nows,
            JOIN_FENCE,
            self.clock.instead_of_database_time()
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(tokens)
    }

    /// The live (WAITING or ACTIVE) tokens of the joins' users for their concerts.
    async fn live_tokens(&self, joins: &[&Join]) -> Result<Vec<Token>, QueueError> {
        let users: Vec<&str> = joins.iter().map(|j| j.user_id.as_str()).collect();
        let concerts: Vec<Uuid> = joins.iter().map(|j| j.concert_id).collect();
        // Planned for its batch each time (see `get_many`).
        let rows = sqlx::query(
            "SELECT token, user_id, concert_id, seq, place, state, issued_at, expires_at FROM tokens
             WHERE (user_id, concert_id) IN (SELECT * FROM UNNEST($1::text[], $2::uuid[]))
               AND state <> 'EXPIRED'",
        )
        .bind(&users)
        .bind(&concerts)
        .persistent(platform::db::lone_batch_prepared())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }
}

/// Files each token under the pending join it answers and drops the answered joins;
/// true when none is left.
fn settle<'a>(found: &mut HashMap<(&'a str, Uuid), Token>, pending: &mut Vec<&'a Join>, tokens: Vec<Token>) -> bool {
    for token in tokens {
        if let Some(j) = pending.iter().find(|j| j.user_id == token.user_id && j.concert_id == token.concert_id) {
            found.insert((j.user_id.as_str(), j.concert_id), token);
        }
    }
    pending.retain(|j| !found.contains_key(&(j.user_id.as_str(), j.concert_id)));
    pending.is_empty()
}
