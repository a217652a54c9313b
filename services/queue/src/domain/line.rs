//! A picture of every room's waiting line, and the wait estimate drawn from it.
//!
//! **Why a snapshot.** Position is the number of WAITING tokens of the same concert with a
//! lower `place`, plus one. Counting them per poll costs a scan of the line (~4,000 polls/s
//! at 10,000 waiting on two cores). Instead each replica keeps every line in memory — the
//! sorted `place`s of WAITING tokens per concert ([`Places`]) — and answers every poll and
//! every open `WatchQueue` stream from it with a rank. A position is therefore exact as of
//! the snapshot, at most one refresh old, and counts every departure ahead (admissions,
//! leaves, idle expiry) because departed tokens are simply absent.
//!
//! **Why deltas.** The line is read whole once, when a replica starts; after that each
//! refresh (`QUEUE_LINE_REFRESH_MS`, default 250 ms) reads only the tokens whose place in
//! line changed since the previous read ([`LineDelta`]: joins and departures, found by the
//! transaction that last changed them, see `store::tokens`), and [`LineSnapshot::apply`]
//! copies only what they touch. The work per refresh follows what changed, not how many
//! wait: a million in line costs what ten thousand do, and ~8 bytes a person.
//!
//! **ETA formula.** Per room: between two snapshots `d` tokens left the line (admitted, left or
//! expired) in `Δt` seconds. The departure rate `r` is an exponentially weighted moving
//! average of `d / Δt` with a time constant τ = 10 s: `r ← r + (1 − e^(−Δt/τ))·(d/Δt − r)`.
//! A token at position `p` is estimated to wait `ceil(p / r)` seconds; with `r` below one
//! departure per 100 s the estimate is unknown (none is given rather than a wild one).
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Places, Token, TokenState};

/// Time constant of the departure-rate average, in seconds.
pub const RATE_TIME_CONSTANT_SECS: f64 = 10.0;
/// Below this departure rate (per second) no wait is estimated.
pub const MIN_RATE_FOR_ETA: f64 = 0.01;

/// One room's line as one replica last read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomLine {
    /// `place` of every WAITING token (pre-queue keys are negative, so first).
    pub waiting: Places,
    /// ACTIVE tokens (unexpired) at the time of the read.
    pub active: u64,
    /// Departures per second from this line (EWMA, see the module docs).
    pub departure_rate: f64,
}

impl RoomLine {
    /// Whether `place` was WAITING when the snapshot was taken.
    #[must_use]
    pub fn contains(&self, place: i64) -> bool {
        self.waiting.contains(place)
    }

    /// WAITING tokens in the line.
    #[must_use]
    pub fn waiting_count(&self) -> u64 {
        self.waiting.len() as u64
    }

    /// Estimated seconds until position `position` (1-based) is admitted, if the line moves.
    #[must_use]
    pub fn estimated_wait_secs(&self, position: u64) -> Option<u64> {
        if position == 0 || self.departure_rate < MIN_RATE_FOR_ETA {
            return None;
        }
        let secs = (position as f64 / self.departure_rate).ceil();
        // Saturating float-to-int conversion; an absurd estimate is capped, not wrapped.
        Some(secs.min(u64::MAX as f64) as u64)
    }
}

/// How one room's line changed between two reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomDelta {
    /// Places of tokens that are WAITING now and were not at the previous read.
    pub joined: Vec<i64>,
    /// Places of tokens that are no longer WAITING (admitted, left or expired); tokens that
    /// joined and left between two reads may be among them, and are ignored.
    pub left: Vec<i64>,
}

/// What changed in every line between two reads of one replica (or, for the first read,
/// every WAITING token as joined).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineDelta {
    /// Per room, its joins and departures.
    pub rooms: HashMap<Uuid, RoomDelta>,
    /// Unexpired ACTIVE tokens per room at the read (rooms with none are absent).
    pub active: HashMap<Uuid, u64>,
    /// Highest `seq` among the changed tokens (0 for none); seqs are drawn from one
    /// sequence for every room.
    pub max_seq: i64,
    /// The database's clock at the read (`None`: not read from a database, e.g. in tests).
    pub read_at: Option<DateTime<Utc>>,
}

