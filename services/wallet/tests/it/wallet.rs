//! Wallet RPCs against a real server and a fresh PostgreSQL database per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The deprecated single Debit is still served (one rule with DebitMany), so still tested here.
#![allow(deprecated)]
use concert_proto::concert::wallet::v1::{
    AuditRequest, ChargeRequest, DebitFailure, DebitManyRequest, DebitRefusal, DebitRequest, DebitResult,
    GetBalanceRequest, ListTransactionsRequest, RefundRequest, TransactionKind, debit_result::Outcome,
    wallet_internal_service_client::WalletInternalServiceClient, wallet_service_client::WalletServiceClient,
};
use platform::grpc_client::PeerChannel;
use platform::{
    status::{reason, violated_field},
    testing::RunningServer,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::Code;
use wallet_service::{app, config::Settings};

struct App {
    server: RunningServer,
    public: WalletServiceClient<PeerChannel>,
    internal: WalletInternalServiceClient<PeerChannel>,
}

async fn spawn(db: PgConnectOptions) -> App {
    // Authentication is tested end to end (e2e): here `user_id` names the user.
    let settings = Settings {
        db: db.into(),
        max_connections: 20,
        limits: platform::server::Limits::default(),
        auth: platform::identity::AuthSettings::Disabled,
    };
    let server = RunningServer::start(|l, s| app::run(settings, l, s)).await;
    let public = WalletServiceClient::new(server.channel());
    let internal = WalletInternalServiceClient::new(server.internal_channel());
    App { server, public, internal }
}

fn charge(user: &str, amount: i64, key: &str) -> ChargeRequest {
    ChargeRequest { user_id: user.into(), amount, idempotency_key: key.into() }
}

fn debit(user: &str, amount: i64, key: &str) -> DebitRequest {
    DebitRequest { user_id: user.into(), amount, idempotency_key: key.into() }
}

async fn balance(app: &App, user: &str) -> i64 {
    app.public.clone().get_balance(GetBalanceRequest { user_id: user.into() }).await.unwrap().into_inner().balance
}

#[sqlx::test(migrations = false)]
async fn charge_adds_to_balance_and_ledger(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    assert_eq!(balance(&app, "alice").await, 0, "a new wallet is empty");
    let r = app.public.charge(charge("alice", 50_000, "c1")).await.unwrap().into_inner();
    assert_eq!(r.balance, 50_000);
    app.public.charge(charge("alice", 20_000, "c2")).await.unwrap();
    assert_eq!(balance(&app, "alice").await, 70_000);

    let txs = app
        .public
        .list_transactions(ListTransactionsRequest { user_id: "alice".into(), limit: 0 })
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].amount, 20_000, "newest first");
    assert_eq!(txs[0].balance_after, 70_000);
    assert_eq!(txs[1].kind, TransactionKind::Charge as i32);
    app.server.stop().await.unwrap();
}

#[sqlx::test(migrations = false)]
async fn same_key_replays_and_other_request_is_refused(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    let first = app.public.charge(charge("bob", 10_000, "k")).await.unwrap().into_inner();
    let again = app.public.charge(charge("bob", 10_000, "k")).await.unwrap().into_inner();
    assert_eq!(first.transaction, again.transaction, "a replay returns the original entry");
    assert_eq!(balance(&app, "bob").await, 10_000, "charged once");

    let err = app.public.charge(charge("bob", 99, "k")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_field(&err).as_deref(), Some("idempotency_key"));
    assert_eq!(balance(&app, "bob").await, 10_000);
}

#[sqlx::test(migrations = false)]
async fn bad_input_names_the_field(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    let cases = [
        (charge("u", 0, "k"), "amount"),
        (charge("u", -1, "k"), "amount"),
        (charge("u", 10_000_001, "k"), "amount"),
        (charge("u", i64::MAX, "k"), "amount"),
        (charge("", 1, "k"), "user_id"),
        (charge(&"u".repeat(129), 1, "k"), "user_id"),
        (charge("u", 1, ""), "idempotency_key"),
    ];
    for (req, field) in cases {
        let err = app.public.charge(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert_eq!(violated_field(&err).as_deref(), Some(field));
    }
    let err =
        app.public.list_transactions(ListTransactionsRequest { user_id: "u".into(), limit: 1001 }).await.unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("limit"));
}

