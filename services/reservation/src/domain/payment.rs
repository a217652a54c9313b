use chrono::{DateTime, Utc};
use platform::money::Won;
use uuid::Uuid;

use super::ReservationStatus;

/// States of the payment saga. Each is written before the side effect that follows it.
///
/// ```text
/// STARTED ──debit ok──▶ CONFIRMED ──token expired──▶ COMPLETED
///    │                      (reservation CONFIRMED in the same transaction)
///    ├──debit ok but hold no longer HELD─┐
///    └──debit refused for good───────────┴▶ COMPENSATING ──refunded──────▶ COMPENSATED
///         (hold released in the same          │
///          transaction; reason recorded)      └──nothing was taken (key voided)──▶ FAILED
/// ```
///
/// FAILED therefore always means "no money was taken and none can be": the wallet has voided
/// the debit key. A refusal is not recorded as FAILED directly, because another driver of
/// the same saga may have had the debit taken in the meantime.
///
/// Stored by name in the TEXT column `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Recorded before the debit; the debit's outcome may be unknown.
    Started,
    /// Debited and the reservation confirmed; the queue token still to be expired.
    Confirmed,
    /// Done: seat sold, money taken once, token expired.
    Completed,
    /// Given up (the debit was refused, or the seat could not be confirmed after it); the
    /// hold is released and the debit is being refunded or its key voided.
    Compensating,
    /// Refunded; money whole, seat not sold.
    Compensated,
    /// Debit refused; nothing taken (the key is voided at the wallet), hold released.
    Failed,
}

/// Why the wallet refused a payment's debit for good (the same debit would be refused
/// again). Stored in `payments.failure_reason` and shown to the payer as the wallet's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebitRefusal {
    /// The balance was below the price (`INSUFFICIENT_BALANCE`): the caller is told so.
    InsufficientBalance,
    /// The debit key was voided by an earlier refund (`DEBIT_VOIDED`).
    DebitVoided,
    /// Any other final refusal, by the wallet's reason or its status code's name.
    Other(String),
}

impl DebitRefusal {
    /// The stored and shown form: the wallet's ErrorInfo reason.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::InsufficientBalance => "INSUFFICIENT_BALANCE",
            Self::DebitVoided => "DEBIT_VOIDED",
            Self::Other(reason) => reason,
        }
    }

    /// The refusal a stored or received reason names (every string is one).
    #[must_use]
    pub fn from_reason(reason: &str) -> Self {
        match reason {
            "INSUFFICIENT_BALANCE" => Self::InsufficientBalance,
            "DEBIT_VOIDED" => Self::DebitVoided,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// What the saga does next for a payment in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaStep {
    Debit,
    ExpireToken,
    Refund,
    Done,
}

impl PaymentStatus {
    /// Every state, in saga order.
    pub const ALL: [Self; 6] =
        [Self::Started, Self::Confirmed, Self::Completed, Self::Compensating, Self::Compensated, Self::Failed];

    /// The stored name (as sqlx writes it), for logs and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "STARTED",
            Self::Confirmed => "CONFIRMED",
            Self::Completed => "COMPLETED",
            Self::Compensating => "COMPENSATING",
            Self::Compensated => "COMPENSATED",
            Self::Failed => "FAILED",
        }
    }

    /// The next step of the saga from this state.
    #[must_use]
    pub fn next_step(self) -> SagaStep {
        match self {
            Self::Started => SagaStep::Debit,
            Self::Confirmed => SagaStep::ExpireToken,
            Self::Compensating => SagaStep::Refund,
            Self::Completed | Self::Compensated | Self::Failed => SagaStep::Done,
        }
    }
}

/// One payment saga. It covers one seat or an order of several (`order_seats`); its
/// amount is the sum of their prices, debited once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub payment_id: Uuid,
    /// The order's first reservation.
    pub reservation_id: Uuid,
    pub user_id: String,
    pub token: Uuid,
    pub idempotency_key: String,
    pub amount: Won,
    pub status: PaymentStatus,
    /// Why the debit was refused, for payments given up that way.
    pub failure_reason: Option<DebitRefusal>,
    pub balance_after: Option<Won>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// How many seats it covers (1: `reservation_id` alone; more: an order).
    pub seats: u32,
}

impl Payment {
    /// Idempotency key of the wallet debit: derived from the saga id, so every retry of
    /// this saga (by the caller or the recovery worker) debits at most once.
    #[must_use]
    pub fn debit_key(&self) -> String {
        debit_key(self.payment_id)
    }

    /// Idempotency key of the compensating refund.
    #[must_use]
    pub fn refund_key(&self) -> String {
        format!("payment:{}:refund", self.payment_id)
    }
}

/// The wallet key of payment `payment_id`'s debit.
fn debit_key(payment_id: Uuid) -> String {
    format!("payment:{payment_id}:debit")
}

