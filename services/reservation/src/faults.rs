//! Failpoints of the reservation service, for fault-injection tests and drills. They exist
//! only in builds with the `failpoints` feature (the `fail` crate) and are armed with the
//! `FAILPOINTS` environment variable or `fail::cfg`; otherwise every function here does
//! nothing.
//!
//! - `reservation::after-debit` — action `return`: the saga stops for good right after the
//!   wallet took the money and before anything is recorded (a crash there).

/// Failpoint `reservation::after-debit` (builds with the `failpoints` feature; set with the
/// `FAILPOINTS` environment variable or `fail::cfg`): with action `return`, the saga stops
/// for good right after the wallet took the money and before anything is recorded, so a
/// test can kill the process there, as a crash would. Without the feature this is a no-op.
pub async fn crash_point_after_debit() {
    fn armed() -> bool {
        fail::fail_point!("reservation::after-debit", |_| true);
        false
    }
    if armed() {
        tracing::error!("failpoint reservation::after-debit: saga frozen after the debit");
        std::future::pending::<()>().await;
    }
}
