//! Test support: run a real service on an ephemeral port and stop it when the handle drops.
//! Test-only code: failing loudly (panicking) on set-up errors is what a test wants.
#![allow(clippy::expect_used, clippy::unwrap_used)]
use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

/// Binds `addr` (e.g. `127.0.0.1:0` for an ephemeral port).
///
/// # Panics
/// When the address cannot be bound (tests only).
pub async fn bind(addr: &str) -> TcpListener {
    TcpListener::bind(addr).await.expect("bind a test port")
}

/// A service running in this process on `127.0.0.1:<ephemeral>`.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    /// The server's own runtime, when started with [`RunningServer::start_isolated`].
    runtime: Option<tokio::runtime::Runtime>,
}

impl RunningServer {
    /// Binds port 0 and spawns `run(listener, shutdown)`.
    ///
    /// # Panics
    /// When no port can be bound (tests only).
    pub async fn start<F, Fut>(run: F) -> Self
    where
        F: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self::start_on(bind("127.0.0.1:0").await, run).await
    }

    /// Spawns `run(listener, shutdown)` on a listener bound beforehand (so that services
    /// which call each other can learn each other's addresses first).
    ///
    /// # Panics
    /// When the listener has no local address (tests only).
    pub async fn start_on<F, Fut>(listener: TcpListener, run: F) -> Self
    where
        F: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let addr = listener.local_addr().expect("local address");
        let (tx, shutdown) = shutdown_signal();
        let handle = tokio::spawn(run(listener, shutdown));
        let server = Self { addr, shutdown: Some(tx), handle: Some(handle), runtime: None };
        server.wait_until_serving().await;
        server
    }

    /// Like [`RunningServer::start_on`], but on a runtime of its own, so that
    /// [`RunningServer::kill`] ends everything the server started — connections, in-flight
    /// calls, background workers — at once, as a crashed process would.
    ///
    /// # Panics
    /// When the runtime cannot be built (tests only).
    pub async fn start_isolated<F, Fut>(listener: TcpListener, run: F) -> Self
    where
        F: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let addr = listener.local_addr().expect("local address");
        let listener = listener.into_std().expect("a std listener");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("server-{}", addr.port()))
            .enable_all()
            .build()
            .expect("a server runtime");
        let (tx, shutdown) = shutdown_signal();
        let handle = {
            let _entered = runtime.enter();
            let listener = TcpListener::from_std(listener).expect("listener on the server runtime");
            runtime.spawn(run(listener, shutdown))
        };
        let server = Self { addr, shutdown: Some(tx), handle: Some(handle), runtime: Some(runtime) };
        server.wait_until_serving().await;
        server
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A channel to the server.
    ///
    /// # Panics
    /// Never for the URL this type builds.
    #[must_use]
    pub fn channel(&self) -> Channel {
        crate::grpc_client::lazy_channel(&self.url()).expect("valid URL")
    }

    /// Waits until the health service answers SERVING (migrations done).
    async fn wait_until_serving(&self) {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let mut client = HealthClient::new(self.channel());
        for _ in 0..200 {
            if let Some(h) = &self.handle {
                assert!(!h.is_finished(), "server at {} exited during start-up", self.addr);
            }
            if client.check(HealthCheckRequest { service: String::new() }).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server at {} did not become healthy", self.addr);
    }

    /// Stops the server gracefully and returns what `run` returned.
    ///
    /// # Errors
    /// Whatever the server's `run` failed with.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }

    /// Kills the server at once, like a crashed process: in-flight calls are dropped, and
    /// with [`RunningServer::start_isolated`] every task it spawned ends too.
    pub fn kill(mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            // Wait (off the async thread) until every task is dropped and the port is free.
            std::thread::spawn(move || runtime.shutdown_timeout(Duration::from_secs(5)))
                .join()
                .expect("runtime shutdown");
        }
    }
}

/// A sender that stops a server, and the future the server waits on.
fn shutdown_signal() -> (oneshot::Sender<()>, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) {
    let (tx, rx) = oneshot::channel::<()>();
    (
        tx,
        Box::pin(async move {
            let _ = rx.await;
        }),
    )
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // A runtime cannot be dropped from async code; stop it without waiting.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A TCP proxy in front of another address (PostgreSQL, a peer) that a test can cut, as a
/// network partition or a database outage would: after [`TcpProxy::cut`] new connections are
/// refused and open ones are closed.
#[derive(Debug)]
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
    connections: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl TcpProxy {
    /// Forwards `127.0.0.1:<ephemeral>` to `target`.
    ///
    /// # Panics
    /// When no port can be bound (tests only).
    pub async fn start(target: SocketAddr) -> Self {
        let listener = bind("127.0.0.1:0").await;
        let addr = listener.local_addr().expect("local address");
        let connections = std::sync::Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let accept = tokio::spawn({
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    connections.lock().unwrap().spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Self { addr, accept, connections }
    }

    /// Refuses new connections and closes the open ones.
    pub fn cut(&self) {
        self.accept.abort();
        self.connections.lock().unwrap().abort_all();
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
