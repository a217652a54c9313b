//! Reservation and payment rules, free of SQL and gRPC.
pub mod hold;
mod payment;
pub mod payment_start;
mod reservation;

pub use hold::{Blocker, HoldDiagnosis, HoldStep};
pub use payment::{DebitRefusal, Payment, PaymentBook, PaymentStatus, SagaStep};
pub use payment_start::{Payer, StartStep};
pub use reservation::{OccupiedSeat, Reservation, ReservationStatus, SEATS_PER_SCHEDULE};
