//! The waiting room's use cases over the store: rooms, joining limits, the line snapshot
//! behind positions and streams, admission rounds, who still polls, and rooms' figures.
pub mod admission;
pub mod line;
pub mod rate_limit;
pub mod rooms;
pub mod seen;
pub mod sold_out;
pub mod stats;
pub mod tokens;
pub mod watchers;