/// Every room's line as one replica last read it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSnapshot {
    /// Lines of the rooms that had anyone WAITING or ACTIVE at the read.
    pub rooms: HashMap<Uuid, RoomLine>,
    /// Highest `seq` of any token read so far (0 for none).
    pub max_seq: i64,
    /// When the read was made, by this replica's clock (the departure rates' time base).
    pub taken_at: DateTime<Utc>,
    /// The database's clock at the read: whether a room's sale has opened is judged by it,
    /// the clock that decided at insert whether a join went to the pre-queue, so a replica
    /// whose clock runs ahead or behind never shows a pre-queue token a position (or hides
    /// one) the database disagrees with.
    pub database_time: DateTime<Utc>,
}

impl LineSnapshot {
    /// No line at all, before the first read.
    #[must_use]
    pub fn empty(now: DateTime<Utc>) -> Self {
        Self { rooms: HashMap::new(), max_seq: 0, taken_at: now, database_time: now }
    }

    /// The next snapshot: this one with `delta` (read at `now`) applied. Rooms nobody is
    /// WAITING or ACTIVE in any more are dropped. Each room's departure rate is updated from
    /// the places that actually left it (see the module docs).
    #[must_use]
    pub fn apply(&self, mut delta: LineDelta, now: DateTime<Utc>) -> Self {
        let dt = (now - self.taken_at).num_milliseconds() as f64 / 1_000.0;
        let alpha = 1.0 - (-dt / RATE_TIME_CONSTANT_SECS).exp();
        let mut concerts: Vec<Uuid> =
            self.rooms.keys().chain(delta.rooms.keys()).chain(delta.active.keys()).copied().collect();
        concerts.sort_unstable();
        concerts.dedup();
        let mut rooms = HashMap::with_capacity(concerts.len());
        for concert in concerts {
            let before = self.rooms.get(&concert);
            let change = delta.rooms.remove(&concert).unwrap_or_default();
            let (waiting, departed) = match before {
                Some(b) => b.waiting.apply(change.joined, change.left),
                None => Places::default().apply(change.joined, change.left),
            };
            let active = delta.active.get(&concert).copied().unwrap_or(0);
            if waiting.is_empty() && active == 0 {
                continue;
            }
            let old_rate = before.map_or(0.0, |b| b.departure_rate);
            let departure_rate = if dt > 0.0 { old_rate + alpha * (departed as f64 / dt - old_rate) } else { old_rate };
            rooms.insert(concert, RoomLine { waiting, active, departure_rate });
        }
        let database_time = delta.read_at.unwrap_or(now);
        Self { rooms, max_seq: self.max_seq.max(delta.max_seq), taken_at: now, database_time }
    }

    /// The line of one room (empty when nobody was waiting or active in it).
    #[must_use]
    pub fn room(&self, concert_id: Uuid) -> &RoomLine {
        static EMPTY: std::sync::LazyLock<RoomLine> = std::sync::LazyLock::new(RoomLine::default);
        self.rooms.get(&concert_id).unwrap_or(&EMPTY)
    }

    /// Whether a remembered WAITING row of `token` is as current as this snapshot, so a poll
    /// or stream may answer from it without reading the row: the snapshot shows it waiting,
    /// or it joined after the snapshot was read (`place = seq` beyond any seq read), which
    /// only the next read can tell anything about. Either way the answer is at most one line
    /// refresh old, as every position is; a row the snapshot has passed by (admitted, left,
    /// expired) or a pre-queue token not in it is read again.
    #[must_use]
    pub fn shows_waiting(&self, token: &Token) -> bool {
        if token.state != TokenState::Waiting {
            return false;
        }
        let line = self.room(token.concert_id);
        line.contains(token.place) || token.place > self.newest(line)
    }

