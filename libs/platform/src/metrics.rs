//! Prometheus metrics: the `metrics` facade, exported in Prometheus text format by
//! `metrics-exporter-prometheus` on `METRICS_ADDR` (`GET /metrics`; unset = no metrics).
//!
//! Names follow the OpenTelemetry semantic conventions where one exists (RPC:
//! `rpc.server.call.duration` in seconds with `rpc.system`, `rpc.service`, `rpc.method` and
//! `rpc.grpc.status_code`; database pools: `db.client.connection.count` by `state`), written
//! the Prometheus way (dots as underscores, unit suffix, `_total` on counters). Every metric
//! the suite exports is listed in [`CATALOGUE`], which the README's table and the dashboard
//! check are held to.
//!
//! Several replicas export the same names; Prometheus tells them apart by its `instance`
//! label, and gauges read from the shared database (payments by state, live holds) are the
//! same on every replica: aggregate those with `max`, not `sum`.
use std::{
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tonic::body::Body;
use tower::{Layer, Service};

/// What kind of instrument a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (Prometheus `_total`).
    Counter,
    /// Goes up and down; the latest value is exported.
    Gauge,
    /// A distribution, exported as cumulative buckets with `_sum` and `_count`.
    Histogram,
}

/// One metric of the suite: its exported name, kind, unit and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The name as Prometheus shows it (histograms add `_bucket`, `_sum`, `_count`).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The unit of its values.
    pub unit: Unit,
    /// Its labels.
    pub labels: &'static str,
    /// What it measures.
    pub help: &'static str,
}

const fn metric(name: &'static str, kind: Kind, unit: Unit, labels: &'static str, help: &'static str) -> Metric {
    Metric { name, kind, unit, labels, help }
}

/// Duration of one gRPC call handled by this replica, from its arrival to its status.
pub const RPC_SERVER_CALL_DURATION: &str = "rpc_server_call_duration_seconds";
/// gRPC calls this replica is working on now.
pub const RPC_SERVER_ACTIVE_CALLS: &str = "rpc_server_active_calls";
/// Calls refused at once because `MAX_IN_FLIGHT_REQUESTS` were in flight.
pub const RPC_SERVER_SHED_CALLS: &str = "rpc_server_shed_calls_total";
/// Items handled together in one batch, per batch.
pub const BATCH_ITEMS: &str = "batch_items";
/// Pooled database connections by state.
pub const DB_CONNECTIONS: &str = "db_client_connection_count";
/// The pool's connection limit.
pub const DB_CONNECTIONS_MAX: &str = "db_client_connection_max";
/// How long a caller waited for a pooled connection.
pub const DB_CONNECTION_WAIT: &str = "db_client_connection_wait_time_seconds";
/// People waiting in a concert's line.
pub const QUEUE_WAITING: &str = "queue_waiting_tokens";
/// People admitted to a concert and not yet expired.
pub const QUEUE_ACTIVE: &str = "queue_active_tokens";
/// Admissions from the line to ACTIVE.
pub const QUEUE_ADMISSIONS: &str = "queue_admissions_total";
/// Holds now live (HELD and not expired), across the suite.
pub const RESERVATION_HOLDS_LIVE: &str = "reservation_holds_live";
/// Payments by saga state, across the suite.
pub const RESERVATION_PAYMENTS: &str = "reservation_payments";
/// Payments the recovery worker gave up on after `PAYMENT_MAX_ATTEMPTS`: a person must look.
pub const RESERVATION_PAYMENTS_NEEDING_PERSON: &str = "reservation_payments_needing_person";
/// Unfinished payments older than the recovery delay: the recovery backlog.
pub const RESERVATION_RECOVERY_BACKLOG: &str = "reservation_recovery_backlog";
/// Recovery attempts on unfinished payments.
pub const RESERVATION_RECOVERY_ATTEMPTS: &str = "reservation_recovery_attempts_total";
/// Wallet mutations applied, by kind and outcome.
pub const WALLET_MUTATIONS: &str = "wallet_mutations_total";

