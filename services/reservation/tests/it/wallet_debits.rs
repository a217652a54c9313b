//! The saga's wallet client against stand-in wallets that speak the real protocol: debits of
//! concurrent sagas share DebitMany calls, each saga gets its own debit's answer, a failed
//! call answers all its debits at once, and a wallet without DebitMany (an older replica in
//! a rolling deploy) is debited one call per debit. The money rules themselves are tested
//! against the real wallet and PostgreSQL (services/wallet/tests, e2e/tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use concert_proto::concert::wallet::v1::{
    AuditRequest, AuditResponse, DebitFailure, DebitManyRequest, DebitManyResponse, DebitRefusal as WireRefusal,
    DebitRequest, DebitResponse, DebitResult, ExportBooksRequest, ExportBooksResponse, RefundRequest, RefundResponse,
    debit_result::Outcome,
    wallet_internal_service_server::{WalletInternalService, WalletInternalServiceServer},
};
use platform::{
    money::Won,
    outbound::{CallPolicy, Deadline},
    server::Port,
    testing::RunningServer,
};
use reservation_service::{
    clients::{DebitOutcome, Wallet},
    domain::{DebitRefusal, Payment, PaymentStatus},
    error::ReservationError,
};
use tonic::{Code, Request, Response, Status, service::Routes};
use uuid::Uuid;

/// A wallet stand-in: debits answer `balance = amount` (so each answer names its debit),
/// except for user "poor", whose debits are refused for lack of money.
#[derive(Debug, Default)]
struct StandIn {
    /// Sizes of the DebitMany calls received.
    batches: Mutex<Vec<usize>>,
    /// Debit (single) calls received.
    singles: AtomicUsize,
    /// Answers every DebitMany with UNAVAILABLE while set.
    down: AtomicBool,
    /// Answers DebitMany only after this pause.
    delay: Option<Duration>,
}

fn answer(d: &DebitRequest) -> Result<DebitResponse, Status> {
    if d.user_id == "poor" {
        return Err(platform::status::with_reason(Code::FailedPrecondition, "INSUFFICIENT_BALANCE", "no money"));
    }
    Ok(DebitResponse { transaction: None, balance: d.amount })
}

#[derive(Debug, Clone)]
struct Api(Arc<StandIn>);

#[tonic::async_trait]
impl WalletInternalService for Api {
    async fn debit(&self, request: Request<DebitRequest>) -> Result<Response<DebitResponse>, Status> {
        self.0.singles.fetch_add(1, Ordering::SeqCst);
        answer(request.get_ref()).map(Response::new)
    }

    async fn debit_many(&self, request: Request<DebitManyRequest>) -> Result<Response<DebitManyResponse>, Status> {
        self.0.batches.lock().unwrap().push(request.get_ref().debits.len());
        if let Some(pause) = self.0.delay {
            tokio::time::sleep(pause).await;
        }
        if self.0.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("wallet down"));
        }
        let results = request
            .get_ref()
            .debits
            .iter()
            .map(|d| DebitResult {
                outcome: Some(match answer(d) {
                    Ok(r) => Outcome::Debited(r),
                    Err(s) => Outcome::Failure(DebitFailure {
                        code: s.code() as i32,
                        reason: platform::status::reason(&s).unwrap_or_default(),
                        message: s.message().into(),
                        refusal: WireRefusal::InsufficientBalance.into(),
                    }),
                }),
            })
            .collect();
        Ok(Response::new(DebitManyResponse { results }))
    }

    async fn refund(&self, _r: Request<RefundRequest>) -> Result<Response<RefundResponse>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    async fn audit(&self, _r: Request<AuditRequest>) -> Result<Response<AuditResponse>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    type ExportBooksStream = futures::stream::Empty<Result<ExportBooksResponse, Status>>;

    async fn export_books(&self, _r: Request<ExportBooksRequest>) -> Result<Response<Self::ExportBooksStream>, Status> {
        Err(Status::unimplemented("not used here"))
    }
}

async fn serve(stand_in: Arc<StandIn>) -> RunningServer {
    RunningServer::start(|listeners, shutdown| {
        let routes = Routes::new(WalletInternalServiceServer::new(Api(stand_in)));
        let ports = vec![
            Port::internal(listeners.internal, routes, vec![]),
            Port::internal(listeners.public, Routes::default(), vec![]),
        ];
        platform::server::serve(ports, platform::server::Limits::default(), shutdown, None)
    })
    .await
}

