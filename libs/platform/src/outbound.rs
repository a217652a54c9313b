//! Calls to peer services: every call has a deadline, and a call the caller marks idempotent
//! is retried with jittered exponential backoff (the `backon` crate) when it failed in a way
//! that may pass: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (a peer shedding load)
//! or CANCELLED (a peer giving up at our deadline).
//!
//! A call's deadline is the shorter of the policy's per-call timeout and what is left of the
//! incoming request's deadline ([`Deadline::from_request`], read from the standard
//! `grpc-timeout` header). The budget is sent on as `grpc-timeout`, so the peer stops working
//! when we stop waiting, and is also enforced here, so a peer that never answers cannot hold
//! us past it. Retries stop when the deadline is spent.
//!
//! Retries are bounded twice more, so that replicas shedding load are not buried under
//! retries: a peer's `google.rpc.RetryInfo` (sent with RESOURCE_EXHAUSTED by a replica that
//! sheds) is honoured as the shortest pause before the next attempt, and every policy carries
//! a retry budget (tower's `TpsBudget`: retries may add at most 20 % to the calls made, plus
//! 10 per second) shared by all calls through it; a retry the budget refuses is not sent.
//!
//! Retrying is safe only for calls whose effect happens once however often they are sent:
//! the saga's debit and refund (idempotency keys derived from the payment id), token
//! expiry, and reads. A retried call whose outcome stayed unknown is resolved by the next
//! retry of the same key, never by guessing.
use std::{fmt, future::Future, sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use tokio::time::Instant;
use tonic::{Code, Request, Status, metadata::MetadataMap};
use tower::retry::budget::{Budget, TpsBudget};

/// A retry budget shared by the calls of one policy (and its clones).
#[derive(Clone)]
pub struct RetryBudget(Arc<TpsBudget>);

impl RetryBudget {
    /// Retries may add `percent` of the calls made in the last 10 s, plus `min_per_sec`.
    #[must_use]
    pub fn new(min_per_sec: u32, percent: f32) -> Self {
        Self(Arc::new(TpsBudget::new(Duration::from_secs(10), min_per_sec, percent)))
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(10, 0.2)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RetryBudget")
    }
}

impl PartialEq for RetryBudget {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RetryBudget {}

/// `message` as a request whose `grpc-timeout` is `budget`: what an attempt of
/// [`call`] sends, so the peer stops working when the caller stops waiting.
#[must_use]
pub fn with_timeout<T>(message: T, budget: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(budget);
    request
}

/// A peer service's gRPC client with its name (for errors, logs and metrics) and its call
/// policy: what every client of a peer holds, so that each call goes through [`call`].
#[derive(Debug, Clone)]
pub struct Peer<C> {
    name: &'static str,
    client: C,
    policy: CallPolicy,
}

impl<C: Clone> Peer<C> {
    #[must_use]
    pub fn new(name: &'static str, client: C, policy: CallPolicy) -> Self {
        Self { name, client, policy }
    }

    /// The peer's name, as errors and logs give it.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// One unary RPC under the peer's policy and `deadline` (see [`call`]): each attempt
    /// sends a copy of `message` carrying its budget as `grpc-timeout`, with `rpc` on a clone
    /// of the client, e.g. `peer.unary(deadline, Idempotent, &request, async |mut c, r| c.refund(r).await)`.
    ///
    /// # Errors
    /// As [`call`]: the last attempt's status, or DEADLINE_EXCEEDED.
    pub async fn unary<M: Clone, T>(
        &self,
        deadline: Deadline,
        idempotency: Idempotency,
        message: &M,
        rpc: impl AsyncFn(C, Request<M>) -> Result<tonic::Response<T>, Status>,
    ) -> Result<T, Status> {
        call(self.name, &self.policy, deadline, idempotency, |budget| {
            rpc(self.client.clone(), with_timeout(message.clone(), budget))
        })
        .await
        .map(tonic::Response::into_inner)
    }
}

/// Longest one attempt of a peer call may take by default (`PEER_CALL_TIMEOUT_MS`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How calls to one peer are bounded and retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPolicy {
    /// Longest one attempt may take (when the caller's deadline is not shorter).
    pub timeout: Duration,
    /// Retries after the first attempt, for idempotent calls only.
    pub retries: usize,
    /// Pause before the first retry (before jitter); each next pause doubles.
    pub min_backoff: Duration,
    /// Longest pause between two attempts.
    pub max_backoff: Duration,
    /// Bounds the retries of all calls made with this policy and its clones.
    pub budget: RetryBudget,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            retries: 3,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
            budget: RetryBudget::default(),
        }
    }
}

impl CallPolicy {
    /// This policy with a retry budget of its own: one per peer, so one peer's outage does
    /// not spend the retries of calls to another.
    #[must_use]
    pub fn with_own_budget(&self) -> Self {
        Self { budget: RetryBudget::default(), ..self.clone() }
    }
}

/// Whether a call is safe to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Sending it twice has the effect of sending it once (idempotency key, read).
    Idempotent,
    /// Sending it twice may do the work twice: never retried.
    NotIdempotent,
}

