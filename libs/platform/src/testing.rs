//! Test support: run a real service on an ephemeral port and stop it when the handle drops.
//! Test-only code: failing loudly (panicking) on set-up errors is what a test wants.
#![allow(clippy::expect_used, clippy::unwrap_used)]
use std::{future::Future, net::SocketAddr, time::Duration};

use crate::grpc_client::PeerChannel;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::server::Listeners;

/// Binds `addr` (e.g. `127.0.0.1:0` for an ephemeral port).
///
/// # Panics
/// When the address cannot be bound (tests only).
pub async fn bind(addr: &str) -> TcpListener {
    TcpListener::bind(addr).await.expect("bind a test port")
}

/// Binds `addr` again for a service restarted on its old port. That port came from the
/// ephemeral range, so while the service was down a client socket of a test running
/// alongside may have taken it as its local port (CI saw AddrInUse once); such a socket is
/// short-lived, so the bind is tried again every 100 ms for up to 10 s.
///
/// # Panics
/// When the address stays taken (tests only).
pub async fn rebind(addr: SocketAddr) -> TcpListener {
    use backon::Retryable;
    (|| TcpListener::bind(addr))
        .retry(port_retry())
        .when(|e| e.kind() == std::io::ErrorKind::AddrInUse)
        .await
        .expect("bind a test port again")
}

/// The ports of a stopped service, still bound but not listening. A call to them is
/// refused at once (connection refused: UNAVAILABLE), as a service that is down refuses it,
/// and no socket of a test running alongside can take them meanwhile: an ephemeral port
/// freed for the whole outage could be handed to another test's server, and then this
/// test's peers would reach that test's services instead (a stopped wallet's debit answered
/// by another test's wallet, say). Dropping it frees the ports for [`rebind`].
#[derive(Debug)]
pub struct HeldPorts {
    /// Held for as long as this lives: dropping them frees the ports.
    _sockets: Vec<tokio::net::TcpSocket>,
}

/// Holds `addrs`, just freed by a stopped server (see [`HeldPorts`]). Tried again every
/// 100 ms for up to 10 s while another socket still has one, as [`rebind`] does.
///
/// # Panics
/// When a port stays taken (tests only).
pub async fn hold_ports(addrs: &[SocketAddr]) -> HeldPorts {
    use backon::Retryable;
    let mut held = Vec::new();
    for &addr in addrs {
        let bind = || async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            // Leftover connections of the stopped server may still be in TIME_WAIT. Bound
            // sockets with SO_REUSEADDR that do not listen are still passed over by the
            // kernel when it picks a port for `bind(0)` or an outgoing connection.
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            Ok::<_, std::io::Error>(socket)
        };
        let socket = bind.retry(port_retry()).when(|e| e.kind() == std::io::ErrorKind::AddrInUse).await;
        held.push(socket.expect("hold a stopped server's port"));
    }
    HeldPorts { _sockets: held }
}

/// How [`rebind`] and [`hold_ports`] wait for a port another socket still has: every 100 ms
/// for up to 10 s.
fn port_retry() -> backon::ConstantBuilder {
    backon::ConstantBuilder::default().with_delay(Duration::from_millis(100)).with_max_times(100)
}

/// A public and an internal port on `127.0.0.1:<ephemeral>`.
///
/// # Panics
/// When no port can be bound (tests only).
pub async fn listeners() -> Listeners {
    Listeners { public: bind("127.0.0.1:0").await, internal: bind("127.0.0.1:0").await }
}

/// The future a service under test waits on; it resolves when the test stops the service.
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service running in this process on two `127.0.0.1:<ephemeral>` ports.
#[derive(Debug)]
pub struct RunningServer {
    /// Where its public port listens.
    pub addr: SocketAddr,
    /// Where its internal port listens.
    pub internal_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    /// The server's own runtime, when started with [`RunningServer::start_isolated`].
    runtime: Option<tokio::runtime::Runtime>,
}

impl RunningServer {
    /// Binds two ephemeral ports and spawns `run(listeners, shutdown)`.
    ///
    /// # Panics
    /// When no port can be bound (tests only).
    pub async fn start<F, Fut>(run: F) -> Self
    where
        F: FnOnce(Listeners, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self::start_on(listeners().await, run).await
    }

    /// Spawns `run(listener, shutdown)` on a listener bound beforehand (so that services
    /// which call each other can learn each other's addresses first).
    ///
    /// # Panics
    /// When the listener has no local address (tests only).
    pub async fn start_on<F, Fut>(listeners: Listeners, run: F) -> Self
    where
        F: FnOnce(Listeners, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let addr = listeners.public.local_addr().expect("local address");
        let internal_addr = listeners.internal.local_addr().expect("local address");
        let (tx, shutdown) = shutdown_signal();
        let handle = tokio::spawn(run(listeners, shutdown));
        let server = Self { addr, internal_addr, shutdown: Some(tx), handle: Some(handle), runtime: None };
        server.wait_until_serving().await;
        server
    }

