//! Waiting-room rules, free of SQL and gRPC.
mod admission;
mod line;
mod token;

pub use admission::{AdmissionPolicy, RateWindow};
pub use line::LineSnapshot;
pub use token::{QueueStatus, Token, TokenState};
