//! Distributed tracing: one payment is one trace across reservation, wallet and queue.
//!
//! The spans of the whole test process are collected in memory by a real OpenTelemetry SDK
//! (the exporter is the only stand-in); W3C trace context crosses real gRPC connections
//! between the in-process services, exactly as between pods.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    collections::HashMap,
    sync::OnceLock,
    time::{Duration, Instant},
};

use e2e::{Suite, SuiteOptions};
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, prelude::*};

/// Installs (once per process) a subscriber that sends every INFO span to an in-memory
/// exporter, the way `platform::telemetry::init` sends them to OTLP.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        platform::telemetry::install_propagator();
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e"));
        tracing_subscriber::registry()
            .with(EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn"))
            .with(otel)
            .try_init()
            .expect("no other global subscriber in the suite binary");
        exporter
    })
}

fn spans_of(trace: TraceId) -> Vec<SpanData> {
    exporter().get_finished_spans().unwrap().into_iter().filter(|s| s.span_context.trace_id() == trace).collect()
}

/// The server span of `package` (e.g. `concert.wallet.v1`) in `spans`.
fn server_spans<'a>(spans: &'a [SpanData], package: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.span_kind == SpanKind::Server && s.name.starts_with(package)).collect()
}

/// Whether `span` has `ancestor` above it, following parent ids inside the trace.
fn descends_from(span: &SpanData, ancestor: SpanId, by_id: &HashMap<SpanId, &SpanData>) -> bool {
    let mut parent = span.parent_span_id;
    while parent != SpanId::INVALID {
        if parent == ancestor {
            return true;
        }
        parent = by_id.get(&parent).map_or(SpanId::INVALID, |p| p.parent_span_id);
    }
    false
}

fn render_tree(spans: &[SpanData]) -> String {
    fn walk(out: &mut String, spans: &[SpanData], parent: SpanId, depth: usize) {
        let mut children: Vec<_> = spans.iter().filter(|s| s.parent_span_id == parent).collect();
        children.sort_by_key(|s| s.start_time);
        for s in children {
            let ms = s.end_time.duration_since(s.start_time).unwrap_or_default().as_secs_f64() * 1e3;
            out.push_str(&format!("{}{} [{:?}] {ms:.2} ms\n", "  ".repeat(depth), s.name, s.span_kind));
            walk(out, spans, s.span_context.span_id(), depth + 1);
        }
    }
    let mut out = String::new();
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_context.span_id()).collect();
    // Roots: spans whose parent is not in the trace (the test's own span).
    let mut roots: Vec<SpanId> = spans.iter().map(|s| s.parent_span_id).filter(|p| !ids.contains(p)).collect();
    roots.sort_unstable_by_key(|id| u64::from_be_bytes(id.to_bytes()));
    roots.dedup();
    for root in roots {
        walk(&mut out, spans, root, 0);
    }
    out
}

#[sqlx::test(migrations = false)]
async fn one_payment_is_one_trace_across_reservation_wallet_and_queue(_p: PgPoolOptions, db: PgConnectOptions) {
    exporter();
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let id = suite.hold(&token, &schedule_id, 7).await;
    suite.charge("alice", 500_000).await;

    let root = tracing::info_span!("test.pay_reservation");
    let trace = root.context().span().span_context().trace_id();
    assert_ne!(trace, TraceId::INVALID, "the test's span is recorded");
    suite.pay(&token, &id, "traced").instrument(root).await.expect("payment succeeds");

    // The token is expired by a worker after the answer: wait for the queue's spans.
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = spans_of(trace);
        let packages = ["concert.reservation.v1", "concert.wallet.v1", "concert.queue.v1"];
        if packages.iter().all(|p| !server_spans(&spans, p).is_empty()) || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("trace {trace}:\n{}", render_tree(&spans));

    let by_id: HashMap<SpanId, &SpanData> = spans.iter().map(|s| (s.span_context.span_id(), s)).collect();
    let pay = server_spans(&spans, "concert.reservation.v1.ReservationService/PayReservation");
    assert_eq!(pay.len(), 1, "one PayReservation server span in the trace");
    let pay = pay[0];
    assert!(pay.parent_span_is_remote, "the server span continues the caller's trace");

    for package in ["concert.wallet.v1", "concert.queue.v1"] {
        let servers = server_spans(&spans, package);
        assert!(!servers.is_empty(), "no {package} server span in the payment's trace");
        for server in &servers {
            assert!(
                descends_from(server, pay.span_context.span_id(), &by_id),
                "{} is not under PayReservation",
                server.name
            );
        }
    }
    // The work inside each service (its store spans, around the SQL) hangs under that
    // service's server span.
    for package in ["concert.reservation.v1", "concert.wallet.v1"] {
        let servers = server_spans(&spans, package);
        let inner = spans.iter().filter(|s| {
            s.span_kind == SpanKind::Internal
                && servers.iter().any(|server| descends_from(s, server.span_context.span_id(), &by_id))
        });
        assert!(inner.count() > 0, "no spans inside {package}'s server span");
    }
}
