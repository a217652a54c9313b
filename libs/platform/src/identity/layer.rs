//! The tower layer in front of a public server's routes that verifies access tokens.
use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use super::{JwtVerifier, Refusal};

/// Requires a valid access token on every call except the anonymous ones, and hands the
/// verified [`super::Identity`] to the handlers in the request's extensions. A token sent to
/// an anonymous method is still verified: a bad one is refused rather than ignored. A call of
/// a service this port does not route is passed through unverified, so the router answers it
/// UNIMPLEMENTED whoever asks (an internal RPC on a public port says "not here", not "who are
/// you").
#[derive(Debug, Clone)]
pub struct RequireIdentityLayer {
    verifier: JwtVerifier,
    anonymous: Anonymous,
    /// The gRPC services this port routes (`package.Service`); `None`: every path is checked.
    routed: Option<Arc<[&'static str]>>,
}

/// What anyone may call without an access token.
#[derive(Debug, Clone)]
struct Anonymous {
    /// Whole services by path prefix (`/package.Service/`), e.g. health and reflection.
    services: Arc<[&'static str]>,
    /// Single methods (`/package.Service/Method`), e.g. a public concert list.
    methods: Arc<[&'static str]>,
}

impl RequireIdentityLayer {
    /// `anonymous_services`: path prefixes (`/package.Service/`) anyone may call, such as
    /// health checks (probes carry no token) and reflection; `anonymous_methods`: full method
    /// paths (`/package.Service/Method`).
    #[must_use]
    pub fn new(verifier: JwtVerifier, anonymous_services: &[&'static str], anonymous_methods: &[&'static str]) -> Self {
        Self {
            verifier,
            anonymous: Anonymous { services: anonymous_services.into(), methods: anonymous_methods.into() },
            routed: None,
        }
    }

    /// Checks tokens only on calls of these services (`package.Service`, as the port routes
    /// them); any other path goes on to the router unverified, to be answered UNIMPLEMENTED.
    #[must_use]
    pub fn routing_only(mut self, services: &[&'static str]) -> Self {
        self.routed = Some(services.into());
        self
    }
}

impl<S> Layer<S> for RequireIdentityLayer {
    type Service = RequireIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireIdentity {
            inner,
            verifier: self.verifier.clone(),
            anonymous: self.anonymous.clone(),
            routed: self.routed.clone(),
        }
    }
}

/// See [`RequireIdentityLayer`].
#[derive(Debug, Clone)]
pub struct RequireIdentity<S> {
    inner: S,
    verifier: JwtVerifier,
    anonymous: Anonymous,
    routed: Option<Arc<[&'static str]>>,
}

impl<S> RequireIdentity<S> {
    fn is_anonymous(&self, path: &str) -> bool {
        self.anonymous.services.iter().any(|p| path.starts_with(p)) || self.anonymous.methods.contains(&path)
    }

    /// Whether `path` (`/package.Service/Method`) names a service this port routes.
    fn is_routed(&self, path: &str) -> bool {
        let Some(routed) = &self.routed else { return true };
        let service = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        routed.contains(&service)
    }
}

impl<S> Service<Request<Body>> for RequireIdentity<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone that was polled ready is the one to call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let anonymous = self.is_anonymous(request.uri().path());
        if !anonymous && !self.is_routed(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let token = match bearer(request.headers()) {
                Ok(token) => Some(token),
                Err(Refusal::Missing) if anonymous => None,
                Err(refusal) => return Ok(tonic::Status::from(refusal).into_http()),
            };
            if let Some(token) = token {
                match verifier.verify(token).await {
                    Ok(identity) => {
                        request.extensions_mut().insert(identity);
                    }
                    Err(refusal) => return Ok(tonic::Status::from(refusal).into_http()),
                }
            }
            inner.call(request).await
        })
    }
}

/// Waits for the identity provider's keys when a call's access token names a key not yet
/// known ([`JwtVerifier::await_key`], at most `unknown_kid_wait`), and does so in front of
/// the load shedder: the wait holds no in-flight slot, so a flood of made-up key ids cannot
/// fill a replica while the provider is slow. [`RequireIdentityLayer`], behind the shedder,
/// then verifies without waiting.
#[derive(Debug, Clone)]
pub struct AwaitKeysLayer {
    verifier: JwtVerifier,
}

impl AwaitKeysLayer {
    #[must_use]
    pub fn new(verifier: JwtVerifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for AwaitKeysLayer {
    type Service = AwaitKeys<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AwaitKeys { inner, verifier: self.verifier.clone() }
    }
}

/// See [`AwaitKeysLayer`].
#[derive(Debug, Clone)]
pub struct AwaitKeys<S> {
    inner: S,
    verifier: JwtVerifier,
}

impl<S> Service<Request<Body>> for AwaitKeys<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    /// Always ready: the inner service (the shedder) is asked only after the wait, since
    /// being ready there means holding an in-flight slot.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        use tower::ServiceExt as _;
        let inner = self.inner.clone();
        let verifier = self.verifier.clone();
        Box::pin(async move {
            if let Ok(token) = bearer(request.headers()) {
                verifier.await_key(token).await;
            }
            inner.oneshot(request).await
        })
    }
}

/// The token of an `authorization: Bearer <token>` header.
fn bearer(headers: &http::HeaderMap) -> Result<&str, Refusal> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or(Refusal::Missing)?;
    let value = value.to_str().map_err(|_| Refusal::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Refusal::Malformed)?;
    // The scheme is case-insensitive (RFC 9110 §11.1).
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Refusal::Malformed);
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap_or_else(|_| unreachable!()));
        h
    }

    #[test]
    fn bearer_reads_the_token_of_any_case_of_the_scheme() {
        assert_eq!(bearer(&headers("Bearer a.b.c")), Ok("a.b.c"));
        assert_eq!(bearer(&headers("bearer a.b.c")), Ok("a.b.c"));
        assert_eq!(bearer(&http::HeaderMap::new()), Err(Refusal::Missing));
        assert_eq!(bearer(&headers("Basic dXNlcg==")), Err(Refusal::Malformed));
        assert_eq!(bearer(&headers("Bearer ")), Err(Refusal::Malformed));
    }
}
