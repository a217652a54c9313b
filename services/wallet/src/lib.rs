//! The wallet service: balances and an append-only ledger, in won.
//!
//! - [`domain`]: the balance rules (never negative, bounded, checked arithmetic).
//! - [`store`]: PostgreSQL only: idempotent writes by key, the audit and the reconciliation export.
//! - [`ledger_batch`]: concurrent charges and debits applied together, one commit per batch.
//! - [`grpc`]: the `WalletService` and `WalletInternalService` handlers.
//! - [`error`]: the one place where wallet errors become gRPC statuses.
//! - [`faults`]: failpoints for fault-injection tests (compiled in with `failpoints`).

pub mod config;
pub mod domain;
pub mod error;
pub mod faults;
pub mod grpc;
pub mod ledger_batch;
pub mod startup;
pub mod store;
