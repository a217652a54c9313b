//! The reservation's adapters over `platform::batch`: concurrent requests share one
//! statement and one commit. Each file names its batch size and worker count.
pub mod completions;
pub mod debits;
pub mod holds;
pub mod payment_starts;
