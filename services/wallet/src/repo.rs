//! PostgreSQL access for the wallet schema.
use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use platform::money::Won;
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgRow};

use crate::{
    domain::{Account, EntryKind, LedgerEntry, Mutation},
    error::WalletError,
};

/// The result of applying a mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub entry: LedgerEntry,
    /// True when the key had been used for this same request before: nothing changed now.
    pub replayed: bool,
}

/// Wallet storage.
#[derive(Debug, Clone)]
pub struct WalletRepo {
    pool: PgPool,
}

const ENTRY_COLUMNS: &str = "entry_id, user_id, kind, amount, balance_after, idempotency_key, debit_key, created_at";

impl WalletRepo {
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies a charge, debit or refund exactly once per `(user_id, idempotency_key)`.
    ///
    /// The account row lock serializes every mutation of one wallet, so the key lookup, the
    /// balance rule and the ledger append see one consistent state; different wallets never
    /// wait on each other.
    ///
    /// # Errors
    /// The domain rules ([`WalletError::InsufficientBalance`], [`WalletError::BalanceLimit`]),
    /// [`WalletError::IdempotencyKeyReused`], and for refunds [`WalletError::DebitNotFound`] /
    /// [`WalletError::RefundExceedsDebit`].
    #[tracing::instrument(skip_all, fields(user_id = %m.user_id, kind = m.kind.as_str(), key = %m.idempotency_key))]
    pub async fn apply(&self, m: &Mutation) -> Result<Applied, WalletError> {
        match self.try_apply(m).await {
            // A concurrent call with the same key committed after our snapshot was taken:
            // the unique key refused the second entry; this try sees the first one.
            Err(WalletError::Unexpected(e)) if e.downcast_ref::<sqlx::Error>().is_some_and(is_duplicate_key) => {
                self.try_apply(m).await
            }
            other => other,
        }
    }

    async fn try_apply(&self, m: &Mutation) -> Result<Applied, WalletError> {
        let mut tx = self.pool.begin().await?;
        // Creates the account on first use and locks its row until commit: every mutation
        // of this wallet waits here, so what is read below holds until commit.
        let balance: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (user_id) VALUES ($1)
             ON CONFLICT (user_id) DO UPDATE SET updated_at = now()
             RETURNING balance",
        )
        .bind(&m.user_id)
        .fetch_one(&mut *tx)
        .await?;
        // The key is looked up in a statement of its own, AFTER the lock: a statement sees
        // the snapshot taken when it started, so a lookup inside the locking statement would
        // miss an entry committed while it waited for the lock (and refuse a retried debit
        // for lack of the money that very debit had taken).
        let (existing, voided) = find_key(&mut tx, m).await?;
        if let Some(existing) = existing {
            tx.rollback().await?;
            return if m.is_replay_of(&existing) {
                Ok(Applied { entry: existing, replayed: true })
            } else {
                Err(WalletError::IdempotencyKeyReused)
            };
        }
        if voided {
            tx.rollback().await?;
            return Err(WalletError::DebitVoided);
        }

        if let Some(debit_key) = &m.debit_key
            && let Err(e) = check_refundable(&mut tx, &m.user_id, debit_key, m.amount).await
        {
            if matches!(e, WalletError::DebitNotFound) {
                // Nothing to give back: void the key, so a debit still on its way under it
                // is refused when it arrives (under this same account lock).
                sqlx::query("INSERT INTO voided_debits (user_id, debit_key) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(&m.user_id)
                    .bind(debit_key)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            return Err(e);
        }

        let account = m.apply(Account { balance: Won::new(balance) })?;
        // The new balance and its ledger entry in one statement (one round trip).
        let row = sqlx::query(&format!(
            "WITH account AS (UPDATE accounts SET balance = $4, updated_at = now() WHERE user_id = $1)
             INSERT INTO ledger_entries (user_id, kind, amount, balance_after, idempotency_key, debit_key)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ENTRY_COLUMNS}"
        ))
        .bind(&m.user_id)
        .bind(m.kind.as_str())
        .bind(m.amount.get())
        .bind(account.balance.get())
        .bind(&m.idempotency_key)
        .bind(&m.debit_key)
        .fetch_one(&mut *tx)
        .await?;
        let entry = entry_from_row(&row)?;
        tx.commit().await?;
        Ok(Applied { entry, replayed: false })
    }

