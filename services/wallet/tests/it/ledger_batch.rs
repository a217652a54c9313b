//! `WalletRepo::apply_many` against real PostgreSQL: one transaction gives each mutation
//! the answer it would have had alone, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use platform::money::Won;
use sqlx::PgPool;
use wallet_service::{
    domain::{EntryKind, Mutation},
    error::WalletError,
    store::WalletRepo,
};

fn m(kind: EntryKind, user: &str, amount: i64, key: &str) -> Mutation {
    Mutation { user_id: user.into(), kind, amount: Won::new(amount), idempotency_key: key.into(), debit_key: None }
}

#[sqlx::test(migrator = "wallet_service::app::MIGRATOR")]
async fn a_batch_answers_each_mutation_as_if_applied_alone_in_order(pool: PgPool) {
    let repo = WalletRepo::new(pool.clone());
    repo.apply(&m(EntryKind::Charge, "alice", 100, "c1")).await.unwrap();

    let batch = [
        m(EntryKind::Debit, "alice", 60, "d1"),       // 100 → 40
        m(EntryKind::Debit, "alice", 60, "d2"),       // only 40 left: refused
        m(EntryKind::Charge, "alice", 100, "c1"),     // replay of an earlier commit
        m(EntryKind::Charge, "alice", 5, "c1"),       // that key, another request
        m(EntryKind::Charge, "bob", 70, "c1"),        // keys are per user; bob is new
        m(EntryKind::Debit, "bob", 30, "d1"),         // 70 → 40, after the charge above
        m(EntryKind::Debit, "alice", 60, "d1"),       // repeat of the first item
        m(EntryKind::Debit, "alice", 10, "d1"),       // its key, another amount
        m(EntryKind::Charge, "carol", i64::MAX, "c"), // over the balance limit
    ];
    let out = repo.apply_many(&batch).await.unwrap();
    assert_eq!(out.len(), batch.len());

    let d1 = out[0].as_ref().unwrap();
    assert_eq!((d1.entry.balance_after, d1.replayed), (Won::new(40), false));
    assert!(matches!(out[1], Err(WalletError::InsufficientBalance { .. })), "{:?}", out[1]);
    let replay = out[2].as_ref().unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.entry.balance_after, Won::new(100), "the original result, not a new one");
    assert!(matches!(out[3], Err(WalletError::IdempotencyKeyReused)), "{:?}", out[3]);
    assert_eq!(out[4].as_ref().unwrap().entry.balance_after, Won::new(70));
    assert_eq!(out[5].as_ref().unwrap().entry.balance_after, Won::new(40));
    let again = out[6].as_ref().unwrap();
    assert!(again.replayed);
    assert_eq!(again.entry, d1.entry, "a repeat inside the batch gets the same entry");
    assert!(matches!(out[7], Err(WalletError::IdempotencyKeyReused)), "{:?}", out[7]);
    assert!(matches!(out[8], Err(WalletError::BalanceLimit { .. })), "{:?}", out[8]);

    assert_eq!(repo.balance("alice").await.unwrap(), Won::new(40));
    assert_eq!(repo.balance("bob").await.unwrap(), Won::new(40));
    assert_eq!(repo.balance("carol").await.unwrap(), Won::ZERO);
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_entries").fetch_one(&pool).await.unwrap();
    assert_eq!(entries, 4, "c1 (alice), d1 (alice), c1 (bob), d1 (bob)");
    let report = repo.audit().await.unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
}

#[sqlx::test(migrator = "wallet_service::app::MIGRATOR")]
async fn a_batch_that_writes_nothing_changes_nothing(pool: PgPool) {
    let repo = WalletRepo::new(pool.clone());
    let out =
        repo.apply_many(&[m(EntryKind::Debit, "dave", 1, "d"), m(EntryKind::Debit, "erin", 1, "d")]).await.unwrap();
    assert!(out.iter().all(|r| matches!(r, Err(WalletError::InsufficientBalance { .. }))));
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_entries").fetch_one(&pool).await.unwrap();
    assert_eq!(entries, 0);
}

#[sqlx::test(migrator = "wallet_service::app::MIGRATOR")]
async fn refunds_are_not_batched(pool: PgPool) {
    let repo = WalletRepo::new(pool);
    let mut refund = m(EntryKind::Refund, "alice", 1, "r");
    refund.debit_key = Some("d".into());
    assert!(repo.apply_many(&[refund]).await.is_err());
}

/// Property (proptest): for any batch of charges and debits over a few wallets — replays,
/// keys reused with other amounts, debits that do not fit — the batched path
/// (`apply_many`, one transaction) gives every mutation the answer the single path (`apply`,
/// one at a time, in order) gives it, and leaves the same balances. Each case runs on fresh
/// wallets of the test's database; a failure is shrunk to a minimal batch.
#[sqlx::test(migrator = "wallet_service::app::MIGRATOR")]
async fn the_batched_path_decides_every_mutation_as_the_single_path_does(pool: PgPool) {
    use proptest::{prelude::*, test_runner::TestRunner};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, PartialEq, Eq)]
    enum Answer {
        Taken { balance_after: i64, replayed: bool },
        Refused(String),
    }
    fn answer(r: &Result<wallet_service::store::Applied, WalletError>) -> Answer {
        match r {
            Ok(a) => Answer::Taken { balance_after: a.entry.balance_after.get(), replayed: a.replayed },
            Err(e) => Answer::Refused(format!("{e:?}").split([' ', '{', '(']).next().unwrap_or_default().to_owned()),
        }
    }

    let mutation = (any::<bool>(), 0..3usize, 1..6i64, 0..5usize);
    let case = (proptest::collection::vec(0..4i64, 3), proptest::collection::vec(mutation, 1..24));
    let repo = WalletRepo::new(pool);
    let cases = AtomicU64::new(0);
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let config = proptest::test_runner::Config { cases: 48, failure_persistence: None, ..Default::default() };
        TestRunner::new(config).run(&case, |(opening, batch)| {
            let n = cases.fetch_add(1, Ordering::Relaxed);
            let (batched_users, single_users) =
                ([0, 1, 2].map(|u| format!("b{n}-{u}")), [0, 1, 2].map(|u| format!("s{n}-{u}")));
            let to_mutations = |users: &[String; 3]| -> Vec<Mutation> {
                batch
                    .iter()
                    .map(|&(is_charge, user, units, key)| {
                        let kind = if is_charge { EntryKind::Charge } else { EntryKind::Debit };
                        m(kind, &users[user], units * 10_000, &format!("k{key}"))
                    })
                    .collect()
            };
            let (batched, single) = handle.block_on(async {
                for (u, units) in opening.iter().enumerate() {
                    if *units > 0 {
                        for users in [&batched_users, &single_users] {
                            repo.apply(&m(EntryKind::Charge, &users[u], units * 10_000, "opening")).await.unwrap();
                        }
                    }
                }
                let batched: Vec<Answer> =
                    repo.apply_many(&to_mutations(&batched_users)).await.unwrap().iter().map(answer).collect();
                let mut single = Vec::new();
                for mutation in to_mutations(&single_users) {
                    single.push(answer(&repo.apply(&mutation).await));
                }
                (batched, single)
            });
            prop_assert_eq!(&batched, &single);
            for u in 0..3 {
                let (b, s) = handle
                    .block_on(async { (repo.balance(&batched_users[u]).await, repo.balance(&single_users[u]).await) });
                prop_assert_eq!(b.unwrap(), s.unwrap());
            }
            Ok(())
        })
    })
    .await
    .unwrap();
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
