//! Failpoints of the reservation service, for fault-injection tests and drills. They exist
//! only in builds with the `failpoints` feature (the `fail` crate) and are armed with the
//! `FAILPOINTS` environment variable or `fail::cfg`; otherwise every function here does
//! nothing.
//!
//! - `reservation::after-debit` — action `return`: the saga stops for good right after the
//!   wallet took the money and before anything is recorded (a crash there).
//! - `reservation::after-give-back` — action `return`: a give-back stops for good after the
//!   seat was released and its refund recorded as owed, before the wallet refunds it.

/// Failpoint `reservation::after-debit` (builds with the `failpoints` feature; set with the
/// `FAILPOINTS` environment variable or `fail::cfg`): with action `return`, the saga stops
/// for good right after the wallet took the money and before anything is recorded, so a
/// test can kill the process there, as a crash would. Without the feature this is a no-op.
pub async fn crash_point_after_debit() {
    freeze_if(armed_after_debit(), "reservation::after-debit").await;
}

/// Failpoint `reservation::after-give-back` (as [`crash_point_after_debit`]): with action
/// `return`, a give-back stops for good between the seat's release (with its refund recorded
/// as owed) and the wallet's refund.
pub async fn crash_point_after_give_back() {
    fn armed() -> bool {
        fail::fail_point!("reservation::after-give-back", |_| true);
        false
    }
    freeze_if(armed(), "reservation::after-give-back").await;
}

fn armed_after_debit() -> bool {
    fail::fail_point!("reservation::after-debit", |_| true);
    false
}

/// Freezes the caller for good when `armed`, as a crash at failpoint `name` would.
async fn freeze_if(armed: bool, name: &str) {
    if armed {
        tracing::error!(failpoint = name, "failpoint reached: this task is frozen");
        std::future::pending::<()>().await;
    }
}
