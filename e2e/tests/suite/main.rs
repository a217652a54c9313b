//! End-to-end tests of the whole suite, all four services in-process on real PostgreSQL.
//!
//! One binary for them all: each integration-test binary links every service, so one
//! binary builds and links once.
mod flood;
mod holds;
mod identity;
mod journey;
mod orders;
mod passes;
mod payments;
mod retention;
mod rush;
mod seat_maps;
mod traces;
