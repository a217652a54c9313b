//! gRPC handlers of the wallet: validate and convert at the edge, call the use case
//! (`service::Wallet`), convert back.
mod convert;

use concert_proto::concert::wallet::v1::{
    AccountBook, AccountMismatch, AuditRequest, AuditResponse, ChargeRequest, ChargeResponse, DebitManyRequest,
    DebitManyResponse, DebitRecord, DebitRequest, DebitResponse, DebitResult, ExportBooksRequest, ExportBooksResponse,
    GetBalanceRequest, GetBalanceResponse, ListTransactionsRequest, ListTransactionsResponse, RefundRequest,
    RefundResponse, VoidedDebit, wallet_internal_service_server::WalletInternalService,
    wallet_service_server::WalletService,
};
use platform::{identity, validate};
use tonic::{Request, Response, Status};

use crate::{domain::EntryKind, error::WalletError, service::Wallet};
use convert::{debit_failure, debit_response, debited, mutation, transaction};

/// Default and largest page of `ListTransactions`.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1_000;
/// Rows per ExportBooks message.
const EXPORT_CHUNK: usize = 1_000;
/// Most debits one DebitMany call may carry.
const MAX_DEBITS: usize = 1_000;

/// Implements both the public and the internal wallet API.
#[derive(Debug, Clone)]
pub struct WalletApi {
    wallet: Wallet,
}

impl WalletApi {
    #[must_use]
    pub fn new(wallet: Wallet) -> Self {
        Self { wallet }
    }
}

#[tonic::async_trait]
impl WalletService for WalletApi {
    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn charge(&self, request: Request<ChargeRequest>) -> Result<Response<ChargeResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let r = request.into_inner();
        let m = mutation(EntryKind::Charge, &user_id, r.amount, &r.idempotency_key, None)?;
        let applied = self.wallet.apply(m).await?;
        let balance = applied.entry.balance_after.get();
        Ok(Response::new(ChargeResponse { transaction: Some(transaction(&applied.entry)), balance }))
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn get_balance(&self, request: Request<GetBalanceRequest>) -> Result<Response<GetBalanceResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let balance = self.wallet.balance(&user_id).await?;
        Ok(Response::new(GetBalanceResponse { user_id, balance: balance.get() }))
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn list_transactions(
        &self,
        request: Request<ListTransactionsRequest>,
    ) -> Result<Response<ListTransactionsResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let r = request.into_inner();
        let limit = match r.limit {
            0 => DEFAULT_LIMIT,
            n if n > MAX_LIMIT => {
                return Err(validate::FieldViolation::new("limit", format!("must be at most {MAX_LIMIT}")).into());
            }
            n => n,
        };
        let entries = self.wallet.history(&user_id, limit).await?;
        Ok(Response::new(ListTransactionsResponse { transactions: entries.iter().map(transaction).collect() }))
    }
}

#[tonic::async_trait]
impl WalletInternalService for WalletApi {
    type ExportBooksStream = futures::stream::Iter<std::vec::IntoIter<Result<ExportBooksResponse, Status>>>;

