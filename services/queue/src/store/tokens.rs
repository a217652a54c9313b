//! Tokens: reads by id, expiry, polls, the line's changes for snapshots, a room's counts, and
//! a room's export for audits.
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{QueueRepo, token_from_row};
use crate::{
    domain::{LineDelta, RoomDelta, Token, TokenHistory, TokenState},
    error::QueueError,
};

/// Counts behind `GetQueueStats`, for one room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub waiting: u64,
    pub active: u64,
    pub admitted_last_minute: u64,
    pub serving_seq: u64,
    /// The room's pace, when one was measured (see [`crate::domain::Pace`]).
    pub pace: Option<crate::domain::Pace>,
    /// The database's clock at the count (what judges whether the sale has opened).
    pub read_at: DateTime<Utc>,
}

/// Where a replica's last read of the line stood: the PostgreSQL snapshot it was taken in
/// (`pg_snapshot` as text). The next read returns what committed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineWatermark(String);

/// The touch of [`QueueRepo::touch`]: `$1` the tokens, `$2` now, `$3` rows seen after it are
/// left alone.
const TOUCH: &str = "UPDATE tokens SET last_seen_at = $2 WHERE token = ANY($1) AND last_seen_at < $3";

impl QueueRepo {
    /// One token by id, without its place in line (the cheap read behind ValidateToken).
    ///
    /// # Errors
    /// [`QueueError::TokenNotFound`] for an unknown token.
    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&token.to_string())))]
    pub async fn get(&self, token: Uuid) -> Result<Token, QueueError> {
        sqlx::query_as!(Token, r#"SELECT token, user_id, concert_id, seq, place AS "place!", state AS "state: TokenState", issued_at, expires_at FROM tokens WHERE token = $1"#, token)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(QueueError::TokenNotFound)
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
        let rows = sqlx::query("SELECT token, user_id, concert_id, seq, place, state, issued_at, expires_at FROM tokens WHERE token = ANY($1)")
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
        sqlx::query_as!(
            Token,
            r#"WITH expired AS (
                   UPDATE tokens SET state = 'EXPIRED', expired_at = $2 WHERE token = $1 AND state <> 'EXPIRED'
                   RETURNING token, user_id, concert_id, seq, place, state, issued_at, expires_at
               )
               SELECT token AS "token!", user_id AS "user_id!", concert_id AS "concert_id!", seq AS "seq!",
                      place AS "place!", state AS "state!: TokenState", issued_at AS "issued_at!", expires_at
               FROM expired
               UNION ALL
               SELECT token, user_id, concert_id, seq, place, state, issued_at, expires_at FROM tokens WHERE token = $1 AND NOT EXISTS (SELECT 1 FROM expired)"#,
            token,
            now
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(QueueError::TokenNotFound)
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

    /// What changed in every room's line since `since` (the watermark of a previous read),
    /// or, without one, every room's whole line (each WAITING token as joined); with the
    /// unexpired ACTIVE count per room at `now`, and the watermark of this read.
    ///
    /// One REPEATABLE READ transaction, so the rows, the counts and the watermark are one
    /// snapshot. The changes are the tokens whose `changed_in` transaction (see migration
    /// 0005) committed after `since`'s snapshot was taken and before this one: an index range
    /// scan from `since`'s xmin, which grows with what changed, not with the line. A token
    /// changed twice in between is read once, in its latest state.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(full = since.is_none()))]
    pub async fn line_changes(
        &self,
        since: Option<&LineWatermark>,
        now: DateTime<Utc>,
    ) -> Result<(LineDelta, LineWatermark), QueueError> {
        // The change read must stay an index range scan on `changed_in`: the planner, without
        // statistics on how far back `since` is, would take a third of the table and scan it
        // all (the cost this read exists to avoid), so sequential scans are off.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL enable_seqscan = off")
            .await?;
        // The snapshot, and the database's clock (a test clock instead, as for joins): the
        // time that judges whether a sale has opened.
        let read = sqlx::query!(
            r#"SELECT pg_current_snapshot()::text AS "snapshot!",
                      COALESCE($1::timestamptz, statement_timestamp()) AS "read_at!""#,
            self.clock.instead_of_database_time()
        )
        .fetch_one(&mut *tx)
        .await?;
        let watermark = LineWatermark(read.snapshot);
        let mut delta = LineDelta { read_at: Some(read.read_at), ..LineDelta::default() };
        match since {
            None => {
                let rooms = sqlx::query!(
                    r#"SELECT concert_id, array_agg(place) AS "places!" FROM tokens WHERE state = 'WAITING'
                       GROUP BY concert_id"#
                )
                .fetch_all(&mut *tx)
                .await?;
                for room in rooms {
                    delta.rooms.insert(room.concert_id, RoomDelta { joined: room.places, left: Vec::new() });
                }
                delta.max_seq = sqlx::query_scalar!(r#"SELECT COALESCE(max(seq), 0) AS "max_seq!" FROM tokens"#)
                    .fetch_one(&mut *tx)
                    .await?;
            }
            Some(LineWatermark(since)) => {
                let rows = sqlx::query!(
                    r#"SELECT concert_id, place AS "place!", seq, state = 'WAITING' AS "waiting!" FROM tokens
                       WHERE changed_in >= pg_snapshot_xmin($1::text::pg_snapshot)
                         AND NOT pg_visible_in_snapshot(changed_in, $1::text::pg_snapshot)"#,
                    since
                )
                .fetch_all(&mut *tx)
                .await?;
                for row in rows {
                    let (concert, place, seq, waiting) = (row.concert_id, row.place, row.seq, row.waiting);
                    let room = delta.rooms.entry(concert).or_default();
                    if waiting {
                        room.joined.push(place)
                    } else {
                        room.left.push(place)
                    }
                    delta.max_seq = delta.max_seq.max(seq);
                }
            }
        }
        let active = sqlx::query!(
            r#"SELECT concert_id, count(*) AS "active!" FROM tokens WHERE state = 'ACTIVE' AND expires_at > $1
               GROUP BY concert_id"#,
            now
        )
        .fetch_all(&mut *tx)
        .await?;
        for room in active {
            delta.active.insert(room.concert_id, platform::db::unsigned(room.active, "active")?);
        }
        tx.commit().await?;
        Ok((delta, watermark))
    }

    /// Records that the clients of `tokens` were still there at `now` (polls and open
    /// streams since the last flush), so idle expiry spares them. One statement per flush.
    /// Rows seen after `stale_before` are left alone: a client polling every second is
    /// written once per several flushes, not once per flush.
    ///
    /// Found only by primary key. The statement names no state: `state = 'WAITING'` would
    /// match the predicate of the WAITING-by-last-seen index, and without statistics (a rush
    /// grows the table faster than autoanalyze follows) the planner may then scan that whole
    /// index for a few thousand tokens (EXPLAIN ANALYZE in docs/BENCHMARKS.md). Only tokens marked in
    /// the last flush interval are here, all WAITING when marked; one admitted since keeps
    /// a harmless `last_seen_at` (idle expiry reads it of WAITING tokens only).
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
        let mut tx = self.pool.begin_with(super::BEGIN_WITHOUT_SEQSCAN).await?;
        let done = sqlx::query(TOUCH)
            .bind(tokens)
            .bind(now)
            .bind(stale_before)
            // Planned for its array each time (see `get_many`).
            .persistent(platform::db::lone_batch_prepared())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Counts of one room for operators, at `now` (ACTIVE tokens past their expiry are not
    /// counted). Index scans of that room only.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn counts(&self, concert_id: Uuid, now: DateTime<Utc>) -> Result<QueueCounts, QueueError> {
        let counts = sqlx::query!(
            r#"SELECT (SELECT count(*) FROM tokens WHERE concert_id = $1 AND state = 'WAITING') AS "waiting!",
                      (SELECT count(*) FROM tokens WHERE concert_id = $1 AND state = 'ACTIVE' AND expires_at > $2)
                          AS "active!",
                      (SELECT count(*) FROM tokens
                       WHERE concert_id = $1 AND activated_at > $2 - interval '60 seconds') AS "recent!",
                      (SELECT COALESCE(max(seq), 0) FROM tokens WHERE concert_id = $1 AND activated_at IS NOT NULL)
                          AS "serving!",
                      (SELECT pace_ms FROM rooms WHERE concert_id = $1) AS pace_ms,
                      (SELECT pace_seen_at FROM rooms WHERE concert_id = $1) AS pace_seen_at,
                      COALESCE($3::timestamptz, statement_timestamp()) AS "read_at!""#,
            concert_id,
            now,
            self.clock.instead_of_database_time()
        )
        .fetch_one(&self.pool)
        .await?;
        let (waiting, active, recent, serving) = (counts.waiting, counts.active, counts.recent, counts.serving);
        Ok(QueueCounts {
            waiting: platform::db::unsigned(waiting, "waiting")?,
            active: platform::db::unsigned(active, "active")?,
            admitted_last_minute: platform::db::unsigned(recent, "admitted_last_minute")?,
            serving_seq: platform::db::unsigned(serving, "serving_seq")?,
            pace: crate::domain::Pace::stored(counts.pace_ms, counts.pace_seen_at),
            read_at: counts.read_at,
        })
    }

    /// Every token of `concert_id`'s room, in line order, with its admission history: the
    /// read behind ExportTokens (an operator's audit, not a hot path).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn export(&self, concert_id: Uuid) -> Result<Vec<TokenHistory>, QueueError> {
        let rows = sqlx::query!(
            r#"SELECT token, user_id, concert_id, seq, place AS "place!", state AS "state: TokenState", issued_at, expires_at, activated_at, expired_at, admission_round
               FROM tokens WHERE concert_id = $1 ORDER BY place"#,
            concert_id
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| TokenHistory {
                token: Token {
                    token: r.token,
                    user_id: r.user_id,
                    concert_id: r.concert_id,
                    seq: r.seq,
                    place: r.place,
                    state: r.state,
                    issued_at: r.issued_at,
                    expires_at: r.expires_at,
                },
                activated_at: r.activated_at,
                expired_at: r.expired_at,
                admission_round: r.admission_round,
            })
            .collect())
    }
}

