//! Refusing cheaply: a per-method rate limit checked in front of the access-token check.
//!
//! During a flood the cheapest answer is the one given before any work: a join refused for
//! load must not first pay for an ES256 signature check (tens of microseconds) or decode its
//! body. The gate sees only the method path, counts calls against a `governor` limiter (GCRA)
//! per gated method, and answers RESOURCE_EXHAUSTED (reason RATE_LIMITED, with a
//! `google.rpc.RetryInfo` saying when a retry can pass) past the rate. Limits per user, which
//! need the verified user, stay in the handlers.
use std::{
    num::NonZeroU32,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::{BoxFuture, FutureExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::Clock};
use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

/// One gated method: its path and its limiter.
#[derive(Debug)]
struct Gate {
    path: &'static str,
    limiter: DefaultDirectRateLimiter,
}

/// Rate limits per method path, in front of everything that costs (see the module docs).
#[derive(Debug, Clone)]
pub struct RateGateLayer {
    gates: Arc<[Gate]>,
}

impl RateGateLayer {
    /// Gates each `(path, calls per second)`: e.g. `("/concert.queue.v1.QueueService/IssueToken", 20_000)`.
    #[must_use]
    pub fn new(rates: &[(&'static str, NonZeroU32)]) -> Self {
        let gates = rates
            .iter()
            .map(|&(path, rate)| Gate { path, limiter: RateLimiter::direct(Quota::per_second(rate)) })
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
        if let Some(gate) = self.gates.iter().find(|g| g.path == request.uri().path())
            && let Err(not_until) = gate.limiter.check()
        {
            crate::metrics::record_shed();
            let wait = not_until.wait_time_from(gate.limiter.clock().now());
            let refusal = crate::status::resource_exhausted(
                "RATE_LIMITED",
                "too many calls of this method on this replica; retry after the pause in RetryInfo",
                wait,
            );
            return futures::future::ready(Ok(refusal.into_http())).boxed();
        }
        // The clone that was polled ready is the one to call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        inner.call(request).boxed()
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
        let gate = RateGateLayer::new(&[(GATED, NonZeroU32::new(5).unwrap())]).layer(Counting(Arc::clone(&reached)));
        let mut refused = 0;
        for _ in 0..20 {
            let response = gate.clone().oneshot(call(GATED)).await.unwrap();
            if let Some(status) = tonic::Status::from_header_map(response.headers()) {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted);
                assert_eq!(crate::status::reason(&status).as_deref(), Some("RATE_LIMITED"));
                let wait = crate::status::retry_after(&status).unwrap();
                assert!(wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_millis(200), "{wait:?}");
                refused += 1;
            }
        }
        assert_eq!(reached.load(Ordering::Relaxed), 5, "the burst of one second passes");
        assert_eq!(refused, 15, "the rest is refused without reaching the inner service");
        // Other methods are not gated.
        for _ in 0..20 {
            gate.clone().oneshot(call("/p.S/Other")).await.unwrap();
        }
        assert_eq!(reached.load(Ordering::Relaxed), 25);
    }
}
