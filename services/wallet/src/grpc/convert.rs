//! proto ⇄ domain conversions for the wallet.
use concert_proto::concert::wallet::v1::{
    DebitFailure, DebitRefusal, DebitResponse, DebitResult, Transaction, TransactionKind, debit_result,
};
use platform::{
    convert::timestamp,
    money::Won,
    validate::{self, FieldViolation},
};
use tonic::Status;

use crate::{
    domain::{EntryKind, LedgerEntry, Mutation},
    error::WalletError,
};

/// Validates the fields shared by Charge, Debit and Refund.
pub(super) fn mutation(
    kind: EntryKind,
    user_id: &str,
    amount: i64,
    idempotency_key: &str,
    debit_key: Option<String>,
) -> Result<Mutation, FieldViolation> {
    Ok(Mutation {
        user_id: validate::key("user_id", user_id)?,
        kind,
        amount: Won::payment("amount", amount)?,
        idempotency_key: validate::key("idempotency_key", idempotency_key)?,
        debit_key,
    })
}

pub(super) fn transaction(e: &LedgerEntry) -> Transaction {
    let kind = match e.kind {
        EntryKind::Charge => TransactionKind::Charge,
        EntryKind::Debit => TransactionKind::Debit,
        EntryKind::Refund => TransactionKind::Refund,
    };
    Transaction {
        transaction_id: e.entry_id,
        user_id: e.user_id.clone(),
        kind: kind.into(),
        amount: e.amount.get(),
        balance_after: e.balance_after.get(),
        idempotency_key: e.idempotency_key.clone(),
        created_at: Some(timestamp(e.created_at)),
    }
}

/// The answer to a debit that was taken (Debit, and each taken debit of DebitMany).
pub(super) fn debit_response(entry: &LedgerEntry) -> DebitResponse {
    DebitResponse { transaction: Some(transaction(entry)), balance: entry.balance_after.get() }
}

/// One debit of a DebitMany call, taken.
pub(super) fn debited(entry: &LedgerEntry) -> DebitResult {
    DebitResult { outcome: Some(debit_result::Outcome::Debited(debit_response(entry))) }
}

/// One debit of a DebitMany call, not taken: the status Debit would have returned for it,
/// and the typed refusal when the wallet's rules refused it for good.
pub(super) fn debit_failure(error: WalletError) -> DebitResult {
    let refusal = match &error {
        WalletError::InsufficientBalance { .. } => DebitRefusal::InsufficientBalance,
        WalletError::DebitVoided => DebitRefusal::DebitVoided,
        WalletError::InvalidArgument(_) | WalletError::IdempotencyKeyReused => DebitRefusal::InvalidRequest,
        // Not a debit's refusal (refund and balance-limit rules), or an unknown outcome.
        WalletError::BalanceLimit { .. }
        | WalletError::DebitNotFound
        | WalletError::RefundExceedsDebit { .. }
        | WalletError::Injected(_)
        | WalletError::System(_) => DebitRefusal::Unspecified,
    };
    let status = Status::from(error);
    let failure = DebitFailure {
        code: status.code() as i32,
        reason: platform::status::reason(&status).unwrap_or_default(),
        message: status.message().to_owned(),
        refusal: refusal.into(),
    };
    DebitResult { outcome: Some(debit_result::Outcome::Failure(failure)) }
}
