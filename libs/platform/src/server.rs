//! The gRPC server stack every service runs, on two ports: a **public** one (the services a
//! browser or user may call: grpc-web with CORS through tonic-web, HTTP/1.1 accepted
//! alongside HTTP/2, and access-token verification) and an **internal** one (peer and admin
//! services, plain gRPC). Each port has the standard health service (tonic-health), server
//! reflection v1 and v1alpha for what it serves (so both `buf curl` and the grpcurl 1.8
//! shipped on PyPI can list and call methods), load shedding, RPC metrics
//! ([`crate::metrics`]), a trace per call continued from the caller's W3C trace context, and
//! graceful shutdown. A public port never answers an internal RPC: the service is not routed there,
//! so the call gets UNIMPLEMENTED.
use std::{future::Future, num::NonZeroU32, time::Duration};

use crate::{
    gate::RateGateLayer,
    identity::{
        Authentication,
        layer::{AwaitKeysLayer, RequireIdentityLayer},
    },
    metrics::RpcMetricsLayer,
};
use futures::FutureExt;
use http::HeaderName;
use tokio::net::TcpListener;
use tonic::{
    body::Body,
    service::{Routes, RoutesBuilder},
    transport::server::TcpIncoming,
};
use tonic_health::ServingStatus;
use tonic_tracing_opentelemetry::middleware::server::OtelGrpcLayer;
use tower::{
    BoxError,
    limit::GlobalConcurrencyLimitLayer,
    load_shed::{LoadShedLayer, error::Overloaded},
    steer::Steer,
    util::{MapResponseLayer, MapResultLayer, option_layer},
};
use tower_http::{
    classify::{GrpcCode, GrpcErrorsAsFailures, SharedClassifier},
    cors::{AllowOrigin, CorsLayer},
    trace::TraceLayer,
};

/// Load limits of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most requests worked on at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` each client connection is offered: one
    /// connection cannot open more calls (e.g. WatchQueue streams) than this at once.
    pub max_streams_per_connection: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_in_flight: 1_024, max_streams_per_connection: 256 }
    }
}

/// A rate-limited method (IssueToken) holds at most this share (1/n) of a port's in-flight
/// calls: the rest stays for the calls of people already in line (polls, streams), which
/// joins that pass the rate faster than they are served must not crowd out (see
/// [`crate::gate`]).
pub const GATED_SHARE_OF_IN_FLIGHT: usize = 4;

/// How long a shed caller is told to wait before trying again.
pub const OVERLOADED_RETRY_AFTER: Duration = Duration::from_millis(100);

/// One port of a service: what it serves and to whom.
pub struct Port {
    /// Where it listens.
    pub listener: TcpListener,
    /// The gRPC services served here.
    pub routes: Routes,
    /// Their fully qualified names: reported SERVING by this port's health service (with the
    /// empty name for the server as a whole) and listed by its reflection.
    pub names: Vec<&'static str>,
    /// Who may call it.
    pub access: Access,
}

impl Port {
    /// The port browsers and users call, serving `routes` (named `names`).
    #[must_use]
    pub fn public(
        listener: TcpListener,
        routes: Routes,
        names: Vec<&'static str>,
        auth: Authentication,
        anonymous: Vec<&'static str>,
    ) -> Self {
        Self { listener, routes, names, access: Access::Public { auth, anonymous, rate_limits: Vec::new() } }
    }

    /// Refuses calls of `path` past `per_second` on this replica before anything else is
    /// done with them (no token check, no body decoded): RESOURCE_EXHAUSTED RATE_LIMITED with
    /// RetryInfo. Only on a public port; an internal port ignores it.
    #[must_use]
    pub fn with_rate_limit(mut self, path: &'static str, per_second: NonZeroU32) -> Self {
        if let Access::Public { rate_limits, .. } = &mut self.access {
            rate_limits.push((path, per_second));
        }
        self
    }

    /// The port peers and operators call, serving `routes` (named `names`).
    #[must_use]
    pub fn internal(listener: TcpListener, routes: Routes, names: Vec<&'static str>) -> Self {
        Self { listener, routes, names, access: Access::Internal }
    }
}

/// A service's two listening sockets.
#[derive(Debug)]
pub struct Listeners {
    /// For browsers and users (`LISTEN_ADDR`).
    pub public: TcpListener,
    /// For peers and operators (`INTERNAL_LISTEN_ADDR`).
    pub internal: TcpListener,
}

/// Who a port is for.
pub enum Access {
    /// Browsers (grpc-web with CORS, HTTP/1.1 accepted) and users: every call needs a valid
    /// access token unless its method path is in `anonymous` (see [`crate::identity`]);
    /// `rate_limits` are checked before the token (see [`crate::gate`]).
    Public { auth: Authentication, anonymous: Vec<&'static str>, rate_limits: Vec<(&'static str, NonZeroU32)> },
    /// Peer services and operators inside the cluster: gRPC over HTTP/2, no user tokens.
    /// Kept from browsers and users by the network (Kubernetes NetworkPolicy), not by this
    /// server.
    Internal,
}