/// Every metric the suite exports.
pub const CATALOGUE: &[Metric] = &[
    metric(
        RPC_SERVER_CALL_DURATION,
        Kind::Histogram,
        Unit::Seconds,
        "rpc_system, rpc_service, rpc_method, rpc_grpc_status_code",
        "Duration of one gRPC call on this replica, arrival to status (health and reflection excluded; unknown methods as `_OTHER`)",
    ),
    metric(RPC_SERVER_ACTIVE_CALLS, Kind::Gauge, Unit::Count, "", "gRPC calls in flight on this replica"),
    metric(
        RPC_SERVER_SHED_CALLS,
        Kind::Counter,
        Unit::Count,
        "",
        "Calls refused with RESOURCE_EXHAUSTED (OVERLOADED) because MAX_IN_FLIGHT_REQUESTS were in flight",
    ),
    metric(
        BATCH_ITEMS,
        Kind::Histogram,
        Unit::Count,
        "batch",
        "Items per batch (holds, joins, debits, token checks …)",
    ),
    metric(
        DB_CONNECTIONS,
        Kind::Gauge,
        Unit::Count,
        "state (idle, used)",
        "Pooled PostgreSQL connections (sampled every second)",
    ),
    metric(DB_CONNECTIONS_MAX, Kind::Gauge, Unit::Count, "", "The pool's limit, DATABASE_MAX_CONNECTIONS"),
    metric(
        DB_CONNECTION_WAIT,
        Kind::Histogram,
        Unit::Seconds,
        "",
        "Time each query or transaction waited for a pooled connection (callers queue here when the pool is saturated)",
    ),
    metric(
        QUEUE_WAITING,
        Kind::Gauge,
        Unit::Count,
        "concert_id",
        "WAITING tokens in the concert's line (this replica's latest read)",
    ),
    metric(
        QUEUE_ACTIVE,
        Kind::Gauge,
        Unit::Count,
        "concert_id",
        "ACTIVE (admitted, unexpired) tokens of the concert (this replica's latest read)",
    ),
    metric(
        QUEUE_ADMISSIONS,
        Kind::Counter,
        Unit::Count,
        "",
        "Tokens admitted from the line to ACTIVE by this replica's admission rounds",
    ),
    metric(
        RESERVATION_HOLDS_LIVE,
        Kind::Gauge,
        Unit::Count,
        "",
        "Holds now live, whole suite (same on every replica: use max)",
    ),
    metric(
        RESERVATION_PAYMENTS,
        Kind::Gauge,
        Unit::Count,
        "state",
        "Payments by saga state (STARTED, CONFIRMED, COMPLETED, COMPENSATING, COMPENSATED, FAILED), whole suite, read every 5 s (same on every replica: use max)",
    ),
    metric(
        RESERVATION_PAYMENTS_NEEDING_PERSON,
        Kind::Gauge,
        Unit::Count,
        "",
        "Unfinished payments past PAYMENT_MAX_ATTEMPTS: recovery stopped, a person must look",
    ),
    metric(
        RESERVATION_RECOVERY_BACKLOG,
        Kind::Gauge,
        Unit::Count,
        "",
        "Unfinished payments older than the recovery delay, waiting for the recovery worker",
    ),
    metric(RESERVATION_RECOVERY_ATTEMPTS, Kind::Counter, Unit::Count, "", "Recovery attempts on unfinished payments"),
    metric(
        WALLET_MUTATIONS,
        Kind::Counter,
        Unit::Count,
        "kind (CHARGE, DEBIT, REFUND), outcome (applied, replayed, refused, error)",
        "Wallet mutations answered",
    ),
];

/// Bucket bounds of RPC durations, in seconds: 1 ms to 10 s, finer where the
/// sale's targets are (p99 ≤ 100 ms).
const DURATION_BUCKETS: &[f64] =
    &[0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Bucket bounds of batch sizes, in items.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Starts the Prometheus exporter on `addr` (`GET /metrics`) and describes every metric in
/// [`CATALOGUE`]. With `None` nothing is exported and recording costs next to nothing.
/// Call once, inside the runtime.
///
/// # Errors
/// When the address cannot be bound or a recorder is already installed.
pub fn install(addr: Option<SocketAddr>) -> anyhow::Result<()> {
    let Some(addr) = addr else { return Ok(()) };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_ITEMS.into()), BATCH_BUCKETS)?
        .install()
        .map_err(|e| anyhow::anyhow!("metrics exporter on {addr}: {e}"))?;
    describe();
    // Exported from the start, so a dashboard or alert naming them finds a series (at 0)
    // before the first call is shed.
    counter!(RPC_SERVER_SHED_CALLS).absolute(0);
    gauge!(RPC_SERVER_ACTIVE_CALLS).set(0.0);
    tracing::info!(%addr, "Prometheus metrics at /metrics");
    Ok(())
}