/// A give-back's refund: the price of one seat of a paid payment, owed back to its payer
/// against the payment's debit. Recorded (REFUNDING) in the transaction that gives the seat
/// back, so a crash before the wallet answered leaves it for the recovery worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatRefund {
    pub payment_id: Uuid,
    pub reservation_id: Uuid,
    pub user_id: String,
    /// Won: the seat's price.
    pub amount: Won,
}

impl SeatRefund {
    /// The wallet key of the payment's debit, which this refund gives part of back.
    #[must_use]
    pub fn debit_key(&self) -> String {
        debit_key(self.payment_id)
    }

    /// The refund's own idempotency key: one per seat, so giving a seat back twice refunds
    /// it once, and the seats of one order are refunded each on its own.
    #[must_use]
    pub fn refund_key(&self) -> String {
        give_back_refund_key(self.payment_id, self.reservation_id)
    }
}

/// The wallet key of the give-back refund of seat `reservation_id` of payment `payment_id`.
#[must_use]
pub fn give_back_refund_key(payment_id: Uuid, reservation_id: Uuid) -> String {
    format!("payment:{payment_id}:seat:{reservation_id}:refund")
}

/// Where a bought seat's give-back stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GiveBack {
    /// Given back; its refund is owed (the recovery worker finishes it).
    Refunding,
    /// Given back and refunded.
    Refunded,
}

/// One seat of a payment, for the reconciliation.
#[derive(Debug, Clone)]
pub struct BookSeat {
    pub reservation_id: Uuid,
    pub schedule_id: Uuid,
    pub seat_number: u32,
    /// Won.
    pub price: Won,
    pub status: ReservationStatus,
    pub give_back: Option<GiveBack>,
}

/// One payment saga with its seats, for the cross-service reconciliation.
#[derive(Debug, Clone)]
pub struct PaymentBook {
    pub payment: Payment,
    pub attempts: u32,
    /// Every seat the payment covers, the first included.
    pub seats: Vec<BookSeat>,
}

impl PaymentBook {
    /// The order's first seat (`payment.reservation_id`).
    #[must_use]
    pub fn first_seat(&self) -> Option<&BookSeat> {
        self.seats.iter().find(|s| s.reservation_id == self.payment.reservation_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReservationStatus;

    #[test]
    fn every_state_has_one_next_step() {
        assert_eq!(PaymentStatus::Started.next_step(), SagaStep::Debit);
        assert_eq!(PaymentStatus::Confirmed.next_step(), SagaStep::ExpireToken);
        assert_eq!(PaymentStatus::Compensating.next_step(), SagaStep::Refund);
        for s in [PaymentStatus::Completed, PaymentStatus::Compensated, PaymentStatus::Failed] {
            assert_eq!(s.next_step(), SagaStep::Done);
        }
    }

    #[sqlx::test(migrations = false)]
    async fn names_round_trip_through_postgres(pool: sqlx::PgPool) {
        let cases = PaymentStatus::ALL.map(|s| (s, s.as_str()));
        platform::testing::assert_stored_names(&pool, &cases).await;
        let statuses = [
            ReservationStatus::Held,
            ReservationStatus::Confirmed,
            ReservationStatus::Cancelled,
            ReservationStatus::Expired,
            ReservationStatus::Refunded,
        ];
        platform::testing::assert_stored_names(&pool, &statuses.map(|s| (s, s.as_str()))).await;
        let give_backs = [(GiveBack::Refunding, "REFUNDING"), (GiveBack::Refunded, "REFUNDED")];
        platform::testing::assert_stored_names(&pool, &give_backs).await;
    }

    #[test]
    fn keys_are_derived_from_the_saga() {
        let p = Payment {
            payment_id: Uuid::nil(),
            reservation_id: Uuid::nil(),
            user_id: "u".into(),
            token: Uuid::nil(),
            idempotency_key: "k".into(),
            amount: Won::new(1),
            status: PaymentStatus::Started,
            failure_reason: None,
            balance_after: None,
            paid_at: None,
            created_at: Utc::now(),
            seats: 1,
        };
        assert_ne!(p.debit_key(), p.refund_key());
        assert!(p.debit_key().contains(&Uuid::nil().to_string()));
        let seat = |reservation_id| SeatRefund {
            payment_id: p.payment_id,
            reservation_id,
            user_id: "u".into(),
            amount: Won::new(1),
        };
        let (a, b) = (seat(Uuid::from_u128(1)), seat(Uuid::from_u128(2)));
        assert_eq!(a.debit_key(), p.debit_key(), "a give-back refunds part of the order's debit");
        assert_ne!(a.refund_key(), b.refund_key(), "each seat is refunded on its own");
        assert_ne!(a.refund_key(), p.refund_key());
    }
}
