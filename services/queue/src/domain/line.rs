//! A picture of every room's waiting line, and the wait estimate drawn from it.
//!
//! **Why a snapshot.** Position is the number of WAITING tokens of the same concert with a
//! lower `place`, plus one. Counting them per poll costs a scan of the line (~4,000 polls/s
//! at 10,000 waiting on two cores). Instead each replica reads every line — the sorted
//! `place`s of WAITING tokens per concert, one index-only scan — on a short tick (`QUEUE_LINE_REFRESH_MS`, default 250 ms) and
//! answers every poll and every open `WatchQueue` stream from that one read with a binary
//! search. A position is therefore exact as of the snapshot, at most one tick old, and
//! counts every departure ahead (admissions, leaves, idle expiry) because departed tokens
//! are simply absent. The token's own state is still read per poll (a primary-key read).
//!
//! **ETA formula.** Per room: between two snapshots `d` tokens left the line (admitted, left or
//! expired) in `Δt` seconds. The departure rate `r` is an exponentially weighted moving
//! average of `d / Δt` with a time constant τ = 10 s: `r ← r + (1 − e^(−Δt/τ))·(d/Δt − r)`.
//! A token at position `p` is estimated to wait `ceil(p / r)` seconds; with `r` below one
//! departure per 100 s the estimate is unknown (none is given rather than a wild one).
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Time constant of the departure-rate average, in seconds.
pub const RATE_TIME_CONSTANT_SECS: f64 = 10.0;
/// Below this departure rate (per second) no wait is estimated.
pub const MIN_RATE_FOR_ETA: f64 = 0.01;

/// One room's line as one replica last read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomLine {
    /// `place` of every WAITING token, ascending (pre-queue keys are negative, so first).
    pub waiting: Vec<i64>,
    /// ACTIVE tokens (unexpired) at the time of the read.
    pub active: u64,
    /// Departures per second from this line (EWMA, see the module docs).
    pub departure_rate: f64,
}

impl RoomLine {
    /// Whether `place` was WAITING when the snapshot was taken.
    #[must_use]
    pub fn contains(&self, place: i64) -> bool {
        self.waiting.binary_search(&place).is_ok()
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

    fn next(previous: Option<&RoomLine>, waiting: Vec<i64>, active: u64, dt: f64) -> Self {
        let old_rate = previous.map_or(0.0, |p| p.departure_rate);
        let departure_rate = match previous {
            Some(p) if dt > 0.0 => {
                let departed = departures(&p.waiting, &waiting) as f64;
                let alpha = 1.0 - (-dt / RATE_TIME_CONSTANT_SECS).exp();
                old_rate + alpha * (departed / dt - old_rate)
            }
            _ => old_rate,
        };
        Self { waiting, active, departure_rate }
    }
}

/// Every room's line as one replica last read it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSnapshot {
    /// Lines of the rooms that had anyone WAITING or ACTIVE at the read.
    pub rooms: HashMap<Uuid, RoomLine>,
    /// Highest `seq` of any token at the time of the read (0 for none); seqs are drawn
    /// from one sequence for every room.
    pub max_seq: i64,
    /// When the read was made.
    pub taken_at: DateTime<Utc>,
}

impl LineSnapshot {
    /// No line at all, before the first read.
    #[must_use]
    pub fn empty(now: DateTime<Utc>) -> Self {
        Self { rooms: HashMap::new(), max_seq: 0, taken_at: now }
    }

    /// The next snapshot, from a fresh read taken at `now`: per room, the places of its
    /// WAITING tokens (ascending) and its ACTIVE count.
    #[must_use]
    pub fn next(&self, rooms: HashMap<Uuid, (Vec<i64>, u64)>, max_seq: i64, now: DateTime<Utc>) -> Self {
        let dt = (now - self.taken_at).num_milliseconds() as f64 / 1_000.0;
        let rooms = rooms
            .into_iter()
            .map(|(concert, (waiting, active))| {
                (concert, RoomLine::next(self.rooms.get(&concert), waiting, active, dt))
            })
            .collect();
        Self { rooms, max_seq, taken_at: now }
    }

    /// The line of one room (empty when nobody was waiting or active in it).
    #[must_use]
    pub fn room(&self, concert_id: Uuid) -> &RoomLine {
        static EMPTY: RoomLine = RoomLine { waiting: Vec::new(), active: 0, departure_rate: 0.0 };
        self.rooms.get(&concert_id).unwrap_or(&EMPTY)
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
        let in_snapshot = line.waiting.partition_point(|&s| s < place) as u64;
        let newest = self.max_seq.max(line.waiting.last().copied().unwrap_or(0));
        let drawn_since = place.saturating_sub(newest).saturating_sub(1);
        in_snapshot + u64::try_from(drawn_since).unwrap_or(0)
    }
}

/// Tokens in `before` that are no longer in `after` (both ascending). Tokens only ever
/// leave the line, and new ones join at the end, so this is a merge walk.
fn departures(before: &[i64], after: &[i64]) -> usize {
    let mut gone = 0;
    let mut j = 0;
    for &seq in before {
        while j < after.len() && after[j] < seq {
            j += 1;
        }
        if after.get(j) != Some(&seq) {
            gone += 1;
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn one_room(concert: Uuid, waiting: Vec<i64>, max_seq: i64) -> LineSnapshot {
        let rooms = HashMap::from([(concert, RoomLine { waiting, ..RoomLine::default() })]);
        LineSnapshot { rooms, max_seq, taken_at: t0() }
    }

    #[test]
    fn position_counts_only_waiting_tokens_ahead_in_the_same_room() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut s = one_room(a, vec![3, 7, 8, 20], 22);
        s.rooms.insert(b, RoomLine { waiting: vec![4, 5, 6], ..RoomLine::default() });
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
        let new = old.next(HashMap::from([(a, (vec![1, 2, 3, 4], 0))]), 4, t0() + Duration::seconds(1));
        let second = new.ahead_of(a, 4) + 1;
        assert!(second <= first, "{first} then {second}");
    }

    #[test]
    fn departures_count_leavers_anywhere_in_the_line_but_not_joiners() {
        assert_eq!(departures(&[1, 2, 3, 4], &[2, 4, 5, 6]), 2);
        assert_eq!(departures(&[1, 2, 3], &[1, 2, 3, 9]), 0);
        assert_eq!(departures(&[1, 2, 3], &[]), 3);
    }

    #[test]
    fn the_rate_follows_admissions_per_room_and_gives_a_wait_estimate() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut s = one_room(a, (1..=1_000).collect(), 1_000);
        s.rooms.insert(b, RoomLine { waiting: (2_001..=2_100).collect(), ..RoomLine::default() });
        // Room a: 10 tokens leave every second for a minute; room b does not move.
        for tick in 1..=60 {
            let waiting = s.room(a).waiting[10..].to_vec();
            let still = s.room(b).waiting.clone();
            s = s.next(HashMap::from([(a, (waiting, 5)), (b, (still, 0))]), 2_100, t0() + Duration::seconds(tick));
        }
        let line = s.room(a);
        assert!((line.departure_rate - 10.0).abs() < 0.1, "rate {}", line.departure_rate);
        assert_eq!(line.estimated_wait_secs(95), Some(10), "95 places at ~10/s");
        assert_eq!(line.estimated_wait_secs(0), None);
        assert_eq!(line.active, 5);
        assert_eq!(s.room(b).estimated_wait_secs(1), None, "a line that does not move has no estimate");
    }
}
