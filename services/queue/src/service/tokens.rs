//! A person's token in the waiting room, as use cases: joining (IssueToken), where they
//! stand (GetQueueStatus, and the feed of a WatchQueue stream), and leaving or being expired.
//!
//! Positions come from this replica's snapshot of the line (`line`); a WAITING token's row
//! is remembered, so a poll whose token the snapshot still shows waiting costs no query.
use std::{sync::Arc, time::Duration};

use platform::clock::SharedClock;
use uuid::Uuid;

use crate::{
    batch::joins::JoinBatcher,
    domain::{Pacing, QueueStatus, Token, TokenHistory, TokenState, pre_queue_key},
    error::QueueError,
    service::{
        admission::Admission, line::Line, rate_limit::JoinLimiter, rooms::Rooms, seen::Seen, sold_out::SoldOut,
        watchers::WatchGuard,
    },
    store::{Join, QueueRepo},
};

/// Most WAITING tokens one replica remembers for cheap polls (~250 bytes each with the
/// cache's own bookkeeping, so ~25 MB): the people polling this replica now, the same order
/// as the verified access tokens `platform::identity` keeps (50,000). Sized to the line it
/// would grow with the line (a million remembered rows were most of a replica's 678 MB);
/// a poll beyond it costs one primary-key read.
const WAITING_CACHE_CAPACITY: u64 = 100_000;

/// Shortest silence after which a `WatchQueue` stream repeats an unchanged status as a
/// heartbeat (a stream whose pace is slower beats at its pace: at most every 30 s).
pub const WATCH_HEARTBEAT: Duration = Duration::from_secs(5);

/// Joins, reads and expires tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    repo: QueueRepo,
    joining: JoinBatcher,
    rooms: Rooms,
    admission: Admission,
    line: Line,
    /// Per-user and total limits on joining.
    joins: JoinLimiter,
    seen: Seen,
    /// WAITING tokens this replica has seen (see [`Tokens::status`]).
    waiting: moka::sync::Cache<Uuid, Token>,
    /// How often clients are told to ask again, and WatchQueue streams speak.
    pacing: Pacing,
    /// Rooms whose seats are all sold.
    sold_out: SoldOut,
    clock: SharedClock,
}