    #[tracing::instrument(skip_all)]
    async fn export_books(
        &self,
        _request: Request<ExportBooksRequest>,
    ) -> Result<Response<Self::ExportBooksStream>, Status> {
        let books = self.wallet.books().await?;
        let accounts: Vec<AccountBook> = books
            .accounts
            .into_iter()
            .map(|a| AccountBook {
                user_id: a.user_id,
                balance: a.balance.get(),
                charged: a.charged.get(),
                debited: a.debited.get(),
                refunded: a.refunded.get(),
            })
            .collect();
        let debits: Vec<DebitRecord> = books
            .debits
            .into_iter()
            .map(|d| DebitRecord {
                user_id: d.user_id,
                idempotency_key: d.key,
                amount: d.amount.get(),
                refunded: d.refunded.get(),
            })
            .collect();
        let voided: Vec<VoidedDebit> =
            books.voided.into_iter().map(|(user_id, debit_key)| VoidedDebit { user_id, debit_key }).collect();
        let mut messages = Vec::new();
        messages.extend(
            accounts.chunks(EXPORT_CHUNK).map(|c| ExportBooksResponse { accounts: c.to_vec(), ..Default::default() }),
        );
        messages.extend(
            debits.chunks(EXPORT_CHUNK).map(|c| ExportBooksResponse { debits: c.to_vec(), ..Default::default() }),
        );
        messages.extend(
            voided.chunks(EXPORT_CHUNK).map(|c| ExportBooksResponse { voided: c.to_vec(), ..Default::default() }),
        );
        Ok(Response::new(futures::stream::iter(messages.into_iter().map(Ok).collect::<Vec<_>>())))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id, key = %request.get_ref().idempotency_key))]
    async fn debit(&self, request: Request<DebitRequest>) -> Result<Response<DebitResponse>, Status> {
        let r = request.into_inner();
        let m = mutation(EntryKind::Debit, &r.user_id, r.amount, &r.idempotency_key, None)?;
        let applied = self.wallet.debit(m).await?;
        Ok(Response::new(debit_response(&applied.entry)))
    }

    #[tracing::instrument(skip_all, fields(debits = request.get_ref().debits.len()))]
    async fn debit_many(&self, request: Request<DebitManyRequest>) -> Result<Response<DebitManyResponse>, Status> {
        let debits = request.into_inner().debits;
        if debits.is_empty() || debits.len() > MAX_DEBITS {
            return Err(validate::FieldViolation::new("debits", format!("must hold 1 to {MAX_DEBITS} debits")).into());
        }
        // Invalid debits are answered at once; the others are applied together, in order.
        let mut results: Vec<Option<DebitResult>> = Vec::with_capacity(debits.len());
        let (mut at, mut ms) = (Vec::new(), Vec::new());
        for (i, d) in debits.iter().enumerate() {
            match mutation(EntryKind::Debit, &d.user_id, d.amount, &d.idempotency_key, None) {
                Ok(m) => {
                    at.push(i);
                    ms.push(m);
                    results.push(None);
                }
                Err(violation) => results.push(Some(debit_failure(violation.into()))),
            }
        }
        for (i, applied) in at.into_iter().zip(self.wallet.debit_all(&ms).await?) {
            results[i] = Some(match applied {
                Ok(a) => debited(&a.entry),
                // The database failed under this debit: the whole call is worth retrying
                // (debits already taken replay under their keys).
                Err(WalletError::System(e)) if e.is_database_unavailable() => return Err(e.into()),
                Err(e) => debit_failure(e),
            });
        }
        Ok(Response::new(DebitManyResponse { results: results.into_iter().flatten().collect() }))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id, key = %request.get_ref().idempotency_key))]
    async fn refund(&self, request: Request<RefundRequest>) -> Result<Response<RefundResponse>, Status> {
        let r = request.into_inner();
        let debit_key = validate::key("debit_idempotency_key", &r.debit_idempotency_key)?;
        let m = mutation(EntryKind::Refund, &r.user_id, r.amount, &r.idempotency_key, Some(debit_key))?;
        let applied = self.wallet.apply(m).await?;
        let balance = applied.entry.balance_after.get();
        Ok(Response::new(RefundResponse { transaction: Some(transaction(&applied.entry)), balance }))
    }

    #[tracing::instrument(skip_all)]
    async fn audit(&self, _request: Request<AuditRequest>) -> Result<Response<AuditResponse>, Status> {
        let report = self.wallet.audit().await?;
        if !report.mismatches.is_empty() {
            tracing::error!(
                mismatches = report.mismatches.len(),
                "wallet audit found balances that disagree with the ledger"
            );
        }
        Ok(Response::new(AuditResponse {
            accounts: report.accounts,
            mismatches: report
                .mismatches
                .iter()
                .map(|(user_id, balance, sum)| AccountMismatch {
                    user_id: user_id.clone(),
                    balance: balance.get(),
                    ledger_sum: sum.get(),
                })
                .collect(),
            total_balance: report.total_balance.get(),
            total_charged: report.total_charged.get(),
            total_debited: report.total_debited.get(),
            total_refunded: report.total_refunded.get(),
        }))
    }
}
