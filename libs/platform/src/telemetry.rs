//! Tracing set-up: pretty logs on a terminal, JSON lines in containers (`LOG_FORMAT=json`),
//! verbosity from `RUST_LOG` (default `info`), and OpenTelemetry span export over OTLP/gRPC
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the
//! other standard `OTEL_EXPORTER_OTLP_*` variables apply as usual.
//!
//! Traces cross services in W3C trace context (`traceparent`): the server stack continues the
//! caller's trace ([`crate::server`]) and peer channels send the current one on
//! ([`crate::grpc_client`]). Every log line written inside a span carries its `trace_id` and
//! `span_id`, so a log search leads to the trace and back.
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::{Event, Subscriber};
use tracing_subscriber::{
    EnvFilter, Layer,
    fmt::{self, FmtContext, FormatEvent, FormatFields, format::Writer},
    prelude::*,
    registry::LookupSpan,
};

/// A short, stable tag for a credential (a queue token) to put in spans and logs instead of
/// the credential itself: the same token always gets the same 8 hex digits, so its calls can
/// be followed, but the tag cannot be used to call anything.
#[must_use]
pub fn redacted(secret: &str) -> String {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: stable across replicas of one build, not reversible to 122
    // random bits of a UUID from 32 bits of hash.
    let mut hasher = std::hash::DefaultHasher::new();
    secret.hash(&mut hasher);
    format!("{:08x}", hasher.finish() >> 32)
}

/// Keeps the span exporter alive; dropping it flushes the spans still buffered.
#[must_use = "dropping the guard stops span export"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans failed: {e}");
        }
    }
}

/// Installs the global subscriber. Call once, first thing in `main`, and keep the guard.
pub fn init(service: &'static str) -> TelemetryGuard {
    install_propagator();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let logs = if json {
        let format = fmt::format().json().with_current_span(true);
        fmt::layer().json().event_format(WithTraceIds { inner: format, json: true }).boxed()
    } else {
        let format = fmt::format().with_target(false);
        fmt::layer().event_format(WithTraceIds { inner: format, json: false }).boxed()
    };

    let (provider, otel_error) = match otlp_provider(service) {
        Ok(p) => (p, None),
        Err(e) => (None, Some(e)),
    };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    // Filters per layer: logs and spans follow RUST_LOG, while the pool-wait metric sees
    // sqlx's acquire events (DEBUG) whatever the log level.
    let pool_wait = crate::metrics::PoolWaitLayer.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target(crate::metrics::SQLX_ACQUIRE_TARGET, tracing::Level::DEBUG),
    );
    let installed =
        tracing_subscriber::registry().with(logs.and_then(otel).with_filter(filter)).with(pool_wait).try_init().is_ok();
    if installed {
        tracing::info!(service, otlp = provider.is_some(), "telemetry initialised");
        if let Some(e) = otel_error {
            tracing::warn!(error = %e, "OTLP export disabled: exporter could not be built");
        }
    }
    TelemetryGuard { provider }
}

/// Makes W3C trace context (`traceparent`, `tracestate`) the format in which traces are read
/// from incoming calls and written into outgoing ones. Idempotent; [`init`] calls it.
pub fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

/// The trace and span ids of the OpenTelemetry span current on this thread, as lowercase
/// hex (32 and 16 digits), when there is one.
#[must_use]
pub fn current_ids() -> Option<(String, String)> {
    let context = opentelemetry::Context::current();
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid().then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
}

/// A log line format that adds the current span's `trace_id` and `span_id`: as the first
/// fields of a JSON line, or as a `trace_id=… span_id=…` prefix of a text line. Entering a
/// span makes its OpenTelemetry context current (tracing-opentelemetry's context
/// activation), so the ids are those of the span the event happens in.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        if self.json {
            let mut line = String::new();
            self.inner.format_event(ctx, Writer::new(&mut line), event)?;
            match line.strip_prefix('{') {
                Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"),
                None => writer.write_str(&line),
            }
        } else {
            write!(writer, "trace_id={trace_id} span_id={span_id} ")?;
            self.inner.format_event(ctx, writer, event)
        }
    }
}

fn otlp_provider(service: &'static str) -> anyhow::Result<Option<SdkTracerProvider>> {
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    if !configured {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    Ok(Some(provider))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs one line inside a span and one outside, through the same formats `init`
    /// installs, with a real OpenTelemetry tracer; returns (the span's ids, the output).
    fn log_lines(json: bool) -> ((String, String), String) {
        let out = Captured::default();
        let writer = {
            let out = out.clone();
            move || out.clone()
        };
        let logs = if json {
            let format = fmt::format().json().with_current_span(true);
            fmt::layer().json().event_format(WithTraceIds { inner: format, json: true }).with_writer(writer).boxed()
        } else {
            let format = fmt::format().with_target(false);
            fmt::layer().event_format(WithTraceIds { inner: format, json: false }).with_writer(writer).boxed()
        };
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(logs)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let ids = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("pay_reservation");
            let _entered = span.enter();
            tracing::info!("inside");
            drop(_entered);
            tracing::info!("outside");
            let _entered = span.enter();
            current_ids().expect("the span has ids")
        });
        let text = String::from_utf8(out.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
            .unwrap_or_default();
        (ids, text)
    }

    #[test]
    fn log_lines_inside_a_span_carry_its_trace_and_span_ids() {
        let ((trace_id, span_id), text) = log_lines(false);
        assert_eq!((trace_id.len(), span_id.len()), (32, 16));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with(&format!("trace_id={trace_id} span_id={span_id} ")), "{}", lines[0]);
        assert!(!lines[1].contains("trace_id="), "outside any span: {}", lines[1]);

        let ((trace_id, span_id), text) = log_lines(true);
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().unwrap_or_default()).unwrap_or_default();
        assert_eq!(first["trace_id"], trace_id.as_str(), "{text}");
        assert_eq!(first["span_id"], span_id.as_str(), "{text}");
        assert_eq!(first["fields"]["message"], "inside", "{text}");
        let second: serde_json::Value =
            serde_json::from_str(text.lines().nth(1).unwrap_or_default()).unwrap_or_default();
        assert!(second.get("trace_id").is_none(), "{text}");
    }

    #[test]
    fn a_redacted_token_is_short_stable_and_not_the_token() {
        let token = "0b8f3c3e-5a1e-4f57-9a43-2d7c1f0e9b11";
        let tag = redacted(token);
        assert_eq!(tag.len(), 8);
        assert_eq!(tag, redacted(token));
        assert!(!token.contains(&tag));
        assert_ne!(tag, redacted("another-token"));
    }
}
