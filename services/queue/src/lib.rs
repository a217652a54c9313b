//! The queue service: the waiting room in front of the protected APIs.
//!
//! - [`domain`]: token states and the admission policy (no SQL, no gRPC).
//! - [`store`]: PostgreSQL only: joining, status reads, rooms, admission rounds.
//! - [`rooms`]: one waiting room per concert, created on first use from the catalog.
//! - [`admission`]: the background loop that runs admission rounds.
//! - [`line`]: the per-replica snapshot of the line behind positions, ETAs and streams.
//! - [`join_batch`]: concurrent joins written in one statement and one commit.
//! - [`rate_limit`]: per-user and total limits on joining (governor).
//! - [`seen`]: which waiting clients still poll (idle expiry).
//! - [`grpc`]: `QueueService`, `QueueAdminService` and `QueueInternalService` handlers.
//! - [`error`]: the one mapping of queue errors to gRPC statuses.

pub mod admission;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod join_batch;
pub mod line;
pub mod rate_limit;
pub mod rooms;
pub mod seen;
pub mod startup;
pub mod store;
pub mod watchers;