#[sqlx::test(migrations = false)]
async fn balance_limit_is_enforced(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    for i in 0..100 {
        app.public.charge(charge("rich", 10_000_000, &format!("c{i}"))).await.unwrap();
    }
    let err = app.public.charge(charge("rich", 1, "one-more")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err).as_deref(), Some("BALANCE_LIMIT"));
    assert_eq!(balance(&app, "rich").await, 1_000_000_000);
}

#[sqlx::test(migrations = false)]
async fn debit_refuses_to_go_negative(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    let err = app.internal.debit(debit("carol", 1, "d0")).await.unwrap_err();
    assert_eq!(reason(&err).as_deref(), Some("INSUFFICIENT_BALANCE"), "no wallet means no money");

    app.public.charge(charge("carol", 1_000, "c")).await.unwrap();
    let err = app.internal.debit(debit("carol", 1_001, "d1")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err).as_deref(), Some("INSUFFICIENT_BALANCE"));
    assert_eq!(balance(&app, "carol").await, 1_000);

    let ok = app.internal.debit(debit("carol", 1_000, "d2")).await.unwrap().into_inner();
    assert_eq!(ok.balance, 0);
    let replay = app.internal.debit(debit("carol", 1_000, "d2")).await.unwrap().into_inner();
    assert_eq!(replay.transaction, ok.transaction, "a retried debit is not taken twice");
    assert_eq!(balance(&app, "carol").await, 0);
}

#[sqlx::test(migrations = false)]
async fn refund_gives_back_at_most_what_was_debited(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    app.public.charge(charge("dave", 5_000, "c")).await.unwrap();
    app.internal.debit(debit("dave", 3_000, "pay-1")).await.unwrap();
    let refund = |amount: i64, key: &str, debit_key: &str| RefundRequest {
        user_id: "dave".into(),
        amount,
        idempotency_key: key.into(),
        debit_idempotency_key: debit_key.into(),
    };

    let err = app.internal.refund(refund(3_000, "r0", "no-such-debit")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason(&err).as_deref(), Some("DEBIT_NOT_FOUND"));

    let err = app.internal.refund(refund(3_001, "r1", "pay-1")).await.unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("amount"));

    let ok = app.internal.refund(refund(3_000, "r2", "pay-1")).await.unwrap().into_inner();
    assert_eq!(ok.balance, 5_000);
    let replay = app.internal.refund(refund(3_000, "r2", "pay-1")).await.unwrap().into_inner();
    assert_eq!(replay.balance, 5_000, "replayed refund returns the original result");
    let err = app.internal.refund(refund(1, "r3", "pay-1")).await.unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("amount"), "nothing left to refund");
    assert_eq!(balance(&app, "dave").await, 5_000, "money is neither lost nor created");
}

#[sqlx::test(migrations = false)]
async fn concurrent_charges_sum_exactly_and_debits_never_overdraw(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    // 1,000 charges of one wallet queue on its row lock by design; this test is about the
    // sums, not latency (see the benchmarks), so it allows a generous client deadline.
    let patient = |url: String| {
        let endpoint =
            tonic::transport::Endpoint::from_shared(url).unwrap().timeout(std::time::Duration::from_secs(60));
        platform::grpc_client::traced(endpoint.connect_lazy())
    };
    app.public = WalletServiceClient::new(patient(app.server.url()));
    app.internal = WalletInternalServiceClient::new(patient(app.server.internal_url()));
    let charges = (0..1_000).map(|i| {
        let mut c = app.public.clone();
        async move { c.charge(charge("eve", 7, &format!("c{i}"))).await.map(|_| ()) }
    });
    let results = futures::future::join_all(charges).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} charges failed, first: {:?}", failed.len(), failed.first());
    assert_eq!(balance(&app, "eve").await, 7_000);

    // 300 debits of 30 against 7,000: exactly 233 fit.
    let debits = (0..300).map(|i| {
        let mut c = app.internal.clone();
        async move { c.debit(debit("eve", 30, &format!("d{i}"))).await }
    });
    let results = futures::future::join_all(debits).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 233);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e.code() == Code::FailedPrecondition));
    assert_eq!(balance(&app, "eve").await, 7_000 - 233 * 30);
}

