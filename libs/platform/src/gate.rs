//! Refusing cheaply: a per-method rate limit checked in front of the access-token check.
//!
//! During a flood the cheapest answer is the one given before any work: a join refused for
//! load must not first pay for an ES256 signature check (tens of microseconds) or decode its
//! body. The gate sees only the method path, counts calls against a `governor` limiter (GCRA)
//! per gated method, and answers RESOURCE_EXHAUSTED (reason RATE_LIMITED, with a
//! `google.rpc.RetryInfo`) past the rate. Limits per user, which need the verified user,
//! stay in the handlers.
//!
//! The pause a refusal names is a booked slot, not merely when the next call could pass: the
//! refusals of one method are booked one rate interval apart (a crowd refused in one second
//! at 20,000/s past a gate of 5,000/s is told 0.2 ms, 0.4 ms, … up to 3 s), so a crowd that
//! follows RetryInfo comes back spread at about the gate's rate instead of in waves. Told
//! only "a few milliseconds", a flood of 100,000 joins came back as a retry storm of its own:
//! 400,000–450,000 refused joins in a run, whose cost crowded out the polls of the people
//! about to be admitted (docs/BENCHMARKS.md). A slot is at most [`MAX_RETRY_AFTER`] away.
//!
//! A gated method also holds at most a share of the port's in-flight calls
//! ([`RateGateLayer::new`]'s `max_in_flight`); past it, its calls are refused the same way
//! (reason OVERLOADED, a booked slot). Joins passed by the rate but slower to serve than it
//! (a join is a database write) otherwise piled up until they held the port's whole
//! in-flight budget, and the shedder refused everyone's polls: the people about to be
//! admitted did not hear it and their places stood idle.
//!
//! Slots are booked at the pace the method is served, when that is slower than its rate:
//! a method whose calls take `t` on average with `n` of them in flight is served at about
//! `n / t` calls a second (Little's law), so its refusals are booked `t / n` apart. Booked at
//! the configured rate (5,000/s) while joins were served at ~1,000/s, four in five refused
//! joins came back to a full gate and were refused again (~580,000 refusals in a flood of
//! 100,000 people). The mean is a moving average of the served calls' times, so a slow
//! database lengthens the slots within a few dozen calls and a quick one shortens them.
use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::future::{BoxFuture, FutureExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::Clock};
use http::{Request, Response};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tower::{Layer, Service};

/// The longest pause a refusal names: the longest a waiting client is asked to wait between
/// polls (queue's `MAX_POLL_INTERVAL_SECS`), so a refused caller is never told to stay away
/// longer than a waiting one.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// One gated method: its path, its limiter, and the retry slots booked for its refusals.
#[derive(Debug)]
struct Gate {
    path: &'static str,
    limiter: DefaultDirectRateLimiter,
    /// The calls of this method being served now, at most `max_in_flight`.
    in_flight: Arc<Semaphore>,
    /// One call's share of a second at the gate's rate, in nanoseconds.
    interval_ns: u64,
    /// The calls in flight the method may hold (its semaphore's size).
    max_in_flight: u64,
    /// Moving average of the time a served call took, in nanoseconds (0: none served yet).
    served_ns: AtomicU64,
    /// The next retry slot not yet handed out, in nanoseconds since `epoch`.
    next_slot_ns: AtomicU64,
    epoch: Instant,
}

/// Why a gate refused a call: its reason, what it says, and the soonest a retry could pass.
type Refusal = (&'static str, &'static str, Duration);

impl Gate {
    /// A place among the method's calls in flight and a cell of its rate, or why not. The
    /// place is taken first, so a refusal for lack of one costs no cell of the rate.
    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        let held = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| ("OVERLOADED", "too many calls of this method in progress on this replica", Duration::ZERO))?;
        self.limiter.check().map_err(|not_until| {
            let earliest = not_until.wait_time_from(self.limiter.clock().now());
            ("RATE_LIMITED", "too many calls of this method on this replica", earliest)
        })?;
        Ok(held)
    }

    /// Records how long a served call took, into the moving average (weight 1/16: about the
    /// last few dozen calls count).
    fn served(&self, took: Duration) {
        let sample = nanos(took);
        let _ = self.served_ns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
            Some(if mean == 0 { sample } else { mean - mean / 16 + sample / 16 })
        });
    }

    /// The gap between two booked slots: a rate interval, or longer when the method is
    /// served slower than its rate (mean time of a served call / calls it may hold in flight).
    fn slot_gap_ns(&self) -> u64 {
        let served_pace = self.served_ns.load(Ordering::Relaxed) / self.max_in_flight;
        self.interval_ns.max(served_pace)
    }

    /// Books the next retry slot at least `earliest` from now: how long the refused caller
    /// should wait.
    fn book(&self, earliest: Duration) -> Duration {
        let now = nanos(self.epoch.elapsed());
        let soonest = now.saturating_add(nanos(earliest));
        let latest = now.saturating_add(nanos(MAX_RETRY_AFTER));
        let mut slot = soonest;
        let gap = self.slot_gap_ns();
        // A lost race books again against the newer slot; a slot is never handed out twice.
        let _ = self.next_slot_ns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            slot = next.max(soonest).min(latest);
            Some(slot.saturating_add(gap))
        });
        Duration::from_nanos(slot - now)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Rate limits per method path, in front of everything that costs (see the module docs).