/// The health service name a liveness probe asks (`grpc: {port, service: liveness}`): SERVING
/// while the process serves, whatever its database. The server as a whole ("") and each
/// service follow the database as well (readiness): a replica whose database is down must be
/// taken out of rotation, not restarted — restarting it would not bring the database back.
pub const LIVENESS: &str = "liveness";

/// The shutdown future shared by a service's ports.
type SharedShutdown = futures::future::Shared<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>;

/// Serves every port until `shutdown` resolves, then drains in-flight calls on all of them.
///
/// # Errors
/// When a port cannot serve or reflection cannot load the descriptor set.
///
/// `database`, when given, is whether the replica's database answers
/// (`db::watch_reachable`): every port's health reports NOT_SERVING while it does not.
pub async fn serve(
    ports: Vec<Port>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    database: Option<tokio::sync::watch::Receiver<bool>>,
) -> anyhow::Result<()> {
    let shutdown: SharedShutdown = (Box::pin(shutdown) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>).shared();
    futures::future::try_join_all(
        ports.into_iter().map(|port| serve_port(port, limits, shutdown.clone(), database.clone())),
    )
    .await?;
    Ok(())
}

/// The port's health service, SERVING for [`LIVENESS`], the whole server ("") and `names`;
/// the last two follow `database` from now on, when given.
async fn health(
    names: &[&'static str],
    database: Option<tokio::sync::watch::Receiver<bool>>,
    shutdown: &SharedShutdown,
) -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_service_status(LIVENESS, ServingStatus::Serving).await;
    reporter.set_service_status("", ServingStatus::Serving).await;
    for name in names {
        reporter.set_service_status(*name, ServingStatus::Serving).await;
    }
    if let Some(database) = database {
        tokio::spawn(follow_database(reporter.clone(), names.to_vec(), database, shutdown.clone()));
    }
    (reporter, health_service)
}

