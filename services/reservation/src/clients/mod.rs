//! Clients of the services reservation depends on, each call through `platform::outbound`
//! (one timeout and retry policy): catalog (seat prices), wallet (debit, refund) and queue
//! (token expiry, ended admissions). Token checks go through `platform::auth::TokenValidator`.
mod catalog;
mod queue;
mod wallet;

pub use catalog::{Catalog, SeatInfo, TicketDetails};
pub use queue::Queue;
pub use wallet::{DebitOutcome, RefundOutcome, Wallet, is_final_refusal};
