//! Charges and debits of any users applied together in one transaction (see
//! the `batch` module, which gathers them).
use std::collections::{BTreeSet, HashMap, HashSet};

use platform::money::Won;
use sqlx::{Postgres, Transaction};

use super::{Applied, WalletRepo};
use crate::{
    domain::{Decision, EntryKind, LedgerEntry, Mutation},
    error::WalletError,
};

/// `(user_id, kind, idempotency_key)`: what identifies a ledger entry.
type EntryKey = (String, EntryKind, String);

/// What the batch's mutations find under their keys, read after their accounts are locked.
struct Stored {
    used: HashMap<EntryKey, LedgerEntry>,
    /// `(user_id, debit_key)` voided by a refund that found nothing.
    voided: HashSet<(String, String)>,
}

/// What one mutation of the batch comes to.
enum Plan {
    Done(Result<Applied, WalletError>),
    /// Writes the i-th new entry (`replayed`: a repeat of an earlier item of this batch).
    New {
        index: usize,
        replayed: bool,
    },
}

impl WalletRepo {
    /// Applies charges and debits of any users together: one transaction, one commit, and
    /// five statements however many mutations (see the `batch` module), each planned for
    /// its batch ([`platform::db::begin_batch`]). Each mutation
    /// gets the answer [`WalletRepo::apply`] would have given it had the mutations run one
    /// after another in this order: its entry (or the replayed one), or its own rule error.
    ///
    /// The account rows are locked in `user_id` order (so concurrent batches never deadlock)
    /// before the used keys are read, so the reads see every earlier commit of these wallets.
    /// Refunds are not accepted here: they check the ledger per refund (use `apply`).
    ///
    /// # Errors
    /// Database failures fail the whole batch (nothing is written).
    #[tracing::instrument(skip_all, fields(mutations = ms.len()))]
    pub async fn apply_many(&self, ms: &[Mutation]) -> Result<Vec<Result<Applied, WalletError>>, WalletError> {
        if ms.iter().any(|m| m.kind == EntryKind::Refund) {
            return Err(WalletError::from(anyhow::anyhow!("refunds are applied one at a time")));
        }
        let mut tx = platform::db::begin_batch(&self.pool).await?;
        let mut balance = lock_accounts(&mut tx, ms).await?;
        let stored = read_keys(&mut tx, ms).await?;
        let (plans, new) = plan(ms, &stored, &mut balance);
        let written = if new.is_empty() {
            tx.rollback().await?;
            HashMap::new()
        } else {
            let written = write(&mut tx, &new, &balance).await?;
            tx.commit().await?;
            written
        };
        plans
            .into_iter()
            .map(|plan| match plan {
                Plan::Done(result) => Ok(result),
                Plan::New { index, replayed } => {
                    let m = new[index].0;
                    written
                        .get(&(m.user_id.clone(), m.kind, m.idempotency_key.clone()))
                        .cloned()
                        .map(|entry| Ok(Applied { entry, replayed }))
                        .ok_or_else(|| WalletError::from(anyhow::anyhow!("a written ledger entry was not returned")))
                }
            })
            .collect()
    }
}

