//! How often a waiting client asks where it stands: the server chooses, by position.
//!
//! Near the front a position changes every admission round and the person must learn at
//! once that they are in, so they ask every second; far back a position changes slowly in
//! relative terms, so they ask less often, up to a cap. With one second per thousand places
//! (`ceil(position / 1,000)` seconds, at least 1), a line of `n` costs about
//! `1,000 × (1 + ln(cap)) + (n − 1,000 × cap) / cap` polls a second: at 100,000 waiting and
//! a 30 s cap, ~6,700/s, where polling every second would cost 100,000/s. A WatchQueue stream
//! is paced the same way (see `service::tokens`), so a stream costs no more than polls.
use chrono::{DateTime, Utc};

use super::{QueueStatus, TokenState};

/// Places counted per extra second between polls; the first this many poll every second.
pub const PLACES_PER_SECOND: u64 = 1_000;
/// The longest interval ever asked for, in seconds (a room's idle timeout may lower it).
pub const MAX_POLL_INTERVAL_SECS: u32 = 30;

/// The pacing of one replica: the longest interval it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    max_secs: u32,
}

impl Pacing {
    /// The pacing for a waiting room whose tokens expire after `idle_timeout_secs` without a
    /// poll: the interval is at most a quarter of it (and of [`MAX_POLL_INTERVAL_SECS`]), so
    /// a client that follows the interval is never expired for idling.
    #[must_use]
    pub fn for_idle_timeout(idle_timeout_secs: u32) -> Self {
        Self { max_secs: (idle_timeout_secs / 4).clamp(1, MAX_POLL_INTERVAL_SECS) }
    }

    /// The longest interval this pacing asks for, in seconds.
    #[must_use]
    pub fn max_secs(self) -> u32 {
        self.max_secs
    }

    /// Seconds the client should wait before asking again: 0 once the token is ACTIVE or
    /// EXPIRED (nothing more to wait for); while WAITING `ceil(position / 1,000)` clamped to
    /// 1..=max; in the pre-queue the time until the sale opens, clamped the same way (the
    /// position is drawn at that instant).
    #[must_use]
    pub fn poll_after_secs(self, status: &QueueStatus, now: DateTime<Utc>) -> u32 {
        if status.state != TokenState::Waiting {
            return 0;
        }
        let wanted = match (status.pre_queue, status.sale_opens_at) {
            (true, Some(opens)) => u64::try_from((opens - now).num_seconds()).unwrap_or(0),
            _ => status.position.div_ceil(PLACES_PER_SECOND),
        };
        u32::try_from(wanted).unwrap_or(u32::MAX).clamp(1, self.max_secs)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use uuid::Uuid;

    use super::*;
    use crate::domain::Token;

    fn waiting_at(position: u64) -> QueueStatus {
        let token = Token {
            token: Uuid::new_v4(),
            user_id: "u".into(),
            concert_id: Uuid::nil(),
            seq: 1,
            place: 1,
            state: TokenState::Waiting,
            issued_at: Utc::now(),
            expires_at: None,
        };
        QueueStatus::new(token, position.saturating_sub(1), position, Utc::now())
    }

    #[test]
    fn the_interval_grows_with_the_position_and_stays_within_its_bounds() {
        let pacing = Pacing::for_idle_timeout(120);
        let now = Utc::now();
        let mut previous = 0;
        for position in (1..=2_000_000).step_by(997) {
            let secs = pacing.poll_after_secs(&waiting_at(position), now);
            assert!((1..=30).contains(&secs), "position {position}: {secs}");
            assert!(secs >= previous, "position {position}: {secs} after {previous}");
            previous = secs;
        }
        assert_eq!(pacing.poll_after_secs(&waiting_at(1), now), 1);
        assert_eq!(pacing.poll_after_secs(&waiting_at(1_000), now), 1);
        assert_eq!(pacing.poll_after_secs(&waiting_at(1_001), now), 2);
        assert_eq!(pacing.poll_after_secs(&waiting_at(100_000), now), 30);
    }

    #[test]
    fn the_cap_keeps_a_following_client_clear_of_the_idle_timeout() {
        for idle in 10..=86_400 {
            let max = Pacing::for_idle_timeout(idle).max_secs();
            assert!(max >= 1 && max * 4 <= idle.max(4), "idle {idle}: {max}");
        }
        assert_eq!(Pacing::for_idle_timeout(60).max_secs(), 15);
    }

    #[test]
    fn admitted_or_expired_tokens_stop_polling_and_the_pre_queue_waits_for_the_opening() {
        let pacing = Pacing::for_idle_timeout(120);
        let now = Utc::now();
        let mut s = waiting_at(5);
        s.state = TokenState::Active;
        assert_eq!(pacing.poll_after_secs(&s, now), 0);
        s.state = TokenState::Expired;
        assert_eq!(pacing.poll_after_secs(&s, now), 0);
        let mut pre = waiting_at(1);
        pre.pre_queue = true;
        pre.sale_opens_at = Some(now + Duration::seconds(12));
        assert_eq!(pacing.poll_after_secs(&pre, now), 12);
        pre.sale_opens_at = Some(now + Duration::hours(2));
        assert_eq!(pacing.poll_after_secs(&pre, now), 30);
        pre.sale_opens_at = Some(now);
        assert_eq!(pacing.poll_after_secs(&pre, now), 1);
    }
}
