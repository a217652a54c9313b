//! PayReservation as one use case, read top to bottom in its phases:
//!
//! 1. **lock and decide**: lock the order's holds (one seat or several), check the payment
//!    rules (owner, admission, one purchase per admission, every hold still live) and record
//!    the saga as STARTED with its seats, or find the saga that already covers the order
//!    (batched with concurrent starts);
//! 2. **debit → confirm → complete** (or compensate): the saga ([`Saga::drive`]);
//! 3. **answer**: the payment and the seats it bought, or why it did not buy them.
//!
//! Validating the request and authenticating its token are the handler's.
use chrono::Duration;
use platform::{auth::Principal, clock::SharedClock, outbound::Deadline, paging::PageRequest};
use uuid::Uuid;

use crate::{
    batch::payment_starts::PaymentStartBatcher,
    domain::{DebitRefusal, Payment, PaymentBook, PaymentStatus, Reservation, ReservationStatus, SagaStep},
    error::ReservationError,
    service::saga::Saga,
    store::{PaymentRequest, PaymentStart, ReservationRepo},
};

/// A payment that bought its seats.
#[derive(Debug, Clone)]
pub struct Paid {
    /// CONFIRMED or COMPLETED: the money is taken once and every seat sold.
    pub payment: Payment,
    /// The reservations it bought, CONFIRMED (later given back ones read as they are now),
    /// the order's first one first.
    pub reservations: Vec<Reservation>,
}

/// Who asks to pay, as the handler's token check found them.
#[derive(Debug)]
pub enum Payer {
    /// An admission that may still buy.
    Admitted(Principal),
    /// A queue token the check refused as spent or unknown: a payment it already made may
    /// still be answered (a retry after the token was spent learns its outcome); else the
    /// refusal stands.
    Refused {
        token: Uuid,
        /// The access token's user, when one was verified.
        caller: Option<String>,
        refusal: tonic::Status,
    },
}

/// Runs payments.
#[derive(Debug, Clone)]
pub struct Payments {
    pub(crate) repo: ReservationRepo,
    pub(crate) starts: PaymentStartBatcher,
    /// Drives sagas, handing their last step to the completion batcher.
    pub(crate) saga: Saga,
    pub(crate) clock: SharedClock,
    /// How long a request owns the saga it started before the recovery worker may take it.
    pub(crate) lease: Duration,
}

impl Payments {
    /// Pays the order `reservation_ids` (one seat or several, distinct) for `payer` under
    /// idempotency key `key`, waiting at most until `deadline` for the wallet and the queue.
    ///
    /// # Errors
    /// The payment rules ([`ReservationError::NotFound`], [`ReservationError::NotOwner`],
    /// [`ReservationError::HoldExpired`], [`ReservationError::NotHeld`],
    /// [`ReservationError::IdempotencyKeyReused`], [`ReservationError::AdmissionInUse`],
    /// [`ReservationError::TokenUsed`], [`ReservationError::WrongConcert`]);
    /// [`ReservationError::InsufficientBalance`] when the wallet refused the debit;
    /// [`ReservationError::PaymentInProgress`] while another driver holds the saga;
    /// [`ReservationError::Peer`] when the wallet could not be reached (the payment stays
    /// STARTED: a retry with the same key, or the recovery worker, settles it).
    pub async fn pay(
        &self,
        payer: Principal,
        reservation_ids: Vec<Uuid>,
        key: String,
        deadline: Deadline,
    ) -> Result<Paid, ReservationError> {
        // 1. Lock and decide.
        let request = PaymentRequest { reservation_ids, payer, key, now: self.clock.now(), lease: self.lease };
        let (payment, paid_for) = match self.starts.start_payment(request).await? {
            PaymentStart::New(p, r) => (p, Some(r)),
            PaymentStart::Existing(p) => (p, None),
        };
        // 2. Debit → confirm → complete, or compensate.
        let finished = self.saga.drive(payment, deadline).await?;
        // 3. Answer.
        self.outcome(finished, paid_for).await
    }

