//! Reservation and payment rules, free of SQL and gRPC.
mod give_back;
pub mod hold;
mod payment;
pub mod payment_start;
mod reservation;

pub use give_back::{CancelStep, cancel_step};
pub use hold::{Blocker, HoldDiagnosis, HoldStep};
pub use payment::{
    BookSeat, DebitRefusal, GiveBack, Payment, PaymentBook, PaymentStatus, SagaStep, SeatRefund, give_back_refund_key,
};
pub use payment_start::{Payer, StartStep};
pub use reservation::{OccupiedSeat, Reservation, ReservationStatus, SEATS_PER_SCHEDULE};
