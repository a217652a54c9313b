//! The wallet's use cases: what each RPC does, between the handlers (which validate and
//! convert) and the ledger writer and store (which batch and persist).
use platform::money::Won;

use crate::{
    batch::ledger::LedgerBatcher,
    domain::{LedgerEntry, Mutation},
    error::WalletError,
    store::WalletRepo,
};

pub use crate::store::{Applied, AuditReport, Books};

/// Balances and the ledger of every user.
#[derive(Debug, Clone)]
pub struct Wallet {
    repo: WalletRepo,
    ledger: LedgerBatcher,
}

impl Wallet {
    /// Reads through `repo`, writes through `ledger` (whose workers `app::run` owns).
    #[must_use]
    pub fn new(repo: WalletRepo, ledger: LedgerBatcher) -> Self {
        Self { repo, ledger }
    }

    /// Applies a charge or refund, exactly once per key.
    ///
    /// # Errors
    /// The rules of [`Mutation::decide`]; database failures.
    pub async fn apply(&self, m: Mutation) -> Result<Applied, WalletError> {
        self.ledger.apply(m).await
    }

    /// Takes money for a payment saga, exactly once per key (failpoints around it: `faults`).
    ///
    /// # Errors
    /// As [`Self::apply`]; an injected fault.
    pub async fn debit(&self, m: Mutation) -> Result<Applied, WalletError> {
        crate::faults::before_debit()?;
        let applied = self.ledger.apply(m).await?;
        crate::faults::after_debit().await;
        Ok(applied)
    }

    /// Takes money for many sagas together; each gets its own answer, in order.
    ///
    /// # Errors
    /// An injected fault (nothing is taken); each debit's own error is in its place.
    pub async fn debit_all(&self, ms: &[Mutation]) -> Result<Vec<Result<Applied, WalletError>>, WalletError> {
        crate::faults::before_debit()?;
        let applied = self.ledger.apply_all(ms).await;
        crate::faults::after_debit().await;
        Ok(applied)
    }

    /// The balance of `user_id` in won; 0 for a wallet never charged.
    ///
    /// # Errors
    /// Database failures.
    pub async fn balance(&self, user_id: &str) -> Result<Won, WalletError> {
        self.repo.balance(user_id).await
    }

    /// The newest `limit` ledger entries of `user_id`, newest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn history(&self, user_id: &str, limit: u32) -> Result<Vec<LedgerEntry>, WalletError> {
        self.repo.entries(user_id, limit).await
    }

    /// Every account, debit and voided debit key, for the cross-service reconciliation.
    ///
    /// # Errors
    /// Database failures.
    pub async fn books(&self) -> Result<Books, WalletError> {
        self.repo.books().await
    }

    /// Every balance against the sum of its ledger.
    ///
    /// # Errors
    /// Database failures.
    pub async fn audit(&self) -> Result<AuditReport, WalletError> {
        self.repo.audit().await
    }
}
