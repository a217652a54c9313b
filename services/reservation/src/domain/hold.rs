//! What to do when a hold insert did nothing: the pure decision shared by every replica.
use chrono::{DateTime, Utc};

use super::ReservationStatus;

/// Most alternative seats one HoldSeat may name (`alternative_seat_numbers`): enough for a
/// buyer's next picks in a row of the map, few enough that a refused call (every seat named
/// taken) costs a bounded number of hold attempts.
pub const MAX_ALTERNATIVE_SEATS: usize = 10;

/// Most hold attempts (inserts) one HoldSeat makes, whatever it names: a best-available call
/// costs no more than one naming every alternative allowed.
pub const MAX_HOLD_TRIES: usize = 1 + MAX_ALTERNATIVE_SEATS;

/// The seats one HoldSeat asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatChoice {
    /// The seat wanted, then the caller's next picks, in the caller's order (validated:
    /// 1..=50, none twice, at most 1 + [`MAX_ALTERNATIVE_SEATS`]).
    pub named: Vec<u32>,
    /// When every seat named is taken, the best free seat of the wanted seat's grade and
    /// price (lowest number first) may be held instead.
    pub best_available: bool,
}

impl SeatChoice {
    /// The seats to try, in order: the named ones, then (best available) the seats of
    /// `same_grade` (the wanted seat's grade and price, in seat order) not named.
    #[must_use]
    pub fn order(&self, same_grade: &[u32]) -> Vec<u32> {
        let mut order = self.named.clone();
        if self.best_available {
            order.extend(same_grade.iter().filter(|n| !self.named.contains(n)));
        }
        order
    }
}

/// The live reservation that blocks a seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocker {
    /// HELD or CONFIRMED.
    pub status: ReservationStatus,
    pub expires_at: DateTime<Utc>,
    /// A payment saga exists for it (such a hold is not released by expiry).
    pub paying: bool,
}

/// Why a hold insert did nothing, as read right after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldDiagnosis {
    /// The token already paid for a seat.
    pub token_used: bool,
    /// The live reservation of the seat, if any.
    pub blocker: Option<Blocker>,
    /// Live holds of this user on this concert.
    pub user_holds: i64,
}

/// The next step after a hold insert that did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStep {
    /// The token already paid: refuse (one admission buys one seat).
    TokenUsed,
    /// The blocker is gone: insert again.
    Retry,
    /// Every hold slot of the user is taken: release the user's expired holds (not yet swept)
    /// and insert again, or refuse with HOLD_LIMIT when none was released.
    ReleaseUsersStaleHolds,
    /// The seat's hold expired but was not swept: release it and insert again.
    ReleaseStaleSeat,
    /// Someone else holds or bought the seat, until then.
    Taken { until: DateTime<Utc> },
}

/// Decides the next step from `d`, at `now`, with `max_holds` live holds allowed per user
/// and concert.
#[must_use]
pub fn after_refused_insert(d: &HoldDiagnosis, now: DateTime<Utc>, max_holds: u32) -> HoldStep {
    if d.token_used {
        return HoldStep::TokenUsed;
    }
    match d.blocker {
        None if d.user_holds >= i64::from(max_holds) => HoldStep::ReleaseUsersStaleHolds,
        None => HoldStep::Retry,
        Some(Blocker { status: ReservationStatus::Held, expires_at, paying: false }) if expires_at > now => {
            HoldStep::Taken { until: expires_at }
        }
        Some(Blocker { status: ReservationStatus::Held, paying: false, .. }) => HoldStep::ReleaseStaleSeat,
        // Sold, or held while its payment runs: blocked until further notice.
        Some(_) => HoldStep::Taken { until: DateTime::<Utc>::MAX_UTC },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(blocker: Option<Blocker>, user_holds: i64) -> HoldDiagnosis {
        HoldDiagnosis { token_used: false, blocker, user_holds }
    }

    #[test]
    fn best_available_tries_the_named_seats_first_then_the_grade_in_seat_order() {
        let vip: Vec<u32> = (1..=10).collect();
        let named = SeatChoice { named: vec![5, 9, 2], best_available: false };
        assert_eq!(named.order(&vip), vec![5, 9, 2], "named only: the grade is not looked at");
        let best = SeatChoice { best_available: true, ..named };
        assert_eq!(best.order(&vip), vec![5, 9, 2, 1, 3, 4, 6, 7, 8, 10]);
    }

    #[test]
    fn every_reason_has_its_step() {
        let now = Utc::now();
        let held = |secs: i64, paying| Blocker {
            status: ReservationStatus::Held,
            expires_at: now + chrono::Duration::seconds(secs),
            paying,
        };
        assert_eq!(
            after_refused_insert(&HoldDiagnosis { token_used: true, ..diag(None, 0) }, now, 4),
            HoldStep::TokenUsed
        );
        assert_eq!(after_refused_insert(&diag(None, 3), now, 4), HoldStep::Retry);
        assert_eq!(after_refused_insert(&diag(None, 4), now, 4), HoldStep::ReleaseUsersStaleHolds);
        assert_eq!(
            after_refused_insert(&diag(Some(held(60, false)), 0), now, 4),
            HoldStep::Taken { until: now + chrono::Duration::seconds(60) }
        );
        assert_eq!(after_refused_insert(&diag(Some(held(-1, false)), 0), now, 4), HoldStep::ReleaseStaleSeat);
        assert_eq!(
            after_refused_insert(&diag(Some(held(-1, true)), 0), now, 4),
            HoldStep::Taken { until: DateTime::<Utc>::MAX_UTC }
        );
        let sold = Blocker { status: ReservationStatus::Confirmed, expires_at: now, paying: true };
        assert_eq!(
            after_refused_insert(&diag(Some(sold), 0), now, 4),
            HoldStep::Taken { until: DateTime::<Utc>::MAX_UTC }
        );
    }
}