#[derive(Debug, Clone)]
pub struct RateGateLayer {
    gates: Arc<[Gate]>,
}

impl RateGateLayer {
    /// Gates each `(path, calls per second)`: e.g. `("/concert.queue.v1.QueueService/IssueToken", 20_000)`,
    /// each method with at most `max_in_flight` of its calls served at once.
    #[must_use]
    pub fn new(rates: &[(&'static str, NonZeroU32)], max_in_flight: usize) -> Self {
        let gates = rates
            .iter()
            .map(|&(path, rate)| Gate {
                path,
                limiter: RateLimiter::direct(Quota::per_second(rate)),
                in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
                max_in_flight: u64::try_from(max_in_flight.max(1)).unwrap_or(u64::MAX),
                served_ns: AtomicU64::new(0),
                interval_ns: 1_000_000_000 / u64::from(rate.get()),
                next_slot_ns: AtomicU64::new(0),
                epoch: Instant::now(),
            })
            .collect();
        Self { gates }
    }
}

impl<S> Layer<S> for RateGateLayer {
    type Service = RateGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateGate { inner, gates: Arc::clone(&self.gates) }
    }
}

/// See [`RateGateLayer`].
#[derive(Debug, Clone)]
pub struct RateGate<S> {
    inner: S,
    gates: Arc<[Gate]>,
}

impl<S> Service<Request<Body>> for RateGate<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mut admitted = None;
        if let Some(i) = self.gates.iter().position(|g| g.path == request.uri().path()) {
            let gate = &self.gates[i];
            match gate.admit() {
                Ok(held) => admitted = Some((held, i, Instant::now())),
                Err((reason, message, earliest)) => {
                    crate::metrics::record_shed();
                    let refusal = crate::status::resource_exhausted(
                        reason,
                        format!("{message}; retry after the pause in RetryInfo (a slot booked for you)"),
                        gate.book(earliest),
                    );
                    return futures::future::ready(Ok(refusal.into_http())).boxed();
                }
            }
        }
        // The clone that was polled ready is the one to call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let call = inner.call(request);
        // Only a gated call carries its gate along (an ungated one pays no reference count).
        let admitted = admitted.map(|(permit, i, since)| (permit, Arc::clone(&self.gates), i, since));
        async move {
            let response = call.await;
            // Served: its time paces the method's booked slots, and its place among the
            // port's calls in flight is free again.
            if let Some((permit, gates, i, since)) = admitted {
                gates[i].served(since.elapsed());
                drop(permit);
            }
            response
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const GATED: &str = "/p.S/Join";

    /// A service counting the calls that reach it.
    #[derive(Clone)]
    struct Counting(Arc<AtomicUsize>);

    impl Service<Request<Body>> for Counting {
        type Response = Response<Body>;
        type Error = std::convert::Infallible;
        type Future = futures::future::Ready<Result<Response<Body>, std::convert::Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: Request<Body>) -> Self::Future {
            self.0.fetch_add(1, Ordering::Relaxed);
            futures::future::ready(Ok(Response::new(Body::empty())))
        }
    }

