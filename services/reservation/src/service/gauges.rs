//! The operator's gauges of payments and holds, read from the database by every replica.
use std::time::Duration;

use platform::clock::SharedClock;

use crate::store::ReservationRepo;

/// How often the operator's gauges are read from the database.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Reads the whole suite's payment and hold counts every `interval` into the gauges
/// `reservation_payments{state}`, `reservation_payments_needing_person`,
/// `reservation_recovery_backlog` and `reservation_holds_live`. Every replica exports the
/// same values (dashboards take `max`).
#[allow(clippy::cast_precision_loss)]
pub async fn export_gauges(repo: ReservationRepo, clock: SharedClock, max_attempts: i32, interval: Duration) {
    use platform::metrics::{
        RESERVATION_HOLDS_LIVE, RESERVATION_PAYMENTS, RESERVATION_PAYMENTS_NEEDING_PERSON, RESERVATION_RECOVERY_BACKLOG,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match repo.gauges(clock.now(), max_attempts).await {
            Ok(g) => {
                for state in crate::domain::PaymentStatus::ALL {
                    let n = g.payments.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
                    metrics::gauge!(RESERVATION_PAYMENTS, "state" => state.as_str()).set(n as f64);
                }
                metrics::gauge!(RESERVATION_PAYMENTS_NEEDING_PERSON).set(g.needing_person as f64);
                metrics::gauge!(RESERVATION_RECOVERY_BACKLOG).set(g.recovery_backlog as f64);
                metrics::gauge!(RESERVATION_HOLDS_LIVE).set(g.live_holds as f64);
            }
            Err(e) => tracing::warn!(error = %e, "reading the gauges failed; retrying next tick"),
        }
    }
}