    /// Pays for `payer` ([`Self::pay`]), or for a refused token answers the payment it
    /// already made for the order ([`Self::outcome_for_spent_token`]) or its refusal.
    ///
    /// # Errors
    /// As [`Self::pay`]; the token's refusal when it made no payment for this reservation.
    pub async fn pay_as(
        &self,
        payer: Payer,
        reservation_ids: Vec<Uuid>,
        key: String,
        deadline: Deadline,
    ) -> Result<Paid, ReservationError> {
        match payer {
            Payer::Admitted(principal) => self.pay(principal, reservation_ids, key, deadline).await,
            Payer::Refused { token, caller, refusal } => self
                .outcome_for_spent_token(token, caller, &reservation_ids, deadline)
                .await?
                .ok_or(ReservationError::TokenRefused(refusal)),
        }
    }

    /// The outcome of the payment `token` made that covers every reservation of `order`,
    /// resumed first if unfinished: what a caller whose token that payment already spent is
    /// told, whatever key it sends. `None` when there is no such payment or `caller` is not
    /// its payer.
    ///
    /// # Errors
    /// As [`Payments::pay`].
    pub async fn outcome_for_spent_token(
        &self,
        token: Uuid,
        caller: Option<String>,
        order: &[Uuid],
        deadline: Deadline,
    ) -> Result<Option<Paid>, ReservationError> {
        let Some(first) = order.first() else { return Ok(None) };
        let Some(p) = self.repo.payment_by_token(*first, token).await? else {
            return Ok(None);
        };
        // Only the payer learns the outcome through a spent token.
        if caller.is_some_and(|caller| caller != p.user_id) {
            return Ok(None);
        }
        let p = if p.status.next_step() == SagaStep::Done { p } else { self.saga.drive(p, deadline).await? };
        let paid = self.outcome(p, None).await?;
        // The payment must cover the whole order asked about.
        let covered = order.iter().all(|id| paid.reservations.iter().any(|r| r.reservation_id == *id));
        Ok(covered.then_some(paid))
    }

    /// One page of `user_id`'s payments, newest first, each with the reservations it covers
    /// (first one first).
    ///
    /// # Errors
    /// Database failures.
    pub async fn list(&self, user_id: &str, page: &PageRequest) -> Result<Vec<(Payment, Vec<Uuid>)>, ReservationError> {
        let payments = self.repo.payments_of(user_id, page).await?;
        let ids: Vec<Uuid> = payments.iter().map(|p| p.payment_id).collect();
        let mut seats = self.repo.seats_of_payments(&ids).await?;
        Ok(payments
            .into_iter()
            .map(|p| {
                let covered = seats.remove(&p.payment_id).unwrap_or_else(|| vec![p.reservation_id]);
                (p, covered)
            })
            .collect())
    }

    /// Every payment with its reservation (the reconciliation export).
    ///
    /// # Errors
    /// Database failures.
    pub async fn books(&self) -> Result<Vec<PaymentBook>, ReservationError> {
        self.repo.payment_books().await
    }

    /// What a payment whose saga has run as far as it can now means for the caller.
    /// `paid_for` is the order as the start locked it (saves a read); replays read it.
    async fn outcome(&self, p: Payment, paid_for: Option<Vec<Reservation>>) -> Result<Paid, ReservationError> {
        match p.status {
            PaymentStatus::Completed | PaymentStatus::Confirmed => {
                let reservations = match paid_for {
                    // The saga confirmed them: the seats are sold.
                    Some(order) => order
                        .into_iter()
                        .map(|r| Reservation {
                            status: ReservationStatus::Confirmed,
                            payment_id: Some(p.payment_id),
                            ..r
                        })
                        .collect(),
                    None => self.repo.reservations_of_payment(p.payment_id).await?,
                };
                Ok(Paid { payment: p, reservations })
            }
            PaymentStatus::Failed | PaymentStatus::Compensated
                if p.failure_reason == Some(DebitRefusal::InsufficientBalance) =>
            {
                Err(ReservationError::InsufficientBalance)
            }
            PaymentStatus::Failed | PaymentStatus::Compensated => Err(ReservationError::NotHeld),
            // The saga stopped short without an error only if another driver holds it.
            PaymentStatus::Started | PaymentStatus::Compensating => Err(ReservationError::PaymentInProgress),
        }
    }
}
