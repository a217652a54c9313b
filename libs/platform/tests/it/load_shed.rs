//! The shared server stack sheds load past its in-flight limit with RESOURCE_EXHAUSTED
//! (reason OVERLOADED, with a RetryInfo) instead of queueing.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::uri::PathAndQuery;
use platform::server::{Limits, Port, serve};
use tokio::sync::{Notify, oneshot};
use tonic::{Code, Request, Status, body::Body, server::NamedService, service::Routes};
use tonic_types::StatusExt;

/// Answers every call after `release` is notified, telling `entered` when a call arrives.
#[derive(Clone)]
struct Gate {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

impl NamedService for Gate {
    const NAME: &'static str = "test.Gate";
}

impl tower::Service<http::Request<Body>> for Gate {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
        let (entered, release) = (self.entered.clone(), self.release.clone());
        Box::pin(async move {
            entered.notify_one();
            release.notified().await;
            Ok(Status::aborted("gate passed").into_http())
        })
    }
}

async fn call(channel: platform::grpc_client::PeerChannel) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(Request::new(()), PathAndQuery::from_static("/test.Gate/Pass"), codec).await.unwrap_err()
}

#[tokio::test]
async fn calls_past_the_in_flight_limit_are_refused_at_once() {
    let gate = Gate { entered: Arc::new(Notify::new()), release: Arc::new(Notify::new()) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        vec![Port::internal(listener, Routes::new(gate.clone()), vec![Gate::NAME])],
        Limits { max_in_flight: 1, ..Limits::default() },
        async {
            let _ = stopped.await;
        },
        None,
    ));
    let channel = platform::grpc_client::lazy_channel(&url).unwrap();

    // One call occupies the only slot ...
    let first = tokio::spawn(call(channel.clone()));
    gate.entered.notified().await;
    // ... so the next is shed at once, with a reason and a retry hint.
    let shed = tokio::time::timeout(Duration::from_secs(2), call(channel.clone())).await.expect("refused, not queued");
    assert_eq!(shed.code(), Code::ResourceExhausted);
    assert_eq!(platform::status::reason(&shed).as_deref(), Some("OVERLOADED"));
    assert_eq!(shed.get_details_retry_info().and_then(|r| r.retry_delay), Some(Duration::from_millis(100)));
    // Health checks are never shed: a probe at the peak must not restart a busy replica.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = tokio::time::timeout(
        Duration::from_secs(2),
        health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }),
    )
    .await
    .expect("answered, not queued")
    .expect("a health check is not refused while the replica is full");
    assert_eq!(serving.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    // Once the slot is free, calls get through again.
    gate.release.notify_one();
    assert_eq!(first.await.unwrap().code(), Code::Aborted);
    let next = tokio::spawn(call(channel));
    gate.entered.notified().await;
    gate.release.notify_one();
    assert_eq!(next.await.unwrap().code(), Code::Aborted);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