/// Reports `names` (and the whole server, "") SERVING or NOT_SERVING as the database is
/// reachable or not, until `shutdown` (which then reports NOT_SERVING for good).
async fn follow_database(
    reporter: tonic_health::server::HealthReporter,
    names: Vec<&'static str>,
    mut database: tokio::sync::watch::Receiver<bool>,
    shutdown: SharedShutdown,
) {
    let follow = async {
        loop {
            let status = if *database.borrow_and_update() { ServingStatus::Serving } else { ServingStatus::NotServing };
            reporter.set_service_status("", status).await;
            for name in &names {
                reporter.set_service_status(*name, status).await;
            }
            if database.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = follow => {}
        () = shutdown => {}
    }
}

/// Adds server reflection (v1 and v1alpha) to `builder`, listing and describing only what
/// the port routes (`names`, plus health): an anonymous caller of a public port learns
/// nothing of the internal services (crate::reflection).
fn add_reflection(builder: &mut RoutesBuilder, names: &[&'static str]) -> anyhow::Result<()> {
    let described = crate::reflection::pruned(concert_proto::FILE_DESCRIPTOR_SET, names)?;
    let mut reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(described.clone())
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health");
    let mut reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(described)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health");
    for name in names {
        reflection_v1 = reflection_v1.with_service_name(*name);
        reflection_v1alpha = reflection_v1alpha.with_service_name(*name);
    }
    builder.add_service(reflection_v1.build_v1()?).add_service(reflection_v1alpha.build_v1alpha()?);
    Ok(())
}

/// The layers a port's access needs: whether browsers call it (grpc-web, CORS), the
/// per-method rate gate, the access-token check and the wait for unknown signing keys.
struct AccessLayers {
    browsers: bool,
    gate: Option<RateGateLayer>,
    identity: Option<RequireIdentityLayer>,
    await_keys: Option<AwaitKeysLayer>,
}

fn access_layers(access: Access, names: &[&'static str], max_in_flight: usize) -> AccessLayers {
    let gate = match &access {
        Access::Public { rate_limits, .. } if !rate_limits.is_empty() => {
            Some(RateGateLayer::new(rate_limits, max_in_flight / GATED_SHARE_OF_IN_FLIGHT))
        }
        _ => None,
    };
    let (browsers, identity, await_keys) = match access {
        Access::Public { auth: Authentication::Jwt(verifier), anonymous, .. } => (
            true,
            Some(RequireIdentityLayer::new(verifier.clone(), &EXEMPT_PREFIXES, &anonymous).routing_only(names)),
            Some(AwaitKeysLayer::new(verifier)),
        ),
        Access::Public { auth: Authentication::Disabled, .. } => (true, None, None),
        Access::Internal => (false, None, None),
    };
    AccessLayers { browsers, gate, identity, await_keys }
}

async fn serve_port(
    port: Port,
    limits: Limits,
    shutdown: SharedShutdown,
    database: Option<tokio::sync::watch::Receiver<bool>>,
) -> anyhow::Result<()> {
    let Port { listener, routes, names, access } = port;
    let (reporter, health_service) = health(&names, database, &shutdown).await;

    let mut builder = RoutesBuilder::from(routes);
    add_reflection(&mut builder, &names)?;
    builder.add_service(health_service);

    let addr = listener.local_addr()?;
    let AccessLayers { browsers, gate, identity, await_keys } = access_layers(access, &names, limits.max_in_flight);
    tracing::info!(
        %addr,
        port = if browsers { "public" } else { "internal" },
        user_tokens = identity.is_some(),
        "gRPC server listening"
    );

    // Ask peers to go away on shutdown; when health flips to NOT_SERVING first, load
    // balancers stop sending new calls before in-flight ones are drained.
    let shutdown = async move {
        shutdown.await;
        reporter.set_service_status("", ServingStatus::NotServing).await;
        for name in &names {
            reporter.set_service_status(*name, ServingStatus::NotServing).await;
        }
        tracing::info!(%addr, "shutdown requested: draining in-flight calls");
    };

    // Nagle must be off on accepted sockets: a response written in two pieces would
    // otherwise wait ~40 ms for the client's delayed ACK. `Server::tcp_nodelay` applies
    // only to listeners tonic binds itself, so it is set on the incoming stream here.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let max_in_flight = limits.max_in_flight;
    tonic::transport::Server::builder()
        .accept_http1(browsers)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(Some(limits.max_streams_per_connection))
        .layer(option_layer(browsers.then(cors)))
        .layer(option_layer(browsers.then(tonic_web::GrpcWebLayer::new)))
        // Duration and status of every call, shed and refused ones included.
        .layer(RpcMetricsLayer::new(&EXEMPT_PREFIXES))
        // A call whose access token names a key not yet known waits for the key set here,
        // briefly and before taking an in-flight slot (identity::layer::AwaitKeysLayer).
        .layer(option_layer(await_keys))
        // Load shedding: past `max_in_flight` calls on this port, refuse at once rather
        // than queue without bound. Inside grpc-web, so browsers get a readable status too,
        // and outside token verification, so a flood of bad tokens is shed as well.
        // Health checks and reflection bypass it: a probe refused at the sale's peak would
        // make Kubernetes restart a replica that is merely busy.
        .layer(tower::layer::layer_fn(move |routes| shed_except_probes(routes, max_in_flight)))
        // Per-method rate limits (IssueToken's total), before the token check: a refusal
        // for load costs no signature check and no body decoding.
        .layer(option_layer(gate))
        .layer(option_layer(identity))
        // Continues the caller's trace (W3C `traceparent`) or starts one: one server span
        // per call, parent of everything the handler does. Inside the shedder and the token
        // check, so a flood that is refused costs no spans.
        .layer(OtelGrpcLayer::default().filter(traced))
        .layer(MapResponseLayer::new(|r: http::Response<_>| r.map(Body::new)))
        // Logs calls that failed through the server's fault, inside the call's span so the
        // log line carries its trace id.
        .layer(TraceLayer::new(SharedClassifier::new(caller_errors_are_not_failures())))
        .add_routes(builder.routes())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    tracing::info!(%addr, "server stopped");
    Ok(())
}

/// The boxed form of the server's inner service, so the shedding and the exempt paths can
/// be steered between.
type HttpService = tower::util::BoxCloneSyncService<http::Request<Body>, http::Response<Body>, BoxError>;

/// Picks the service (index into the steered list) for a request.
type Picker = fn(&http::Request<Body>, &[HttpService]) -> usize;

/// Calls to these gRPC services are never shed and need no access token (liveness/readiness
/// probes carry none; reflection describes only the contract).
const EXEMPT_PREFIXES: [&str; 3] =
    ["/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

/// Whether a call gets a trace: probes and reflection do not.
fn traced(path: &str) -> bool {
    !EXEMPT_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// `routes` behind the load shedder (a concurrency limit of `max_in_flight` that refuses at
/// once), except the paths in [`EXEMPT_PREFIXES`], which go to `routes` past the cap on
/// anonymous streams only.
fn shed_except_probes<S>(routes: S, max_in_flight: usize) -> Steer<HttpService, Picker, http::Request<Body>>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    // Exempt from shedding, but their streams are capped (crate::anonymous).
    let streams = crate::anonymous::AnonymousStreams::default();
    let exempt_routes = routes.clone();
    let exempt = HttpService::new(tower::service_fn(move |request| {
        let (routes, streams) = (exempt_routes.clone(), streams.clone());
        async move { streams.call(routes, request).await.map_err(Into::into) }
    }));
    let shed = HttpService::new(
        tower::ServiceBuilder::new()
            .layer(MapResultLayer::new(overloaded_to_status))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(max_in_flight))
            .service(routes),
    );
    fn pick(request: &http::Request<Body>, _: &[HttpService]) -> usize {
        usize::from(!EXEMPT_PREFIXES.iter().any(|p| request.uri().path().starts_with(p)))
    }
    Steer::new(vec![exempt, shed], pick as Picker)
}

/// Request tracing logs a call as failed (at ERROR) only when the server is at fault or
/// overloaded: answers about the caller's request (a taken seat, a bad field, a missing
/// token) are normal outcomes of a sale, not errors to page anyone about.
fn caller_errors_are_not_failures() -> GrpcErrorsAsFailures {
    [
        GrpcCode::Cancelled,
        GrpcCode::InvalidArgument,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unauthenticated,
    ]
    .into_iter()
    .fold(GrpcErrorsAsFailures::new(), GrpcErrorsAsFailures::with_success)
}

/// Turns the load shedder's refusal into RESOURCE_EXHAUSTED (reason OVERLOADED, with a
/// RetryInfo) instead of an error that would end the HTTP/2 stream.
fn overloaded_to_status(result: Result<http::Response<Body>, BoxError>) -> Result<http::Response<Body>, BoxError> {
    match result {
        Err(e) if e.is::<Overloaded>() => Ok({
            crate::metrics::record_shed();
            crate::status::resource_exhausted(
                "OVERLOADED",
                "server busy: too many requests in flight; retry after a short pause",
                OVERLOADED_RETRY_AFTER,
            )
            .into_http()
        }),
        other => other,
    }
}

/// The grpc-web CORS header lists, shared with Envoy (`deploy/grpc-web-cors.txt`).
const GRPC_WEB_CORS: &str = include_str!("../../../deploy/grpc-web-cors.txt");

/// The headers on the `kind:` line (`allow` or `expose`) of [`GRPC_WEB_CORS`]. Every name
/// parses (tested), so none is dropped.
fn cors_headers(kind: &str) -> Vec<HeaderName> {
    GRPC_WEB_CORS
        .lines()
        .filter_map(|line| line.strip_prefix(kind)?.strip_prefix(':'))
        .flat_map(|list| list.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// CORS for grpc-web browser clients: any origin (tokens, not cookies, authorise calls),
/// the request headers a call sends, and the gRPC trailers a browser must be allowed to read.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([http::Method::POST, http::Method::OPTIONS])
        .allow_headers(cors_headers("allow"))
        .expose_headers(cors_headers("expose"))
        .max_age(Duration::from_secs(24 * 60 * 60))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (Kubernetes pod termination).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tonic::body::Body;
    use tower::{Layer, ServiceExt};

    #[test]
    fn every_shared_cors_header_parses() {
        for kind in ["allow", "expose"] {
            let line = super::GRPC_WEB_CORS.lines().find(|l| l.starts_with(&format!("{kind}:"))).unwrap();
            assert_eq!(super::cors_headers(kind).len(), line.split(',').count(), "{line}");
        }
    }

    /// Issue #27, item 2: a browser calling a public port directly may send the queue token
    /// and trace context (the preflight refused them), and may read gRPC's trailers.
    #[tokio::test]
    async fn a_browser_may_send_the_queue_token_and_trace_context() {
        let inner = tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        });
        let preflight = http::Request::builder()
            .method("OPTIONS")
            .uri("/concert.reservation.v1.ReservationService/HoldSeat")
            .header("origin", "http://localhost:8080")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type,x-grpc-web,x-queue-token,traceparent")
            .body(Body::empty())
            .unwrap();
        let response = super::cors().layer(inner).oneshot(preflight).await.unwrap();
        let allowed = response.headers()["access-control-allow-headers"].to_str().unwrap().to_owned();
        for name in ["authorization", "content-type", "x-grpc-web", "x-queue-token", "traceparent"] {
            assert!(allowed.split(',').any(|a| a.trim() == name), "{name} not in {allowed}");
        }
        let call = http::Request::builder()
            .method("POST")
            .uri("/concert.reservation.v1.ReservationService/HoldSeat")
            .header("origin", "http://localhost:8080")
            .body(Body::empty())
            .unwrap();
        let response = super::cors().layer(inner).oneshot(call).await.unwrap();
        let exposed = response.headers()["access-control-expose-headers"].to_str().unwrap();
        assert!(exposed.contains("grpc-status-details-bin"), "{exposed}");
    }
}
