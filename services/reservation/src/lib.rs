//! The reservation service: seat holds and the payment saga.
//!
//! - [`domain`]: reservation and payment states and their transitions (no SQL, no gRPC).
//! - [`store`]: PostgreSQL only: holds, payments, debits, the reconciliation export.
//! - [`service`]: use cases over the store and the batchers (placing a hold).
//! - [`hold_batcher`]: groups concurrent hold inserts into one statement.
//! - [`payment_starter`]: groups concurrent saga starts (lock, check, insert) into one transaction.
//! - [`debit_recorder`]: groups concurrent "debit recorded" writes of the saga.
//! - [`saga`]: drives a payment through debit → confirm → expire token, or compensation.
//! - [`completer`]: the saga's last step (token expiry, COMPLETED), batched.
//! - [`taken_seats`]: per-replica hint of taken seats (refuse crowds early).
//! - [`workers`]: the hold-expiry sweeper and the saga recovery worker.
//! - [`peers`]: clients of catalog, wallet and queue.
//! - [`grpc`]: `ReservationService` and `ReservationInternalService` handlers.
//! - [`error`]: the one mapping of reservation errors to gRPC statuses.

pub mod completer;
pub mod config;
pub mod debit_recorder;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod hold_batcher;
pub mod payment_starter;
pub mod peers;
pub mod saga;
pub mod service;
pub mod startup;
pub mod store;
pub mod taken_seats;
pub mod workers;
