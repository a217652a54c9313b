//! The wallet service: balances and an append-only ledger, in won.
//!
//! Dependencies point one way: `grpc → service → batch → store → domain` (checked by
//! `scripts/check-layers.py`); `app` builds them all.
//!
//! - [`domain`]: the balance rules (never negative, bounded, checked arithmetic).
//! - [`store`]: PostgreSQL only: idempotent writes by key, the audit and the reconciliation export.
//! - [`service`]: the use cases the handlers call (charge, debit, refund, balance, books).
//! - [`batch`]: concurrent charges and debits applied together, one commit per batch.
//! - [`grpc`]: the `WalletService` and `WalletInternalService` handlers.
//! - [`app`]: builds everything and owns every background task.
//! - [`error`]: the one place where wallet errors become gRPC statuses.
//! - [`faults`]: failpoints for fault-injection tests (compiled in with `failpoints`).

pub mod app;
pub mod batch;
pub mod config;
pub mod domain;
pub mod error;
pub mod faults;
pub mod grpc;
pub mod service;
pub mod store;
