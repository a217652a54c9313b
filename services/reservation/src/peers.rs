//! Clients of the services reservation depends on: catalog (seat prices), wallet (debit,
//! refund) and queue (token checks, token expiry).
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use concert_proto::concert::{
    catalog::v1::{GetScheduleSeatsRequest, catalog_internal_service_client::CatalogInternalServiceClient},
    queue::v1::{ExpireTokenRequest, ExpireTokensRequest, queue_internal_service_client::QueueInternalServiceClient},
    wallet::v1::{
        DebitManyRequest, DebitRequest, DebitResult, RefundRequest, debit_result,
        wallet_internal_service_client::WalletInternalServiceClient,
    },
};
use moka::future::Cache;
use platform::grpc_client::PeerChannel;
use platform::{
    batch::{BatchHandler, Batcher},
    money::Won,
    outbound::{self, CallPolicy, Deadline, Idempotency},
    status::from_peer,
};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::{domain::Payment, error::ReservationError};

/// Price and start time of a seat, as the catalog knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatInfo {
    /// The concert of the schedule (a token unlocks only its own concert).
    pub concert_id: Uuid,
    pub price: Won,
    pub starts_at: DateTime<Utc>,
}

/// A schedule's start and its seat prices (index = seat number − 1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    concert_id: Uuid,
    starts_at: DateTime<Utc>,
    prices: Vec<Won>,
}

/// Most schedule layouts one replica keeps.
const LAYOUT_CAPACITY: u64 = 50_000;

/// The catalog's internal API, with schedule layouts cached: they never change after
/// AddSchedule, so one lookup per schedule and replica prices every hold on it.
#[derive(Debug, Clone)]
pub struct Catalog {
    client: CatalogInternalServiceClient<PeerChannel>,
    layouts: Cache<Uuid, Arc<Layout>>,
    policy: CallPolicy,
}

impl Catalog {
    #[must_use]
    pub fn new(channel: PeerChannel, layout_ttl: Duration) -> Self {
        Self {
            client: CatalogInternalServiceClient::new(channel),
            layouts: Cache::builder().max_capacity(LAYOUT_CAPACITY).time_to_live(layout_ttl).build(),
            policy: CallPolicy::default(),
        }
    }

    /// Price and start of one seat.
    ///
    /// # Errors
    /// [`ReservationError::ScheduleNotFound`] for an unknown schedule or seat;
    /// [`ReservationError::Peer`] when catalog fails.
    pub async fn seat(&self, schedule_id: Uuid, seat_number: u32) -> Result<SeatInfo, ReservationError> {
        let layout = self
            .layouts
            .try_get_with(schedule_id, fetch_layout(self.client.clone(), self.policy.clone(), schedule_id))
            .await
            .map_err(|e| ReservationError::shared(&e, "loading seat layout"))?;
        let index = usize::try_from(seat_number).ok().and_then(|n| n.checked_sub(1));
        let price = index.and_then(|i| layout.prices.get(i)).ok_or(ReservationError::ScheduleNotFound)?;
        Ok(SeatInfo { concert_id: layout.concert_id, price: *price, starts_at: layout.starts_at })
    }
}

async fn fetch_layout(
    client: CatalogInternalServiceClient<PeerChannel>,
    policy: CallPolicy,
    schedule_id: Uuid,
) -> Result<Arc<Layout>, ReservationError> {
    let request = GetScheduleSeatsRequest { schedule_id: schedule_id.to_string() };
    let response = outbound::call("catalog", &policy, Deadline::NONE, Idempotency::Idempotent, |budget| {
        let mut client = client.clone();
        let request = outbound::with_timeout(request.clone(), budget);
        async move { client.get_schedule_seats(request).await }
    })
    .await
    .map_err(|s| match s.code() {
        Code::NotFound => ReservationError::ScheduleNotFound,
        _ => ReservationError::Peer(from_peer("catalog", &s)),
    })?
    .into_inner();
    let schedule = response.schedule.unwrap_or_default();
    let starts_at = platform::convert::datetime("starts_at", schedule.starts_at.as_ref())
        .map_err(|e| ReservationError::from(anyhow::anyhow!("catalog sent a bad schedule: {e}")))?;
    let concert_id = Uuid::parse_str(&schedule.concert_id)
        .map_err(|_| ReservationError::from(anyhow::anyhow!("catalog sent a schedule without a concert")))?;
    let mut seats = response.seats;
    seats.sort_by_key(|s| s.seat_number);
    let in_order = seats.iter().zip(1..).all(|(s, n)| s.seat_number == n);
    if !in_order {
        return Err(ReservationError::from(anyhow::anyhow!("catalog sent seats that are not 1..=n")));
    }
    Ok(Arc::new(Layout { concert_id, starts_at, prices: seats.iter().map(|s| Won::new(s.price)).collect() }))
}

