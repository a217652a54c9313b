//! Waiting-room rules, free of SQL and gRPC.
mod admission;
mod token;

pub use admission::AdmissionPolicy;
pub use token::{QueueStatus, Token, TokenState};