fn policy() -> CallPolicy {
    CallPolicy {
        timeout: Duration::from_secs(5),
        retries: 2,
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..CallPolicy::default()
    }
}

fn payment(user: &str, amount: i64) -> Payment {
    Payment {
        payment_id: Uuid::new_v4(),
        reservation_id: Uuid::new_v4(),
        user_id: user.into(),
        token: Uuid::new_v4(),
        idempotency_key: "k".into(),
        amount: Won::new(amount),
        status: PaymentStatus::Started,
        failure_reason: None,
        balance_after: None,
        paid_at: None,
        created_at: Utc::now(),
        seats: 1,
    }
}

/// Debits `payments` concurrently, each with `deadline`.
async fn debit_all(
    wallet: &Wallet,
    payments: &[Payment],
    deadline: Deadline,
) -> Vec<Result<DebitOutcome, ReservationError>> {
    futures::future::join_all(payments.iter().map(|p| wallet.debit(p, deadline))).await
}

fn code(r: &Result<DebitOutcome, ReservationError>) -> Option<Code> {
    match r {
        Err(ReservationError::Peer(s)) => Some(s.code()),
        _ => None,
    }
}

#[tokio::test]
async fn concurrent_debits_share_debit_many_calls_and_each_gets_its_own_answer() {
    let stand_in = Arc::new(StandIn::default());
    let server = serve(stand_in.clone()).await;
    let mut tasks = platform::app::Tasks::new();
    let wallet = Wallet::new(server.internal_channel(), policy(), &mut tasks);
    let payments: Vec<Payment> =
        (1..=200).map(|n| payment(if n % 10 == 0 { "poor" } else { "rich" }, n * 1_000)).collect();

    let outcomes = debit_all(&wallet, &payments, Deadline::after(Duration::from_secs(10))).await;
    for (p, outcome) in payments.iter().zip(&outcomes) {
        let want = if p.user_id == "poor" {
            DebitOutcome::Refused { refusal: DebitRefusal::InsufficientBalance }
        } else {
            DebitOutcome::Debited { balance_after: p.amount }
        };
        assert_eq!(outcome.as_ref().ok(), Some(&want), "{}", p.amount);
    }
    let batches = stand_in.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 200, "every debit sent once");
    assert!(batches.len() < 200, "200 debits in {} calls: they were batched", batches.len());
    assert!(batches.iter().all(|n| *n <= 64), "at most 64 debits per call: {batches:?}");
    assert_eq!(stand_in.singles.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failed_call_answers_each_of_its_debits_and_the_same_debits_pass_later() {
    let stand_in = Arc::new(StandIn { down: AtomicBool::new(true), ..StandIn::default() });
    let server = serve(stand_in.clone()).await;
    let mut tasks = platform::app::Tasks::new();
    let wallet = Wallet::new(server.internal_channel(), policy(), &mut tasks);
    let payments: Vec<Payment> = (1..=40).map(|n| payment("rich", n)).collect();

    let outcomes = debit_all(&wallet, &payments, Deadline::NONE).await;
    assert!(outcomes.iter().all(|o| code(o) == Some(Code::Unavailable)), "{outcomes:?}");
    let calls = stand_in.batches.lock().unwrap().len();
    // Each batch is tried 1 + 2 times, never again debit by debit.
    assert_eq!(calls % 3, 0, "{calls} calls");
    assert!(calls < 40 * 3, "{calls} calls for 40 debits");

    stand_in.down.store(false, Ordering::SeqCst);
    let outcomes = debit_all(&wallet, &payments, Deadline::NONE).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
}

#[tokio::test]
async fn each_saga_stops_waiting_at_its_own_deadline() {
    let stand_in = Arc::new(StandIn { delay: Some(Duration::from_secs(30)), ..StandIn::default() });
    let server = serve(stand_in.clone()).await;
    let mut tasks = platform::app::Tasks::new();
    let wallet = Wallet::new(server.internal_channel(), policy(), &mut tasks);

    let outcome = wallet.debit(&payment("rich", 5), Deadline::after(Duration::from_millis(200))).await;
    assert_eq!(code(&outcome), Some(Code::DeadlineExceeded), "{outcome:?}");
}
