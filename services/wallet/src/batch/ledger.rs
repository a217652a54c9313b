//! Charges and debits written in batches (see `platform::batch`).
//!
//! On opening day the saga debits hundreds of wallets per second, each one a locked account
//! row, a ledger append and a durable commit. Here every charge or debit already waiting (up
//! to [`MAX_BATCH`]) is applied by [`WalletRepo::apply_many`] in one transaction; nothing
//! waits to fill a batch, so a lone request is written at once. Debits that arrive already
//! batched (DebitMany, from the saga) skip the queue: [`LedgerBatcher::apply_all`] writes them the
//! same way, up to [`MAX_BATCH`] per transaction.
//!
//! The money rules are unchanged: each mutation is decided in order against the locked
//! balances, a rule error (insufficient balance, a reused key) answers that mutation only,
//! and a batch the database refuses is retried one mutation at a time through
//! [`WalletRepo::apply`]. Refunds always take `apply`: they check the debit they return.
use platform::{
    app::Tasks,
    batch::{self, BatchError, BatchHandler, Batcher},
};

use crate::{
    domain::{EntryKind, Mutation},
    error::WalletError,
    store::{Applied, WalletRepo},
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
pub struct LedgerBatcher {
    repo: WalletRepo,
    batcher: Batcher<LedgerWriter>,
}

impl LedgerBatcher {
    /// Starts the batch workers in `tasks`; they stop when every clone is dropped.
    #[must_use]
    pub fn start(repo: WalletRepo, tasks: &mut Tasks) -> Self {
        let batcher = Batcher::start(LedgerWriter(repo.clone()), WORKERS, MAX_BATCH, tasks);
        Self { repo, batcher }
    }

    /// Applies `m` exactly once per `(user_id, idempotency_key)`; see [`WalletRepo::apply`].
    ///
    /// # Errors
    /// As [`WalletRepo::apply`].
    pub async fn apply(&self, m: Mutation) -> Result<Applied, WalletError> {
        let kind = m.kind;
        let result = if kind == EntryKind::Refund {
            self.repo.apply(&m).await
        } else {
            self.batcher.submit(m).await.map_err(BatchError::into_error).and_then(|applied| applied)
        };
        record(kind, &result);
        result
    }

    /// Applies charges and debits that arrived together (DebitMany): up to [`MAX_BATCH`] per
    /// transaction, each mutation answered as [`LedgerBatcher::apply`] would answer it, in order.
    /// A chunk the database refuses as a whole is retried one mutation at a time.
    ///
    /// # Errors
    /// Per mutation, as [`WalletRepo::apply`].
    pub async fn apply_all(&self, ms: &[Mutation]) -> Vec<Result<Applied, WalletError>> {
        let writer = LedgerWriter(self.repo.clone());
        let mut results = Vec::with_capacity(ms.len());
        for chunk in ms.chunks(MAX_BATCH) {
            for (m, result) in chunk.iter().zip(batch::run_together(&writer, chunk).await) {
                let result = result.map_err(BatchError::into_error).and_then(|applied| applied);
                record(m.kind, &result);
                results.push(result);
            }
        }
        results
    }
}

/// Counts one answered mutation in `wallet_mutations_total{kind, outcome}`: `applied`,
/// `replayed` (an idempotency key seen before), `refused` (a money rule or a bad request)
/// or `error` (the database failed).
fn record(kind: EntryKind, result: &Result<Applied, WalletError>) {
    let outcome = match result {
        Ok(applied) if applied.replayed => "replayed",
        Ok(_) => "applied",
        Err(WalletError::System(_)) => "error",
        Err(_) => "refused",
    };
    metrics::counter!(platform::metrics::WALLET_MUTATIONS, "kind" => kind.as_str(), "outcome" => outcome).increment(1);
}