    /// Like [`RunningServer::start_on`], but on a runtime of its own, so that
    /// [`RunningServer::kill`] ends everything the server started — connections, in-flight
    /// calls, background workers — at once, as a crashed process would.
    ///
    /// # Panics
    /// When the runtime cannot be built (tests only).
    pub async fn start_isolated<F, Fut>(listeners: Listeners, run: F) -> Self
    where
        F: FnOnce(Listeners, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let addr = listeners.public.local_addr().expect("local address");
        let internal_addr = listeners.internal.local_addr().expect("local address");
        let public = listeners.public.into_std().expect("a std listener");
        let internal = listeners.internal.into_std().expect("a std listener");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("server-{}", addr.port()))
            .enable_all()
            .build()
            .expect("a server runtime");
        let (tx, shutdown) = shutdown_signal();
        let handle = {
            let _entered = runtime.enter();
            let listeners = Listeners {
                public: TcpListener::from_std(public).expect("listener on the server runtime"),
                internal: TcpListener::from_std(internal).expect("listener on the server runtime"),
            };
            runtime.spawn(run(listeners, shutdown))
        };
        let server = Self { addr, internal_addr, shutdown: Some(tx), handle: Some(handle), runtime: Some(runtime) };
        server.wait_until_serving().await;
        server
    }

    /// `http://127.0.0.1:<public port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<internal port>`.
    #[must_use]
    pub fn internal_url(&self) -> String {
        format!("http://{}", self.internal_addr)
    }

    /// A channel to the public port, for a test's own calls.
    ///
    /// # Panics
    /// Never for the URL this type builds.
    #[must_use]
    pub fn channel(&self) -> PeerChannel {
        test_channel(&self.url())
    }

    /// A channel to the internal port, for a test's own calls.
    ///
    /// # Panics
    /// Never for the URL this type builds.
    #[must_use]
    pub fn internal_channel(&self) -> PeerChannel {
        test_channel(&self.internal_url())
    }

    /// Waits until both ports' health services answer SERVING (migrations done).
    async fn wait_until_serving(&self) {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        for channel in [self.channel(), self.internal_channel()] {
            let mut client = HealthClient::new(channel);
            let mut serving = false;
            for _ in 0..200 {
                if let Some(h) = &self.handle {
                    assert!(!h.is_finished(), "server at {} exited during start-up", self.addr);
                }
                if client.check(HealthCheckRequest { service: String::new() }).await.is_ok() {
                    serving = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(serving, "server at {} did not become healthy", self.addr);
        }
    }

    /// Stops the server gracefully and returns what `run` returned.
    ///
    /// # Errors
    /// Whatever the server's `run` failed with.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.halt().await
    }

    /// Stops the server gracefully and keeps its ports bound, not listening, until the
    /// returned [`HeldPorts`] drop (see there): a service that is down, whose ports no test
    /// alongside can take.
    ///
    /// # Errors
    /// Whatever the server's `run` failed with.
    pub async fn stop_holding_ports(self) -> anyhow::Result<HeldPorts> {
        let addrs = [self.addr, self.internal_addr];
        self.stop().await?;
        Ok(hold_ports(&addrs).await)
    }

    /// Stops the server gracefully in place (a stopped server stays stopped; its ports are
    /// free afterwards).
    ///
    /// # Errors
    /// Whatever the server's `run` failed with.
    pub async fn halt(&mut self) -> anyhow::Result<()> {
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
fn shutdown_signal() -> (oneshot::Sender<()>, Shutdown) {
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

/// Access tokens for tests: fixed test-only keys (never used outside tests), the issuer and
/// audience test servers accept, and the settings that make a server verify them.
pub mod identity {
    use std::time::Duration;

    use jsonwebtoken::Algorithm;

    use crate::identity::{
        AuthSettings, JwksSource, JwtSettings,
        signer::{Claims, Signer, jwks_json},
    };

    /// The issuer test servers accept.
    pub const ISSUER: &str = "https://issuer.test.invalid/";
    /// The audience test servers accept.
    pub const AUDIENCE: &str = "concert-api-test";

    /// The ES256 key test servers trust (kid `test-es256`).
    #[must_use]
    pub fn es256() -> Signer {
        signer(include_str!("identity/test_keys/es256.pem"), "test-es256", Algorithm::ES256)
    }

    /// An RS256 key test servers trust (kid `test-rs256`).
    #[must_use]
    pub fn rs256() -> Signer {
        signer(include_str!("identity/test_keys/rs256.pem"), "test-rs256", Algorithm::RS256)
    }

    /// An EdDSA (Ed25519) key test servers trust (kid `test-eddsa`).
    #[must_use]
    pub fn eddsa() -> Signer {
        signer(include_str!("identity/test_keys/eddsa.pem"), "test-eddsa", Algorithm::EdDSA)
    }

    /// A key a JWKS may gain later (kid `test-rotated`): not trusted by [`jwks`].
    #[must_use]
    pub fn rotated() -> Signer {
        signer(include_str!("identity/test_keys/es256-rotated.pem"), "test-rotated", Algorithm::ES256)
    }

    /// A key nobody trusts; signing with it and naming a trusted `kid` forges a signature.
    #[must_use]
    pub fn intruder() -> Signer {
        signer(include_str!("identity/test_keys/es256-intruder.pem"), "test-intruder", Algorithm::ES256)
    }

    fn signer(pem: &str, kid: &str, algorithm: Algorithm) -> Signer {
        Signer::from_pem(pem.as_bytes(), kid, algorithm).expect("a test key")
    }

    /// The JWKS of the trusted test keys ([`es256`], [`rs256`], [`eddsa`]).
    #[must_use]
    pub fn jwks() -> String {
        jwks_json(&[&es256(), &rs256(), &eddsa()]).expect("test JWKS")
    }

    /// Settings that verify tokens of the trusted test keys.
    #[must_use]
    pub fn settings() -> AuthSettings {
        AuthSettings::Jwt(JwtSettings::new(JwksSource::Json(jwks()), ISSUER, AUDIENCE))
    }

    /// A valid ES256 access token for `user`, good for an hour.
    #[must_use]
    pub fn token(user: &str) -> String {
        es256().sign(&Claims::new(user, ISSUER, AUDIENCE, Duration::from_secs(3_600))).expect("a test token")
    }

    /// `authorization` metadata value carrying [`token`] for `user`.
    #[must_use]
    pub fn bearer(user: &str) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
        format!("Bearer {}", token(user)).parse().expect("ASCII")
    }
}

/// A traced channel whose calls wait up to [`TEST_CALL_TIMEOUT`]: a test's own calls check
/// outcomes, not latency, and hundreds of them at once on a loaded CI machine may take longer
/// than a peer's deadline (the services' own peer calls keep theirs).
///
/// # Panics
/// When `url` is not a valid URI.
#[must_use]
pub fn test_channel(url: &str) -> PeerChannel {
    let endpoint =
        tonic::transport::Endpoint::from_shared(url.to_owned()).expect("valid URL").timeout(TEST_CALL_TIMEOUT);
    crate::grpc_client::traced(endpoint.connect_lazy())
}

/// Deadline of a test's own calls.
pub const TEST_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Asserts that each `(value, name)` is written to a TEXT column as `name` and read back from
/// it as `value`, and that a name the type does not know is a decode error (not a default):
/// what a status enum's `sqlx::Type` must do for the rows it shares with the schema's CHECKs.
///
/// # Panics
/// When a mapping differs (tests only).
pub async fn assert_stored_names<T>(pool: &sqlx::PgPool, cases: &[(T, &str)])
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres>
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + Copy
        + PartialEq
        + std::fmt::Debug
        + Send
        + Sync
        + Unpin,
{
    for &(value, name) in cases {
        let written: String =
            sqlx::query_scalar("SELECT $1::text").bind(value).fetch_one(pool).await.expect("write the value");
        assert_eq!(written, name, "{value:?} is stored as");
        let read: T = sqlx::query_scalar("SELECT $1::text").bind(name).fetch_one(pool).await.expect("read the name");
        assert_eq!(read, value, "{name:?} reads as");
    }
    let unknown = sqlx::query_scalar::<_, T>("SELECT 'NOT_A_NAME'::text").fetch_one(pool).await;
    assert!(unknown.is_err(), "an unknown name must not decode: {unknown:?}");
}

/// The admission-pass key of test suites (the queue signs with it; catalog and reservation
/// verify with its public half).
pub mod admission {
    use crate::admission::PassSigner;

    /// The signer of test suites' waiting rooms (a test-only Ed25519 key).
    ///
    /// # Panics
    /// Never: the key is a valid Ed25519 PKCS#8 PEM.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn signer() -> PassSigner {
        PassSigner::from_pem(include_bytes!("identity/test_keys/admission-pass.pem")).expect("test pass key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_port_refuses_connections_and_is_free_again_once_dropped() {
        let listener = bind("127.0.0.1:0").await;
        let addr = listener.local_addr().unwrap();
        // A connection served and closed, as a stopped service's would be.
        let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        drop((client.unwrap(), accepted.unwrap()));
        drop(listener);

        let held = hold_ports(&[addr]).await;
        let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

        drop(held);
        let again = rebind(addr).await;
        assert_eq!(again.local_addr().unwrap(), addr);
    }
}
