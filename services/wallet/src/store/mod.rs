//! PostgreSQL access for the wallet schema: SQL only; the balance rules are the domain's.
//!
//! - [`apply`]: one charge, debit or refund, exactly once per key.
//! - [`apply_many`]: charges and debits of any users in one transaction.
//! - [`books`]: the audit and the export the cross-service reconciliation reads.
mod apply;
mod apply_many;
mod books;

use platform::money::Won;
use sqlx::PgPool;

use crate::{
    domain::{EntryKind, LedgerEntry},
    error::WalletError,
};

pub use books::{AccountBook, AuditReport, Books, DebitBook};

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

impl WalletRepo {
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The balance of `user_id`; 0 when the wallet was never charged.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn balance(&self, user_id: &str) -> Result<Won, WalletError> {
        let balance = sqlx::query_scalar!("SELECT balance FROM accounts WHERE user_id = $1", user_id)
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
        let entries = sqlx::query_as!(
            LedgerEntry,
            r#"SELECT entry_id, user_id, kind AS "kind: EntryKind", amount AS "amount: Won",
                      balance_after AS "balance_after: Won", idempotency_key, debit_key, created_at
               FROM ledger_entries WHERE user_id = $1 ORDER BY entry_id DESC LIMIT $2"#,
            user_id,
            i64::from(limit)
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(entries)
    }
}