/// The instant by which the work for an incoming request must be done, if the caller set one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline from the caller (background work): only the per-call timeout applies.
    pub const NONE: Self = Self(None);

    /// `timeout` from now.
    #[must_use]
    pub fn after(timeout: Duration) -> Self {
        Self(Instant::now().checked_add(timeout))
    }

    /// The deadline the caller of `request` set with `grpc-timeout`, if any.
    #[must_use]
    pub fn from_request<T>(request: &Request<T>) -> Self {
        Self::from_metadata(request.metadata())
    }

    /// The deadline in `grpc-timeout` metadata, if any; a malformed value counts as none
    /// (tonic's own timeout layer has already refused such a request).
    #[must_use]
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map_or(Self::NONE, Self::after)
    }

    /// The latest of `deadlines`: a call made on behalf of several callers lasts while any
    /// of them still waits. No deadline (an empty list, or one caller without) is the latest.
    #[must_use]
    pub fn latest(deadlines: impl IntoIterator<Item = Self>) -> Self {
        let mut latest = None;
        for Self(d) in deadlines {
            let d = match d {
                Some(d) => d,
                None => return Self::NONE,
            };
            latest = Some(latest.map_or(d, |l: Instant| l.max(d)));
        }
        Self(latest)
    }

    /// Waits for `work` until this deadline.
    ///
    /// # Errors
    /// `Err(Elapsed)` when the deadline passes first.
    pub async fn wait<F: Future>(&self, work: F) -> Result<F::Output, tokio::time::error::Elapsed> {
        match self.0 {
            Some(at) => tokio::time::timeout_at(at, work).await,
            None => Ok(work.await),
        }
    }

    /// Time left, or `None` without a deadline.
    #[must_use]
    pub fn remaining(&self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The budget of one attempt: the per-call `timeout`, cut to the time left.
    #[must_use]
    pub fn budget(&self, timeout: Duration) -> Duration {
        self.remaining().map_or(timeout, |left| left.min(timeout))
    }

    fn is_spent(&self) -> bool {
        self.remaining().is_some_and(|left| left.is_zero())
    }
}

/// Parses a `grpc-timeout` header value: at most 8 digits and a unit, one of
/// `H` (hours), `M` (minutes), `S` (seconds), `m` (ms), `u` (µs), `n` (ns), as the gRPC over
/// HTTP/2 specification defines it.
#[must_use]
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3_600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Whether a failed call may pass when sent again.
#[must_use]
pub fn is_transient(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled)
}

/// tonic's client reports a connection that closed under a call (a peer restarting sends
/// GOAWAY; a crashed one resets) as INTERNAL or UNKNOWN with the transport error as source.
/// The peer did not answer, so the outcome is unknown: UNAVAILABLE, and retried like it.
fn connection_lost(peer: &str, status: Status) -> Status {
    let from_transport = std::error::Error::source(&status)
        .is_some_and(|source| source.downcast_ref::<tonic::transport::Error>().is_some());
    if matches!(status.code(), Code::Internal | Code::Unknown) && from_transport {
        Status::unavailable(format!("connection to {peer} lost: {}", status.message()))
    } else {
        status
    }
}

/// Runs `attempt` under `policy` and `deadline`. `attempt` receives its budget; it should
/// put it on the outgoing request with `Request::set_timeout` so the peer knows it too.
///
/// # Errors
/// The last attempt's status; DEADLINE_EXCEEDED when an attempt did not answer within its
/// budget or the deadline was spent before one could start.
pub async fn call<T, F, Fut>(
    peer: &'static str,
    policy: &CallPolicy,
    deadline: Deadline,
    idempotency: Idempotency,
    mut attempt: F,
) -> Result<T, Status>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let once = || {
        let budget = deadline.budget(policy.timeout);
        let call = attempt(budget);
        async move {
            if budget.is_zero() {
                return Err(Status::deadline_exceeded(format!("deadline spent before calling {peer}")));
            }
            match tokio::time::timeout(budget, call).await {
                Ok(answer) => answer.map_err(|s| connection_lost(peer, s)),
                Err(_) => {
                    Err(Status::deadline_exceeded(format!("{peer} did not answer within {} ms", budget.as_millis())))
                }
            }
        }
    };
    let retries = match idempotency {
        Idempotency::Idempotent => policy.retries,
        Idempotency::NotIdempotent => 0,
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_backoff)
        .with_max_delay(policy.max_backoff)
        .with_max_times(retries)
        .with_jitter();
    policy.budget.0.deposit();
    once.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|status| is_transient(status) && !deadline.is_spent())
        // The peer's RetryInfo, when longer, replaces our pause; no budget, no retry.
        .adjust(|status, pause| {
            let pause = pause?.max(crate::status::retry_after(status).unwrap_or_default());
            if policy.budget.0.withdraw() {
                Some(pause)
            } else {
                tracing::warn!(peer, code = ?status.code(), "retry budget spent; not retrying");
                None
            }
        })
        .notify(|status, pause| {
            tracing::warn!(peer, code = ?status.code(), message = status.message(), retry_in_ms = pause.as_millis(), "peer call failed; retrying");
        })
        .await
}