    fn call(path: &str) -> Request<Body> {
        Request::post(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn calls_past_the_rate_are_refused_before_they_reach_anything() {
        use tower::ServiceExt;
        let reached = Arc::new(AtomicUsize::new(0));
        let gate =
            RateGateLayer::new(&[(GATED, NonZeroU32::new(5).unwrap())], 100).layer(Counting(Arc::clone(&reached)));
        let mut waits = Vec::new();
        for _ in 0..20 {
            let response = gate.clone().oneshot(call(GATED)).await.unwrap();
            if let Some(status) = tonic::Status::from_header_map(response.headers()) {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted);
                assert_eq!(crate::status::reason(&status).as_deref(), Some("RATE_LIMITED"));
                waits.push(crate::status::retry_after(&status).unwrap());
            }
        }
        assert_eq!(reached.load(Ordering::Relaxed), 5, "the burst of one second passes");
        assert_eq!(waits.len(), 15, "the rest is refused without reaching the inner service");
        // Each refusal is booked its own slot, a rate interval (200 ms) after the previous:
        // the crowd is told to come back spread over three seconds, not all at once.
        assert!(waits[0] > Duration::ZERO && waits[0] <= Duration::from_millis(200), "{:?}", waits[0]);
        for pair in waits.windows(2) {
            let gap = pair[1].saturating_sub(pair[0]);
            assert!(gap >= Duration::from_millis(150) && gap <= Duration::from_millis(250), "{waits:?}");
        }
        assert!(waits[14] >= Duration::from_millis(2_800) && waits[14] <= MAX_RETRY_AFTER, "{waits:?}");
        // Other methods are not gated.
        for _ in 0..20 {
            gate.clone().oneshot(call("/p.S/Other")).await.unwrap();
        }
        assert_eq!(reached.load(Ordering::Relaxed), 25);
    }

    /// A service whose calls wait until the test lets one finish.
    #[derive(Clone)]
    struct Held(Arc<Semaphore>, Arc<AtomicUsize>);

    impl Service<Request<Body>> for Held {
        type Response = Response<Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<'static, Result<Response<Body>, std::convert::Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: Request<Body>) -> Self::Future {
            self.1.fetch_add(1, Ordering::SeqCst);
            let release = Arc::clone(&self.0);
            async move {
                release.acquire().await.unwrap().forget();
                Ok(Response::new(Body::empty()))
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn a_method_holds_at_most_its_share_of_the_calls_in_flight() {
        use tower::ServiceExt;
        let (release, reached) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
        let gate = RateGateLayer::new(&[(GATED, NonZeroU32::new(1_000).unwrap())], 2)
            .layer(Held(Arc::clone(&release), Arc::clone(&reached)));
        let first = tokio::spawn(gate.clone().oneshot(call(GATED)));
        let second = tokio::spawn(gate.clone().oneshot(call(GATED)));
        while reached.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        let third = gate.clone().oneshot(call(GATED)).await.unwrap();
        let status = tonic::Status::from_header_map(third.headers()).expect("refused");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(crate::status::reason(&status).as_deref(), Some("OVERLOADED"));
        assert!(crate::status::retry_after(&status).is_some(), "a slot is named");
        assert_eq!(reached.load(Ordering::SeqCst), 2, "the refused call reached nothing");
        // Other methods are not held back by it.
        let other = tokio::spawn(gate.clone().oneshot(call("/p.S/Other")));
        while reached.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        // One served: its place is free for the next.
        release.add_permits(1);
        let done = first.await.unwrap().unwrap();
        assert!(tonic::Status::from_header_map(done.headers()).is_none());
        let fourth = tokio::spawn(gate.clone().oneshot(call(GATED)));
        while reached.load(Ordering::SeqCst) < 4 {
            tokio::task::yield_now().await;
        }
        release.add_permits(3);
        for call in [second, other, fourth] {
            assert!(tonic::Status::from_header_map(call.await.unwrap().unwrap().headers()).is_none());
        }
    }

    #[test]
    fn a_booked_slot_is_never_further_than_the_longest_pause() {
        let gate = RateGateLayer::new(&[(GATED, NonZeroU32::new(1).unwrap())], 100);
        let waits: Vec<_> = (0..100).map(|_| gate.gates[0].book(Duration::ZERO)).collect();
        let second = Duration::from_secs(1);
        assert!(
            waits[1] > second - Duration::from_millis(50) && waits[1] <= second,
            "a second apart: {:?}",
            &waits[..3]
        );
        assert!(waits.iter().all(|w| *w <= MAX_RETRY_AFTER), "{waits:?}");
        assert!(waits[99] >= MAX_RETRY_AFTER - Duration::from_secs(1), "a crowd past the cap is told the cap");
    }

    #[test]
    fn slots_are_booked_at_the_pace_calls_are_served_when_slower_than_the_rate() {
        // 10,000/s allowed (0.1 ms apart), 4 calls in flight, each served in 200 ms: the
        // method is served at ~20/s, so refusals are booked ~50 ms apart.
        let gate = RateGateLayer::new(&[(GATED, NonZeroU32::new(10_000).unwrap())], 4);
        let g = &gate.gates[0];
        let quick: Vec<_> = (0..3).map(|_| g.book(Duration::ZERO)).collect();
        assert!(quick[2] - quick[1] < Duration::from_millis(1), "nothing served yet: the rate's pace {quick:?}");
        for _ in 0..50 {
            g.served(Duration::from_millis(200));
        }
        let slow: Vec<_> = (0..3).map(|_| g.book(Duration::ZERO)).collect();
        for pair in slow.windows(2) {
            let gap = pair[1].saturating_sub(pair[0]);
            assert!(gap >= Duration::from_millis(45) && gap <= Duration::from_millis(55), "{slow:?}");
        }
        // Served quickly again: the average follows within a few dozen calls, and the gap
        // never falls below the rate's.
        for _ in 0..200 {
            g.served(Duration::from_micros(10));
        }
        assert_eq!(g.slot_gap_ns(), 100_000, "the rate's interval");
    }

    #[test]
    fn a_refusal_the_limiter_puts_later_keeps_its_own_pause() {
        // Later than the next slot: the limiter's pause stands.
        let later = RateGateLayer::new(&[(GATED, NonZeroU32::new(1_000).unwrap())], 100);
        assert_eq!(later.gates[0].book(Duration::from_secs(2)), Duration::from_secs(2));
    }
}
