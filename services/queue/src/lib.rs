//! The queue service: the waiting room in front of the protected APIs.
//!
//! Dependencies point one way: `grpc → service → {batch, clients} → store → domain`
//! (checked by `scripts/check-layers.py`); `app` builds them all.
//!
//! - [`domain`]: token states, the line and the admission policy (no SQL, no gRPC).
//! - [`store`]: PostgreSQL only: joining, status reads, rooms, admission rounds.
//! - [`batch`]: concurrent joins written in one statement and one commit.
//! - [`clients`]: the catalog (does a concert exist, when does its sale open).
//! - [`service`]: tokens (join, position, watch, expire), rooms, joining limits (governor),
//!   the per-replica line snapshot behind positions, ETAs and streams, the admission loop,
//!   idle expiry, stream limits.
//! - [`grpc`]: `QueueService`, `QueueAdminService` and `QueueInternalService` handlers.
//! - [`app`]: builds everything and owns every background task.
//! - [`error`]: the one mapping of queue errors to gRPC statuses.

pub mod app;
pub mod batch;
pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod service;
pub mod store;
