//! What `concertctl` shares with the end-to-end tests: the cross-service reconciliation.
pub mod reconcile;
