//! The reservation service: seat holds and the payment saga.
//!
//! Dependencies point one way: `grpc → service → {batch, clients} → store → domain`
//! (checked by `scripts/check-layers.py`); `app` builds them all.
//!
//! - [`domain`]: reservation and payment states, the hold decision (no SQL, no gRPC).
//! - [`store`]: PostgreSQL only: holds, payment starts, payments, debits, books.
//! - [`batch`]: concurrent hold inserts, saga starts, debit records and completions, each
//!   sharing one statement or transaction (adapters over `platform::batch`).
//! - [`clients`]: catalog (prices), wallet (debit, refund) and queue (token expiry).
//! - [`service`]: use cases (holds, payments and their saga) and the background work
//!   (hold sweeper, saga recovery, gauges).
//! - [`grpc`]: `ReservationService` and `ReservationInternalService` handlers.
//! - [`app`]: builds everything and owns every background task.
//! - [`error`]: the one mapping of reservation errors to gRPC statuses.
//! - [`faults`]: failpoints for fault-injection tests (compiled in with `failpoints`).

pub mod app;
pub mod batch;
pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod faults;
pub mod grpc;
pub mod service;
pub mod store;
