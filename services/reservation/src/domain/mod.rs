//! Reservation and payment rules, free of SQL and gRPC.
pub mod hold;
mod payment;
mod reservation;

pub use hold::{Blocker, HoldDiagnosis, HoldStep};
pub use payment::{DebitRefusal, Payment, PaymentStatus, SagaStep};
pub use reservation::{Reservation, ReservationStatus, SEATS_PER_SCHEDULE};
