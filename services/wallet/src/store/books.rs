//! Reading the books whole: the audit of every wallet against its ledger, and the export
//! the cross-service reconciliation joins with reservation's payments.
use platform::money::Won;

use super::WalletRepo;
use crate::error::WalletError;

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

/// One consistent, read-only view of the books.
const SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

impl WalletRepo {
    /// Compares every balance with the sum of its ledger, in one REPEATABLE READ snapshot so
    /// concurrent payments cannot make a correct wallet look wrong.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn audit(&self) -> Result<AuditReport, WalletError> {
        let mut tx = self.pool.begin_with(SNAPSHOT).await?;
        let mismatches = sqlx::query!(
            r#"SELECT a.user_id, a.balance, COALESCE(l.sum, 0)::BIGINT AS "ledger_sum!"
               FROM accounts a
               LEFT JOIN (SELECT user_id, SUM(CASE kind WHEN 'DEBIT' THEN -amount ELSE amount END) AS sum
                          FROM ledger_entries GROUP BY user_id) l USING (user_id)
               WHERE a.balance <> COALESCE(l.sum, 0)
               ORDER BY a.user_id"#
        )
        .fetch_all(&mut *tx)
        .await?;
        let totals = sqlx::query!(
            r#"SELECT count(*) AS "accounts!", COALESCE(SUM(balance), 0)::BIGINT AS "balance!" FROM accounts"#
        )
        .fetch_one(&mut *tx)
        .await?;
        let (accounts, balance) = (totals.accounts, totals.balance);
        let sums = sqlx::query!(
            r#"SELECT COALESCE(SUM(amount) FILTER (WHERE kind = 'CHARGE'), 0)::BIGINT AS "charged!",
                      COALESCE(SUM(amount) FILTER (WHERE kind = 'DEBIT'), 0)::BIGINT AS "debited!",
                      COALESCE(SUM(amount) FILTER (WHERE kind = 'REFUND'), 0)::BIGINT AS "refunded!"
               FROM ledger_entries"#
        )
        .fetch_one(&mut *tx)
        .await?;
        let (charged, debited, refunded) = (sums.charged, sums.debited, sums.refunded);
        tx.commit().await?;
        Ok(AuditReport {
            accounts: platform::db::unsigned(accounts, "accounts")?,
            mismatches: mismatches
                .into_iter()
                .map(|m| (m.user_id, Won::new(m.balance), Won::new(m.ledger_sum)))
                .collect(),
            total_balance: Won::new(balance),
            total_charged: Won::new(charged),
            total_debited: Won::new(debited),
            total_refunded: Won::new(refunded),
        })
    }

    /// Every wallet's totals, every debit with its refunds, and every voided key, read in one
    /// REPEATABLE READ snapshot.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn books(&self) -> Result<Books, WalletError> {
        let mut tx = self.pool.begin_with(SNAPSHOT).await?;
        let accounts = sqlx::query!(
            r#"SELECT a.user_id, a.balance,
                      COALESCE(SUM(e.amount) FILTER (WHERE e.kind = 'CHARGE'), 0)::BIGINT AS "charged!",
                      COALESCE(SUM(e.amount) FILTER (WHERE e.kind = 'DEBIT'), 0)::BIGINT AS "debited!",
                      COALESCE(SUM(e.amount) FILTER (WHERE e.kind = 'REFUND'), 0)::BIGINT AS "refunded!"
               FROM accounts a LEFT JOIN ledger_entries e USING (user_id)
               GROUP BY a.user_id, a.balance ORDER BY a.user_id"#
        )
        .fetch_all(&mut *tx)
        .await?;
        let debits = sqlx::query!(
            r#"SELECT d.user_id, d.idempotency_key, d.amount, COALESCE(SUM(r.amount), 0)::BIGINT AS "refunded!"
               FROM ledger_entries d
               LEFT JOIN ledger_entries r
                      ON r.kind = 'REFUND' AND r.user_id = d.user_id AND r.debit_key = d.idempotency_key
               WHERE d.kind = 'DEBIT'
               GROUP BY d.entry_id ORDER BY d.entry_id"#
        )
        .fetch_all(&mut *tx)
        .await?;
        let voided = sqlx::query!("SELECT user_id, debit_key FROM voided_debits ORDER BY user_id, debit_key")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Books {
            accounts: accounts
                .into_iter()
                .map(|a| AccountBook {
                    user_id: a.user_id,
                    balance: Won::new(a.balance),
                    charged: Won::new(a.charged),
                    debited: Won::new(a.debited),
                    refunded: Won::new(a.refunded),
                })
                .collect(),
            debits: debits
                .into_iter()
                .map(|d| DebitBook {
                    user_id: d.user_id,
                    key: d.idempotency_key,
                    amount: Won::new(d.amount),
                    refunded: Won::new(d.refunded),
                })
                .collect(),
            voided: voided.into_iter().map(|v| (v.user_id, v.debit_key)).collect(),
        })
    }
}