fn describe() {
    for m in CATALOGUE {
        match m.kind {
            Kind::Counter => describe_counter!(m.name, m.unit, m.help),
            Kind::Gauge => describe_gauge!(m.name, m.unit, m.help),
            Kind::Histogram => describe_histogram!(m.name, m.unit, m.help),
        }
    }
}

/// Samples a pool's connections into [`DB_CONNECTIONS`] and [`DB_CONNECTIONS_MAX`] every
/// second, until dropped. A background task: give it to the service's task set. (sqlx does
/// not tell how many callers wait for a connection; a pool with every connection used is
/// the saturation signal.)
pub async fn sample_pool(pool: sqlx::PgPool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let size = pool.size();
        #[allow(clippy::cast_precision_loss)]
        let idle = pool.num_idle() as f64;
        gauge!(DB_CONNECTIONS, "state" => "idle").set(idle);
        gauge!(DB_CONNECTIONS, "state" => "used").set(f64::from(size) - idle);
        gauge!(DB_CONNECTIONS_MAX).set(f64::from(pool.options().get_max_connections()));
    }
}

/// The `tracing` target of sqlx's "acquired connection" events.
pub const SQLX_ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

/// A tracing layer that records sqlx's "acquired connection" events (target
/// [`SQLX_ACQUIRE_TARGET`], field `aquired_after_secs`, one per acquire: the suite's pools
/// ask for them when they are opened) into [`DB_CONNECTION_WAIT`]. sqlx counts no waiters,
/// but it times every acquire, so the wait callers see is measured where it happens.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolWaitLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PoolWaitLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct WaitedSecs(Option<f64>);
        impl tracing::field::Visit for WaitedSecs {
            fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
                // sqlx 0.8 spells it this way.
                if field.name() == "aquired_after_secs" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if event.metadata().target() != SQLX_ACQUIRE_TARGET {
            return;
        }
        let mut waited = WaitedSecs(None);
        event.record(&mut waited);
        if let Some(secs) = waited.0 {
            histogram!(DB_CONNECTION_WAIT).record(secs);
        }
    }
}

/// Counts a call refused by the load shedder.
pub(crate) fn record_shed() {
    counter!(RPC_SERVER_SHED_CALLS).increment(1);
}

/// Records one batch's size.
pub(crate) fn record_batch(batch: &'static str, items: usize) {
    #[allow(clippy::cast_precision_loss)]
    histogram!(BATCH_ITEMS, "batch" => batch).record(items as f64);
}

/// Tower layer recording [`RPC_SERVER_CALL_DURATION`] and [`RPC_SERVER_ACTIVE_CALLS`] for
/// every gRPC call except those whose path starts with one of `exempt` (health checks and
/// reflection: probes would drown the sale's calls).
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    exempt: &'static [&'static str],
}

impl RpcMetricsLayer {
    /// Measures every call except paths starting with one of `exempt`.
    #[must_use]
    pub const fn new(exempt: &'static [&'static str]) -> Self {
        Self { exempt }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner, exempt: self.exempt }
    }
}

/// See [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    exempt: &'static [&'static str],
}

impl<S, B> Service<Request<B>> for RpcMetrics<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        if self.exempt.iter().any(|p| path.starts_with(p)) {
            return Box::pin(self.inner.call(request));
        }
        let call = CallRecord::start(path);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // A handler's error comes back "trailers-only": the status is in the headers.
            // Otherwise it comes in the trailers, after the last message.
            if let Some(code) = grpc_status(response.headers()) {
                call.finish(code);
                return Ok(response);
            }
            Ok(response.map(|body| Body::new(MeasuredBody { inner: body, call: Some(call) })))
        })
    }
}

