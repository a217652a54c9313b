//! Clients of the services reservation depends on: catalog (seat prices), wallet (debit,
//! refund) and queue (token checks, token expiry).
use chrono::{DateTime, Utc};
use concert_proto::concert::{
    catalog::v1::{GetSeatRequest, catalog_internal_service_client::CatalogInternalServiceClient},
    queue::v1::{ExpireTokenRequest, queue_internal_service_client::QueueInternalServiceClient},
    wallet::v1::{DebitRequest, RefundRequest, wallet_internal_service_client::WalletInternalServiceClient},
};
use platform::{money::Won, status::from_peer};
use tonic::{Code, Status, transport::Channel};
use uuid::Uuid;

use crate::{domain::Payment, error::ReservationError};

/// Price and start time of a seat, as the catalog knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatInfo {
    pub price: Won,
    pub starts_at: DateTime<Utc>,
}

/// The catalog's internal API.
#[derive(Debug, Clone)]
pub struct Catalog(CatalogInternalServiceClient<Channel>);

impl Catalog {
    #[must_use]
    pub fn new(channel: Channel) -> Self {
        Self(CatalogInternalServiceClient::new(channel))
    }

    /// Price and start of one seat.
    ///
    /// # Errors
    /// [`ReservationError::ScheduleNotFound`]; [`ReservationError::Peer`] when catalog fails.
    pub async fn seat(&self, schedule_id: Uuid, seat_number: u32) -> Result<SeatInfo, ReservationError> {
        let response = self
            .0
            .clone()
            .get_seat(GetSeatRequest { schedule_id: schedule_id.to_string(), seat_number })
            .await
            .map_err(|s| match s.code() {
                Code::NotFound => ReservationError::ScheduleNotFound,
                _ => ReservationError::Peer(from_peer("catalog", &s)),
            })?
            .into_inner();
        let price = response.seat.map(|s| s.price).unwrap_or_default();
        let starts_at = platform::convert::datetime("starts_at", response.starts_at.as_ref())
            .map_err(|e| ReservationError::Unexpected(anyhow::anyhow!("catalog sent a bad seat: {e}")))?;
        Ok(SeatInfo { price: Won::new(price), starts_at })
    }
}

/// How the wallet answered a debit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebitOutcome {
    /// Taken (now or by an earlier try with the same key); the balance right after.
    Debited { balance_after: Won },
    /// Refused for lack of money; nothing was taken.
    Insufficient,
}

/// The wallet's internal API.
#[derive(Debug, Clone)]
pub struct Wallet(WalletInternalServiceClient<Channel>);

impl Wallet {
    #[must_use]
    pub fn new(channel: Channel) -> Self {
        Self(WalletInternalServiceClient::new(channel))
    }

    /// Debits the payment's amount under the saga's debit key.
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the outcome is unknown (wallet unreachable, deadline):
    /// the caller retries with the same key, never guesses.
    pub async fn debit(&self, p: &Payment) -> Result<DebitOutcome, ReservationError> {
        let request =
            DebitRequest { user_id: p.user_id.clone(), amount: p.amount.get(), idempotency_key: p.debit_key() };
        match self.0.clone().debit(request).await {
            Ok(r) => Ok(DebitOutcome::Debited { balance_after: Won::new(r.into_inner().balance) }),
            Err(s) if is_reason(&s, Code::FailedPrecondition, "INSUFFICIENT_BALANCE") => Ok(DebitOutcome::Insufficient),
            Err(s) => Err(ReservationError::Peer(from_peer("wallet", &s))),
        }
    }

    /// Refunds the saga's debit. A debit that never happened needs no refund: that counts
    /// as done.
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the wallet cannot be reached.
    pub async fn refund(&self, p: &Payment) -> Result<(), ReservationError> {
        let request = RefundRequest {
            user_id: p.user_id.clone(),
            amount: p.amount.get(),
            idempotency_key: p.refund_key(),
            debit_idempotency_key: p.debit_key(),
        };
        match self.0.clone().refund(request).await {
            Ok(_) => Ok(()),
            Err(s) if is_reason(&s, Code::NotFound, "DEBIT_NOT_FOUND") => Ok(()),
            Err(s) => Err(ReservationError::Peer(from_peer("wallet", &s))),
        }
    }
}

/// The queue's internal API.
#[derive(Debug, Clone)]
pub struct Queue(QueueInternalServiceClient<Channel>);

impl Queue {
    #[must_use]
    pub fn new(channel: Channel) -> Self {
        Self(QueueInternalServiceClient::new(channel))
    }

    /// Expires a token; an unknown token counts as expired.
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the queue cannot be reached.
    pub async fn expire_token(&self, token: Uuid) -> Result<(), ReservationError> {
        match self.0.clone().expire_token(ExpireTokenRequest { token: token.to_string() }).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(ReservationError::Peer(from_peer("queue", &s))),
        }
    }
}

fn is_reason(status: &Status, code: Code, reason: &str) -> bool {
    status.code() == code && platform::status::reason(status).as_deref() == Some(reason)
}