#[sqlx::test(migrations = false)]
async fn concurrent_retries_of_one_debit_key_take_the_money_once(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    app.public.charge(charge("gus", 1_000, "c")).await.unwrap();
    // A saga and its recovery worker (or a retry after a lost answer) send the same debit
    // at the same moment: every call gets the one entry, the money moves once.
    let debits = (0..40).map(|_| {
        let mut c = app.internal.clone();
        async move { c.debit(debit("gus", 300, "payment:1:debit")).await.map(|r| r.into_inner()) }
    });
    let results = futures::future::join_all(debits).await;
    let answers: Vec<_> = results.into_iter().map(|r| r.expect("every retry succeeds")).collect();
    let first = answers[0].transaction.as_ref().unwrap().transaction_id;
    assert!(answers.iter().all(|a| a.transaction.as_ref().unwrap().transaction_id == first && a.balance == 700));
    assert_eq!(balance(&app, "gus").await, 700);
}

/// The failure of one debit: (code, reason, message, typed refusal).
type Failure = (Code, String, String, DebitRefusal);

/// The balance after a taken debit, or the failure.
fn outcome(r: &DebitResult) -> Result<i64, Failure> {
    match r.outcome.as_ref().expect("every result has an outcome") {
        Outcome::Debited(d) => Ok(d.balance),
        Outcome::Failure(f @ DebitFailure { code, reason, message, .. }) => {
            Err((Code::from_i32(*code), reason.clone(), message.clone(), f.refusal()))
        }
    }
}

async fn debit_many(app: &App, debits: Vec<DebitRequest>) -> Vec<Result<i64, Failure>> {
    let results = app.internal.clone().debit_many(DebitManyRequest { debits }).await.unwrap().into_inner().results;
    results.iter().map(outcome).collect()
}

#[sqlx::test(migrations = false)]
async fn debit_many_answers_each_debit_as_debit_would_in_order(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    app.public.charge(charge("ann", 1_000, "c")).await.unwrap();
    app.public.charge(charge("bob", 500, "c")).await.unwrap();
    let answers = debit_many(
        &app,
        vec![
            debit("ann", 600, "d1"),
            debit("bob", 200, "d1"),
            debit("ann", 600, "d2"), // 400 left: refused, nothing recorded
            debit("ann", 300, "d3"),
            debit("bob", 0, "d2"),   // invalid: names the field
            debit("ann", 600, "d1"), // a repeat of the first: replayed, not taken again
            debit("ann", 1, "d1"),   // the first key with another amount: refused
            debit("cid", 100, "d1"), // a wallet never charged
        ],
    )
    .await;
    assert_eq!(answers[0], Ok(400));
    assert_eq!(answers[1], Ok(300));
    let (code, reason, _, refusal) = answers[2].clone().unwrap_err();
    assert_eq!((code, reason.as_str()), (Code::FailedPrecondition, "INSUFFICIENT_BALANCE"));
    assert_eq!(refusal, DebitRefusal::InsufficientBalance);
    assert_eq!(answers[3], Ok(100));
    let (code, _, message, refusal) = answers[4].clone().unwrap_err();
    assert_eq!((code, refusal), (Code::InvalidArgument, DebitRefusal::InvalidRequest));
    assert!(message.starts_with("amount"), "{message}");
    assert_eq!(answers[5], Ok(400), "the repeat answers the first debit's result");
    let (code, _, message, refusal) = answers[6].clone().unwrap_err();
    assert_eq!((code, refusal), (Code::InvalidArgument, DebitRefusal::InvalidRequest));
    assert!(message.starts_with("idempotency_key"), "{message}");
    let (code, reason, _, refusal) = answers[7].clone().unwrap_err();
    assert_eq!((code, reason.as_str()), (Code::FailedPrecondition, "INSUFFICIENT_BALANCE"));
    assert_eq!(refusal, DebitRefusal::InsufficientBalance);
    assert_eq!((balance(&app, "ann").await, balance(&app, "bob").await), (100, 300));

    // The whole call again (a retry after a lost answer): every taken debit replays.
    let again = debit_many(&app, vec![debit("ann", 600, "d1"), debit("bob", 200, "d1"), debit("ann", 300, "d3")]).await;
    assert_eq!(again, vec![Ok(400), Ok(300), Ok(100)]);
    assert_eq!((balance(&app, "ann").await, balance(&app, "bob").await), (100, 300));
    // A debit refused for lack of money is not recorded: the same key passes after a charge.
    app.public.charge(charge("ann", 1_000, "c2")).await.unwrap();
    assert_eq!(debit_many(&app, vec![debit("ann", 600, "d2")]).await, vec![Ok(500)]);
    let audit = app.internal.audit(AuditRequest {}).await.unwrap().into_inner();
    assert!(audit.mismatches.is_empty());
    assert_eq!(audit.total_debited, 600 + 200 + 300 + 600);
}