    /// Applies charges and debits of any users together: one transaction, one commit, and
    /// five statements however many mutations (see [`crate::ledger_batch`]), each planned for
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
            return Err(WalletError::Unexpected(anyhow::anyhow!("refunds are applied one at a time")));
        }
        let mut tx = platform::db::begin_batch(&self.pool).await?;
        let users: Vec<&str> = ms.iter().map(|m| m.user_id.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
        let balances: Vec<(String, i64)> = sqlx::query_as(
            "INSERT INTO accounts (user_id) SELECT u FROM UNNEST($1::text[]) AS u ORDER BY u
             ON CONFLICT (user_id) DO UPDATE SET updated_at = now()
             RETURNING user_id, balance",
        )
        .bind(&users)
        .fetch_all(&mut *tx)
        .await?;
        let mut balance: HashMap<String, Won> = balances.into_iter().map(|(u, b)| (u, Won::new(b))).collect();

        // Read after the rows are locked (a statement of its own, so a snapshot taken after
        // every earlier commit of these wallets): the used keys, and the voided debit keys.
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS}, false AS voided FROM ledger_entries
             WHERE (user_id, kind, idempotency_key) IN (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]))
             UNION ALL
             SELECT NULL, v.user_id, 'DEBIT', NULL, NULL, v.debit_key, NULL, NULL, true FROM voided_debits v
             WHERE (v.user_id, v.debit_key) IN
                   (SELECT u, k FROM UNNEST($1::text[], $2::text[], $3::text[]) AS x (u, kind, k) WHERE kind = 'DEBIT')"
        ))
        .bind(ms.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| m.idempotency_key.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        let mut used: HashMap<(String, EntryKind, String), LedgerEntry> = HashMap::with_capacity(rows.len());
        let mut voided: HashSet<(String, String)> = HashSet::new();
        for row in &rows {
            if row.try_get::<bool, _>("voided")? {
                voided.insert((row.try_get("user_id")?, row.try_get("idempotency_key")?));
                continue;
            }
            let entry = entry_from_row(row)?;
            used.insert((entry.user_id.clone(), entry.kind, entry.idempotency_key.clone()), entry);
        }

        // Decide every mutation in order against the running balances.
        enum Plan {
            Done(Result<Applied, WalletError>),
            /// Writes the i-th new entry (`replayed`: a repeat of an earlier item of this batch).
            New {
                index: usize,
                replayed: bool,
            },
        }
        let mut plans = Vec::with_capacity(ms.len());
        let mut new: Vec<(&Mutation, Won)> = Vec::new();
        let mut planned: HashMap<(&str, EntryKind, &str), usize> = HashMap::new();
        for m in ms {
            let key = (m.user_id.as_str(), m.kind, m.idempotency_key.as_str());
            if let Some(existing) = used.get(&(m.user_id.clone(), m.kind, m.idempotency_key.clone())) {
                plans.push(Plan::Done(if m.is_replay_of(existing) {
                    Ok(Applied { entry: existing.clone(), replayed: true })
                } else {
                    Err(WalletError::IdempotencyKeyReused)
                }));
                continue;
            }
            if m.kind == EntryKind::Debit && voided.contains(&(m.user_id.clone(), m.idempotency_key.clone())) {
                plans.push(Plan::Done(Err(WalletError::DebitVoided)));
                continue;
            }
            if let Some(&index) = planned.get(&key) {
                plans.push(if *new[index].0 == *m {
                    Plan::New { index, replayed: true }
                } else {
                    Plan::Done(Err(WalletError::IdempotencyKeyReused))
                });
                continue;
            }
            let current = balance.get(&m.user_id).copied().unwrap_or(Won::ZERO);
            match m.apply(Account { balance: current }) {
                Ok(account) => {
                    balance.insert(m.user_id.clone(), account.balance);
                    planned.insert(key, new.len());
                    plans.push(Plan::New { index: new.len(), replayed: false });
                    new.push((m, account.balance));
                }
                Err(e) => plans.push(Plan::Done(Err(e))),
            }
        }

        let mut written: HashMap<(String, EntryKind, String), LedgerEntry> = HashMap::with_capacity(new.len());
        if new.is_empty() {
            tx.rollback().await?;
        } else {
            let changed: Vec<(&str, i64)> = {
                let users: BTreeSet<&str> = new.iter().map(|(m, _)| m.user_id.as_str()).collect();
                users.into_iter().map(|u| (u, balance.get(u).map_or(0, |b| b.get()))).collect()
            };
            let (changed_users, changed_balances): (Vec<&str>, Vec<i64>) = changed.into_iter().unzip();
            let rows = sqlx::query(&format!(
                "WITH balances AS (
                     UPDATE accounts a SET balance = b.balance, updated_at = now()
                     FROM UNNEST($7::text[], $8::bigint[]) AS b (user_id, balance)
                     WHERE a.user_id = b.user_id
                 )
                 INSERT INTO ledger_entries (user_id, kind, amount, balance_after, idempotency_key, debit_key)
                 SELECT user_id, kind, amount, balance_after, idempotency_key, debit_key
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[])
                      WITH ORDINALITY AS n (user_id, kind, amount, balance_after, idempotency_key, debit_key, ord)
                 ORDER BY ord
                 RETURNING {ENTRY_COLUMNS}"
            ))
            .bind(new.iter().map(|(m, _)| m.user_id.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|(m, _)| m.kind.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|(m, _)| m.amount.get()).collect::<Vec<_>>())
            .bind(new.iter().map(|(_, after)| after.get()).collect::<Vec<_>>())
            .bind(new.iter().map(|(m, _)| m.idempotency_key.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|(m, _)| m.debit_key.as_deref()).collect::<Vec<_>>())
            .bind(&changed_users)
            .bind(&changed_balances)
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                let entry = entry_from_row(row)?;
                written.insert((entry.user_id.clone(), entry.kind, entry.idempotency_key.clone()), entry);
            }
            tx.commit().await?;
        }
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
                        .ok_or_else(|| {
                            WalletError::Unexpected(anyhow::anyhow!("a written ledger entry was not returned"))
                        })
                }
            })
            .collect()
    }

    /// The balance of `user_id`; 0 when the wallet was never charged.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn balance(&self, user_id: &str) -> Result<Won, WalletError> {
        let balance: Option<i64> = sqlx::query_scalar("SELECT balance FROM accounts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(Won::new(balance.unwrap_or(0)))
    }

    /// The newest `limit` ledger entries of `user_id`.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn entries(&self, user_id: &str, limit: u32) -> Result<Vec<LedgerEntry>, WalletError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE user_id = $1 ORDER BY entry_id DESC LIMIT $2"
        ))
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }
}

