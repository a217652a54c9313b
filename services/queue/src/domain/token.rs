use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Lifecycle of a token: WAITING → ACTIVE → EXPIRED, or WAITING → EXPIRED. Stored by name
/// in the TEXT column `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenState {
    Waiting,
    Active,
    Expired,
}

impl TokenState {
    /// The stored name (as sqlx writes it), for logs and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Waiting => "WAITING",
            TokenState::Active => "ACTIVE",
            TokenState::Expired => "EXPIRED",
        }
    }
}

/// A stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub token: Uuid,
    pub user_id: String,
    /// The concert whose waiting room the token is in.
    pub concert_id: Uuid,
    /// Join order (FIFO): commit order of joins, one sequence for every room.
    pub seq: i64,
    /// Order in the room's line: `seq`, or for a pre-queue join a random negative key
    /// (see [`super::pre_queue_key`]).
    pub place: i64,
    pub state: TokenState,
    pub issued_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Token {
    /// The state as seen at `now`: an ACTIVE token past `expires_at` is EXPIRED even before
    /// the admission round has marked it, so a stale row never grants access.
    #[must_use]
    pub fn effective_state(&self, now: DateTime<Utc>) -> TokenState {
        match (self.state, self.expires_at) {
            (TokenState::Active, Some(exp)) if exp <= now => TokenState::Expired,
            (state, _) => state,
        }
    }
}

/// A token with what an audit needs besides: when and in which admission round it was
/// admitted, and when it stopped being usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHistory {
    pub token: Token,
    /// The admitting replica's clock; `None` if never admitted.
    pub activated_at: Option<DateTime<Utc>>,
    /// When it was left, timed out or used; `None` while WAITING or ACTIVE.
    pub expired_at: Option<DateTime<Utc>>,
    /// The number of the admission round that admitted it (rounds are numbered in the order
    /// they ran, across replicas); `None` if never admitted.
    pub admission_round: Option<i64>,
}

/// A token and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    pub token: Token,
    /// State at the time of the read (see [`Token::effective_state`]).
    pub state: TokenState,
    /// 1-based place among WAITING tokens; 0 unless WAITING.
    pub position: u64,
    /// WAITING tokens in the whole queue.
    pub waiting_count: u64,
    /// Estimated seconds until admission, while WAITING and the line moves.
    pub estimated_wait_secs: Option<u64>,
    /// ACTIVE tokens of the concert.
    pub active_count: u64,
    /// Waiting in the pre-queue: the sale has not opened, so no position is given.
    pub pre_queue: bool,
    /// When the concert's sale opens (`None`: on sale at once).
    pub sale_opens_at: Option<DateTime<Utc>>,
    /// Seconds before the client should ask again (see [`super::Pacing`]); 0 until paced.
    pub poll_after_secs: u32,
    /// While WAITING: every seat of the concert is sold, so waiting is for nothing (unless
    /// a seat comes back).
    pub sold_out: bool,
}

impl QueueStatus {
    /// Builds the status from a token and the count of WAITING tokens ahead of it.
    #[must_use]
    pub fn new(token: Token, waiting_ahead: u64, waiting_count: u64, now: DateTime<Utc>) -> Self {
        let state = token.effective_state(now);
        let position = if state == TokenState::Waiting { waiting_ahead + 1 } else { 0 };
        Self {
            token,
            state,
            position,
            waiting_count,
            estimated_wait_secs: None,
            active_count: 0,
            pre_queue: false,
            sale_opens_at: None,
            poll_after_secs: 0,
            sold_out: false,
        }
    }

