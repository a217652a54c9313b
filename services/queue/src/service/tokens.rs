//! A person's token in the waiting room, as use cases: joining (IssueToken), where they
//! stand (GetQueueStatus, and the feed of a WatchQueue stream), and leaving or being expired.
//!
//! Positions come from this replica's snapshot of the line (`line`); a WAITING token's row
//! is remembered, so a poll whose token the snapshot still shows waiting costs no query.
use std::time::Duration;

use platform::clock::SharedClock;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    batch::joins::JoinBatcher,
    domain::{Pacing, QueueStatus, Token, TokenState, pre_queue_key},
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
        // the snapshot still holds its seq, the remembered row is as current as the
        // position, and the poll costs no query. Otherwise the row is read now.
        let token = match self.waiting.get(&id) {
            Some(t) if line.room(t.concert_id).contains(t.place) => {
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

    /// Feeds one `WatchQueue` stream from the replica's shared snapshot of the line, until
    /// the token is no longer WAITING, the client goes (`updates` closed), or a newer stream
    /// of the same token replaces this one (then [`QueueError::WatchReplaced`]).
    ///
    /// The stream is paced like polls: beyond the first thousand places it looks at the
    /// snapshot once per `poll_after_secs` and sends when the position or state changed (or,
    /// after [`WATCH_HEARTBEAT`], the same status again), so a stream far back in a long line
    /// costs a wake-up every 30 s, not one per line refresh; near the front it follows every
    /// refresh, so an admission reaches it at once. The token is read from the database
    /// only when the snapshot no longer shows it waiting (admitted, expired, or joined after
    /// the snapshot), so a waiting stream costs no queries.
    pub async fn watch(
        &self,
        mut token: Token,
        updates: mpsc::Sender<Result<QueueStatus, QueueError>>,
        mut guard: WatchGuard,
    ) {
        let sale_opens_at = match self.rooms.get(token.concert_id).await {
            Ok(room) => room.sale_opens_at,
            Err(e) => {
                let _ = updates.send(Err(e)).await;
                return;
            }
        };
        let mut line = self.line.subscribe();
        let mut sent: Option<((TokenState, u64, bool, bool), tokio::time::Instant)> = None;
        loop {
            let snapshot = line.borrow_and_update().clone();
            if !(token.state == TokenState::Waiting && snapshot.room(token.concert_id).contains(token.place)) {
                match self.repo.get(token.token).await {
                    Ok(fresh) => token = fresh,
                    Err(e) => {
                        let _ = updates.send(Err(e)).await;
                        return;
                    }
                }
            }
            let status = self.paced(QueueStatus::in_line(token.clone(), &snapshot, sale_opens_at, self.clock.now()));
            let key = (status.state, status.position, status.pre_queue, status.sold_out);
            let done = status.state != TokenState::Waiting;
            let wait = Duration::from_secs(u64::from(status.poll_after_secs.max(1)));
            let due = match sent {
                None => true,
                Some((last, at)) => last != key || at.elapsed() >= WATCH_HEARTBEAT,
            };
            if due {
                tokio::select! {
                    sent_ok = updates.send(Ok(status)) => if sent_ok.is_err() {
                        return; // the client went away
                    },
                    // A client that stopped reading must not keep its slot after a newer
                    // stream replaced this one.
                    _ = &mut guard.replaced => return,
                }
                sent = Some((key, tokio::time::Instant::now()));
            }
            if done {
                return;
            }
            // An open stream keeps its place: it counts as polling.
            self.seen.mark(token.token);
            // Near the front (a one-second pace) a stream hears every refresh of the line, so
            // an admission reaches it at once; further back it looks once per its pace.
            let near_front = status_pace_is_fastest(wait);
            tokio::select! {
                () = tokio::time::sleep(wait), if !near_front => {}
                changed = line.changed(), if near_front => if changed.is_err() {
                    return;
                },
                () = tokio::time::sleep(WATCH_HEARTBEAT), if near_front => {}
                () = updates.closed() => return,
                _ = &mut guard.replaced => {
                    let _ = updates.try_send(Err(QueueError::WatchReplaced));
                    return;
                }
            }
        }
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

/// Whether a stream's pace is the fastest (one second): the front of the line.
fn status_pace_is_fastest(wait: Duration) -> bool {
    wait <= Duration::from_secs(1)
}