/// The outcome of a reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub accounts: u64,
    /// (user_id, balance, ledger sum) of every wallet that disagrees with its ledger.
    pub mismatches: Vec<(String, Won, Won)>,
    pub total_balance: Won,
    pub total_charged: Won,
    pub total_debited: Won,
    pub total_refunded: Won,
}

impl WalletRepo {
    /// Compares every balance with the sum of its ledger, in one REPEATABLE READ snapshot so
    /// concurrent payments cannot make a correct wallet look wrong.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn audit(&self) -> Result<AuditReport, WalletError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let mismatches: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT a.user_id, a.balance, COALESCE(l.sum, 0)::BIGINT
             FROM accounts a
             LEFT JOIN (SELECT user_id, SUM(CASE kind WHEN 'DEBIT' THEN -amount ELSE amount END) AS sum
                        FROM ledger_entries GROUP BY user_id) l USING (user_id)
             WHERE a.balance <> COALESCE(l.sum, 0)
             ORDER BY a.user_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let (accounts, balance): (i64, i64) =
            sqlx::query_as("SELECT count(*), COALESCE(SUM(balance), 0)::BIGINT FROM accounts")
                .fetch_one(&mut *tx)
                .await?;
        let (charged, debited, refunded): (i64, i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(amount) FILTER (WHERE kind = 'CHARGE'), 0)::BIGINT,
                    COALESCE(SUM(amount) FILTER (WHERE kind = 'DEBIT'), 0)::BIGINT,
                    COALESCE(SUM(amount) FILTER (WHERE kind = 'REFUND'), 0)::BIGINT
             FROM ledger_entries",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AuditReport {
            accounts: u64::try_from(accounts).unwrap_or(0),
            mismatches: mismatches.into_iter().map(|(u, b, l)| (u, Won::new(b), Won::new(l))).collect(),
            total_balance: Won::new(balance),
            total_charged: Won::new(charged),
            total_debited: Won::new(debited),
            total_refunded: Won::new(refunded),
        })
    }
}

/// One wallet's books, for the cross-service reconciliation (won).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBook {
    pub user_id: String,
    pub balance: Won,
    pub charged: Won,
    pub debited: Won,
    pub refunded: Won,
}

/// One debit and the amount refunded of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebitBook {
    pub user_id: String,
    pub key: String,
    pub amount: Won,
    pub refunded: Won,
}

/// Everything the reconciliation reads from the wallet, from one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Books {
    pub accounts: Vec<AccountBook>,
    pub debits: Vec<DebitBook>,
    /// (user_id, debit key) of every voided debit key.
    pub voided: Vec<(String, String)>,
}