/// How the wallet answered a debit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebitOutcome {
    /// Taken (now or by an earlier try with the same key); the balance right after.
    Debited { balance_after: Won },
    /// Refused for good (the wallet's ErrorInfo reason, e.g. INSUFFICIENT_BALANCE, or the
    /// code's name): asking again with the same request would get the same answer, so the
    /// saga gives the payment up. Whether nothing was taken is settled by the refund step,
    /// which voids the key (see `Saga::drive`).
    Refused { reason: String },
}

/// How the wallet answered a compensating refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The debit was given back (now or by an earlier try).
    Refunded,
    /// There was no debit under the key; the wallet voided it, so none can be taken later.
    NothingTaken,
}

/// Whether a peer's status is a final answer to the request (the same request would be
/// refused again), as opposed to an outcome that is still unknown (unreachable, timed out,
/// shed, or an unexpected failure) and worth retrying under the same key.
#[must_use]
pub fn is_final_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound | Code::AlreadyExists | Code::OutOfRange
    )
}

/// The wallet's internal API. Debit and refund carry keys derived from the payment id, so
/// both are retried on transient failures: the wallet applies each key once.
///
/// Debits of concurrent sagas go to the wallet together, in one DebitMany call per batch
/// (see `platform::batch`), which the wallet writes in one transaction: one call and one
/// commit for a batch instead of one per payment. Nothing waits to fill a batch.
#[derive(Debug, Clone)]
pub struct Wallet {
    client: WalletInternalServiceClient<PeerChannel>,
    policy: CallPolicy,
    debits: Batcher<WalletDebits>,
}

/// Most debits one DebitMany call carries (the wallet accepts up to 1,000).
const MAX_DEBIT_BATCH: usize = 64;
/// DebitMany calls in flight at once (two, as the other stages of the payment path: see
/// `payment_starter::WORKERS`).
const DEBIT_WORKERS: usize = 2;

impl Wallet {
    /// A wallet client; starts its debit batch workers, so it needs a Tokio runtime.
    #[must_use]
    pub fn new(channel: PeerChannel, policy: CallPolicy) -> Self {
        let client = WalletInternalServiceClient::new(channel);
        let debits = Batcher::start(
            WalletDebits { client: client.clone(), policy: policy.clone() },
            DEBIT_WORKERS,
            MAX_DEBIT_BATCH,
        );
        Self { client, policy, debits }
    }

    /// Debits the payment's amount under the saga's debit key, waiting at most until
    /// `deadline`.
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the outcome is still unknown after the retries
    /// (wallet unreachable, deadline): the saga keeps its state and a later try of the same
    /// key settles it, never a guess.
    pub async fn debit(&self, p: &Payment, deadline: Deadline) -> Result<DebitOutcome, ReservationError> {
        let request =
            DebitRequest { user_id: p.user_id.clone(), amount: p.amount.get(), idempotency_key: p.debit_key() };
        let answer = match deadline.wait(self.debits.submit((request, deadline))).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(stopped)) => return Err(ReservationError::from(anyhow::anyhow!(stopped.to_string()))),
            Err(_) => Err(Status::deadline_exceeded("wallet did not answer the debit before the deadline")),
        };
        answer.map_err(|s| ReservationError::Peer(from_peer("wallet", &s)))
    }

    /// Refunds the saga's debit, or, when there was none, voids its key at the wallet so a
    /// debit still on its way is refused.
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the wallet cannot be reached or refuses the refund.
    pub async fn refund(&self, p: &Payment, deadline: Deadline) -> Result<RefundOutcome, ReservationError> {
        let request = RefundRequest {
            user_id: p.user_id.clone(),
            amount: p.amount.get(),
            idempotency_key: p.refund_key(),
            debit_idempotency_key: p.debit_key(),
        };
        let answer = outbound::call("wallet", &self.policy, deadline, Idempotency::Idempotent, |budget| {
            let mut client = self.client.clone();
            let request = outbound::with_timeout(request.clone(), budget);
            async move { client.refund(request).await }
        })
        .await;
        match answer {
            Ok(_) => Ok(RefundOutcome::Refunded),
            Err(s) if is_reason(&s, Code::NotFound, "DEBIT_NOT_FOUND") => Ok(RefundOutcome::NothingTaken),
            Err(s) => Err(ReservationError::Peer(from_peer("wallet", &s))),
        }
    }
}

/// Sends a batch of debits in one DebitMany call (retried as a whole on transient failures:
/// every debit in it is keyed) and answers each debit as a lone Debit would be answered.
#[derive(Debug)]
struct WalletDebits {
    client: WalletInternalServiceClient<PeerChannel>,
    policy: CallPolicy,
}

impl BatchHandler for WalletDebits {
    /// A debit and the deadline of the saga waiting for it.
    type Item = (DebitRequest, Deadline);
    /// The debit's outcome, or the status that left it unknown or refused.
    type Output = Result<DebitOutcome, Status>;
    type Error = Status;