#[sqlx::test(migrations = false)]
async fn debit_many_refuses_an_empty_or_oversized_call_naming_the_field(_p: PgPoolOptions, db: PgConnectOptions) {
    let app = spawn(db).await;
    for n in [0, 1_001] {
        let debits = (0..n).map(|i| debit("ann", 1, &format!("k{i}"))).collect();
        let err = app.internal.clone().debit_many(DebitManyRequest { debits }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{n} debits");
        assert_eq!(violated_field(&err).as_deref(), Some("debits"));
    }
}

#[sqlx::test(migrations = false)]
async fn concurrent_debit_many_calls_sharing_keys_take_each_debit_once(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    for u in 0..20 {
        app.public.charge(charge(&format!("u{u}"), 1_000, "c")).await.unwrap();
    }
    // Two reservation replicas (or a retry racing the first try) send overlapping batches:
    // 8 calls, each debiting all 20 wallets under the same 20 keys, in different orders.
    let calls = (0..8).map(|c| {
        let mut client = app.internal.clone();
        let mut users: Vec<usize> = (0..20).collect();
        users.rotate_left((c * 3) % 20);
        let debits = users.iter().map(|u| debit(&format!("u{u}"), 250, &format!("pay:{u}"))).collect();
        async move { client.debit_many(DebitManyRequest { debits }).await.map(|r| r.into_inner()) }
    });
    for answer in futures::future::join_all(calls).await {
        let results = answer.expect("every call succeeds").results;
        assert!(results.iter().all(|r| outcome(r) == Ok(750)), "{results:?}");
    }
    for u in 0..20 {
        assert_eq!(balance(&app, &format!("u{u}")).await, 750, "u{u} debited once");
    }
}

#[sqlx::test(migrations = false)]
async fn ledger_is_append_only_and_matches_balances(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db.clone()).await;
    app.public.charge(charge("fay", 900, "c")).await.unwrap();
    app.internal.debit(debit("fay", 400, "d")).await.unwrap();

    let pool = PgPoolOptions::new().connect_with(db.options([("search_path", "wallet")])).await.unwrap();
    let err = sqlx::query("UPDATE ledger_entries SET amount = 1").execute(&pool).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = sqlx::query("DELETE FROM ledger_entries").execute(&pool).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");

    let mismatches: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts a WHERE a.balance <> (
            SELECT COALESCE(SUM(CASE kind WHEN 'DEBIT' THEN -amount ELSE amount END), 0)
            FROM ledger_entries l WHERE l.user_id = a.user_id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(mismatches, 0);
}

#[sqlx::test(migrations = false)]
async fn audit_reconciles_every_wallet_and_reports_a_tampered_one(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db.clone()).await;
    app.public.charge(charge("gus", 10_000, "c1")).await.unwrap();
    app.public.charge(charge("hal", 5_000, "c2")).await.unwrap();
    app.internal.debit(debit("gus", 3_000, "d1")).await.unwrap();
    app.internal
        .refund(RefundRequest {
            user_id: "gus".into(),
            amount: 1_000,
            idempotency_key: "r1".into(),
            debit_idempotency_key: "d1".into(),
        })
        .await
        .unwrap();

    let clean = app.internal.audit(AuditRequest {}).await.unwrap().into_inner();
    assert_eq!(clean.accounts, 2);
    assert!(clean.mismatches.is_empty());
    assert_eq!((clean.total_charged, clean.total_debited, clean.total_refunded), (15_000, 3_000, 1_000));
    assert_eq!(clean.total_balance, 15_000 - 3_000 + 1_000, "charges - debits + refunds = balances");

    // Money created outside the ledger is caught.
    let pool = PgPoolOptions::new().connect_with(db.options([("search_path", "wallet")])).await.unwrap();
    sqlx::query("UPDATE accounts SET balance = balance + 1 WHERE user_id = 'hal'").execute(&pool).await.unwrap();
    let dirty = app.internal.audit(AuditRequest {}).await.unwrap().into_inner();
    assert_eq!(dirty.mismatches.len(), 1);
    assert_eq!(
        (dirty.mismatches[0].user_id.as_str(), dirty.mismatches[0].balance, dirty.mismatches[0].ledger_sum),
        ("hal", 5_001, 5_000)
    );
}

