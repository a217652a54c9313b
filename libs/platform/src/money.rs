//! Money as an integer number of won.
//!
//! The Korean won has no minor unit in circulation, so one `Won` is one won; amounts are
//! `i64`, stored as `BIGINT`, never floats. Every arithmetic step is checked.
use std::fmt;

use crate::validate::FieldViolation;

/// An amount of money in won (KRW). Stored as `BIGINT`: it binds and decodes as one
/// (`sqlx::Type`, transparent), so stores never unwrap or rewrap it by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, sqlx::Type)]
#[sqlx(transparent)]
pub struct Won(i64);

impl Won {
    /// Zero won.
    pub const ZERO: Won = Won(0);
    /// Largest amount of one charge, debit, refund or seat price (seat prices are 1..=this): 10,000,000 won.
    pub const MAX_PAYMENT: Won = Won(10_000_000);

    /// Wraps a raw number of won (may be negative; callers validate where it matters).
    #[must_use]
    pub const fn new(won: i64) -> Self {
        Won(won)
    }

    /// The number of won.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    #[must_use]
    pub fn checked_add(self, other: Won) -> Option<Won> {
        self.0.checked_add(other.0).map(Won)
    }

    /// `self - other`, or `None` on overflow.
    #[must_use]
    pub fn checked_sub(self, other: Won) -> Option<Won> {
        self.0.checked_sub(other.0).map(Won)
    }

    /// Validates a payment amount field: 1..=10,000,000 won.
    ///
    /// # Errors
    /// When the amount is ≤ 0 or above [`Won::MAX_PAYMENT`].
    pub fn payment(field: &'static str, won: i64) -> Result<Won, FieldViolation> {
        if won <= 0 {
            return Err(FieldViolation::new(field, "must be positive (won)"));
        }
        if won > Self::MAX_PAYMENT.0 {
            return Err(FieldViolation::new(field, format!("must be at most {} won", Self::MAX_PAYMENT.0)));
        }
        Ok(Won(won))
    }
}

impl fmt::Display for Won {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} won", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic() {
        assert_eq!(Won::new(5).checked_add(Won::new(7)), Some(Won::new(12)));
        assert_eq!(Won::new(i64::MAX).checked_add(Won::new(1)), None);
        assert_eq!(Won::new(i64::MIN).checked_sub(Won::new(1)), None);
    }

    #[test]
    fn payment_bounds() {
        assert!(Won::payment("amount", 0).is_err());
        assert!(Won::payment("amount", -5).is_err());
        assert!(Won::payment("amount", 10_000_001).is_err());
        assert_eq!(Won::payment("amount", 10_000_000).unwrap(), Won::MAX_PAYMENT);
        assert_eq!(Won::payment("amount", 0).unwrap_err().field, "amount");
    }
}
