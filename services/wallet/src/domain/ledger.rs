use chrono::{DateTime, Utc};
use platform::money::Won;

use super::Account;
use crate::error::WalletError;

/// What a ledger entry did to the balance. Stored by name in the TEXT column `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntryKind {
    /// Money added by the user (+).
    Charge,
    /// Money paid for a seat (−).
    Debit,
    /// Money given back by saga compensation (+).
    Refund,
}

impl EntryKind {
    /// The stored name (as sqlx writes it), for logs and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Charge => "CHARGE",
            EntryKind::Debit => "DEBIT",
            EntryKind::Refund => "REFUND",
        }
    }
}

/// One request to change a balance, identified by `(user_id, idempotency_key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub user_id: String,
    pub kind: EntryKind,
    pub amount: Won,
    pub idempotency_key: String,
    /// For a refund: the key of the debit being given back.
    pub debit_key: Option<String>,
}

impl Mutation {
    /// Applies the mutation to an account.
    ///
    /// # Errors
    /// The balance rules of [`Account`].
    pub fn apply(&self, account: Account) -> Result<Account, WalletError> {
        match self.kind {
            EntryKind::Charge => account.credit(self.amount),
            EntryKind::Refund => account.refund(self.amount),
            EntryKind::Debit => account.debit(self.amount),
        }
    }

    /// Whether a stored entry with the same key records this very request, so replaying it
    /// must return the stored result; a different request under the same key is refused.
    #[must_use]
    pub fn is_replay_of(&self, entry: &LedgerEntry) -> bool {
        entry.kind == self.kind && entry.amount == self.amount && entry.debit_key == self.debit_key
    }
}

/// What a refund may give back, as read under the account's lock: the debit it names (if
/// any) and what earlier refunds of that debit gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refundable {
    pub debited: Option<Won>,
    pub refunded: Won,
}

/// The outcome of one mutation, decided from what was read under the account's lock. Every
/// path (one at a time, or many in one transaction) applies this one decision.
#[derive(Debug)]
pub enum Decision {
    /// The same request was applied before: answer its entry.
    Replay(LedgerEntry),
    /// Append the entry; the account afterwards.
    Write(Account),
    /// A refund of a debit that does not exist: void the debit's key (so a debit still on its
    /// way under it is refused when it arrives), then refuse with DEBIT_NOT_FOUND.
    VoidAndRefuse,
    /// Refuse; nothing is written.
    Refuse(WalletError),
}

impl Mutation {
    /// Decides this mutation against what is stored under its key (`stored`), whether its
    /// debit key was voided (`voided`), the account's `balance`, and for a refund what it may
    /// give back. The order is the contract: a replay first (a retry gets the stored answer
    /// whatever changed since), then a voided debit key, then the refund's debit, then the
    /// balance rules.
    #[must_use]
    pub fn decide(
        &self,
        stored: Option<&LedgerEntry>,
        voided: bool,
        balance: Won,
        refundable: Option<Refundable>,
    ) -> Decision {
        if let Some(entry) = stored {
            return if self.is_replay_of(entry) {
                Decision::Replay(entry.clone())
            } else {
                Decision::Refuse(WalletError::IdempotencyKeyReused)
            };
        }
        if voided && self.kind == EntryKind::Debit {
            return Decision::Refuse(WalletError::DebitVoided);
        }
        if self.kind == EntryKind::Refund {
            let Some(Refundable { debited: Some(debited), refunded }) = refundable else {
                return Decision::VoidAndRefuse;
            };
            let Some(left) = debited.checked_sub(refunded) else {
                return Decision::Refuse(WalletError::from(anyhow::anyhow!("refund sum overflow")));
            };
            if self.amount > left {
                return Decision::Refuse(WalletError::RefundExceedsDebit { requested: self.amount, refundable: left });
            }
        }
        match self.apply(Account { balance }) {
            Ok(account) => Decision::Write(account),
            Err(e) => Decision::Refuse(e),
        }
    }
}

