//! The catalog service: concerts, their dates (schedules) and the 50 seats of each date.
//!
//! - [`domain`]: the seat layout rules (seats 1..=50, grades, prices).
//! - [`repo`]: PostgreSQL access to the catalog schema.
//! - [`layouts`]: in-memory cache of the immutable seat layouts.
//! - [`occupancy`]: live seat status from the reservation service.
//! - [`grpc`]: `CatalogService`, `CatalogAdminService`, `CatalogInternalService`.
//! - [`error`]: the one mapping of catalog errors to gRPC statuses.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod layouts;
pub mod occupancy;
pub mod repo;
pub mod startup;
