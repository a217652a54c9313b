//! One charge, debit or refund, applied exactly once per `(user, kind, key)`.
use platform::money::Won;
use sqlx::{Postgres, Transaction};

use super::{Applied, WalletRepo};
use crate::{
    domain::{Decision, EntryKind, LedgerEntry, Mutation, Refundable},
    error::WalletError,
};

impl WalletRepo {
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
            Err(WalletError::System(e)) if e.sqlx().is_some_and(is_duplicate_key) => self.try_apply(m).await,
            other => other,
        }
    }

    async fn try_apply(&self, m: &Mutation) -> Result<Applied, WalletError> {
        let mut tx = self.pool.begin().await?;
        // Creates the account on first use and locks its row until commit: every mutation
        // of this wallet waits here, so what is read below holds until commit.
        let balance = sqlx::query_scalar!(
            "INSERT INTO accounts (user_id) VALUES ($1)
             ON CONFLICT (user_id) DO UPDATE SET updated_at = now()
             RETURNING balance",
            m.user_id
        )
        .fetch_one(&mut *tx)
        .await?;
        // The key is looked up in a statement of its own, AFTER the lock: a statement sees
        // the snapshot taken when it started, so a lookup inside the locking statement would
        // miss an entry committed while it waited for the lock (and refuse a retried debit
        // for lack of the money that very debit had taken).
        let (existing, voided) = find_key(&mut tx, m).await?;
        let refundable = match (&m.debit_key, existing.is_none()) {
            (Some(debit_key), true) => Some(refundable(&mut tx, &m.user_id, debit_key).await?),
            _ => None,
        };
        let account = match m.decide(existing.as_ref(), voided, Won::new(balance), refundable) {
            Decision::Write(account) => account,
            Decision::Replay(entry) => {
                tx.rollback().await?;
                return Ok(Applied { entry, replayed: true });
            }
            Decision::VoidAndRefuse => {
                // Under this same account lock, so a debit arriving later sees the void.
                sqlx::query!(
                    "INSERT INTO voided_debits (user_id, debit_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    m.user_id,
                    m.debit_key.as_deref().unwrap_or_default()
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Err(WalletError::DebitNotFound);
            }
            Decision::Refuse(e) => {
                tx.rollback().await?;
                return Err(e);
            }
        };
        // The new balance and its ledger entry in one statement (one round trip).
        let entry = sqlx::query_as!(
            LedgerEntry,
            r#"WITH account AS (UPDATE accounts SET balance = $4, updated_at = now() WHERE user_id = $1)
               INSERT INTO ledger_entries (user_id, kind, amount, balance_after, idempotency_key, debit_key)
               VALUES ($1, $2, $3, $4, $5, $6)
               RETURNING entry_id, user_id, kind AS "kind: EntryKind", amount AS "amount: Won",
                         balance_after AS "balance_after: Won", idempotency_key, debit_key, created_at"#,
            m.user_id,
            m.kind.as_str(),
            m.amount.get(),
            account.balance.get(),
            m.idempotency_key,
            m.debit_key
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Applied { entry, replayed: false })
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
    let row = sqlx::query!(
        r#"SELECT e.entry_id AS "entry_id?", e.user_id AS "user_id?", e.kind AS "kind?: EntryKind",
                  e.amount AS "amount?: Won", e.balance_after AS "balance_after?: Won",
                  e.idempotency_key AS "idempotency_key?", e.debit_key, e.created_at AS "created_at?",
                  ($2 = 'DEBIT' AND EXISTS (SELECT 1 FROM voided_debits v WHERE v.user_id = $1 AND v.debit_key = $3))
                      AS "voided!"
           FROM (SELECT 1) AS one
           LEFT JOIN ledger_entries e ON e.user_id = $1 AND e.kind = $2 AND e.idempotency_key = $3"#,
        m.user_id,
        m.kind.as_str(),
        m.idempotency_key
    )
    .fetch_one(&mut **tx)
    .await?;
    // The LEFT JOIN's columns are all set or all NULL (no entry under the key).
    let entry = match (row.entry_id, row.user_id, row.kind, row.amount, row.balance_after) {
        (Some(entry_id), Some(user_id), Some(kind), Some(amount), Some(balance_after)) => Some(LedgerEntry {
            entry_id,
            user_id,
            kind,
            amount,
            balance_after,
            idempotency_key: row.idempotency_key.unwrap_or_default(),
            debit_key: row.debit_key,
            created_at: row.created_at.unwrap_or_default(),
        }),
        _ => None,
    };
    let voided = row.voided;
    Ok((entry, voided))
}

/// What a refund of `debit_key` may give back: the debit's amount (if it exists) and what
/// earlier refunds of it gave back.
async fn refundable(
    tx: &mut Transaction<'_, Postgres>,
    user_id: &str,
    debit_key: &str,
) -> Result<Refundable, WalletError> {
    let row = sqlx::query!(
        r#"SELECT (SELECT amount FROM ledger_entries WHERE user_id = $1 AND idempotency_key = $2 AND kind = 'DEBIT')
                      AS "debited?",
                  (SELECT COALESCE(SUM(amount), 0)::BIGINT FROM ledger_entries
                   WHERE user_id = $1 AND kind = 'REFUND' AND debit_key = $2) AS "refunded!""#,
        user_id,
        debit_key
    )
    .fetch_one(&mut **tx)
    .await?;
    let (debited, refunded) = (row.debited, row.refunded);
    Ok(Refundable { debited: debited.map(Won::new), refunded: Won::new(refunded) })
}
