//! PostgreSQL access for the wallet schema: SQL only; the balance rules are the domain's.
//!
//! - [`apply`]: one charge, debit or refund, exactly once per key.
//! - [`apply_many`]: charges and debits of any users in one transaction.
//! - [`books`]: the audit and the export the cross-service reconciliation reads.
mod apply;
mod apply_many;
mod books;

use chrono::{DateTime, Utc};
use platform::money::Won;
use sqlx::{PgPool, Row, postgres::PgRow};

use crate::{domain::LedgerEntry, error::WalletError};

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

const ENTRY_COLUMNS: &str = "entry_id, user_id, kind, amount, balance_after, idempotency_key, debit_key, created_at";

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

pub(super) fn entry_from_row(row: &PgRow) -> Result<LedgerEntry, WalletError> {
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    Ok(LedgerEntry {
        entry_id: row.try_get("entry_id")?,
        user_id: row.try_get("user_id")?,
        kind: row.try_get("kind")?,
        amount: row.try_get("amount")?,
        balance_after: row.try_get("balance_after")?,
        idempotency_key: row.try_get("idempotency_key")?,
        debit_key: row.try_get("debit_key")?,
        created_at,
    })
}
