//! Wallet rules, free of SQL and gRPC.
mod account;
mod ledger;

pub use account::{Account, MAX_BALANCE};
pub use ledger::{Decision, EntryKind, LedgerEntry, Mutation, Refundable};