    /// The highest seq this snapshot has read, in `line` or anywhere: a place beyond it
    /// joined after the read.
    fn newest(&self, line: &RoomLine) -> i64 {
        self.max_seq.max(line.waiting.last().unwrap_or(0))
    }

    /// WAITING tokens ahead of `place` in `concert_id`'s line.
    ///
    /// A token that joined after the snapshot (`place = seq > max_seq`) is not in it, and
    /// neither are the joins between; it is counted behind everyone in the snapshot and
    /// behind every `seq` drawn since (in any room), which can only overstate its place
    /// (some of those seqs were never used, have left, or joined another room). So a
    /// position never rises from one snapshot to the next.
    #[must_use]
    pub fn ahead_of(&self, concert_id: Uuid, place: i64) -> u64 {
        let line = self.room(concert_id);
        let in_snapshot = line.waiting.rank(place) as u64;
        let drawn_since = place.saturating_sub(self.newest(line)).saturating_sub(1);
        in_snapshot + u64::try_from(drawn_since).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn joined(rooms: &[(Uuid, Vec<i64>)], max_seq: i64) -> LineDelta {
        LineDelta {
            rooms: rooms.iter().map(|(c, p)| (*c, RoomDelta { joined: p.clone(), left: Vec::new() })).collect(),
            active: HashMap::new(),
            max_seq,
            read_at: None,
        }
    }

    fn one_room(concert: Uuid, waiting: Vec<i64>, max_seq: i64) -> LineSnapshot {
        LineSnapshot::empty(t0()).apply(joined(&[(concert, waiting)], max_seq), t0())
    }

    fn token(concert_id: Uuid, place: i64, state: TokenState) -> Token {
        Token {
            token: Uuid::new_v4(),
            user_id: "u".into(),
            concert_id,
            seq: place.max(1),
            place,
            state,
            issued_at: t0(),
            expires_at: None,
        }
    }

    #[test]
    fn a_remembered_row_stands_while_the_snapshot_shows_it_waiting_or_has_not_read_that_far() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let s = one_room(a, vec![-5, 3, 7], 10);
        assert!(s.shows_waiting(&token(a, 7, TokenState::Waiting)), "in the line");
        assert!(s.shows_waiting(&token(a, -5, TokenState::Waiting)), "a pre-queue place in the line");
        assert!(s.shows_waiting(&token(a, 11, TokenState::Waiting)), "joined after the read");
        assert!(s.shows_waiting(&token(b, 11, TokenState::Waiting)), "joined another room after the read");
        assert!(!s.shows_waiting(&token(a, 8, TokenState::Waiting)), "read past and gone: admitted or left");
        assert!(!s.shows_waiting(&token(b, 7, TokenState::Waiting)), "not in its own room");
        assert!(!s.shows_waiting(&token(a, -4, TokenState::Waiting)), "a pre-queue place not in the line");
        assert!(!s.shows_waiting(&token(a, 7, TokenState::Active)), "only a WAITING row is remembered");
        assert!(!s.shows_waiting(&token(a, 11, TokenState::Expired)));
    }