/// Delays between attempts to reopen a long-lived stream or session (a LISTEN session, an
/// upstream watch): exponential from 200 ms to 5 s with jitter, never giving up — the
/// stream's users wait for it, and a down peer must not be hammered. Start a new iterator
/// after each success.
pub fn reconnect_delays() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .with_jitter()
        .build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    fn quick() -> CallPolicy {
        CallPolicy {
            timeout: Duration::from_millis(50),
            retries: 3,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            budget: RetryBudget::default(),
        }
    }

    #[test]
    fn latest_is_the_last_deadline_and_none_outlasts_all() {
        let soon = Deadline::after(Duration::from_millis(100));
        let later = Deadline::after(Duration::from_secs(5));
        assert_eq!(Deadline::latest([soon, later]), later);
        assert_eq!(Deadline::latest([later, soon]), later);
        assert_eq!(Deadline::latest([soon, Deadline::NONE, later]), Deadline::NONE);
        assert_eq!(Deadline::latest([]), Deadline::NONE);
    }

    #[tokio::test]
    async fn wait_gives_up_at_the_deadline() {
        let soon = Deadline::after(Duration::from_millis(20));
        assert!(soon.wait(tokio::time::sleep(Duration::from_secs(5))).await.is_err());
        assert_eq!(soon.wait(async { 7 }).await.ok(), Some(7));
        assert_eq!(Deadline::NONE.wait(async { 8 }).await.ok(), Some(8));
    }

    #[test]
    fn grpc_timeout_values_parse_per_the_spec() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3_600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S", "１S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn budget_is_the_shorter_of_timeout_and_time_left() {
        assert_eq!(Deadline::NONE.budget(Duration::from_secs(2)), Duration::from_secs(2));
        let soon = Deadline::after(Duration::from_millis(300));
        assert!(soon.budget(Duration::from_secs(2)) <= Duration::from_millis(300));
        assert_eq!(Deadline::after(Duration::from_secs(60)).budget(Duration::from_secs(2)), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn transient_failures_of_idempotent_calls_are_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let result = call("peer", &quick(), Deadline::NONE, Idempotency::Idempotent, |_| {
            let calls = calls.clone();
            async move {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(Status::unavailable("down")),
                    1 => Err(Status::deadline_exceeded("slow")),
                    _ => Ok(7),
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_peers_retry_info_sets_the_shortest_pause() {
        let calls = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let result = call("peer", &quick(), Deadline::NONE, Idempotency::Idempotent, |_| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(crate::status::resource_exhausted("OVERLOADED", "busy", Duration::from_millis(150)))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
        assert!(started.elapsed() >= Duration::from_millis(150), "retried after {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_spent_retry_budget_stops_retries() {
        // No free retries per second and 0 % of calls: the budget never allows one.
        let policy = CallPolicy { budget: RetryBudget::new(0, 0.0), ..quick() };
        let calls = Arc::new(AtomicUsize::new(0));
        let result: Result<(), _> = call("peer", &policy, Deadline::NONE, Idempotency::Idempotent, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::unavailable("down")) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the first attempt only");
        // A generous budget lets the same call retry (control).
        let calls = Arc::new(AtomicUsize::new(0));
        let _: Result<(), _> = call("peer", &quick(), Deadline::NONE, Idempotency::Idempotent, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::unavailable("down")) }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let calls = Arc::new(AtomicUsize::new(0));
        let result: Result<(), _> = call("peer", &quick(), Deadline::NONE, Idempotency::Idempotent, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::unavailable("down")) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 4, "one attempt and three retries");
    }

    #[tokio::test]
    async fn non_idempotent_calls_and_definite_answers_are_not_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let result: Result<(), _> = call("peer", &quick(), Deadline::NONE, Idempotency::NotIdempotent, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::unavailable("down")) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Code::Unavailable);
        let result: Result<(), _> = call("peer", &quick(), Deadline::NONE, Idempotency::Idempotent, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::failed_precondition("no")) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Code::FailedPrecondition);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_attempt_that_outlives_its_budget_is_cut_off_and_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let budgets = Arc::new(std::sync::Mutex::new(Vec::new()));
        let result = call("peer", &quick(), Deadline::NONE, Idempotency::Idempotent, |budget| {
            budgets.lock().unwrap().push(budget);
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    std::future::pending::<()>().await;
                }
                Ok(n)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(*budgets.lock().unwrap(), vec![Duration::from_millis(50); 2]);
    }

    #[tokio::test]
    async fn no_attempt_outlives_the_callers_deadline() {
        let started = Instant::now();
        let policy = CallPolicy { timeout: Duration::from_secs(5), retries: 10, ..quick() };
        let result: Result<(), _> =
            call("peer", &policy, Deadline::after(Duration::from_millis(80)), Idempotency::Idempotent, |_| {
                std::future::pending()
            })
            .await;
        assert_eq!(result.unwrap_err().code(), Code::DeadlineExceeded);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "gave up after {took:?}, not at the 80 ms deadline");
    }
}