impl WalletRepo {
    /// Every wallet's totals, every debit with its refunds, and every voided key, read in one
    /// REPEATABLE READ snapshot.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn books(&self) -> Result<Books, WalletError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let accounts: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT a.user_id, a.balance,
                    COALESCE(SUM(e.amount) FILTER (WHERE e.kind = 'CHARGE'), 0)::BIGINT,
                    COALESCE(SUM(e.amount) FILTER (WHERE e.kind = 'DEBIT'), 0)::BIGINT,
                    COALESCE(SUM(e.amount) FILTER (WHERE e.kind = 'REFUND'), 0)::BIGINT
             FROM accounts a LEFT JOIN ledger_entries e USING (user_id)
             GROUP BY a.user_id, a.balance ORDER BY a.user_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let debits: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT d.user_id, d.idempotency_key, d.amount, COALESCE(SUM(r.amount), 0)::BIGINT
             FROM ledger_entries d
             LEFT JOIN ledger_entries r
                    ON r.kind = 'REFUND' AND r.user_id = d.user_id AND r.debit_key = d.idempotency_key
             WHERE d.kind = 'DEBIT'
             GROUP BY d.entry_id ORDER BY d.entry_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let voided: Vec<(String, String)> =
            sqlx::query_as("SELECT user_id, debit_key FROM voided_debits ORDER BY user_id, debit_key")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Books {
            accounts: accounts
                .into_iter()
                .map(|(user_id, balance, charged, debited, refunded)| AccountBook {
                    user_id,
                    balance: Won::new(balance),
                    charged: Won::new(charged),
                    debited: Won::new(debited),
                    refunded: Won::new(refunded),
                })
                .collect(),
            debits: debits
                .into_iter()
                .map(|(user_id, key, amount, refunded)| DebitBook {
                    user_id,
                    key,
                    amount: Won::new(amount),
                    refunded: Won::new(refunded),
                })
                .collect(),
            voided,
        })
    }
}

/// A second ledger entry under one `(user_id, idempotency_key)`.
fn is_duplicate_key(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.constraint()) == Some("ledger_entries_one_entry_per_key")
}

/// The entry stored under `m`'s key (of `m`'s kind), and whether `m` is a debit whose key
/// was voided.
async fn find_key(
    tx: &mut Transaction<'_, Postgres>,
    m: &Mutation,
) -> Result<(Option<LedgerEntry>, bool), WalletError> {
    let row = sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS},
                $2 = 'DEBIT' AND EXISTS (SELECT 1 FROM voided_debits v WHERE v.user_id = $1 AND v.debit_key = $3)
                    AS voided
         FROM (SELECT 1) AS one
         LEFT JOIN ledger_entries e ON e.user_id = $1 AND e.kind = $2 AND e.idempotency_key = $3"
    ))
    .bind(&m.user_id)
    .bind(m.kind.as_str())
    .bind(&m.idempotency_key)
    .fetch_one(&mut **tx)
    .await?;
    let voided: bool = row.try_get("voided")?;
    let found: Option<i64> = row.try_get("entry_id")?;
    let entry = if found.is_some() { Some(entry_from_row(&row)?) } else { None };
    Ok((entry, voided))
}

/// A refund must give back part or all of an existing debit, never more than was taken.
async fn check_refundable(
    tx: &mut Transaction<'_, Postgres>,
    user_id: &str,
    debit_key: &str,
    amount: Won,
) -> Result<(), WalletError> {
    let debited: Option<i64> = sqlx::query_scalar(
        "SELECT amount FROM ledger_entries WHERE user_id = $1 AND idempotency_key = $2 AND kind = 'DEBIT'",
    )
    .bind(user_id)
    .bind(debit_key)
    .fetch_optional(&mut **tx)
    .await?;
    let debited = Won::new(debited.ok_or(WalletError::DebitNotFound)?);
    let refunded: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(amount), 0)::BIGINT FROM ledger_entries
         WHERE user_id = $1 AND kind = 'REFUND' AND debit_key = $2",
    )
    .bind(user_id)
    .bind(debit_key)
    .fetch_one(&mut **tx)
    .await?;
    let refundable = debited
        .checked_sub(Won::new(refunded))
        .ok_or_else(|| WalletError::Unexpected(anyhow::anyhow!("refund sum overflow")))?;
    if amount > refundable {
        return Err(WalletError::RefundExceedsDebit { requested: amount, refundable });
    }
    Ok(())
}

fn entry_from_row(row: &PgRow) -> Result<LedgerEntry, WalletError> {
    let kind: String = row.try_get("kind")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    Ok(LedgerEntry {
        entry_id: row.try_get("entry_id")?,
        user_id: row.try_get("user_id")?,
        kind: EntryKind::parse(&kind)?,
        amount: Won::new(row.try_get("amount")?),
        balance_after: Won::new(row.try_get("balance_after")?),
        idempotency_key: row.try_get("idempotency_key")?,
        debit_key: row.try_get("debit_key")?,
        created_at,
    })
}