    #[test]
    fn position_counts_only_waiting_tokens_ahead_in_the_same_room() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let s = LineSnapshot::empty(t0()).apply(joined(&[(a, vec![3, 7, 8, 20]), (b, vec![4, 5, 6])], 22), t0());
        assert_eq!(s.ahead_of(a, 3), 0);
        assert_eq!(s.ahead_of(a, 8), 2, "room b's 4, 5, 6 are not ahead in room a");
        assert_eq!(s.ahead_of(b, 6), 2);
        assert_eq!(s.ahead_of(a, 21), 4, "21 was not waiting when the snapshot was taken");
        assert_eq!(s.ahead_of(a, 23), 4, "the first join after the snapshot is behind everyone in it");
        assert_eq!(s.ahead_of(a, 26), 7, "and behind every seq drawn since, at most");
        assert!(s.room(a).contains(7) && !s.room(a).contains(5));
        assert_eq!(s.room(Uuid::new_v4()).waiting_count(), 0, "a room nobody is in is empty");
    }

    #[test]
    fn pre_queue_places_stand_ahead_of_every_later_join() {
        let a = Uuid::new_v4();
        let s = one_room(a, vec![-900, -50, -7, 12, 13], 13);
        assert_eq!(s.ahead_of(a, -50), 1);
        assert_eq!(s.ahead_of(a, 12), 3, "the whole pre-queue is ahead of a join after opening");
        assert_eq!(s.ahead_of(a, -1_000), 0, "a pre-queue key not in the snapshot is never behind the drawn seqs");
    }

    #[test]
    fn a_join_newer_than_the_snapshot_never_sees_its_position_rise() {
        let a = Uuid::new_v4();
        // Snapshot 1 saw seqs 1, 2 waiting (max 2); token 4 joins after it; 3 joins too.
        let old = one_room(a, vec![1, 2], 2);
        let first = old.ahead_of(a, 4) + 1;
        // Snapshot 2 sees everyone, nobody admitted yet.
        let new = old.apply(joined(&[(a, vec![3, 4])], 4), t0() + Duration::seconds(1));
        let second = new.ahead_of(a, 4) + 1;
        assert!(second <= first, "{first} then {second}");
    }

    #[test]
    fn departures_anywhere_in_the_line_move_everyone_behind_up_and_empty_rooms_go() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let s = LineSnapshot::empty(t0()).apply(joined(&[(a, (1..=6).collect()), (b, vec![10])], 10), t0());
        let delta = LineDelta {
            rooms: HashMap::from([
                // 1 admitted, 3 left, 99 joined and left between the reads, 11 joined.
                (a, RoomDelta { joined: vec![11], left: vec![1, 3, 99] }),
                (b, RoomDelta { joined: Vec::new(), left: vec![10] }),
            ]),
            active: HashMap::from([(a, 1)]),
            max_seq: 99,
            read_at: None,
        };
        let s = s.apply(delta, t0() + Duration::seconds(1));
        assert_eq!((s.ahead_of(a, 6), s.ahead_of(a, 11), s.room(a).waiting_count()), (3, 4, 5));
        assert_eq!((s.room(a).active, s.max_seq), (1, 99));
        assert!(!s.rooms.contains_key(&b), "nobody waiting or active in b");
        // Two departures in one second (99 was never in the line).
        assert!((s.room(a).departure_rate - 2.0 * (1.0 - (-0.1f64).exp())).abs() < 1e-9);
    }

    #[test]
    fn the_rate_follows_admissions_per_room_and_gives_a_wait_estimate() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut s = LineSnapshot::empty(t0())
            .apply(joined(&[(a, (1..=1_000).collect()), (b, (2_001..=2_100).collect())], 2_100), t0());
        // Room a: 10 tokens leave every second for a minute; room b does not move.
        for tick in 1..=60 {
            let head: Vec<i64> = ((tick - 1) * 10 + 1..=tick * 10).collect();
            let delta = LineDelta {
                rooms: HashMap::from([(a, RoomDelta { joined: Vec::new(), left: head })]),
                active: HashMap::from([(a, 5)]),
                max_seq: 0,
                read_at: None,
            };
            s = s.apply(delta, t0() + Duration::seconds(tick));
        }
        let line = s.room(a);
        assert!((line.departure_rate - 10.0).abs() < 0.1, "rate {}", line.departure_rate);
        assert_eq!(line.estimated_wait_secs(95), Some(10), "95 places at ~10/s");
        assert_eq!(line.estimated_wait_secs(0), None);
        assert_eq!(line.active, 5);
        assert_eq!(s.room(b).estimated_wait_secs(1), None, "a line that does not move has no estimate");
        assert_eq!(s.room(b).waiting_count(), 100);
    }
}
