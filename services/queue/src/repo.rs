//! PostgreSQL access for the queue schema: tokens, rooms and admission rounds.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    domain::{AdmissionPolicy, PolicyOverrides, RateWindow, Room, Token, TokenState},
    error::QueueError,
};

/// Key of the advisory lock that makes one replica at a time run an admission round (for
/// every room at once).
const ADMISSION_LOCK: i64 = 0x0051_5545_5545; // "QUEUE"

/// Key of the join fence. Every join holds it *shared* from before it draws its `seq`
/// until it commits; an admission round takes it *exclusively*, which waits for the joins
/// in flight. So when a round picks the head of a line, no lower `seq` is still
/// uncommitted: admission order is exactly join order, across any number of replicas.
/// Joins never wait for each other, only (for a few milliseconds) for a round.
const JOIN_FENCE: i64 = 0x0051_4A4F_494E; // "QJOIN"

const TOKEN_COLUMNS: &str = "token, user_id, concert_id, seq, place, state, issued_at, expires_at";
const ROOM_COLUMNS: &str = "concert_id, sale_opens_at, max_active, admit_per_sec, active_ttl_secs";

/// What one admission round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundOutcome {
    /// False when another replica held the admission lock, so this one did nothing.
    pub ran: bool,
    pub expired: u64,
    pub admitted: u64,
}

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

/// Queue storage.
#[derive(Debug, Clone)]
pub struct QueueRepo {
    pool: PgPool,
    /// Only for [`platform::clock::Clock::instead_of_database_time`]: the sale's opening is
    /// judged by the database's clock, or a test clock.
    clock: platform::clock::SharedClock,
}

