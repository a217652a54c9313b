//! A concert's waiting room: when its sale opens, and how its admission policy differs from
//! the service-wide one.
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::AdmissionPolicy;

/// Per-concert overrides of the service-wide [`AdmissionPolicy`]; `None` follows the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyOverrides {
    /// Most ACTIVE tokens at once, 1..=1,000,000.
    pub max_active: Option<u64>,
    /// Most admissions per second, 0..=1,000,000 (0: no rate limit).
    pub admit_per_sec: Option<u64>,
    /// Seconds a token stays ACTIVE, 1..=86,400.
    pub active_ttl_secs: Option<u64>,
}

/// Largest `max_active` and `admit_per_sec` a room may be given.
pub const MAX_POLICY_COUNT: u64 = 1_000_000;
/// Longest active time a room may be given, in seconds (one day).
pub const MAX_ACTIVE_TTL_SECS: u64 = 86_400;

impl PolicyOverrides {
    /// Checks the ranges; the error names the offending field.
    ///
    /// # Errors
    /// `(field, rule)` for the first value out of range.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_active.is_some_and(|n| !(1..=MAX_POLICY_COUNT).contains(&n)) {
            return Err(("max_active", "must be 1..=1,000,000"));
        }
        if self.admit_per_sec.is_some_and(|n| n > MAX_POLICY_COUNT) {
            return Err(("admit_per_sec", "must be 0..=1,000,000"));
        }
        if self.active_ttl_secs.is_some_and(|n| !(1..=MAX_ACTIVE_TTL_SECS).contains(&n)) {
            return Err(("active_ttl_seconds", "must be 1..=86,400 seconds"));
        }
        Ok(())
    }
}

impl AdmissionPolicy {
    /// The policy of a room: each override replaces the service-wide value.
    #[must_use]
    pub fn with_overrides(&self, o: &PolicyOverrides) -> AdmissionPolicy {
        AdmissionPolicy {
            max_active: o.max_active.unwrap_or(self.max_active),
            admit_per_sec: o.admit_per_sec.unwrap_or(self.admit_per_sec),
            active_ttl: o
                .active_ttl_secs
                .and_then(|s| i64::try_from(s).ok())
                .map_or(self.active_ttl, Duration::seconds),
            idle_timeout: self.idle_timeout,
        }
    }
}

/// One concert's waiting room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub concert_id: Uuid,
    /// When the concert's sale opens (from the catalog); `None`: on sale at once.
    pub sale_opens_at: Option<DateTime<Utc>>,
    pub overrides: PolicyOverrides,
}

impl Room {
    /// Whether the sale is open at `now`: before it, joins go to the pre-queue and nobody
    /// is admitted.
    #[must_use]
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.sale_opens_at.is_none_or(|opens| opens <= now)
    }
}

/// The place key of a join made before the sale opens: a random negative number from the
/// operating system's CSPRNG (the random bits of a v4 UUID). Every pre-queue key is below
/// every `seq` (positive), so at the opening instant the whole pre-queue stands ahead of
/// later joins, in an order nobody could predict or improve by joining earlier; the key is
/// never shown (pre-queue positions are reported as 0), so leaving and re-joining to draw a
/// better one cannot be steered either.
#[must_use]
pub fn pre_queue_key() -> i64 {
    let bits = Uuid::new_v4().as_u64_pair().0;
    // 63 random bits mapped onto −2^63..=−1.
    -1 - i64::try_from(bits >> 1).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> AdmissionPolicy {
        AdmissionPolicy {
            max_active: 100,
            active_ttl: Duration::seconds(600),
            admit_per_sec: 0,
            idle_timeout: Duration::seconds(60),
        }
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let d = defaults();
        assert_eq!(d.with_overrides(&PolicyOverrides::default()), d);
        let p =
            d.with_overrides(&PolicyOverrides { max_active: Some(5), admit_per_sec: None, active_ttl_secs: Some(30) });
        assert_eq!((p.max_active, p.admit_per_sec, p.active_ttl), (5, 0, Duration::seconds(30)));
        assert_eq!(p.idle_timeout, d.idle_timeout, "idle expiry is service-wide");
    }

    #[test]
    fn overrides_out_of_range_name_their_field() {
        let bad = |o: PolicyOverrides| o.validate().unwrap_err().0;
        assert_eq!(bad(PolicyOverrides { max_active: Some(0), ..Default::default() }), "max_active");
        assert_eq!(bad(PolicyOverrides { admit_per_sec: Some(1_000_001), ..Default::default() }), "admit_per_sec");
        assert_eq!(bad(PolicyOverrides { active_ttl_secs: Some(86_401), ..Default::default() }), "active_ttl_seconds");
        assert!(
            PolicyOverrides { max_active: Some(1), admit_per_sec: Some(0), active_ttl_secs: Some(1) }
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn a_room_opens_at_its_sale_time() {
        let opens = Utc::now();
        let room =
            Room { concert_id: Uuid::new_v4(), sale_opens_at: Some(opens), overrides: PolicyOverrides::default() };
        assert!(!room.is_open(opens - Duration::milliseconds(1)));
        assert!(room.is_open(opens));
        assert!(Room { sale_opens_at: None, ..room }.is_open(opens - Duration::days(1)), "no sale time: open at once");
    }

    #[test]
    fn pre_queue_keys_are_negative_and_differ() {
        let keys: std::collections::HashSet<i64> = (0..1_000).map(|_| pre_queue_key()).collect();
        assert_eq!(keys.len(), 1_000);
        assert!(keys.iter().all(|&k| k < 0));
    }
}