/// Creates the batch's accounts on first use and locks them in `user_id` order; their
/// balances.
async fn lock_accounts(
    tx: &mut Transaction<'_, Postgres>,
    ms: &[Mutation],
) -> Result<HashMap<String, Won>, WalletError> {
    let users: Vec<&str> = ms.iter().map(|m| m.user_id.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    let balances = sqlx::query!(
        r#"INSERT INTO accounts (user_id) SELECT u FROM UNNEST($1::text[]) AS u ORDER BY u
           ON CONFLICT (user_id) DO UPDATE SET updated_at = now()
           RETURNING user_id, balance"#,
        &users as &[&str]
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(balances.into_iter().map(|r| (r.user_id, Won::new(r.balance))).collect())
}

/// The entries stored under the batch's keys and its voided debit keys, read after the
/// accounts are locked (a statement of its own, so a snapshot taken after every earlier
/// commit of these wallets).
async fn read_keys(tx: &mut Transaction<'_, Postgres>, ms: &[Mutation]) -> Result<Stored, WalletError> {
    let users: Vec<&str> = ms.iter().map(|m| m.user_id.as_str()).collect();
    let kinds: Vec<&str> = ms.iter().map(|m| m.kind.as_str()).collect();
    let keys: Vec<&str> = ms.iter().map(|m| m.idempotency_key.as_str()).collect();
    let rows = sqlx::query!(
        r#"SELECT entry_id AS "entry_id?", user_id AS "user_id!", kind AS "kind!: EntryKind",
                  amount AS "amount?: Won", balance_after AS "balance_after?: Won",
                  idempotency_key AS "idempotency_key!", debit_key, created_at AS "created_at?",
                  false AS "voided!"
           FROM ledger_entries
           WHERE (user_id, kind, idempotency_key) IN (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]))
           UNION ALL
           SELECT NULL, v.user_id, 'DEBIT', NULL, NULL, v.debit_key, NULL, NULL, true FROM voided_debits v
           WHERE (v.user_id, v.debit_key) IN
                 (SELECT u, k FROM UNNEST($1::text[], $2::text[], $3::text[]) AS x (u, kind, k) WHERE kind = 'DEBIT')"#,
        &users as &[&str],
        &kinds as &[&str],
        &keys as &[&str]
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut stored = Stored { used: HashMap::with_capacity(rows.len()), voided: HashSet::new() };
    for row in rows {
        // A voided key's row carries the debit key in `idempotency_key` and nothing else.
        let (Some(entry_id), Some(amount), Some(balance_after), Some(created_at), false) =
            (row.entry_id, row.amount, row.balance_after, row.created_at, row.voided)
        else {
            stored.voided.insert((row.user_id, row.idempotency_key));
            continue;
        };
        let entry = LedgerEntry {
            entry_id,
            user_id: row.user_id,
            kind: row.kind,
            amount,
            balance_after,
            idempotency_key: row.idempotency_key,
            debit_key: row.debit_key,
            created_at,
        };
        stored.used.insert((entry.user_id.clone(), entry.kind, entry.idempotency_key.clone()), entry);
    }
    Ok(stored)
}

/// Decides every mutation in order against the running balances (the domain's rule,
/// `Mutation::decide`); the plan of each, and the new entries with their balance after.
fn plan<'m>(
    ms: &'m [Mutation],
    stored: &Stored,
    balance: &mut HashMap<String, Won>,
) -> (Vec<Plan>, Vec<(&'m Mutation, Won)>) {
    let mut plans = Vec::with_capacity(ms.len());
    let mut new: Vec<(&Mutation, Won)> = Vec::new();
    let mut planned: HashMap<(&str, EntryKind, &str), usize> = HashMap::new();
    for m in ms {
        let key = (m.user_id.as_str(), m.kind, m.idempotency_key.as_str());
        let found = stored.used.get(&(m.user_id.clone(), m.kind, m.idempotency_key.clone()));
        let is_voided = stored.voided.contains(&(m.user_id.clone(), m.idempotency_key.clone()));
        // A repeat of a request planned earlier in this batch: the stored entry it will be.
        if found.is_none()
            && !(is_voided && m.kind == EntryKind::Debit)
            && let Some(&index) = planned.get(&key)
        {
            plans.push(if *new[index].0 == *m {
                Plan::New { index, replayed: true }
            } else {
                Plan::Done(Err(WalletError::IdempotencyKeyReused))
            });
            continue;
        }
        let current = balance.get(&m.user_id).copied().unwrap_or(Won::ZERO);
        match m.decide(found, is_voided, current, None) {
            Decision::Write(account) => {
                balance.insert(m.user_id.clone(), account.balance);
                planned.insert(key, new.len());
                plans.push(Plan::New { index: new.len(), replayed: false });
                new.push((m, account.balance));
            }
            Decision::Replay(entry) => plans.push(Plan::Done(Ok(Applied { entry, replayed: true }))),
            Decision::Refuse(e) => plans.push(Plan::Done(Err(e))),
            // Refunds are refused before the transaction.
            Decision::VoidAndRefuse => plans.push(Plan::Done(Err(WalletError::DebitNotFound))),
        }
    }
    (plans, new)
}

/// Writes the new balances and appends the new entries in one statement; the entries by key.
async fn write(
    tx: &mut Transaction<'_, Postgres>,
    new: &[(&Mutation, Won)],
    balance: &HashMap<String, Won>,
) -> Result<HashMap<EntryKey, LedgerEntry>, WalletError> {
    let users: BTreeSet<&str> = new.iter().map(|(m, _)| m.user_id.as_str()).collect();
    let (changed_users, changed_balances): (Vec<&str>, Vec<i64>) =
        users.into_iter().map(|u| (u, balance.get(u).map_or(0, |b| b.get()))).unzip();
    let users: Vec<&str> = new.iter().map(|(m, _)| m.user_id.as_str()).collect();
    let kinds: Vec<&str> = new.iter().map(|(m, _)| m.kind.as_str()).collect();
    let amounts: Vec<i64> = new.iter().map(|(m, _)| m.amount.get()).collect();
    let afters: Vec<i64> = new.iter().map(|(_, after)| after.get()).collect();
    let keys: Vec<&str> = new.iter().map(|(m, _)| m.idempotency_key.as_str()).collect();
    let debit_keys: Vec<Option<&str>> = new.iter().map(|(m, _)| m.debit_key.as_deref()).collect();
    let entries = sqlx::query_as!(
        LedgerEntry,
        r#"WITH balances AS (
               UPDATE accounts a SET balance = b.balance, updated_at = now()
               FROM UNNEST($7::text[], $8::bigint[]) AS b (user_id, balance)
               WHERE a.user_id = b.user_id
           )
           INSERT INTO ledger_entries (user_id, kind, amount, balance_after, idempotency_key, debit_key)
           SELECT user_id, kind, amount, balance_after, idempotency_key, debit_key
           FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[])
                WITH ORDINALITY AS n (user_id, kind, amount, balance_after, idempotency_key, debit_key, ord)
           ORDER BY ord
           RETURNING entry_id, user_id, kind AS "kind: EntryKind", amount AS "amount: Won",
                     balance_after AS "balance_after: Won", idempotency_key, debit_key, created_at"#,
        &users as &[&str],
        &kinds as &[&str],
        &amounts,
        &afters,
        &keys as &[&str],
        &debit_keys as &[Option<&str>],
        &changed_users as &[&str],
        &changed_balances
    )
    .fetch_all(&mut **tx)
    .await?;
    let written: HashMap<EntryKey, LedgerEntry> =
        entries.into_iter().map(|e| ((e.user_id.clone(), e.kind, e.idempotency_key.clone()), e)).collect();
    Ok(written)
}
