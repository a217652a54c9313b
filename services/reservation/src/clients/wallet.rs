//! The wallet's internal API: the saga's debits (batched into DebitMany) and refunds.
use concert_proto::concert::wallet::v1::{
    DebitManyRequest, DebitRefusal as WireRefusal, DebitRequest, DebitResult, RefundRequest, debit_result,
    wallet_internal_service_client::WalletInternalServiceClient,
};
use platform::{
    app::Tasks,
    batch::{BatchHandler, Batcher},
    grpc_client::PeerChannel,
    money::Won,
    outbound::{CallPolicy, Deadline, Idempotency, Peer},
    status::from_peer,
};
use tonic::{Code, Status};

use crate::{
    domain::{DebitRefusal, Payment, SeatRefund},
    error::ReservationError,
};

/// How the wallet answered a debit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebitOutcome {
    /// Taken (now or by an earlier try with the same key); the balance right after.
    Debited { balance_after: Won },
    /// Refused for good: asking again with the same request would get the same answer, so
    /// the saga gives the payment up. Whether nothing was taken is settled by the refund
    /// step, which voids the key (see `Saga::drive`).
    Refused { refusal: DebitRefusal },
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
    wallet: Peer<WalletInternalServiceClient<PeerChannel>>,
    debits: Batcher<WalletDebits>,
}

/// Most debits one DebitMany call carries (the wallet accepts up to 1,000).
const MAX_DEBIT_BATCH: usize = 64;
/// DebitMany calls in flight at once (two, as the other stages of the payment path: see
/// `batch::payment_starts::WORKERS`).
const DEBIT_WORKERS: usize = 2;

impl Wallet {
    /// A wallet client; its debit batch workers are spawned into `tasks`.
    #[must_use]
    pub fn new(channel: PeerChannel, policy: CallPolicy, tasks: &mut Tasks) -> Self {
        let wallet = Peer::new("wallet", WalletInternalServiceClient::new(channel), policy);
        let debits = Batcher::start(WalletDebits(wallet.clone()), DEBIT_WORKERS, MAX_DEBIT_BATCH, tasks);
        Self { wallet, debits }
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
        let answer =
            self.wallet.unary(deadline, Idempotency::Idempotent, &request, async |mut c, r| c.refund(r).await).await;
        match answer {
            Ok(_) => Ok(RefundOutcome::Refunded),
            Err(s) if is_reason(&s, Code::NotFound, "DEBIT_NOT_FOUND") => Ok(RefundOutcome::NothingTaken),
            Err(s) => Err(ReservationError::Peer(from_peer("wallet", &s))),
        }
    }
}

impl Wallet {
    /// Refunds a given-back seat's price against its payment's debit, under the seat's own
    /// refund key (the wallet applies it once, however often it is sent).
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the wallet cannot be reached or refuses the refund;
    /// the refund stays owed and a later try settles it.
    pub async fn refund_seat(&self, r: &SeatRefund, deadline: Deadline) -> Result<(), ReservationError> {
        let request = RefundRequest {
            user_id: r.user_id.clone(),
            amount: r.amount.get(),
            idempotency_key: r.refund_key(),
            debit_idempotency_key: r.debit_key(),
        };
        self.wallet
            .unary(deadline, Idempotency::Idempotent, &request, async |mut c, r| c.refund(r).await)
            .await
            .map(drop)
            .map_err(|s| ReservationError::Peer(from_peer("wallet", &s)))
    }
}

/// Sends a batch of debits in one DebitMany call (retried as a whole on transient failures:
/// every debit in it is keyed) and answers each debit as a lone Debit would be answered.
#[derive(Debug)]
struct WalletDebits(Peer<WalletInternalServiceClient<PeerChannel>>);

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
        let answer =
            self.0.unary(deadline, Idempotency::Idempotent, &request, async |mut c, r| c.debit_many(r).await).await;
        let results = match answer {
            Ok(response) => response.results,
            // The call failed as a whole, already retried: every debit in it shares the answer
            // (each alone would fail the same way, and slowly).
            Err(s) => return Ok(items.iter().map(|_| Err(s.clone())).collect()),
        };
        if results.len() != items.len() {
            let s = Status::internal(format!("wallet answered {} results for {} debits", results.len(), items.len()));
            return Ok(items.iter().map(|_| Err(s.clone())).collect());
        }
        Ok(results.into_iter().map(debit_result_outcome).collect())
    }
}

/// How the saga reads one DebitMany result: the balance after, the typed refusal of a rule,
/// or, for a failure that is no rule's refusal (`refusal` UNSPECIFIED), its status.
fn debit_result_outcome(result: DebitResult) -> Result<DebitOutcome, Status> {
    let failure = match result.outcome {
        Some(debit_result::Outcome::Debited(d)) => {
            return Ok(DebitOutcome::Debited { balance_after: Won::new(d.balance) });
        }
        Some(debit_result::Outcome::Failure(f)) => f,
        None => return Err(Status::internal("wallet sent a debit result without an outcome")),
    };
    let refusal = match failure.refusal() {
        WireRefusal::InsufficientBalance => Some(DebitRefusal::InsufficientBalance),
        WireRefusal::DebitVoided => Some(DebitRefusal::DebitVoided),
        WireRefusal::InvalidRequest => Some(DebitRefusal::Other(code_name(Code::InvalidArgument))),
        WireRefusal::Unspecified => None,
    };
    if let Some(refusal) = refusal {
        return Ok(DebitOutcome::Refused { refusal });
    }
    let code = Code::from_i32(failure.code);
    let status = if failure.reason.is_empty() {
        Status::new(code, failure.message)
    } else {
        platform::status::with_reason(code, failure.reason, failure.message)
    };
    debit_outcome(Err(status))
}

/// How the saga reads a lone Debit's answer (the balance after it, or the wallet's status).
fn debit_outcome(answer: Result<i64, Status>) -> Result<DebitOutcome, Status> {
    match answer {
        Ok(balance) => Ok(DebitOutcome::Debited { balance_after: Won::new(balance) }),
        Err(s) if is_final_refusal(s.code()) => {
            let reason = platform::status::reason(&s).unwrap_or_else(|| code_name(s.code()));
            Ok(DebitOutcome::Refused { refusal: DebitRefusal::from_reason(&reason) })
        }
        Err(s) => Err(s),
    }
}

/// The name a refusal without an ErrorInfo reason is stored under (`INVALIDARGUMENT`, as
/// stored since the saga began).
fn code_name(code: Code) -> String {
    format!("{code:?}").to_uppercase()
}

/// Whether `status` is `code` with the ErrorInfo reason `reason`.
fn is_reason(status: &Status, code: Code, reason: &str) -> bool {
    status.code() == code && platform::status::reason(status).as_deref() == Some(reason)
}
