//! Channels to peer services.
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic_tracing_opentelemetry::middleware::client::{OtelGrpcLayer, OtelGrpcService};
use tower::Layer as _;

/// A channel to a peer that sends the current trace on: each call gets a client span and
/// carries W3C trace context (`traceparent`), so the peer's work joins the caller's trace.
pub type PeerChannel = OtelGrpcService<Channel>;

/// Deadline of one call on a peer channel when the caller sets none: the same as
/// [`crate::outbound::CallPolicy`]'s default, so a call is bounded alike whether or not it
/// goes through `outbound`.
pub const DEFAULT_CALL_TIMEOUT: Duration = crate::outbound::DEFAULT_TIMEOUT;

/// A lazily connecting channel to a peer (`http://host:port`). The first call connects;
/// a peer that is down surfaces as UNAVAILABLE on that call, not as a start-up failure, so
/// services can start in any order.
///
/// # Errors
/// When `url` is not a valid URI.
pub fn lazy_channel(url: &str) -> anyhow::Result<PeerChannel> {
    lazy_channel_with_timeout(url, DEFAULT_CALL_TIMEOUT)
}

/// [`lazy_channel`] whose calls wait up to `timeout` when the caller sets no deadline (a
/// load generator's simulated browser waits as long as the booking page does).
///
/// # Errors
/// When `url` is not a valid URI.
pub fn lazy_channel_with_timeout(url: &str, timeout: Duration) -> anyhow::Result<PeerChannel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| anyhow::anyhow!("invalid peer URL {url:?}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(traced(endpoint.connect_lazy()))
}

/// `channel`, sending the current trace on with every call.
#[must_use]
pub fn traced(channel: Channel) -> PeerChannel {
    OtelGrpcLayer.layer(channel)
}
