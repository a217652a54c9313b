//! Use cases that orchestrate the store, the batchers and the peer clients, and the
//! background work every replica runs.
pub mod cancel;
pub mod gauges;
pub mod hold;
pub mod in_flight;
pub mod pay;
pub mod recovery;
pub mod saga;
pub mod seat_feed;
pub mod seen_occupancy;
pub mod sweeper;
pub mod taken_seats;
