use platform::money::Won;

use crate::error::WalletError;

/// Largest balance one wallet may hold: 1,000,000,000 won. Bounds the damage of a bug or an
/// abused charge endpoint and keeps every sum far from `i64` overflow.
pub const MAX_BALANCE: Won = Won::new(1_000_000_000);

/// A wallet's balance, with the rules for changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub balance: Won,
}

impl Account {
    /// The balance after adding `amount` (a charge or a refund).
    ///
    /// # Errors
    /// [`WalletError::BalanceLimit`] when the result would exceed [`MAX_BALANCE`].
    pub fn credit(self, amount: Won) -> Result<Account, WalletError> {
        let balance = self
            .balance
            .checked_add(amount)
            .filter(|b| *b <= MAX_BALANCE)
            .ok_or(WalletError::BalanceLimit { balance: self.balance, amount })?;
        Ok(Account { balance })
    }

    /// The balance after giving back `amount` of an earlier debit. Never refused for the
    /// balance limit: the money was in this wallet before, and a compensation that could be
    /// refused would leave a saga unable to finish.
    ///
    /// # Errors
    /// [`WalletError::System`] only on `i64` overflow (impossible below the limits).
    pub fn refund(self, amount: Won) -> Result<Account, WalletError> {
        let balance = self
            .balance
            .checked_add(amount)
            .ok_or_else(|| WalletError::from(anyhow::anyhow!("balance overflow on refund")))?;
        Ok(Account { balance })
    }

    /// The balance after taking `amount` out (a debit).
    ///
    /// # Errors
    /// [`WalletError::InsufficientBalance`] when the balance is below `amount`.
    pub fn debit(self, amount: Won) -> Result<Account, WalletError> {
        let balance = self
            .balance
            .checked_sub(amount)
            .filter(|b| *b >= Won::ZERO)
            .ok_or(WalletError::InsufficientBalance { balance: self.balance, amount })?;
        Ok(Account { balance })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_bounded() {
        let a = Account { balance: Won::new(999_999_999) };
        assert_eq!(a.credit(Won::new(1)).unwrap().balance, MAX_BALANCE);
        assert!(matches!(a.credit(Won::new(2)), Err(WalletError::BalanceLimit { .. })));
        let huge = Account { balance: Won::new(i64::MAX) };
        assert!(huge.credit(Won::new(1)).is_err());
    }

    #[test]
    fn a_refund_is_never_refused_for_the_balance_limit() {
        let full = Account { balance: MAX_BALANCE };
        assert!(full.credit(Won::new(1)).is_err(), "a charge is bounded");
        assert_eq!(full.refund(Won::new(5)).unwrap().balance, Won::new(MAX_BALANCE.get() + 5));
    }

    #[test]
    fn debit_never_goes_negative() {
        let a = Account { balance: Won::new(100) };
        assert_eq!(a.debit(Won::new(100)).unwrap().balance, Won::ZERO);
        assert!(matches!(a.debit(Won::new(101)), Err(WalletError::InsufficientBalance { .. })));
    }
}