#[sqlx::test(migrations = false)]
async fn concurrent_same_key_debits_of_the_whole_balance_all_get_the_one_debit(
    _p: PgPoolOptions,
    db: PgConnectOptions,
) {
    // Two replicas, a balance of exactly the price, and the same debit sent many times at
    // once (a double click, a retry after a lost answer): every call must get the one
    // debit. Before the fix, a call that waited on the account lock looked the key up in a
    // snapshot older than the lock, saw balance 0 and no entry, and answered
    // INSUFFICIENT_BALANCE for a debit that had in fact been taken.
    let mut a = spawn(db.clone()).await;
    let b = spawn(db).await;
    for round in 0..20 {
        let user = format!("ivy-{round}");
        a.public.charge(charge(&user, 150_000, "c")).await.unwrap();
        let key = format!("payment:{round}:debit");
        let debits = (0..16).map(|i| {
            let mut c = if i % 2 == 0 { a.internal.clone() } else { b.internal.clone() };
            let request = debit(&user, 150_000, &key);
            async move { c.debit(request).await.map(|r| r.into_inner().balance) }
        });
        for answer in futures::future::join_all(debits).await {
            assert_eq!(answer.expect("every copy of a taken debit is answered as taken"), 0);
        }
        assert_eq!(balance(&a, &user).await, 0);
    }
}

#[sqlx::test(migrator = "wallet_service::app::MIGRATOR")]
async fn the_single_path_sees_a_key_committed_while_it_waited_for_the_lock(pool: sqlx::PgPool) {
    use platform::money::Won;
    use wallet_service::{
        domain::{EntryKind, Mutation},
        store::WalletRepo,
    };
    // The same race without the batcher in between: many `apply` calls of one debit key
    // on a wallet holding exactly the amount.
    let repo = WalletRepo::new(pool);
    let m = |kind, amount: i64, key: &str| Mutation {
        user_id: "jay".into(),
        kind,
        amount: Won::new(amount),
        idempotency_key: key.into(),
        debit_key: None,
    };
    for round in 0..30 {
        repo.apply(&m(EntryKind::Charge, 1_000, &format!("c{round}"))).await.unwrap();
        let debit = m(EntryKind::Debit, 1_000, &format!("payment:{round}:debit"));
        let calls = (0..8).map(|_| repo.apply(&debit));
        for answer in futures::future::join_all(calls).await {
            assert_eq!(answer.expect("the debit was taken once; every copy says so").entry.balance_after, Won::ZERO);
        }
    }
    assert!(repo.audit().await.unwrap().mismatches.is_empty());
}

