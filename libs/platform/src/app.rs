//! The start of every service binary, and who owns a replica's background tasks.
//!
//! A binary is `platform::app::run::<Config, _, _>(&SERVICE, app::run)`: parse the
//! configuration (flags and environment), install tracing and the metrics exporter, bind the
//! public and internal ports, and hand the service's own `app::run` its settings, its ports
//! and the shutdown signal. The service's `app::run` builds everything and spawns every
//! background task into one [`Tasks`] set, which it shuts down when the server has stopped
//! (the `DbDropGuard` idea of mini-redis: one owner ends them all).
use std::{future::Future, net::SocketAddr, pin::Pin};

use crate::{config::ListenConfig, server::Listeners};

/// Every background task of a replica (batch workers, sweepers, refreshers), and what the
/// replica knows of its database's reachability, which the health service reports. Dropping
/// or shutting down the set aborts them all; a task that ends by itself leaves the set.
#[derive(Debug, Default)]
pub struct Tasks {
    set: tokio::task::JoinSet<()>,
    database: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Tasks {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` until it ends or the set is shut down.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.set.spawn(task);
    }

    /// Aborts every task and waits until they have stopped.
    pub async fn shutdown(&mut self) {
        self.set.shutdown().await;
    }

    /// Whether the database answers now, as the replica's watcher sees it ([`start`]);
    /// `None` for a task set without one.
    #[must_use]
    pub fn database(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.database.clone()
    }
}

/// Resolves when the replica should stop (SIGTERM, Ctrl-C).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a service binary tells [`run`] about itself.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// The name in traces, logs and metrics (`reservation`).
    pub name: &'static str,
    /// Public listen address when `LISTEN_ADDR` is not set.
    pub public_addr: SocketAddr,
    /// Internal listen address when `INTERNAL_LISTEN_ADDR` is not set.
    pub internal_addr: SocketAddr,
}

/// A service's command line and environment.
pub trait ServiceConfig: clap::Parser {
    /// The checked settings the service runs with.
    type Settings;
    /// The listen options every service shares.
    fn listen(&self) -> &ListenConfig;
    /// Checks the configuration.
    ///
    /// # Errors
    /// When a value is out of range or inconsistent; the message names the variable.
    fn into_settings(self) -> anyhow::Result<Self::Settings>;
}

impl Service {
    /// A service listening on 127.0.0.1 at `public_port` and `internal_port` by default.
    #[must_use]
    pub const fn local(name: &'static str, public_port: u16, internal_port: u16) -> Self {
        use std::net::{Ipv4Addr, SocketAddrV4};
        Self {
            name,
            public_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, public_port)),
            internal_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, internal_port)),
        }
    }
}

/// What every service's `app::run` starts with: its connection pool to its own schema,
/// migrated, and its task set, already holding the pool's metrics sampler and the database
/// watcher whose verdict the health service reports ([`crate::db::watch_reachable`]).
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn start(
    db: &crate::config::DbOptions,
    schema: &str,
    max_connections: u32,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<(sqlx::PgPool, Tasks)> {
    let pool = crate::db::connect_and_migrate(db, schema, max_connections, migrator).await?;
    let mut tasks = Tasks::new();
    tasks.spawn(crate::metrics::sample_pool(pool.clone()));
    let (reachable, watcher) = crate::db::watch_reachable(pool.clone());
    tasks.spawn(watcher);
    tasks.database = Some(reachable);
    Ok((pool, tasks))
}

/// Serves `ports` until `shutdown` resolves and the server has drained its calls, then
/// ends every task in `tasks`: nothing needs the workers any more.
///
/// # Errors
/// When the server cannot start or fails.
pub async fn serve(
    ports: Vec<crate::server::Port>,
    limits: crate::server::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut tasks: Tasks,
) -> anyhow::Result<()> {
    let served = crate::server::serve(ports, limits, shutdown, tasks.database()).await;
    tasks.shutdown().await;
    served
}

/// Runs `work` on a runtime of its own, on one OS thread of its own, and resolves with its
/// result: a **lane** for calls that must not wait behind the rest of the replica. Tasks of
/// the main runtime queue behind one another (a flood of joins and polls is thousands of
/// ready tasks), while the lane's thread is scheduled by the kernel beside them and wakes
/// as soon as its own work arrives. Whatever the lane uses that does I/O (its listener, its
/// connection pool) must be created inside `work`, so that the lane's own reactor drives it.
///
/// # Errors
/// When the runtime cannot be built, `work` fails, or the lane's thread panics.
pub async fn run_apart<F, Fut>(name: &'static str, work: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let outcome = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(name)
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(work()));
        let _ = done.send(outcome);
    })?;
    result.await.map_err(|_| anyhow::anyhow!("the {name} lane stopped without an answer (panicked)"))?
}

/// Runs a service binary until SIGTERM or Ctrl-C (see [`crate::server::shutdown_signal`]).
///
/// # Errors
/// When the configuration is invalid, a port cannot be bound, or `serve` fails.
pub async fn run<C, F, Fut>(service: &Service, serve: F) -> anyhow::Result<()>
where
    C: ServiceConfig,
    F: FnOnce(C::Settings, Listeners, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = C::parse();
    let _telemetry = crate::telemetry::init(service.name);
    crate::metrics::install(config.listen().metrics_addr)?;
    let listeners = config.listen().bind(service.public_addr, service.internal_addr).await?;
    serve(config.into_settings()?, listeners, Box::pin(crate::server::shutdown_signal())).await
}
