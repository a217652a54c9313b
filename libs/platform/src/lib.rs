//! Shared platform for the concert services.
//!
//! Each service binary is `app::run` (config → telemetry → ports) handing over to the service's own `app::run`;
//! this crate provides the pieces every service uses the same way, so that a service crate
//! holds only its domain, its repository and its gRPC handlers.

pub mod admission;
pub mod anonymous;
pub mod app;
pub mod auth;
pub mod batch;
pub mod clock;
pub mod config;
pub mod convert;
pub mod db;
pub mod error;
pub mod gate;
pub mod grpc_client;
pub mod identity;
pub mod metrics;
pub mod money;
pub mod outbound;
pub mod paging;
pub mod reflection;
pub mod retention;
pub mod reuse;
pub mod server;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;