/// One call being measured; recorded once, when its status is known or when it is dropped
/// unanswered (the client went away: CANCELLED).
struct CallRecord {
    service: String,
    method: String,
    start: Instant,
    done: bool,
}

/// gRPC status code CANCELLED.
const CANCELLED: u16 = 1;
/// gRPC status code UNKNOWN.
const UNKNOWN: u16 = 2;
/// gRPC status code UNIMPLEMENTED.
const UNIMPLEMENTED: u16 = 12;

/// Every method path (`/package.Service/Method`) of the suite's contracts and of the health
/// service: the only paths whose names become label values.
static KNOWN_METHODS: std::sync::LazyLock<std::collections::HashSet<String>> = std::sync::LazyLock::new(|| {
    use prost::Message;
    [concert_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET]
        .iter()
        .filter_map(|bytes| prost_types::FileDescriptorSet::decode(*bytes).ok())
        .flat_map(|set| set.file)
        .flat_map(|file| {
            let package = file.package().to_owned();
            file.service.into_iter().flat_map(move |service| {
                let prefix = format!("/{package}.{}/", service.name());
                service.method.into_iter().map(move |m| format!("{prefix}{}", m.name()))
            })
        })
        .collect()
});

/// The (service, method) labels of a call to `path`: its own for a method of the contracts,
/// `_OTHER` for anything else. Paths are chosen by callers, anonymous ones included, and
/// calls refused before routing (no token, shed, cancelled) are counted too, so only a
/// closed set of names may become label values.
fn method_labels(path: &str) -> (String, String) {
    match path.trim_start_matches('/').split_once('/') {
        Some((service, method)) if KNOWN_METHODS.contains(path) => (service.to_owned(), method.to_owned()),
        _ => ("_OTHER".to_owned(), "_OTHER".to_owned()),
    }
}

impl CallRecord {
    fn start(path: &str) -> Self {
        let (service, method) = method_labels(path);
        gauge!(RPC_SERVER_ACTIVE_CALLS).increment(1);
        Self { service, method, start: Instant::now(), done: false }
    }

    fn finish(mut self, code: u16) {
        self.record(code);
    }