/// One append-only ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub entry_id: i64,
    pub user_id: String,
    pub kind: EntryKind,
    pub amount: Won,
    pub balance_after: Won,
    pub idempotency_key: String,
    pub debit_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[sqlx::test(migrations = false)]
    async fn kind_names_round_trip_through_postgres(pool: sqlx::PgPool) {
        let cases = [EntryKind::Charge, EntryKind::Debit, EntryKind::Refund].map(|k| (k, k.as_str()));
        platform::testing::assert_stored_names(&pool, &cases).await;
    }

    fn mutation(kind: EntryKind, amount: i64) -> Mutation {
        Mutation { user_id: "u".into(), kind, amount: Won::new(amount), idempotency_key: "k".into(), debit_key: None }
    }

    fn entry(kind: EntryKind, amount: i64) -> LedgerEntry {
        LedgerEntry {
            entry_id: 1,
            user_id: "u".into(),
            kind,
            amount: Won::new(amount),
            balance_after: Won::new(amount),
            idempotency_key: "k".into(),
            debit_key: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn replay_requires_the_same_request() {
        let m = mutation(EntryKind::Charge, 100);
        assert!(m.is_replay_of(&entry(EntryKind::Charge, 100)));
        assert!(!m.is_replay_of(&entry(EntryKind::Charge, 101)));
        assert!(!m.is_replay_of(&entry(EntryKind::Debit, 100)));
    }

    #[test]
    fn decisions_follow_the_contracts_order() {
        let balance = Won::new(50);
        let debit = mutation(EntryKind::Debit, 10);
        assert!(matches!(debit.decide(None, false, balance, None), Decision::Write(a) if a.balance == Won::new(40)));
        assert!(matches!(debit.decide(Some(&entry(EntryKind::Debit, 10)), true, Won::ZERO, None), Decision::Replay(_)));
        assert!(matches!(
            debit.decide(Some(&entry(EntryKind::Debit, 11)), false, balance, None),
            Decision::Refuse(WalletError::IdempotencyKeyReused)
        ));
        assert!(matches!(debit.decide(None, true, balance, None), Decision::Refuse(WalletError::DebitVoided)));
        assert!(matches!(
            mutation(EntryKind::Debit, 51).decide(None, false, balance, None),
            Decision::Refuse(WalletError::InsufficientBalance { .. })
        ));
        let refund = Mutation { debit_key: Some("d".into()), ..mutation(EntryKind::Refund, 10) };
        assert!(matches!(refund.decide(None, false, balance, None), Decision::VoidAndRefuse));
        let gone = Refundable { debited: None, refunded: Won::ZERO };
        assert!(matches!(refund.decide(None, false, balance, Some(gone)), Decision::VoidAndRefuse));
        let part = Refundable { debited: Some(Won::new(15)), refunded: Won::new(10) };
        assert!(matches!(
            refund.decide(None, false, balance, Some(part)),
            Decision::Refuse(WalletError::RefundExceedsDebit { .. })
        ));
        let whole = Refundable { debited: Some(Won::new(15)), refunded: Won::new(5) };
        assert!(
            matches!(refund.decide(None, true, balance, Some(whole)), Decision::Write(a) if a.balance == Won::new(60))
        );
    }

    #[test]
    fn apply_follows_the_kind() {
        let a = Account { balance: Won::new(50) };
        assert_eq!(mutation(EntryKind::Charge, 10).apply(a).unwrap().balance, Won::new(60));
        assert_eq!(mutation(EntryKind::Refund, 10).apply(a).unwrap().balance, Won::new(60));
        let full = Account { balance: crate::domain::MAX_BALANCE };
        assert!(mutation(EntryKind::Charge, 10).apply(full).is_err());
        assert!(mutation(EntryKind::Refund, 10).apply(full).is_ok(), "compensation is never refused");
        assert_eq!(mutation(EntryKind::Debit, 10).apply(a).unwrap().balance, Won::new(40));
        assert!(mutation(EntryKind::Debit, 51).apply(a).is_err());
    }
}