impl platform::retention::Purge for QueueRepo {
    type Error = QueueError;

    /// Deletes at most `limit` tokens that ended (EXPIRED) before `cutoff`, oldest first;
    /// how many. Rows another replica is deleting are skipped, not waited for.
    ///
    /// # Errors
    /// When the database cannot be reached.
    async fn purge_ended(&self, cutoff: DateTime<Utc>, limit: i64) -> Result<u64, QueueError> {
        let purged = sqlx::query!(
            "DELETE FROM tokens WHERE token IN (
                 SELECT token FROM tokens WHERE state = 'EXPIRED' AND expired_at < $1
                 ORDER BY expired_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            cutoff,
            limit
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::BTreeSet;

    use rand::{Rng, SeedableRng, rngs::StdRng};
    use sqlx::PgPool;

    use super::*;
    use crate::{
        domain::{AdmissionPolicy, LineSnapshot},
        store::{Join, Sweep},
    };

    fn repo(pool: PgPool) -> QueueRepo {
        QueueRepo::new(pool, platform::clock::system())
    }

    async fn join(repo: &QueueRepo, user: &str, concert: Uuid) -> Token {
        let j = Join { user_id: user.into(), concert_id: concert, pre_queue_key: -1, now: Utc::now() };
        repo.join_many(&[j]).await.unwrap().remove(0)
    }

    fn places(s: &LineSnapshot, concert: Uuid) -> Vec<i64> {
        s.room(concert).waiting.iter().collect()
    }

    /// A join that drew its seq first but commits last is seen by the read after its commit:
    /// the watermark is the snapshot, not the highest seq seen.
    #[sqlx::test(migrations = "../../migrations/queue")]
    async fn a_join_committing_after_a_later_one_is_not_missed(pool: PgPool) {
        let repo = repo(pool.clone());
        let concert = Uuid::new_v4();
        let first = join(&repo, "first", concert).await;
        let (delta, w0) = repo.line_changes(None, Utc::now()).await.unwrap();
        assert_eq!(delta.rooms[&concert].joined, vec![first.place]);

        // A slow join draws its seq, then a later join commits before it does.
        let mut slow = pool.begin().await.unwrap();
        let slow_seq: i64 = sqlx::query_scalar(
            "INSERT INTO tokens (token, user_id, concert_id, state, issued_at, last_seen_at)
             VALUES ($1, 'slow', $2, 'WAITING', now(), now()) RETURNING seq",
        )
        .bind(Uuid::new_v4())
        .bind(concert)
        .fetch_one(&mut *slow)
        .await
        .unwrap();
        let later = join(&repo, "later", concert).await;
        assert!(later.seq > slow_seq);
        let (d1, w1) = repo.line_changes(Some(&w0), Utc::now()).await.unwrap();
        assert_eq!(d1.rooms[&concert], RoomDelta { joined: vec![later.place], left: vec![] });
        slow.commit().await.unwrap();
        let (d2, w2) = repo.line_changes(Some(&w1), Utc::now()).await.unwrap();
        assert_eq!(d2.rooms[&concert], RoomDelta { joined: vec![slow_seq], left: vec![] });

        // Being seen (a touch) is no change of place; leaving is.
        repo.touch(
            &[first.token],
            Utc::now() + chrono::Duration::seconds(5),
            Utc::now() + chrono::Duration::seconds(10),
        )
        .await
        .unwrap();
        let (d3, w3) = repo.line_changes(Some(&w2), Utc::now()).await.unwrap();
        assert!(d3.rooms.is_empty(), "{d3:?}");
        repo.expire(first.token, Utc::now()).await.unwrap();
        let (d4, _) = repo.line_changes(Some(&w3), Utc::now()).await.unwrap();
        assert_eq!(d4.rooms[&concert], RoomDelta { joined: vec![], left: vec![first.place] });
    }

    /// Whatever mix of joins, leaves, expiries and admission rounds runs between reads, on
    /// several connections at once, the line kept from deltas equals the line read whole.
    #[sqlx::test(migrations = "../../migrations/queue")]
    async fn the_line_kept_from_deltas_equals_the_line_read_whole(pool: PgPool) {
        let repo = repo(pool);
        let concerts = [Uuid::new_v4(), Uuid::new_v4()];
        let policy = AdmissionPolicy {
            max_active: 7,
            active_ttl: chrono::Duration::seconds(1),
            admit_per_sec: 0,
            idle_timeout: chrono::Duration::seconds(3_600),
        };
        let mut rng = StdRng::seed_from_u64(17);
        let mut snapshot = LineSnapshot::empty(Utc::now());
        let mut watermark = None;
        let mut live: Vec<Uuid> = Vec::new();
        for round in 0..30 {
            let mut work = Vec::new();
            for i in 0..rng.random_range(0..20) {
                let concert = concerts[rng.random_range(0..2)];
                let user = format!("u{round}-{i}");
                let repo = repo.clone();
                work.push(tokio::spawn(async move { Some(join(&repo, &user, concert).await.token) }));
            }
            for _ in 0..rng.random_range(0..4) {
                if !live.is_empty() {
                    let token = live.swap_remove(rng.random_range(0..live.len()));
                    let repo = repo.clone();
                    work.push(tokio::spawn(async move {
                        repo.expire(token, Utc::now()).await.unwrap();
                        None
                    }));
                }
            }
            if rng.random_bool(0.5) {
                let repo = repo.clone();
                work.push(tokio::spawn(async move {
                    repo.admission_round(&policy, Utc::now() + chrono::Duration::seconds(2), Sweep::Abandoned)
                        .await
                        .unwrap();
                    None
                }));
            }
            // A read while some of the work is still in flight.
            let (delta, at) = repo.line_changes(watermark.as_ref(), Utc::now()).await.unwrap();
            snapshot = snapshot.apply(delta, Utc::now());
            watermark = Some(at);
            for w in work {
                live.extend(w.await.unwrap());
            }
        }
        let (delta, _) = repo.line_changes(watermark.as_ref(), Utc::now()).await.unwrap();
        snapshot = snapshot.apply(delta, Utc::now());
        let (whole, _) = repo.line_changes(None, Utc::now()).await.unwrap();
        let whole = LineSnapshot::empty(Utc::now()).apply(whole, Utc::now());
        for concert in concerts {
            let kept = places(&snapshot, concert);
            assert_eq!(kept, places(&whole, concert), "room {concert}");
            let waiting: BTreeSet<i64> =
                sqlx::query_scalar("SELECT place FROM tokens WHERE concert_id = $1 AND state = 'WAITING'")
                    .bind(concert)
                    .fetch_all(&repo.pool)
                    .await
                    .unwrap()
                    .into_iter()
                    .collect();
            assert_eq!(kept, waiting.into_iter().collect::<Vec<_>>());
        }
        assert!(snapshot.rooms.values().map(|r| r.waiting_count()).sum::<u64>() > 0, "some are still waiting");
        assert_eq!(snapshot.max_seq, whole.max_seq);
    }

    /// The touch finds its rows by primary key whatever the planner believes of the table.
    /// Never analyzed (as after a rush's joins), a line of WAITING rows looks a few hundred
    /// long; a touch that named the state then scanned the whole WAITING index instead.
    #[sqlx::test(migrations = "../../migrations/queue")]
    async fn a_touch_finds_its_rows_by_key_without_statistics(pool: PgPool) {
        sqlx::query(
            "INSERT INTO tokens (token, user_id, concert_id, state, issued_at, last_seen_at)
             SELECT gen_random_uuid(), 'u' || i, $1, 'WAITING', now(), now() - interval '1 minute'
             FROM generate_series(1, 100000) AS i",
        )
        .bind(Uuid::new_v4())
        .execute(&pool)
        .await
        .unwrap();
        let some: Vec<Uuid> =
            sqlx::query_scalar("SELECT token FROM tokens TABLESAMPLE BERNOULLI (2)").fetch_all(&pool).await.unwrap();
        assert!(some.len() > 1_000, "{}", some.len());
        // The plan under the same transaction settings `touch` runs with.
        let mut tx = pool.begin_with(super::super::BEGIN_WITHOUT_SEQSCAN).await.unwrap();
        let stale_before = Utc::now() - chrono::Duration::seconds(10);
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {TOUCH}"))
            .bind(&some)
            .bind(Utc::now())
            .bind(stale_before)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("tokens_pkey") && !plan.contains("tokens_waiting"), "{plan}");
        let touched = repo(pool).touch(&some, Utc::now(), stale_before).await.unwrap();
        assert_eq!(touched, some.len() as u64);
    }
}