    fn record(&mut self, code: u16) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        gauge!(RPC_SERVER_ACTIVE_CALLS).decrement(1);
        // A method of the contracts that this port does not serve is counted under `_OTHER`
        // as well (its labels are bounded either way; see `method_labels`).
        let (service, method) = if code == UNIMPLEMENTED {
            ("_OTHER".to_owned(), "_OTHER".to_owned())
        } else {
            (std::mem::take(&mut self.service), std::mem::take(&mut self.method))
        };
        histogram!(
            RPC_SERVER_CALL_DURATION,
            "rpc_system" => "grpc",
            "rpc_service" => service,
            "rpc_method" => method,
            "rpc_grpc_status_code" => code.to_string(),
        )
        .record(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.record(CANCELLED);
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u16> {
    headers.get("grpc-status").map(|v| v.to_str().ok().and_then(|s| s.parse().ok()).unwrap_or(UNKNOWN))
}

pin_project_lite::pin_project! {
    /// A response body that records its call when the trailers (with the status) pass by.
    struct MeasuredBody {
        #[pin]
        inner: Body,
        call: Option<CallRecord>,
    }
}

impl HttpBody for MeasuredBody {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|t| grpc_status(t).unwrap_or(UNKNOWN)),
            Some(Err(_)) => Some(UNKNOWN),
            None => Some(UNKNOWN), // ended without trailers: not a gRPC answer
        };
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_names_each_metric_once_in_prometheus_form() {
        let mut names: Vec<_> = CATALOGUE.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len(), "a metric is listed twice");
        for m in CATALOGUE {
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            if m.unit == Unit::Seconds {
                assert!(m.name.ends_with("_seconds"), "{}", m.name);
            }
        }
    }

    /// Calls a real tonic server (the standard health service, nothing exempt) through the
    /// layer and reads what was recorded: an OK answer (status in the trailers), an error
    /// (status in the headers), an unknown method (`_OTHER`), and the in-flight gauge back
    /// at zero.
    #[test]
    #[allow(clippy::unwrap_used, clippy::expect_used)]
    fn rpc_calls_are_recorded_with_their_method_and_status_code() {
        use metrics_util::{
            MetricKind,
            debugging::{DebugValue, DebuggingRecorder},
        };
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // A current-thread runtime: the server's tasks run on this thread, where the
        // recorder is installed.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let (reporter, health) = tonic_health::server::health_reporter();
                reporter.set_service_status("known", tonic_health::ServingStatus::Serving).await;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .layer(RpcMetricsLayer::new(&[]))
                        .add_service(health)
                        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
                );
                let channel = crate::grpc_client::lazy_channel(&format!("http://{addr}")).unwrap();
                let mut client = HealthClient::new(channel.clone());
                client.check(HealthCheckRequest { service: "known".into() }).await.unwrap();
                let err = client.check(HealthCheckRequest { service: "unknown".into() }).await.unwrap_err();
                assert_eq!(err.code(), tonic::Code::NotFound);
                let mut grpc = tonic::client::Grpc::new(channel);
                grpc.ready().await.unwrap();
                let path = http::uri::PathAndQuery::from_static("/no.such.Service/Probe");
                let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckRequest>::default();
                let err =
                    grpc.unary(tonic::Request::new(HealthCheckRequest::default()), path, codec).await.unwrap_err();
                assert_eq!(err.code(), tonic::Code::Unimplemented);
            });
        });

        let mut calls = Vec::new();
        let mut active = None;
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let label = |name: &str| key.labels().find(|l| l.key() == name).map(|l| l.value().to_owned());
            match (kind, key.name(), value) {
                (MetricKind::Histogram, RPC_SERVER_CALL_DURATION, DebugValue::Histogram(values)) => calls.push((
                    label("rpc_service").unwrap(),
                    label("rpc_method").unwrap(),
                    label("rpc_grpc_status_code").unwrap(),
                    values.len(),
                )),
                (MetricKind::Gauge, RPC_SERVER_ACTIVE_CALLS, DebugValue::Gauge(v)) => active = Some(v.into_inner()),
                _ => {}
            }
        }
        calls.sort();
        let expected = |s: &str, m: &str, c: &str| (s.to_owned(), m.to_owned(), c.to_owned(), 1);
        assert_eq!(
            calls,
            vec![
                expected("_OTHER", "_OTHER", "12"),
                expected("grpc.health.v1.Health", "Check", "0"),
                expected("grpc.health.v1.Health", "Check", "5"),
            ]
        );
        assert_eq!(active, Some(0.0), "every call left the in-flight gauge");
    }

    /// Issue #27 item 3: 180 token-less calls to made-up paths grew `/metrics` from 2 KB to
    /// 3.4 MB. Whatever their status, calls to paths outside the contracts share one label set.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn made_up_paths_never_become_label_values() {
        use metrics_util::debugging::DebuggingRecorder;
        assert_eq!(
            method_labels("/concert.queue.v1.QueueService/IssueToken"),
            ("concert.queue.v1.QueueService".to_owned(), "IssueToken".to_owned())
        );
        assert_eq!(method_labels("/grpc.health.v1.Health/Check").1, "Check");
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            for i in 0..1_000 {
                // Refused before routing: UNAUTHENTICATED (16), RESOURCE_EXHAUSTED (8), CANCELLED.
                CallRecord::start(&format!("/probe{i}.Service/Method{i}")).finish([16, 8, 1][i % 3]);
                CallRecord::start(&format!("/concert.queue.v1.QueueService/Nope{i}")).finish(16);
            }
            CallRecord::start("/concert.queue.v1.QueueService/IssueToken").finish(16);
        });
        let series: std::collections::HashSet<String> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == RPC_SERVER_CALL_DURATION)
            .map(|(key, ..)| {
                let key = key.key();
                let label = |n: &str| key.labels().find(|l| l.key() == n).unwrap().value().to_owned();
                format!("{}/{}", label("rpc_service"), label("rpc_method"))
            })
            .collect();
        let mut series: Vec<_> = series.into_iter().collect();
        series.sort();
        assert_eq!(series, ["_OTHER/_OTHER", "concert.queue.v1.QueueService/IssueToken"]);
    }

    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!("../../../README.md");
        for m in CATALOGUE {
            assert!(readme.contains(&format!("`{}`", m.name)), "README.md has no row for `{}`", m.name);
        }
    }
}
