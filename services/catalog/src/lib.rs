//! The catalog service: concerts, their dates (schedules) and the 50 seats of each date.
//!
//! Dependencies point one way: `grpc → service → clients → store → domain` (checked by
//! `scripts/check-layers.py`); `app` builds them all.
//!
//! - [`domain`]: the seat layout rules (seats 1..=50, grades, prices).
//! - [`store`]: PostgreSQL only: concerts, schedules, layouts.
//! - [`clients`]: live seat status from the reservation service.
//! - [`service`]: the seat layouts, cached in memory.
//! - [`grpc`]: `CatalogService`, `CatalogAdminService`, `CatalogInternalService`.
//! - [`app`]: builds everything and owns every background task.
//! - [`error`]: the one mapping of catalog errors to gRPC statuses.

pub mod app;
pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod service;
pub mod store;
