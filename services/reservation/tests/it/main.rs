//! Reservation's integration tests against real PostgreSQL and stand-in peers.
mod debit_batch;
mod ended_admissions;
mod gauges;
mod hold_batch;
mod payment_start_batch;
mod seen_occupancy;
mod stale_holds;
mod support;
mod wallet_debits;
