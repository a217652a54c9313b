//! Caps on the streams anyone may open without an access token: health `Watch` and server
//! reflection. They bypass the token check and the load shedder (a probe refused at the
//! sale's peak would get a busy replica restarted), and a stream outlives its call's future,
//! so neither the in-flight limit nor HTTP/2's per-connection stream limit (shared with real
//! calls) bounds them. This layer does: at most [`PER_CONNECTION`] open on one connection
//! and [`PER_REPLICA`] on one port; more are refused with RESOURCE_EXHAUSTED
//! (`TOO_MANY_STREAMS`, with a RetryInfo). A slot is held until the response body is dropped,
//! that is until the stream ends either way.
use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{body::Body, transport::server::TcpConnectInfo};

/// Anonymous streams one connection may hold open: a client watching health and browsing
/// reflection needs two or three.
pub const PER_CONNECTION: usize = 4;
/// Anonymous streams one port may hold open.
pub const PER_REPLICA: usize = 256;
/// How long a refused caller is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Paths of the anonymous methods that stream: health `Watch` and every reflection call.
/// Health `Check` is unary and never capped.
const STREAMING: [&str; 3] = [
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The open anonymous streams of one port.
#[derive(Debug, Clone)]
pub struct AnonymousStreams {
    replica: Arc<Semaphore>,
    per_connection: Arc<Mutex<HashMap<SocketAddr, usize>>>,
    max_per_connection: usize,
}

impl Default for AnonymousStreams {
    fn default() -> Self {
        Self::new(PER_REPLICA, PER_CONNECTION)
    }
}

impl AnonymousStreams {
    #[must_use]
    pub fn new(per_replica: usize, per_connection: usize) -> Self {
        Self {
            replica: Arc::new(Semaphore::new(per_replica)),
            per_connection: Arc::new(Mutex::new(HashMap::new())),
            max_per_connection: per_connection,
        }
    }

    /// Whether `path` opens an anonymous stream this cap counts.
    #[must_use]
    pub fn counts(path: &str) -> bool {
        STREAMING.iter().any(|p| path.starts_with(p))
    }

    /// A slot for a stream on the connection from `peer` (`None`: not known, counted for the
    /// replica only), or the refusal to answer with.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED `TOO_MANY_STREAMS` when the connection or the port is full.
    pub fn open(&self, peer: Option<SocketAddr>) -> Result<Slot, tonic::Status> {
        let full = || {
            crate::status::resource_exhausted(
                "TOO_MANY_STREAMS",
                "too many open health watch or reflection streams; close one or retry later",
                RETRY_AFTER,
            )
        };
        let permit = Arc::clone(&self.replica).try_acquire_owned().map_err(|_| full())?;
        if let Some(peer) = peer {
            let mut open = self.per_connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = open.entry(peer).or_default();
            if *count >= self.max_per_connection {
                return Err(full());
            }
            *count += 1;
        }
        Ok(Slot { _permit: permit, peer, streams: self.clone() })
    }

    /// Wraps `request`'s call: refuses it when full, else holds a slot until its response
    /// body is dropped.
    pub async fn call<S>(&self, inner: S, request: http::Request<Body>) -> Result<http::Response<Body>, S::Error>
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    {
        use tower::ServiceExt as _;
        if !Self::counts(request.uri().path()) {
            return inner.oneshot(request).await;
        }
        let peer = request.extensions().get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr);
        let slot = match self.open(peer) {
            Ok(slot) => slot,
            Err(refused) => return Ok(refused.into_http()),
        };
        let response = inner.oneshot(request).await?;
        Ok(response.map(|body| Body::new(SlotBody { inner: body, _slot: slot })))
    }
}

/// One open anonymous stream; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    peer: Option<SocketAddr>,
    streams: AnonymousStreams,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(peer) = self.peer else { return };
        let mut open = self.streams.per_connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // The map holds only connections with open streams: bounded by PER_REPLICA.
                open.remove(&peer);
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its stream's slot until it is dropped.
    struct SlotBody {
        #[pin]
        inner: Body,
        _slot: Slot,
    }
}

impl HttpBody for SlotBody {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn peer(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([10, 0, 0, 1], port)))
    }

    #[test]
    fn each_connection_and_the_port_are_capped_and_slots_come_back() {
        let streams = AnonymousStreams::new(5, 2);
        let a: Vec<_> = (0..2).map(|_| streams.open(peer(1)).unwrap()).collect();
        let refused = streams.open(peer(1)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(crate::status::reason(&refused).as_deref(), Some("TOO_MANY_STREAMS"));
        let b: Vec<_> = (0..2).map(|_| streams.open(peer(2)).unwrap()).collect();
        let _c = streams.open(peer(3)).unwrap();
        assert!(streams.open(peer(4)).is_err(), "the port is full at 5");
        drop(a);
        assert!(streams.open(peer(1)).is_ok(), "closed streams free both slots");
        drop(b);
        assert_eq!(streams.per_connection.lock().unwrap().len(), 1, "closed connections leave no entry");
    }

    #[test]
    fn only_streaming_anonymous_paths_count() {
        assert!(AnonymousStreams::counts("/grpc.health.v1.Health/Watch"));
        assert!(AnonymousStreams::counts("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(!AnonymousStreams::counts("/grpc.health.v1.Health/Check"));
        assert!(!AnonymousStreams::counts("/concert.queue.v1.QueueService/WatchQueue"));
    }
}
