//! Fault injection and chaos runs.
//!
//! Kept apart from the `suite` binary: failpoints are process-global, so one armed here
//! would reach any test running beside it in the same process. `fail::FailScenario` runs
//! these tests one at a time.
mod chaos;
mod faults;
