//! Failpoints of the wallet, for fault-injection tests and drills. They exist only in builds
//! with the `failpoints` feature (the `fail` crate) and are armed with the `FAILPOINTS`
//! environment variable or `fail::cfg`; otherwise every function here does nothing.
//!
//! - `wallet::debit-unavailable` — action `return`: a debit is refused with UNAVAILABLE
//!   before anything is written (a wallet that is down or restarting).
//! - `wallet::debit-reply-delay` — action `return(<ms>)`: a debit is committed, then the
//!   reply waits `<ms>` milliseconds (a wallet slower than the caller's deadline: the caller
//!   cannot know the money moved).
use std::time::Duration;

use crate::error::WalletError;

/// Fails a debit before it starts when `wallet::debit-unavailable` is armed.
///
/// # Errors
/// [`WalletError::Injected`] (UNAVAILABLE) when the failpoint fires.
pub fn before_debit() -> Result<(), WalletError> {
    fail::fail_point!("wallet::debit-unavailable", |_| Err(WalletError::Injected("wallet unavailable")));
    Ok(())
}

/// Delays a committed debit's reply when `wallet::debit-reply-delay` is armed.
pub async fn after_debit() {
    fn delay() -> Option<Duration> {
        fail::fail_point!("wallet::debit-reply-delay", |ms: Option<String>| ms
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis));
        None
    }
    if let Some(pause) = delay() {
        tracing::warn!(pause_ms = pause.as_millis(), "failpoint wallet::debit-reply-delay: reply delayed");
        tokio::time::sleep(pause).await;
    }
}
