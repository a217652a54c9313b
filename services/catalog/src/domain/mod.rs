//! Catalog rules, free of SQL and gRPC.
mod layout;
mod model;

pub use layout::{GradeRange, MAX_GRADE_CHARS, SEATS_PER_SCHEDULE, seat_layout};
pub use model::{Concert, Schedule, Seat, SeatStatus, UpcomingDates};