impl Tokens {
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repo: QueueRepo,
        joining: JoinBatcher,
        rooms: Rooms,
        admission: Admission,
        line: Line,
        joins: JoinLimiter,
        seen: Seen,
        clock: SharedClock,
        idle_timeout: Duration,
        pacing: Pacing,
        sold_out: SoldOut,
    ) -> Self {
        // A WAITING token nobody has polled for the idle timeout is expired by the next
        // admission round, so its row is not worth remembering longer: rows of people who
        // left would otherwise fill the cache, and its admission policy (TinyLFU) would keep
        // them and turn away the rows of the people polling now.
        let waiting =
            moka::sync::Cache::builder().max_capacity(WAITING_CACHE_CAPACITY).time_to_idle(idle_timeout).build();
        Self { repo, joining, rooms, admission, line, joins, seen, waiting, pacing, sold_out, clock }
    }

    /// The same use cases reading and writing through `repo` (another pool).
    #[must_use]
    pub fn on(&self, repo: QueueRepo) -> Self {
        Self { repo, ..self.clone() }
    }

    /// `status` with the server's poll interval, and whether its room is sold out.
    fn paced(&self, mut status: QueueStatus) -> QueueStatus {
        status.poll_after_secs = self.pacing.poll_after_secs(&status, self.clock.now());
        status.sold_out = status.state == TokenState::Waiting && self.sold_out.is_sold_out(status.token.concert_id);
        status
    }

    /// Joins `user_id` to the line of `concert_id`, or finds the live token they already
    /// have there (one per user and concert), and says where it stands.
    ///
    /// # Errors
    /// [`QueueError::RateLimited`] beyond the join limits; [`QueueError::ConcertNotFound`]
    /// for a concert the catalog does not know; database and catalog failures.
    pub async fn join(&self, user_id: String, concert_id: Uuid) -> Result<QueueStatus, QueueError> {
        self.joins.check(&user_id).map_err(|retry_after| QueueError::RateLimited { retry_after })?;
        let room = self.rooms.get(concert_id).await?;
        let now = self.clock.now();
        // The database decides whether the key is kept (see `QueueRepo::join_many`).
        let token = self.joining.join(Join { user_id, concert_id, pre_queue_key: pre_queue_key(), now }).await?;
        if token.state == TokenState::Waiting {
            self.admission.wake();
        }
        self.remember(&token);
        Ok(self.paced(QueueStatus::in_line(token, &self.line.current(), room.sale_opens_at, self.clock.now())))
    }

    /// Where token `id` stands now.
    ///
    /// # Errors
    /// [`QueueError::TokenNotFound`]; database failures.
    pub async fn status(&self, id: Uuid) -> Result<QueueStatus, QueueError> {
        let line = self.line.current();
        // A WAITING token changes only by leaving the line, which the snapshot shows: while
        // the snapshot still holds its seq (or has not yet read that far), the remembered row
        // is as current as the position, and the poll costs no query. Otherwise the row is
        // read now.
        let token = match self.waiting.get(&id) {
            Some(t) if line.shows_waiting(&t) => {
                self.seen.mark(id);
                t
            }
            _ => {
                let fresh = self.repo.get(id).await?;
                self.remember(&fresh);
                fresh
            }
        };
        let room = self.rooms.get(token.concert_id).await?;
        Ok(self.paced(QueueStatus::in_line(token, &line, room.sale_opens_at, self.clock.now())))
    }

    /// The stored token `id` (to check whose it is).
    ///
    /// # Errors
    /// [`QueueError::TokenNotFound`]; database failures.
    pub async fn get(&self, id: Uuid) -> Result<Token, QueueError> {
        self.repo.get(id).await
    }

    /// Token `id` as this replica last saw it WAITING, else as stored now: enough to tell
    /// whose it is (a token's user never changes) and to start a `WatchQueue` stream from
    /// (the stream reads the row again as soon as the line's snapshot does not show it
    /// waiting). In a flood nearly every person opens a stream on the replica that just
    /// answered their join: each open used to read the row (~86,000 reads a run).
    ///
    /// # Errors
    /// [`QueueError::TokenNotFound`]; database failures.
    pub async fn last_seen(&self, id: Uuid) -> Result<Token, QueueError> {
        match self.waiting.get(&id) {
            Some(token) => Ok(token),
            None => self.repo.get(id).await,
        }
    }

    /// The tokens among `ids` that exist, as stored now (the checks of protected calls).
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Token>, QueueError> {
        self.repo.get_many(ids).await
    }

    /// Every token `concert_id` ever issued, with its history (the audit export).
    ///
    /// # Errors
    /// Database failures.
    pub async fn export(&self, concert_id: Uuid) -> Result<Vec<TokenHistory>, QueueError> {
        self.repo.export(concert_id).await
    }

    /// Expires token `id` (it leaves the line, or its admission ends) and lets the next in
    /// line move up at once.
    ///
    /// # Errors
    /// [`QueueError::TokenNotFound`]; database failures.
    pub async fn expire(&self, id: Uuid) -> Result<QueueStatus, QueueError> {
        let token = self.repo.expire(id, self.clock.now()).await?;
        self.remember(&token);
        self.admission.wake();
        Ok(QueueStatus::new(token, 0, 0, self.clock.now()))
    }

    /// Expires many tokens at once (paid payments); returns how many were still live.
    ///
    /// # Errors
    /// Database failures.
    pub async fn expire_many(&self, ids: &[Uuid]) -> Result<u64, QueueError> {
        let expired = self.repo.expire_many(ids, self.clock.now()).await?;
        if expired > 0 {
            self.admission.wake();
        }
        Ok(expired)
    }

    /// One `WatchQueue` stream fed from the replica's shared snapshot of the line, until the
    /// token is no longer WAITING, the client goes (tonic drops the stream), or a newer
    /// stream of the same token replaces this one (then [`QueueError::WatchReplaced`]).
    ///
    /// The stream is paced like polls: beyond the first thousand places it looks at the
    /// snapshot once per `poll_after_secs` and yields when the position or state changed (or,
    /// after [`WATCH_HEARTBEAT`], the same status again), so a stream far back in a long line
    /// costs a wake-up every 30 s, not one per line refresh; near the front it follows every
    /// refresh, so an admission reaches it at once. The token is read from the database only
    /// when the snapshot no longer shows it waiting (admitted, expired, left;
    /// [`LineSnapshot::shows_waiting`](crate::domain::LineSnapshot::shows_waiting)), so a
    /// waiting stream costs no queries. It is a state machine polled by the
    /// response itself, with no task or channel of its own, and its resting state is kept
    /// small (~550 bytes: the use cases are shared, the room is read before the stream starts,
    /// the rare database read is boxed only while it runs, one timer), because a replica holds
    /// one per person watching; reading the room inside the feed made it ~11 KB.
    ///
    /// # Errors
    /// [`QueueError::ConcertNotFound`] when the token's room is gone; database failures
    /// reading it.
    pub async fn watch(self: &Arc<Self>, token: Token, guard: WatchGuard) -> Result<WatchFeed, QueueError> {
        let sale_opens_at = self.rooms.get(token.concert_id).await?.sale_opens_at;
        let feed = Feed {
            tokens: Arc::clone(self),
            line: self.line.subscribe(),
            token,
            guard,
            sale_opens_at,
            sent: None,
            pace: Duration::ZERO,
            started: false,
            finished: false,
        };
        Ok(Box::pin(futures::stream::unfold(feed, |mut feed| async move {
            let item = feed.next().await?;
            Some((item, feed))
        })))
    }

    /// Keeps WAITING tokens for cheap polls; forgets the others.
    fn remember(&self, token: &Token) {
        if token.state == TokenState::Waiting {
            self.seen.mark(token.token);
            self.waiting.insert(token.token, token.clone());
        } else {
            self.waiting.invalidate(&token.token);
        }
    }
}

