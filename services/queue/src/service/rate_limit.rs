//! Abuse limits on joining (`IssueToken`): per user and in total, per replica, with the
//! `governor` crate (GCRA). A refused join gets RESOURCE_EXHAUSTED (reason RATE_LIMITED)
//! with a `google.rpc.RetryInfo` saying when a retry can pass.
//!
//! The limits are per replica: with N replicas behind a load balancer a user gets at most N
//! times the per-user rate, which still stops a script hammering the endpoint. The per-user
//! check happens here, in the use case, where the user id is known; the total
//! (`QUEUE_JOIN_RATE_TOTAL`) is checked by the public port's rate gate
//! (`platform::gate`, set up in `app.rs`) before the access token, so a flood's refused joins
//! cost no signature check.
use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

/// Join rates, in requests per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRates {
    /// Sustained joins per second one user may make (`QUEUE_JOIN_RATE_PER_USER`).
    pub per_user: NonZeroU32,
    /// Joins one user may make at once before the rate applies (`QUEUE_JOIN_BURST_PER_USER`).
    pub per_user_burst: NonZeroU32,
    /// Joins per second one replica accepts from everyone (`QUEUE_JOIN_RATE_TOTAL`); `None`
    /// for no total limit. Enforced by the public port's rate gate, not by [`JoinLimiter`].
    pub total: Option<NonZeroU32>,
}

/// The per-user join limiter of one replica.
#[derive(Debug, Clone)]
pub struct JoinLimiter {
    per_user: Arc<DefaultKeyedRateLimiter<String>>,
}

impl JoinLimiter {
    #[must_use]
    pub fn new(rates: JoinRates) -> Self {
        let per_user = Quota::per_second(rates.per_user).allow_burst(rates.per_user_burst);
        Self { per_user: Arc::new(RateLimiter::keyed(per_user)) }
    }

    /// Admits one join of `user_id`, or says how long until one would pass.
    ///
    /// # Errors
    /// The wait before a retry can pass.
    pub fn check(&self, user_id: &str) -> Result<(), Duration> {
        // Each limiter's own clock: building a `DefaultClock` (quanta) calibrates the TSC,
        // far too costly to do per join.
        self.per_user
            .check_key(&user_id.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.per_user.clock().now()))
    }

    /// Forgets users whose allowance is full again, so memory follows the active users.
    pub fn forget_idle_users(&self) {
        self.per_user.retain_recent();
        self.per_user.shrink_to_fit();
    }

    /// Forgets idle users once a minute, for as long as the replica runs.
    pub async fn forget_idle_users_forever(self) {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            self.forget_idle_users();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(per_user: u32, burst: u32, total: Option<u32>) -> JoinRates {
        JoinRates {
            per_user: NonZeroU32::new(per_user).unwrap_or(NonZeroU32::MIN),
            per_user_burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
            total: total.and_then(NonZeroU32::new),
        }
    }

    #[test]
    fn a_user_gets_the_burst_then_is_told_when_to_retry() {
        let limiter = JoinLimiter::new(rates(10, 20, None));
        for _ in 0..20 {
            assert!(limiter.check("alice").is_ok());
        }
        let wait = limiter.check("alice").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limiter.check("bob").is_ok(), "other users are not affected");
    }
}