    async fn run(&self, items: &[(DebitRequest, Deadline)]) -> Result<Vec<Self::Output>, Status> {
        // The call lasts while any of its sagas still waits (each stops waiting at its own).
        let deadline = Deadline::latest(items.iter().map(|(_, d)| *d));
        let request = DebitManyRequest { debits: items.iter().map(|(d, _)| d.clone()).collect() };
        let answer = outbound::call("wallet", &self.policy, deadline, Idempotency::Idempotent, |budget| {
            let mut client = self.client.clone();
            let request = outbound::with_timeout(request.clone(), budget);
            async move { client.debit_many(request).await }
        })
        .await;
        let results = match answer {
            Ok(response) => response.into_inner().results,
            // A wallet replica older than DebitMany (during a rolling deploy).
            Err(s) if s.code() == Code::Unimplemented => return Ok(self.one_by_one(items).await),
            // The call failed as a whole, already retried: every debit in it shares the answer
            // (each alone would fail the same way, and slowly).
            Err(s) => return Ok(items.iter().map(|_| Err(s.clone())).collect()),
        };
        if results.len() != items.len() {
            let s = Status::internal(format!("wallet answered {} results for {} debits", results.len(), items.len()));
            return Ok(items.iter().map(|_| Err(s.clone())).collect());
        }
        Ok(results.into_iter().map(|r| debit_outcome(debit_answer(r))).collect())
    }
}

impl WalletDebits {
    async fn one_by_one(&self, items: &[(DebitRequest, Deadline)]) -> Vec<Result<DebitOutcome, Status>> {
        let calls = items.iter().map(|(request, deadline)| async move {
            outbound::call("wallet", &self.policy, *deadline, Idempotency::Idempotent, |budget| {
                let mut client = self.client.clone();
                let request = outbound::with_timeout(request.clone(), budget);
                async move { client.debit(request).await }
            })
            .await
            .map(|r| r.into_inner().balance)
        });
        futures::future::join_all(calls).await.into_iter().map(debit_outcome).collect()
    }
}

/// One DebitMany result as Debit would have answered it: the balance after, or the status.
fn debit_answer(result: DebitResult) -> Result<i64, Status> {
    match result.outcome {
        Some(debit_result::Outcome::Debited(d)) => Ok(d.balance),
        Some(debit_result::Outcome::Failure(f)) if f.reason.is_empty() => {
            Err(Status::new(Code::from_i32(f.code), f.message))
        }
        Some(debit_result::Outcome::Failure(f)) => {
            Err(platform::status::with_reason(Code::from_i32(f.code), f.reason, f.message))
        }
        None => Err(Status::internal("wallet sent a debit result without an outcome")),
    }
}

/// How the saga reads a debit's answer (the balance after it, or the wallet's status).
fn debit_outcome(answer: Result<i64, Status>) -> Result<DebitOutcome, Status> {
    match answer {
        Ok(balance) => Ok(DebitOutcome::Debited { balance_after: Won::new(balance) }),
        Err(s) if is_final_refusal(s.code()) => {
            let reason = platform::status::reason(&s).unwrap_or_else(|| format!("{:?}", s.code()).to_uppercase());
            Ok(DebitOutcome::Refused { reason })
        }
        Err(s) => Err(s),
    }
}

/// The queue's internal API.
#[derive(Debug, Clone)]
pub struct Queue {
    client: QueueInternalServiceClient<PeerChannel>,
    policy: CallPolicy,
}

impl Queue {
    #[must_use]
    pub fn new(channel: PeerChannel, policy: CallPolicy) -> Self {
        Self { client: QueueInternalServiceClient::new(channel), policy }
    }

    /// Expires a token (idempotent, so retried); an unknown token counts as expired.
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the queue cannot be reached.
    pub async fn expire_token(&self, token: Uuid, deadline: Deadline) -> Result<(), ReservationError> {
        let request = ExpireTokenRequest { token: token.to_string() };
        let answer = outbound::call("queue", &self.policy, deadline, Idempotency::Idempotent, |budget| {
            let mut client = self.client.clone();
            let request = outbound::with_timeout(request.clone(), budget);
            async move { client.expire_token(request).await }
        })
        .await;
        match answer {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(ReservationError::Peer(from_peer("queue", &s))),
        }
    }
}

impl Queue {
    /// Expires many tokens at once (idempotent, so retried).
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the queue cannot be reached.
    pub async fn expire_tokens(&self, tokens: &[Uuid], deadline: Deadline) -> Result<(), ReservationError> {
        let request = ExpireTokensRequest { tokens: tokens.iter().map(Uuid::to_string).collect() };
        outbound::call("queue", &self.policy, deadline, Idempotency::Idempotent, |budget| {
            let mut client = self.client.clone();
            let request = outbound::with_timeout(request.clone(), budget);
            async move { client.expire_tokens(request).await }
        })
        .await
        .map(|_| ())
        .map_err(|s| ReservationError::Peer(from_peer("queue", &s)))
    }
}

/// `message` as a request that tells the peer how long we wait (`grpc-timeout`).
fn is_reason(status: &Status, code: Code, reason: &str) -> bool {
    status.code() == code && platform::status::reason(status).as_deref() == Some(reason)
}