impl QueueRepo {
    #[must_use]
    pub fn new(pool: PgPool, clock: platform::clock::SharedClock) -> Self {
        Self { pool, clock }
    }

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
                    .ok_or_else(|| QueueError::Unexpected(anyhow::anyhow!("live token of {} kept changing", j.user_id)))
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
        let rows = sqlx::query(&format!(
            "INSERT INTO tokens (token, user_id, concert_id, pre_queue_key, state, issued_at, last_seen_at)
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
             RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(&ids)
        .bind(&users)
        .bind(&concerts)
        .bind(&keys)
        .bind(&nows)
        .bind(JOIN_FENCE)
        .bind(self.clock.instead_of_database_time())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// The live (WAITING or ACTIVE) tokens of the joins' users for their concerts.
    async fn live_tokens(&self, joins: &[&Join]) -> Result<Vec<Token>, QueueError> {
        let users: Vec<&str> = joins.iter().map(|j| j.user_id.as_str()).collect();
        let concerts: Vec<Uuid> = joins.iter().map(|j| j.concert_id).collect();
        // Planned for its batch each time (see `get_many`).
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens
             WHERE (user_id, concert_id) IN (SELECT * FROM UNNEST($1::text[], $2::uuid[]))
               AND state <> 'EXPIRED'"
        ))
        .bind(&users)
        .bind(&concerts)
        .persistent(false)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

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
    /// Sent unprepared (`persistent(false)`), so it is planned for its array every time: a
    /// plan cached while `tokens` was small would scan every token of the sale per call.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(tokens = tokens.len()))]
    pub async fn get_many(&self, tokens: &[Uuid]) -> Result<Vec<Token>, QueueError> {
        let rows = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token = ANY($1)"))
            .bind(tokens)
            .persistent(false)
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
        .persistent(false)
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
                rooms.insert(concert, (places.unwrap_or_default(), to_u64(active.unwrap_or(0))));
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
            waiting: to_u64(waiting),
            active: to_u64(active),
            admitted_last_minute: to_u64(recent),
            serving_seq: to_u64(serving),
        })
    }

    /// A concert's waiting room, if it has one yet.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn room(&self, concert_id: Uuid) -> Result<Option<Room>, QueueError> {
        let row = sqlx::query(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE concert_id = $1"))
            .bind(concert_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(room_from_row).transpose()
    }

    /// Creates a concert's waiting room (idempotent: a room created meanwhile by another
    /// replica is returned as it is).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn create_room(
        &self,
        concert_id: Uuid,
        sale_opens_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Room, QueueError> {
        sqlx::query(
            "INSERT INTO rooms (concert_id, sale_opens_at, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (concert_id) DO NOTHING",
        )
        .bind(concert_id)
        .bind(sale_opens_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.room(concert_id)
            .await?
            .ok_or_else(|| QueueError::Unexpected(anyhow::anyhow!("room {concert_id} vanished after insert")))
    }

    /// Replaces a room's policy overrides; `None` when the room does not exist.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn set_policy(&self, concert_id: Uuid, o: &PolicyOverrides) -> Result<Option<Room>, QueueError> {
        let row = sqlx::query(&format!(
            "UPDATE rooms SET max_active = $2, admit_per_sec = $3, active_ttl_secs = $4
             WHERE concert_id = $1 RETURNING {ROOM_COLUMNS}"
        ))
        .bind(concert_id)
        .bind(o.max_active.map(to_i64))
        .bind(o.admit_per_sec.map(to_i64))
        .bind(o.active_ttl_secs.map(to_i64))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(room_from_row).transpose()
    }

    /// One admission round for every room: expires ACTIVE tokens past their TTL and
    /// abandoned WAITING tokens, then admits, in each room whose sale is open, the head of
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
        .bind(defaults.idle_cutoff(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let expired = expired + abandoned;
        // Rooms with someone waiting and the sale open: each one's policy, rate window and
        // active count (an index probe per room; the active sets are small).
        let rooms = sqlx::query(&format!(
            "SELECT {ROOM_COLUMNS}, window_start, window_admitted,
                    (SELECT count(*) FROM tokens t WHERE t.concert_id = r.concert_id AND t.state = 'ACTIVE') AS active
             FROM rooms r
             WHERE (r.sale_opens_at IS NULL OR r.sale_opens_at <= COALESCE($1::timestamptz, statement_timestamp()))
               AND EXISTS (SELECT 1 FROM tokens t WHERE t.concert_id = r.concert_id AND t.state = 'WAITING')"
        ))
        // The sale's opening is judged by the database's clock, like joins (see insert_joins).
        .bind(self.clock.instead_of_database_time())
        .fetch_all(&mut *tx)
        .await?;
        let mut quota = Quota::default();
        for row in &rooms {
            let room = room_from_row(row)?;
            let policy = defaults.with_overrides(&room.overrides);
            let window =
                RateWindow { start: row.try_get("window_start")?, admitted: to_u64(row.try_get("window_admitted")?) };
            let (window, n) = policy.admissions(to_u64(row.try_get("active")?), window, now);
            if n > 0 {
                quota.push(room.concert_id, n, &policy, window);
            }
        }
        if quota.concerts.is_empty() {
            tx.commit().await?;
            return Ok(RoundOutcome { ran: true, expired, admitted: 0 });
        }
        // Only now, with someone to admit, wait for joins in flight to commit (see
        // JOIN_FENCE): a round with no free slot (the usual case in a flood) never holds up
        // joins.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(JOIN_FENCE).execute(&mut *tx).await?;
        // `t.state = 'WAITING'` is checked again on the row being updated, so a token that
        // left meanwhile is not brought back.
        let admitted: Vec<Uuid> = sqlx::query_scalar(
            "WITH quota AS (SELECT * FROM unnest($2::uuid[], $3::bigint[], $4::bigint[]) AS q (concert_id, n, ttl)),
                  picked AS (
                      SELECT w.token, q.ttl FROM quota q
                      CROSS JOIN LATERAL (SELECT token FROM tokens
                                          WHERE concert_id = q.concert_id AND state = 'WAITING'
                                          ORDER BY place LIMIT q.n) AS w)
             UPDATE tokens t SET state = 'ACTIVE', activated_at = $1, expires_at = $1 + picked.ttl * interval '1 second'
             FROM picked WHERE t.token = picked.token AND t.state = 'WAITING'
             RETURNING t.concert_id",
        )
        .bind(now)
        .bind(&quota.concerts)
        .bind(&quota.counts)
        .bind(&quota.ttls)
        .fetch_all(&mut *tx)
        .await?;
        // Rate windows of the rate-limited rooms, with what this round admitted in each.
        let mut windows = Windows::default();
        for (concert, window) in &quota.windows {
            let n = admitted.iter().filter(|c| *c == concert).count() as u64;
            windows.push(*concert, window.start, window.admitted.saturating_add(n));
        }
        if !windows.concerts.is_empty() {
            sqlx::query(
                "UPDATE rooms r SET window_start = w.start, window_admitted = w.admitted
                 FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[]) AS w (concert_id, start, admitted)
                 WHERE r.concert_id = w.concert_id",
            )
            .bind(&windows.concerts)
            .bind(&windows.starts)
            .bind(&windows.admitted)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RoundOutcome { ran: true, expired, admitted: admitted.len() as u64 })
    }
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

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn room_from_row(row: &PgRow) -> Result<Room, QueueError> {
    let opt = |name: &str| -> Result<Option<u64>, QueueError> { Ok(row.try_get::<Option<i64>, _>(name)?.map(to_u64)) };
    Ok(Room {
        concert_id: row.try_get("concert_id")?,
        sale_opens_at: row.try_get("sale_opens_at")?,
        overrides: PolicyOverrides {
            max_active: opt("max_active")?,
            admit_per_sec: opt("admit_per_sec")?,
            active_ttl_secs: opt("active_ttl_secs")?,
        },
    })
}

fn token_from_row(row: &PgRow) -> Result<Token, QueueError> {
    let state: String = row.try_get("state")?;
    Ok(Token {
        token: row.try_get("token")?,
        user_id: row.try_get("user_id")?,
        concert_id: row.try_get("concert_id")?,
        seq: row.try_get("seq")?,
        place: row.try_get("place")?,
        state: TokenState::parse(&state)
            .ok_or_else(|| QueueError::Unexpected(anyhow::anyhow!("unknown token state {state:?}")))?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
    })
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

/// One row of the line read: `max(seq)`, then a concert with its waiting places and active
/// count (all `None` when nobody is in any line).
type LineRow = (i64, Option<Uuid>, Option<Vec<i64>>, Option<i64>);