#[sqlx::test(migrations = false)]
async fn a_charge_key_cannot_squat_a_saga_debit_key(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    // A user who read a payment id charges 1 won under the saga's debit key of it.
    app.public.charge(charge("kim", 1, "payment:42:debit")).await.unwrap();
    app.public.charge(charge("kim", 9_999, "top-up")).await.unwrap();
    // The saga's debit under that key is still taken: the kinds have separate key spaces.
    let taken = app.internal.debit(debit("kim", 10_000, "payment:42:debit")).await.unwrap().into_inner();
    assert_eq!(taken.balance, 0);
    // And a refund under the saga's refund key is not refused by the user's keys either.
    app.public.charge(charge("kim", 5, "payment:42:refund")).await.unwrap();
    let refund = RefundRequest {
        user_id: "kim".into(),
        amount: 10_000,
        idempotency_key: "payment:42:refund".into(),
        debit_idempotency_key: "payment:42:debit".into(),
    };
    assert_eq!(app.internal.refund(refund).await.unwrap().into_inner().balance, 10_005);
    // Within one kind a key still identifies one request.
    let err = app.public.charge(charge("kim", 2, "payment:42:debit")).await.unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("idempotency_key"));
}

#[sqlx::test(migrations = false)]
async fn a_refund_that_finds_no_debit_voids_the_key_for_later_debits(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    app.public.charge(charge("lee", 50_000, "c")).await.unwrap();
    let refund = RefundRequest {
        user_id: "lee".into(),
        amount: 30_000,
        idempotency_key: "payment:7:refund".into(),
        debit_idempotency_key: "payment:7:debit".into(),
    };
    // The saga gave the payment up before any debit arrived: nothing to give back.
    let err = app.internal.refund(refund.clone()).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::NotFound, Some("DEBIT_NOT_FOUND")));
    // A debit of that payment still on its way arrives late: refused, nothing taken.
    let err = app.internal.debit(debit("lee", 30_000, "payment:7:debit")).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::FailedPrecondition, Some("DEBIT_VOIDED")));
    let many =
        debit_many(&app, vec![debit("lee", 30_000, "payment:7:debit"), debit("lee", 1_000, "payment:8:debit")]).await;
    assert_eq!(many[0].as_ref().unwrap_err().1, "DEBIT_VOIDED", "DebitMany refuses it too");
    assert_eq!(many[0].as_ref().unwrap_err().3, DebitRefusal::DebitVoided, "typed as such");
    assert_eq!(many[1], Ok(49_000), "other keys are not affected");
    // The refund, retried, still finds nothing; the balance never moved for payment 7.
    assert_eq!(app.internal.refund(refund).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(balance(&app, "lee").await, 49_000);
}

#[sqlx::test(migrator = "wallet_service::app::MIGRATOR")]
async fn a_refund_of_an_existing_debit_is_accepted_at_the_balance_limit(pool: sqlx::PgPool) {
    use platform::money::Won;
    use wallet_service::{
        domain::{EntryKind, MAX_BALANCE, Mutation},
        store::WalletRepo,
    };
    let repo = WalletRepo::new(pool);
    let m = |kind, amount: i64, key: &str, debit_key: Option<&str>| Mutation {
        user_id: "max".into(),
        kind,
        amount: Won::new(amount),
        idempotency_key: key.into(),
        debit_key: debit_key.map(str::to_owned),
    };
    repo.apply(&m(EntryKind::Charge, 10_000_000, "c0", None)).await.unwrap();
    repo.apply(&m(EntryKind::Debit, 5_000_000, "payment:1:debit", None)).await.unwrap();
    // The user tops the wallet up to the limit while the saga compensates.
    for i in 1..100 {
        repo.apply(&m(EntryKind::Charge, 10_000_000, &format!("c{i}"), None)).await.unwrap();
    }
    repo.apply(&m(EntryKind::Charge, 5_000_000, "last", None)).await.unwrap();
    assert_eq!(repo.balance("max").await.unwrap(), MAX_BALANCE);
    let refunded =
        repo.apply(&m(EntryKind::Refund, 5_000_000, "payment:1:refund", Some("payment:1:debit"))).await.unwrap();
    assert_eq!(refunded.entry.balance_after, Won::new(MAX_BALANCE.get() + 5_000_000));
    assert!(repo.audit().await.unwrap().mismatches.is_empty());
}
