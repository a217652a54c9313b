//! The wallet's adapter over `platform::batch`: concurrent charges and debits applied
//! together, one commit per batch.
pub mod ledger;
