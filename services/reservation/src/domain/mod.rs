//! Reservation and payment rules, free of SQL and gRPC.
mod payment;
mod reservation;

pub use payment::{Payment, PaymentStatus, SagaStep};
pub use reservation::{Reservation, ReservationStatus, SEATS_PER_SCHEDULE};
