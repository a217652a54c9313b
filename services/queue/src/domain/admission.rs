use chrono::{DateTime, Duration, Utc};

/// How many users may be ACTIVE and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// Most tokens ACTIVE at once (`QUEUE_MAX_ACTIVE`, default 100).
    pub max_active: u64,
    /// How long an admitted token stays ACTIVE (`QUEUE_ACTIVE_TTL_SECS`, default 600 s).
    pub active_ttl: Duration,
}

impl AdmissionPolicy {
    /// How many WAITING tokens one round may admit when `active` tokens are ACTIVE.
    #[must_use]
    pub fn free_slots(&self, active: u64) -> u64 {
        self.max_active.saturating_sub(active)
    }

    /// When a token admitted at `now` expires.
    #[must_use]
    pub fn expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.active_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_never_negative() {
        let p = AdmissionPolicy { max_active: 3, active_ttl: Duration::seconds(600) };
        assert_eq!(p.free_slots(0), 3);
        assert_eq!(p.free_slots(3), 0);
        assert_eq!(p.free_slots(7), 0, "over the limit (policy lowered) admits nobody");
    }

    #[test]
    fn expiry_adds_the_ttl() {
        let p = AdmissionPolicy { max_active: 1, active_ttl: Duration::seconds(600) };
        let now = Utc::now();
        assert_eq!(p.expiry(now) - now, Duration::seconds(600));
    }
}
