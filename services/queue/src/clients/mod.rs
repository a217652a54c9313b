//! Clients of the services queue depends on, each call through `platform::outbound`.
pub mod catalog;
