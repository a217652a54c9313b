//! Charges and debits written in batches (see `platform::batch`).
//!
//! On opening day the saga debits hundreds of wallets per second, each one a locked account
//! row, a ledger append and a durable commit. Here every charge or debit already waiting (up
//! to [`MAX_BATCH`]) is applied by [`WalletRepo::apply_many`] in one transaction; nothing
//! waits to fill a batch, so a lone request is written at once.
//!
//! The money rules are unchanged: each mutation is decided in order against the locked
//! balances, a rule error (insufficient balance, a reused key) answers that mutation only,
//! and a batch the database refuses is retried one mutation at a time through
//! [`WalletRepo::apply`]. Refunds always take `apply`: they check the debit they return.
use platform::batch::{BatchError, BatchHandler, Batcher};

use crate::{
    domain::{EntryKind, Mutation},
    error::WalletError,
    repo::{Applied, WalletRepo},
};

/// Most mutations one transaction applies.
pub const MAX_BATCH: usize = 64;
/// Batches in flight at once (each uses one pooled connection).
const WORKERS: usize = 4;

/// Applies batches of charges and debits.
#[derive(Debug)]
pub struct LedgerWriter(WalletRepo);

impl BatchHandler for LedgerWriter {
    type Item = Mutation;
    type Output = Result<Applied, WalletError>;
    type Error = WalletError;

    async fn run(&self, ms: &[Mutation]) -> Result<Vec<Result<Applied, WalletError>>, WalletError> {
        if let [one] = ms {
            // Alone, or retried alone after its batch failed: the single-mutation path,
            // which also resolves a key raced by another replica.
            return Ok(vec![self.0.apply(one).await]);
        }
        self.0.apply_many(ms).await
    }
}

/// The wallet's write path: batched charges and debits, single refunds.
#[derive(Debug, Clone)]
pub struct Ledger {
    repo: WalletRepo,
    batcher: Batcher<LedgerWriter>,
}

impl Ledger {
    /// Starts the batch workers (needs a Tokio runtime); they stop when every clone is dropped.
    #[must_use]
    pub fn start(repo: WalletRepo) -> Self {
        let batcher = Batcher::start(LedgerWriter(repo.clone()), WORKERS, MAX_BATCH);
        Self { repo, batcher }
    }

    /// Applies `m` exactly once per `(user_id, idempotency_key)`; see [`WalletRepo::apply`].
    ///
    /// # Errors
    /// As [`WalletRepo::apply`].
    pub async fn apply(&self, m: Mutation) -> Result<Applied, WalletError> {
        if m.kind == EntryKind::Refund {
            return self.repo.apply(&m).await;
        }
        self.batcher.submit(m).await.map_err(BatchError::into_error)?
    }
}
