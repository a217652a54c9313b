//! Catalog rules, free of SQL and gRPC.
mod layout;
mod model;

pub use layout::{GradeRange, SEATS_PER_SCHEDULE, seat_layout};
pub use model::{Concert, Schedule, Seat, SeatStatus};