/// The statuses of one `WatchQueue` stream (see [`Tokens::watch`]).
pub type WatchFeed = std::pin::Pin<Box<dyn futures::Stream<Item = Result<QueueStatus, QueueError>> + Send>>;

/// What a stream last sent: (state, position, pre-queue, sold out) and when.
type Sent = ((TokenState, u64, bool, bool), tokio::time::Instant);

/// The state of one `WatchQueue` stream between two of its messages.
struct Feed {
    tokens: Arc<Tokens>,
    line: tokio::sync::watch::Receiver<std::sync::Arc<crate::domain::LineSnapshot>>,
    token: Token,
    guard: WatchGuard,
    /// The room's opening, read when the stream opened.
    sale_opens_at: Option<chrono::DateTime<chrono::Utc>>,
    sent: Option<Sent>,
    /// The pace of the last status: how long to wait before looking again.
    pace: Duration,
    started: bool,
    finished: bool,
}

impl Feed {
    /// The stream's next message; `None` once it has ended.
    async fn next(&mut self) -> Option<Result<QueueStatus, QueueError>> {
        if self.finished {
            return None;
        }
        loop {
            if self.started {
                if let Err(replaced) = self.wait().await {
                    return self.end(Err(replaced));
                }
                if self.finished {
                    return None;
                }
            }
            self.started = true;
            let snapshot = self.line.borrow_and_update().clone();
            let token = &self.token;
            if !snapshot.shows_waiting(token) {
                // Boxed: the read's state would otherwise be part of every stream's resting
                // state, though only a stream whose token left the line runs it.
                match Box::pin(self.tokens.repo.get(token.token)).await {
                    Ok(fresh) => self.token = fresh,
                    Err(e) => return self.end(Err(e)),
                }
            }
            let now = self.tokens.clock.now();
            let status =
                self.tokens.paced(QueueStatus::in_line(self.token.clone(), &snapshot, self.sale_opens_at, now));
            let key = (status.state, status.position, status.pre_queue, status.sold_out);
            self.pace = Duration::from_secs(u64::from(status.poll_after_secs.max(1)));
            if status.state != TokenState::Waiting {
                return self.end(Ok(status));
            }
            // An open stream keeps its place: it counts as polling.
            self.tokens.seen.mark(self.token.token);
            let due = self.sent.is_none_or(|(last, at)| last != key || at.elapsed() >= WATCH_HEARTBEAT);
            if due {
                self.sent = Some((key, tokio::time::Instant::now()));
                return Some(Ok(status));
            }
        }
    }

    /// Waits until it is time to look again. Near the front (a one-second pace) a stream
    /// hears every refresh of the line, so an admission reaches it at once; further back it
    /// looks once per its pace.
    ///
    /// # Errors
    /// [`QueueError::WatchReplaced`] when a newer stream of the token replaced this one.
    async fn wait(&mut self) -> Result<(), QueueError> {
        let near_front = self.pace <= Duration::from_secs(1);
        // One timer: the pace far back, the heartbeat near the front (where a refresh of the
        // line usually wakes the stream first).
        let sleep = tokio::time::sleep(if near_front { WATCH_HEARTBEAT } else { self.pace });
        tokio::select! {
            () = sleep => Ok(()),
            changed = self.line.changed(), if near_front => {
                // The replica is stopping: nothing more will change, the stream ends.
                self.finished = changed.is_err();
                Ok(())
            },
            _ = &mut self.guard.replaced => Err(QueueError::WatchReplaced),
        }
    }

    /// Yields `last` and ends the stream after it.
    fn end(&mut self, last: Result<QueueStatus, QueueError>) -> Option<Result<QueueStatus, QueueError>> {
        self.finished = true;
        Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica holds one resting stream per person watching the line (20,000 and more), so
    /// what one costs between messages is a budget: the feed's state and the state of its
    /// pending step. An await of a large future inside `Feed::next` (reading the room through
    /// the catalog client was ~10 KB of state) makes every stream that large, though few ever
    /// run it.
    #[test]
    fn a_resting_stream_state_stays_small() {
        fn future_size<Fut>(_: &impl FnOnce(Feed) -> Fut) -> usize {
            std::mem::size_of::<Fut>()
        }
        let step = |mut feed: Feed| async move {
            let item = feed.next().await;
            (item, feed)
        };
        let size = future_size(&step);
        assert!(size <= 1024, "a stream's state between messages is {size} bytes");
    }
}
