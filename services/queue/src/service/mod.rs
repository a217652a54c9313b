//! The waiting room's use cases over the store: rooms, joining limits, the line snapshot
//! behind positions and streams, admission rounds, and who still polls.
pub mod admission;
pub mod line;
pub mod rate_limit;
pub mod rooms;
pub mod seen;
pub mod sold_out;
pub mod tokens;
pub mod watchers;
