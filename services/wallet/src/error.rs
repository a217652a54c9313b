//! Wallet errors and their one mapping to gRPC statuses.
use platform::{
    error::SystemError,
    money::Won,
    status::{invalid_argument, with_reason},
    validate::FieldViolation,
};
use tonic::{Code, Status};

/// Everything a wallet request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    InvalidArgument(#[from] FieldViolation),
    #[error("insufficient balance: {balance} available, {amount} requested")]
    InsufficientBalance { balance: Won, amount: Won },
    #[error("balance limit: {balance} + {amount} would exceed the maximum balance")]
    BalanceLimit { balance: Won, amount: Won },
    #[error("idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("no debit with that key for this user")]
    DebitNotFound,
    /// The debit key was voided by a refund that found nothing to give back: the payment it
    /// belonged to was given up, so this debit must not be taken.
    #[error("this debit key was voided by an earlier refund; the payment was given up")]
    DebitVoided,
    #[error("refund of {requested} exceeds the {refundable} still refundable for that debit")]
    RefundExceedsDebit { requested: Won, refundable: Won },
    /// A failpoint fired (`faults`, builds with the `failpoints` feature only): UNAVAILABLE.
    #[error("injected fault: {0}")]
    Injected(&'static str),
    /// The database is unreachable, or something unexpected: the platform's answer.
    #[error(transparent)]
    System(#[from] SystemError),
}

impl From<sqlx::Error> for WalletError {
    fn from(e: sqlx::Error) -> Self {
        Self::System(e.into())
    }
}

impl From<anyhow::Error> for WalletError {
    fn from(e: anyhow::Error) -> Self {
        Self::System(e.into())
    }
}

impl From<WalletError> for Status {
    fn from(e: WalletError) -> Self {
        match e {
            WalletError::InvalidArgument(v) => v.into(),
            WalletError::InsufficientBalance { .. } => {
                with_reason(Code::FailedPrecondition, "INSUFFICIENT_BALANCE", e.to_string())
            }
            WalletError::BalanceLimit { .. } => with_reason(Code::FailedPrecondition, "BALANCE_LIMIT", e.to_string()),
            WalletError::IdempotencyKeyReused => invalid_argument("idempotency_key", &e.to_string()),
            WalletError::DebitNotFound => with_reason(Code::NotFound, "DEBIT_NOT_FOUND", e.to_string()),
            WalletError::DebitVoided => with_reason(Code::FailedPrecondition, "DEBIT_VOIDED", e.to_string()),
            WalletError::RefundExceedsDebit { .. } => invalid_argument("amount", &e.to_string()),
            WalletError::Injected(_) => Status::unavailable(e.to_string()),
            WalletError::System(system) => system.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::status::{reason, violated_field};

    #[test]
    fn every_error_maps_to_its_code() {
        let s = Status::from(WalletError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(
            (s.code(), platform::status::reason(&s).as_deref()),
            (Code::Unavailable, Some("DATABASE_UNAVAILABLE"))
        );
        let w = Won::new(1);
        let cases: Vec<(WalletError, Code, Option<&str>, Option<&str>)> = vec![
            (FieldViolation::new("amount", "bad").into(), Code::InvalidArgument, None, Some("amount")),
            (
                WalletError::InsufficientBalance { balance: w, amount: w },
                Code::FailedPrecondition,
                Some("INSUFFICIENT_BALANCE"),
                None,
            ),
            (
                WalletError::BalanceLimit { balance: w, amount: w },
                Code::FailedPrecondition,
                Some("BALANCE_LIMIT"),
                None,
            ),
            (WalletError::IdempotencyKeyReused, Code::InvalidArgument, None, Some("idempotency_key")),
            (WalletError::DebitNotFound, Code::NotFound, Some("DEBIT_NOT_FOUND"), None),
            (WalletError::DebitVoided, Code::FailedPrecondition, Some("DEBIT_VOIDED"), None),
            (
                WalletError::RefundExceedsDebit { requested: w, refundable: w },
                Code::InvalidArgument,
                None,
                Some("amount"),
            ),
            (WalletError::Injected("test"), Code::Unavailable, None, None),
            (WalletError::from(anyhow::anyhow!("boom")), Code::Internal, None, None),
        ];
        for (error, code, want_reason, field) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            if let Some(r) = want_reason {
                assert_eq!(reason(&status).as_deref(), Some(r));
            }
            if let Some(f) = field {
                assert_eq!(violated_field(&status).as_deref(), Some(f));
            }
        }
    }
}