    /// Builds the status of a freshly read token against a snapshot of the lines: the state
    /// is the token's own, position and counts are its room's in the snapshot. A WAITING
    /// token that joined before the sale opened (the database decided so at insert, drawing
    /// it a random negative place) is in the pre-queue until the sale opens by the database's
    /// clock as of the snapshot (the one clock that judges the opening), and has no position
    /// yet: showing its random place would let a user leave and re-join until the draw
    /// looked good. `now` (this replica's clock) serves the token's own expiry only.
    #[must_use]
    pub fn in_line(
        token: Token,
        snapshot: &super::LineSnapshot,
        sale_opens_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let line = snapshot.room(token.concert_id);
        let ahead = snapshot.ahead_of(token.concert_id, token.place);
        let mut status = Self::new(token, ahead, line.waiting_count(), now);
        status.sale_opens_at = sale_opens_at;
        // A join newer than the snapshot is not in it yet: count it in.
        status.waiting_count = status.waiting_count.max(status.position);
        status.active_count = line.active;
        // A join the database placed in the pre-queue (a negative place, drawn at insert by the
        // database's clock) stays there until the database's clock passes the opening.
        let joined_early = status.token.place < 0;
        if status.state == TokenState::Waiting
            && joined_early
            && sale_opens_at.is_some_and(|opens| snapshot.database_time < opens)
        {
            status.pre_queue = true;
            status.position = 0;
        } else {
            status.estimated_wait_secs = line.estimated_wait_secs(status.position);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn token(state: TokenState, expires_at: Option<DateTime<Utc>>) -> Token {
        Token {
            token: Uuid::new_v4(),
            user_id: "u".into(),
            concert_id: Uuid::nil(),
            seq: 1,
            place: 1,
            state,
            issued_at: Utc::now(),
            expires_at,
        }
    }

    #[test]
    fn active_token_past_expiry_reads_as_expired() {
        let now = Utc::now();
        let t = token(TokenState::Active, Some(now - Duration::seconds(1)));
        assert_eq!(t.effective_state(now), TokenState::Expired);
        let t = token(TokenState::Active, Some(now + Duration::seconds(1)));
        assert_eq!(t.effective_state(now), TokenState::Active);
    }

    #[test]
    fn position_is_one_based_and_zero_once_admitted() {
        let now = Utc::now();
        assert_eq!(QueueStatus::new(token(TokenState::Waiting, None), 0, 5, now).position, 1);
        assert_eq!(QueueStatus::new(token(TokenState::Waiting, None), 4, 5, now).position, 5);
        let active = token(TokenState::Active, Some(now + Duration::seconds(60)));
        assert_eq!(QueueStatus::new(active, 0, 5, now).position, 0);
    }

    #[test]
    fn before_the_sale_opens_a_waiting_token_has_no_position() {
        let now = Utc::now();
        let line = super::super::LineSnapshot::empty(now);
        let opens = now + Duration::minutes(5);
        // Joined before the opening: the database drew it a random negative place.
        let early = || Token { place: -5, ..token(TokenState::Waiting, None) };
        let s = QueueStatus::in_line(early(), &line, Some(opens), now);
        assert!(s.pre_queue);
        assert_eq!((s.position, s.estimated_wait_secs, s.sale_opens_at), (0, None, Some(opens)));
        let opened = super::super::LineSnapshot { database_time: opens, ..line.clone() };
        let s = QueueStatus::in_line(early(), &opened, Some(opens), opens);
        assert!(!s.pre_queue, "open at the instant itself");
        assert_eq!(s.position, 1);
        // Issue #28: one clock judges the opening. This replica's clock past it changes
        // nothing while the database's (as of the snapshot) is not.
        let s = QueueStatus::in_line(early(), &line, Some(opens), opens + Duration::seconds(5));
        assert!(s.pre_queue, "the database says the sale has not opened");
        let s = QueueStatus::in_line(early(), &opened, Some(opens), now);
        assert!(!s.pre_queue, "the database says it opened, whatever this replica's clock says");
        // A join the database placed in the line (after the opening, by its clock) is never
        // in the pre-queue, even against a snapshot read before the opening.
        let late = QueueStatus::in_line(token(TokenState::Waiting, None), &line, Some(opens), now);
        assert!(!late.pre_queue);
    }

    #[sqlx::test(migrations = false)]
    async fn state_names_round_trip_through_postgres(pool: sqlx::PgPool) {
        let cases = [TokenState::Waiting, TokenState::Active, TokenState::Expired].map(|s| (s, s.as_str()));
        platform::testing::assert_stored_names(&pool, &cases).await;
    }
}
