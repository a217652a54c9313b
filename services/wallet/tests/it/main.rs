//! Wallet's integration tests against real PostgreSQL.
mod ledger_batch;
mod wallet;
