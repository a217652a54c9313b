//! What `concertctl` shares with the end-to-end tests: clients of the suite, the
//! cross-service reconciliation, and the opening-rush load generator.
pub mod clients;
pub mod reconcile;
pub mod rush;
pub mod seed;
